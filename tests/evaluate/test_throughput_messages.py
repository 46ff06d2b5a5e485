"""test.py --throughput says what it times and shows its progress (on the CPU: how long the rest takes)."""
import json
import re

import torch

from cans.config import validate
from cans.evaluate.tester import run_throughput

TINY = {"type": "CANS", "in_channel": 4, "width": 4, "middle_blk_num": 1, "enc_blk_nums": [1, 1, 1, 1],
        "dec_blk_nums": [1, 1, 1, 1], "adaptive_size": 2, "block_size": 2}


def test_throughput_says_what_it_times_and_shows_progress(tmp_path, capsys):
    torch.set_num_threads(1)
    cfg = validate({"name": "tiny", "output_dir": str(tmp_path / "run"), "model": dict(TINY)})
    lines = []
    result = run_throughput(cfg, size=(64, 96), random_weights=True, device="cpu", warmup=1, iters=3,
                            print_fn=lines.append)
    err = capsys.readouterr().err
    # before any pass: the model, device, input size (packed and RGB) and the pass counts
    assert lines[0] == ("throughput of CANS (random weights) on cpu: random input 64x96 (packed), RGB 128x192; "
                        "1 warm-up and 3 timed pass(es)"), lines
    # on the CPU, after the first pass: its time and the rest's
    assert re.fullmatch(r"the first pass took \d+\.\d s on the CPU; the other 3 will take about \d+\.\d s",
                        lines[1]), lines
    assert lines[2].startswith("throughput on cpu (") and len(lines) == 3, lines
    # a bar over the passes, labelled warm-up then timed, ending at 4 of 4
    bar = err.replace("\r", "\n")
    assert "warm-up:" in bar and re.search(r"timed: 100%.*4/4", bar), err
    assert json.loads((tmp_path / "run" / "test" / "throughput.json").read_text())["iters"] == 3
    assert result["ms_min"] > 0


def test_throughput_progress_off_and_no_estimate_for_one_pass(tmp_path, capsys):
    torch.set_num_threads(1)
    cfg = validate({"name": "tiny", "output_dir": str(tmp_path / "run"), "model": dict(TINY)})
    lines = []
    run_throughput(cfg, size=(64, 64), random_weights=True, device="cpu", warmup=0, iters=1, progress=False,
                   print_fn=lines.append)
    assert capsys.readouterr().err == ""
    assert lines[0].endswith("0 warm-up and 1 timed pass(es)") and len(lines) == 2, lines
