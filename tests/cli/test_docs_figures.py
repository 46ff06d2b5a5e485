"""scripts/docs_figures.py writes docs/figures.md from the runs' summaries (faked here: no training)."""
from __future__ import annotations

import pytest

from cans.cli import docs_figures as cmd_docs_figures


def _script():
    return cmd_docs_figures


def _summary(initial, final, raw=(13.0, 30.0), started_from=None):
    return {"epochs_done": 2, "steps": 480, "best_psnr": final + 0.5, "best_epoch": 1, "wall_s": 61.0,
            "started_from": started_from,
            "initial": {"psnr": initial, "ssim": 0.0678, "raw_psnr": raw[0]},
            "final": {"psnr": final, "ssim": 0.6371, "raw_psnr": raw[1], "epoch": 2},
            "measured_wall_s": 81.4}


def test_writes_one_table_per_demo_with_versions_and_test_count(tmp_path, monkeypatch):
    figures = _script()
    calls = []

    def fake_run(args, output_dir):
        calls.append((list(args), output_dir))
        name = output_dir.replace("\\", "/").rsplit("/", 1)[-1]
        return _summary(22.0, 26.5, started_from="x.pth") if name.endswith("from_demo") else _summary(8.86, 24.26)

    monkeypatch.setattr(figures, "run_demo", fake_run)
    monkeypatch.setattr(figures, "count_tests", lambda: 468)
    out = tmp_path / "figures.md"
    assert figures.main(["--only", "example_own_camera_from_demo", "demo_fuji", "--tests", "--out", str(out)]) == 0

    # the fine-tune needs the demo model: demo runs first, and the fine-tune starts from its best.pth
    assert [c[0][2] for c in calls] == ["configs/demo.yaml", "configs/demo_fuji.yaml", "configs/example_own_camera.yaml"]
    demo_dir = calls[0][1]
    assert f"train.pretrained={demo_dir}/checkpoints/best.pth" in calls[2][0]
    assert all("--no-progress" in c[0] and f"output_dir={c[1]}" in c[0] for c in calls)
    assert len({c[1] for c in calls}) == 3  # a folder per run

    text = out.read_text()
    assert "python scripts/docs_figures.py" in text
    assert "468 collected" in text
    import numpy
    import torch
    assert f"torch {torch.__version__}" in text and f"numpy {numpy.__version__}" in text
    assert "rawpy" in text and "CPU core" in text
    assert [line for line in text.splitlines() if line.startswith("## ")] == [
        "## demo", "## demo_fuji", "## example_own_camera_from_demo"]
    assert "| validation sRGB PSNR | 8.86 dB | 24.26 dB |" in text
    assert "| validation sRGB SSIM | 0.0678 | 0.6371 |" in text
    assert "| validation RAW PSNR | 13.00 dB | 30.00 dB |" in text
    assert "+15.40 dB" in text and "+4.50 dB" in text
    assert "1 min 21 s for the whole command (training 1 min 01 s)" in text
    assert "| | starting | final |" in text  # the fine-tune's first column is the demo model, not untrained
    assert ("`python train.py -c configs/example_own_camera.yaml --set "
            "train.pretrained=runs/CANS_Plus_demo/checkpoints/best.pth train.base_lr=2e-4`") in text
    assert "TMP" not in text and str(tmp_path) not in text


def test_a_failing_run_is_one_error_line_and_nothing_is_written(tmp_path, monkeypatch, capsys):
    figures = _script()

    def fail(args, output_dir):
        raise figures.ConfigError("configs/demo.yaml: train.py exited with 2: error: bad key")

    monkeypatch.setattr(figures, "run_demo", fail)
    out = tmp_path / "figures.md"
    assert figures.main(["--only", "demo", "--out", str(out)]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "error: configs/demo.yaml: train.py exited with 2: error: bad key")
    assert not out.exists()


def test_out_in_a_missing_folder_is_refused_before_any_run(tmp_path, monkeypatch, capsys):
    figures = _script()
    monkeypatch.setattr(figures, "run_demo", lambda *a: pytest.fail("ran a demo"))
    assert figures.main(["--out", str(tmp_path / "nope" / "figures.md")]) == 2
    assert "--out" in capsys.readouterr().err
