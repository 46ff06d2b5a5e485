"""scripts/flicker_table.py (cans.tools.flicker): the colour flicker of a still synthetic scene,
plain and with --steady, as a table, its JSON and one MP4 per setting."""
import json

from helpers import DEMO

from cans.cli import flicker_table
from cans.tools.flicker import format_flicker_table

TINY = ["model.width=8", "model.enc_blk_nums=[1,1,1,1]", "model.dec_blk_nums=[1,1,1,1]", "model.middle_blk_num=1"]


def test_flicker_table_of_a_still_synthetic_scene(tmp_path, capsys):
    out = tmp_path / "flicker"
    code = flicker_table.main(["-c", DEMO, "--random-weights", "--frames", "6", "--size", "112", "128", "--windows",
                               "2", "3", "--device", "cpu", "--out", str(out), "--no-progress", "--set", *TINY])
    assert code == 0
    printed = capsys.readouterr().out
    assert "a still synthetic scene (6 frames of 112x128, gain K 6.0106" in printed and "| --steady 3 |" in printed
    saved = json.loads((out / "flicker.json").read_text())
    assert [r["window"] for r in saved["rows"]] == [0, 2, 3]
    assert all(r["flicker"] >= 0 and r["seconds_per_frame"] > 0 for r in saved["rows"])
    assert {p.name for p in out.iterdir()} >= {"plain.mp4", "steady_2.mp4", "steady_3.mp4", "flicker.md",
                                               "sequence"}
    assert len(list((out / "sequence").glob("frame_*.dng"))) == 6


def test_the_table_compares_each_window_with_the_plain_output():
    rows = [{"window": 0, "flicker": 2.0, "flicker_settled": 2.0, "seconds_per_frame": 1.0},
            {"window": 8, "flicker": 1.0, "flicker_settled": 0.5, "seconds_per_frame": 2.0}]
    table = format_flicker_table(rows, 48)
    assert "frames 8-48" in table and "| --steady 8 | 1.000 | 0.500 | 0.25x | 2.00 |" in table


def test_checkpoint_or_random_weights(capsys):
    import pytest

    with pytest.raises(SystemExit):
        flicker_table.parse_args(["-c", DEMO])
    assert "--checkpoint PATH or --random-weights" in capsys.readouterr().err
