"""scripts/benchmark_cpu.py / cans.tools.cpu_benchmark: every mode in a child process of its own, the
comparison with eager (PSNR, speed-up, the fastest faithful mode), skipped and failing modes, the table."""
import json
import os
import sys

import numpy as np
import pytest
from helpers import REPO, one_error_line

from cans.cli import benchmark_cpu as cmd_benchmark_cpu
from cans.tools import cpu_benchmark as cb

#: a child process as the library's, except that torch.compile runs eagerly (no minutes-long inductor
#: build; its output therefore equals eager's) and the ONNX export fails
FAKE_CHILD = """
import sys
import torch
from cans.tools import cpu_benchmark as cb
real_compile, real_run = torch.compile, cb.run_mode
torch.compile = lambda model, **kw: real_compile(model, **{**kw, "backend": "eager"})
def run_mode(mode, *args, **kwargs):
    if mode == "export":
        raise RuntimeError("export: asked to fail by the test")
    return real_run(mode, *args, **kwargs)
cb.run_mode = run_mode
sys.exit(cb._child(sys.argv[1]))
"""


def test_the_library_has_no_test_switches():
    """What the tests change in a child process they change from the tests, not through the library."""
    assert "os.environ" not in (REPO / "cans/tools/cpu_benchmark.py").read_text()


def test_the_script_runs_each_mode_apart_and_compares_it_with_eager(tmp_path, capsys, monkeypatch):
    """Three real children (FAKE_CHILD): eager; torch.compile, run eagerly; the ONNX export, made to
    fail, so openvino reports the failure. onnxruntime is reported missing. Each finished mode reports
    its timings and peak memory; the failure and the skip are reported and the other modes still run;
    the JSON and the table are written."""
    monkeypatch.setattr(cb, "_child_command", lambda spec: [sys.executable, "-c", FAKE_CHILD, spec])
    monkeypatch.setattr(cb, "_unavailable", lambda mode: "not installed: onnxruntime" if mode == "onnxruntime" else "")
    main = cmd_benchmark_cpu.main
    out, table = tmp_path / "cpu.json", tmp_path / "cpu.md"
    code = main(["-c", str(REPO / "configs/CANS_Plus/Sony.yaml"), "--set", "model.width=4",
                 "model.enc_blk_nums=[1,1]", "model.dec_blk_nums=[1,1]", "--modes", "compile", "openvino",
                 "onnxruntime", "--size", "32", "48", "--warmup", "0", "--iters", "2", "--threads", "1",
                 "--out", str(out), "--table", str(table)])
    assert code == 0, capsys.readouterr().err
    report = json.loads(out.read_text())
    modes = report["modes"]
    assert list(modes) == ["eager", "compile", "openvino", "onnxruntime"] and report["packed_size"] == [32, 48]
    eager, compiled = modes["eager"], modes["compile"]
    assert eager["status"] == compiled["status"] == "ok", report
    assert len(eager["seconds"]) == 2 and eager["median_s"] > 0 and eager["peak_rss_gb"] > 0.05
    assert eager["speedup_vs_eager"] == 1.0 and eager["rgb_psnr_vs_eager"] is None
    assert compiled["rgb_psnr_vs_eager"] is None or compiled["rgb_psnr_vs_eager"] > 100, compiled
    assert compiled["faithful"] and report["fastest_faithful"] in ("eager", "compile")
    assert modes["openvino"]["status"] == "error" and "export failed" in modes["openvino"]["error"]
    assert "asked to fail" in modes["openvino"]["error"]
    assert modes["onnxruntime"] == {"status": "skipped", "reason": "not installed: onnxruntime"}
    text = table.read_text()
    assert "| eager |" in text and "| compile |" in text and "| openvino | error" in text
    assert "skipped: not installed: onnxruntime" in text and report["cpu"] in text and "packed 32 x 48" in text


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


def test_a_lower_precision_mode_is_never_the_fastest_faithful_one(tmp_path):
    """openvino_bf16 at 60.2 dB (as measured on a full frame) passes the bar, but is an option of
    lower precision: the float32 modes decide the default."""
    ref = np.random.default_rng(0).random((1, 3, 8, 8), dtype=np.float32)
    for mode, error in (("eager", 0.0), ("openvino", 1e-6), ("openvino_bf16", 1e-4)):
        np.save(tmp_path / f"{mode}.npy", ref + np.float32(error))
    report = {"modes": {"eager": {"status": "ok", "median_s": 3.0}, "openvino": {"status": "ok", "median_s": 1.0},
                        "openvino_bf16": {"status": "ok", "median_s": 0.5}}}
    cb._compare(report, str(tmp_path))
    assert report["modes"]["openvino_bf16"]["faithful"] is True
    assert report["fastest_faithful"] == "openvino"


@pytest.mark.parametrize("args, name", [(["--size", "0", "16"], "--size"), (["--iters", "0"], "--iters"),
                                        (["--out", "."], "--out")])
def test_bad_values_are_one_line_before_anything_runs(args, name, capsys):
    code = cmd_benchmark_cpu.main(args + ["--modes", "eager"])
    one_error_line(code, capsys.readouterr().err, name)


def test_counters_come_from_one_more_run_of_an_openvino_mode_after_the_timed_ones(tmp_path, monkeypatch):
    """--counters: an OpenVINO mode frees the timed runs' buffers, then its counters are taken in its
    precision and threads; other modes take none; the table shows them by operator type."""
    calls = []

    class FakeExport:
        def __init__(self, path, threads, runtime, precision):
            self.path, self.runtime = path, runtime

        def run_numpy(self, x):
            calls.append("run")
            return np.zeros((1, 3, 2, 2), np.float32), None

        def release_memory(self):
            calls.append("release")

    def counters(path, x, threads, precision):
        calls.append(("counters", os.path.basename(path), x.shape, threads, precision))
        return {"total": 3.0, "Convolution": 2.0, "Add": 0.5, "Pad": 0.5}

    monkeypatch.setattr(cb, "OnnxModel", FakeExport)
    monkeypatch.setattr(cb, "openvino_counters", counters)
    cfg = {"type": "CANS_Plus", "width": 4, "enc_blk_nums": [1, 1], "dec_blk_nums": [1, 1], "middle_blk_num": 1}
    result = cb.run_mode("openvino_bf16", cfg, (32, 48), str(tmp_path), warmup=0, iters=2, threads=1, counters=True)
    assert calls == ["run", "run", "release", ("counters", "model.onnx", (1, 4, 32, 48), 1, "bf16")]
    assert result["counters"]["Convolution"] == 2.0 and len(result["seconds"]) == 2
    calls.clear()
    assert "counters" not in cb.run_mode("onnxruntime", cfg, (32, 48), str(tmp_path), warmup=0, iters=1,
                                         counters=True)
    assert calls == ["run"]
    report = {"cpu": "x", "cores": 2, "torch_threads": 2, "torch": "2", "packed_size": [32, 48],
              "model": cfg, "iters": 2, "warmup": 0, "date": "d",
              "modes": {"openvino_bf16": {"status": "ok", "median_s": 1.0, "speedup_vs_eager": 1.0, "setup_s": 0,
                                          "peak_rss_gb": 1.0, "rgb_psnr_vs_eager": 70.0,
                                          "counters": result["counters"]}}}
    table = cb.format_cpu_table(report)
    assert "openvino_bf16: OpenVINO's per-layer counters, one run (3.00 s in all)" in table
    assert "| Convolution | 2.000 | 66.7 % |" in table and "| Pad | 0.500 | 16.7 % |" in table
