"""scripts/benchmark_cpu.py / cans.tools.cpu_benchmark: every mode in a child process of its own, the
comparison with eager (PSNR, speed-up, the fastest faithful mode), skipped and failing modes, the table."""
import json

import numpy as np
import pytest
from helpers import REPO, load_script, one_error_line

from cans.tools import cpu_benchmark as cb

TINY = {"type": "CANS_Plus", "width": 4, "middle_blk_num": 1, "enc_blk_nums": [1, 1], "dec_blk_nums": [1, 1]}


def test_eager_and_compile_in_child_processes_against_eager(monkeypatch):
    """Two real children (eager, then torch.compile stubbed to run eagerly, so no inductor build):
    each reports its timings and peak memory, compile's output equals eager's (PSNR None =
    identical), a missing package is a skip with its name, and the table shows every mode."""
    monkeypatch.setattr(cb, "_unavailable", lambda mode: "not installed: openvino" if mode == "openvino" else "")
    monkeypatch.setenv("CANS_BENCH_COMPILE_BACKEND", "eager")
    report = cb.run_cpu_benchmark(TINY, ["compile", "openvino"], (32, 48), warmup=0, iters=2, threads=1,
                                  log=lambda *_: None)
    eager, compiled = report["modes"]["eager"], report["modes"]["compile"]
    assert list(report["modes"]) == ["eager", "compile", "openvino"]
    assert eager["status"] == compiled["status"] == "ok", report
    assert len(eager["seconds"]) == 2 and eager["median_s"] > 0 and eager["peak_rss_gb"] > 0.05
    assert eager["speedup_vs_eager"] == 1.0 and eager["rgb_psnr_vs_eager"] is None
    assert compiled["rgb_psnr_vs_eager"] is None or compiled["rgb_psnr_vs_eager"] > 100, compiled
    assert compiled["faithful"] and report["fastest_faithful"] in ("eager", "compile")
    assert report["modes"]["openvino"] == {"status": "skipped", "reason": "not installed: openvino"}
    table = cb.format_cpu_table(report)
    assert "| eager |" in table and "| compile |" in table and "skipped: not installed: openvino" in table
    assert report["cpu"] in table and "packed 32 x 48" in table


def test_compare_picks_the_fastest_faithful_mode(tmp_path):
    """A fast mode whose output is far from eager's is not faithful and cannot be the default."""
    rng = np.random.default_rng(0)
    ref = rng.random((1, 3, 8, 8), dtype=np.float32)
    np.save(tmp_path / "eager.npy", ref)
    np.save(tmp_path / "onnxruntime.npy", ref + np.float32(1e-6))
    np.save(tmp_path / "openvino.npy", ref + np.float32(0.01))   # 40 dB: below 60
    report = {"modes": {"eager": {"status": "ok", "median_s": 3.0}, "onnxruntime": {"status": "ok", "median_s": 1.0},
                        "openvino": {"status": "ok", "median_s": 0.5}, "compile": {"status": "error", "error": "x"}}}
    cb._compare(report, str(tmp_path))
    assert report["modes"]["openvino"]["faithful"] is False and report["modes"]["openvino"]["rgb_psnr_vs_eager"] < 60
    assert report["modes"]["onnxruntime"]["rgb_psnr_vs_eager"] > 100
    assert report["modes"]["onnxruntime"]["speedup_vs_eager"] == pytest.approx(3.0)
    assert report["fastest_faithful"] == "onnxruntime"


def test_command_line_writes_json_and_table_a_failing_mode_and_refuses_bad_values(tmp_path, capsys, monkeypatch):
    """The script end to end; a mode that fails is reported with its error and the others still run."""
    main = load_script("scripts/benchmark_cpu.py").main
    monkeypatch.setattr(cb, "_unavailable", lambda mode: "")
    monkeypatch.setenv("CANS_BENCH_FAIL_MODE", "compile")
    code = main(["--size", "0", "16", "--modes", "eager"])
    one_error_line(code, capsys.readouterr().err, "--size")
    out, table = tmp_path / "cpu.json", tmp_path / "cpu.md"
    code = main(["-c", str(REPO / "configs/CANS_Plus/Sony.yaml"), "--set", "model.width=4",
                 "model.enc_blk_nums=[1,1]", "model.dec_blk_nums=[1,1]", "--modes", "compile", "--size", "32", "32",
                 "--warmup", "0", "--iters", "1", "--out", str(out), "--table", str(table)])
    assert code == 0, capsys.readouterr().err
    data = json.loads(out.read_text())
    assert data["modes"]["eager"]["status"] == "ok" and data["packed_size"] == [32, 32]
    assert data["modes"]["compile"]["status"] == "error" and "asked to fail" in data["modes"]["compile"]["error"]
    assert "| eager |" in table.read_text() and "| compile | error" in table.read_text()
