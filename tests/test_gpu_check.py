"""The GPU check (cans/tools/gpu_check.py, cans/cli/gpu_check.py, scripts/gpu_check.py, scripts/gpu_check.sh) without a GPU.

Its verdict: a mode that disagrees with plain float32, or that did not run, or ran out of its time,
is FAIL (fake benchmark results and a fake benchmark process); the rehearsal runs every step on the
CPU; without a GPU it says so and exits 0."""
import json
import subprocess
import sys

import pytest
import torch
from helpers import REPO

from cans.cli import gpu_check as gpu_check_cmd
from cans.tools import gpu_check
from cans.tools.gpu_check import MIN_PSNR, MIN_PSNR_BF16, Check, judge_mode

NO_GPU = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: gpu_check would run the checks")


@NO_GPU
def test_gpu_check_without_a_gpu(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run(["bash", str(REPO / "scripts/gpu_check.sh"), str(out)], capture_output=True, text=True,
                          timeout=120, env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable, "HOME": str(tmp_path)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "no CUDA GPU here" in proc.stdout and "NOT run" in proc.stdout
    info = json.loads((out / "imports.json").read_text())
    assert info["cuda_available"] is False and "torch" in info["found"]
    assert not (out / "summary.md").exists()  # no check ran


@NO_GPU
def test_gpu_check_skips_a_python_without_torch(tmp_path):
    """With PYTHON unset, a `python` on the PATH that cannot import torch (another interpreter than
    the one holding PyTorch, as on some GPU images) is passed over for `python3`."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").write_text("#!/bin/sh\necho 'No module named torch' >&2\nexit 1\n")
    (bin_dir / "python").chmod(0o755)
    (bin_dir / "python3").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')  # a link would lose a venv
    (bin_dir / "python3").chmod(0o755)
    out = tmp_path / "out"
    proc = subprocess.run(["bash", str(REPO / "scripts/gpu_check.sh"), str(out)], capture_output=True, text=True,
                          timeout=120, env={"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "no CUDA GPU here" in proc.stdout
    assert "torch" in json.loads((out / "imports.json").read_text())["found"]


def test_gpu_check_needs_an_outdir():
    proc = subprocess.run(["bash", str(REPO / "scripts/gpu_check.sh")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "usage: bash scripts/gpu_check.sh OUTDIR" in proc.stderr


# ------------------------------------------------------------------------- judging one benchmark mode

def result(psnr=None, identical=False, **extra):
    r = {"train_step_ms": 20.0, "infer_ms": 50.0, "train_peak_gb": 3.0, "infer_peak_gb": 2.0}
    if psnr is not None:
        r["rgb_psnr_vs_plain"], r["rgb_max_abs_diff_vs_plain"] = psnr, 1e-3
    elif identical:
        r["rgb_psnr_vs_plain"], r["rgb_max_abs_diff_vs_plain"] = None, 0.0
    return dict(r, **extra)


def test_a_mode_that_disagrees_with_plain_float32_fails():
    assert judge_mode("fast", result(MIN_PSNR + 5))[0] == "PASS"
    status, why = judge_mode("fast", result(MIN_PSNR - 0.5))
    assert status == "FAIL" and "below 60 dB" in why and "59.5 dB" in why
    assert judge_mode("cudagraphs", result(float("nan")))[0] == "FAIL"
    # bfloat16 has a bar of its own, below float32's
    assert judge_mode("bf16_compile", result(MIN_PSNR_BF16 + 1))[0] == "PASS"
    assert judge_mode("fast_triton", result(MIN_PSNR_BF16 + 1))[0] == "FAIL"
    assert judge_mode("bf16", result(MIN_PSNR_BF16 - 1)) == (
        "FAIL", f"train 20.0 ms, infer 50.0 ms, peak 3.00 / 2.00 GB; RGB {MIN_PSNR_BF16 - 1:.1f} dB against plain "
                f"float32, below {MIN_PSNR_BF16:.0f} dB")
    assert judge_mode("plain", result(identical=True))[0] == "PASS"
    assert judge_mode("tf32", result())[0] == "FAIL"   # no fidelity figure: not a pass


def test_a_mode_that_did_not_run_fails():
    for entry, words in ((None, "did not run"), ({"mode": "cudagraphs", "skipped": "over the time budget"},
                                                 "did not run: over the time budget"),
                         ({"mode": "fast", "timed_out": 360}, "ran out of its 360 s"),
                         ({"mode": "fast", "not_run": "the benchmark ended (exit 1)"}, "did not run: the benchmark"),
                         ({"mode": "fast", "error": "RuntimeError: boom"}, "error: RuntimeError: boom")):
        status, why = judge_mode("cudagraphs", entry)
        assert status == "FAIL" and words in why, (entry, why)


# ------------------------------------------------------------------------- the verdict of a whole run (faked)

@pytest.fixture
def fake_gpu(monkeypatch):
    """main() believes it has a GPU; the benchmark's results are whatever the test sets."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Fake GPU")
    runs = []

    def fake_results(check, model, modes):
        runs.append((model, list(modes)))
        return {m: dict(result(identical=m in ("plain", "authors_flags")) if m in ("plain", "authors_flags")
                        else result(MIN_PSNR_BF16 + 2 if "bf16" in m else MIN_PSNR + 10), mode=m) for m in modes}

    monkeypatch.setattr(gpu_check, "run_benchmark_modes", fake_results)
    return runs


def test_every_mode_right_passes(tmp_path, fake_gpu, capsys):
    assert gpu_check_cmd.main([str(tmp_path), "--steps", "benchmark-CANS_Plus"]) == 0
    assert fake_gpu == [("CANS_Plus", list(gpu_check.MODE_ORDER) + ["tf32", "channels_last", "compile",
                                                                     "fused_adamw"])]
    rows = json.loads((tmp_path / "summary.json").read_text())["rows"]
    assert len(rows) == 13 and all(r["status"] == "PASS" for r in rows)
    last = capsys.readouterr().out.rstrip().splitlines()[-1]
    assert last == "verdict: PASS (only the steps asked for): all 13 checks passed"


def test_a_wrong_number_or_a_missing_mode_fails_the_run(tmp_path, fake_gpu, monkeypatch, capsys):
    fake = gpu_check.run_benchmark_modes

    def wrong(check, model, modes):
        results = fake(check, model, modes)
        results["bf16_compile"]["rgb_psnr_vs_plain"] = 31.0      # disagrees with plain float32
        del results["cudagraphs"]                                # never ran
        results["fast_triton"] = {"mode": "fast_triton", "skipped": "over the time budget"}
        return results

    monkeypatch.setattr(gpu_check, "run_benchmark_modes", wrong)
    assert gpu_check_cmd.main([str(tmp_path), "--steps", "benchmark-CANS_Plus"]) == 1
    rows = {r["name"]: r for r in json.loads((tmp_path / "summary.json").read_text())["rows"]}
    failed = sorted(n for n, r in rows.items() if r["status"] == "FAIL")
    assert failed == ["benchmark CANS_Plus bf16_compile", "benchmark CANS_Plus cudagraphs",
                      "benchmark CANS_Plus fast_triton"]
    assert "31.0 dB against plain float32, below 57 dB" in rows["benchmark CANS_Plus bf16_compile"]["details"]
    assert "did not run" in rows["benchmark CANS_Plus cudagraphs"]["details"]
    out = capsys.readouterr().out.rstrip().splitlines()
    assert out[-1].startswith("verdict: FAIL") and "benchmark CANS_Plus cudagraphs" in out[-1]
    assert "| benchmark CANS_Plus cudagraphs | FAIL |" in (tmp_path / "summary.md").read_text()


def test_a_step_that_needs_a_failed_step_fails_naming_it(tmp_path, fake_gpu, monkeypatch):
    """resume and infer need the demo's data: when it fails they are FAIL rows saying so, not absent."""
    def no_data(check):
        check.add("demo data", "FAIL", 1.0, "ran out of its 120 s; see synthetic_sid.log")
        check.add("CPU checkpoint", "FAIL", 0, "not run: the demo data failed")

    monkeypatch.setattr(gpu_check, "step_data", no_data)
    assert gpu_check_cmd.main([str(tmp_path), "--steps", "resume", "infer"]) == 1
    rows = {r["name"]: r for r in json.loads((tmp_path / "summary.json").read_text())["rows"]}
    assert list(rows) == ["demo data", "CPU checkpoint", "demo fast vs eager", "resume from a CPU checkpoint",
                          "resume from a fast=false checkpoint", "infer.py compiler failure"]
    assert all(r["status"] == "FAIL" for r in rows.values())
    assert "it needs demo data, which failed" in rows["demo fast vs eager"]["details"]
    assert "it needs CPU checkpoint, which failed" in rows["resume from a CPU checkpoint"]["details"]


# ------------------------------------------------------------------------- each mode's own time limit (a fake benchmark)

FAKE_BENCHMARK = r"""
import json, sys, time
args = sys.argv[1:]
modes = args[args.index("--modes") + 1:args.index("--out")]
out, results = args[args.index("--out") + 1], []
for mode in modes:
    if mode == "hangs":
        time.sleep(60)
    if mode == "crashes":
        sys.exit(3)
    results.append({"mode": mode, "train_step_ms": 1.0, "infer_ms": 2.0, "rgb_psnr_vs_plain": None,
                    "rgb_max_abs_diff_vs_plain": 0.0})
    json.dump({"device": "fake", "results": results}, open(out, "w"))
"""


def test_a_mode_past_its_time_limit_is_named_and_the_next_modes_still_run(tmp_path, monkeypatch):
    script = tmp_path / "fake_benchmark.py"
    script.write_text(FAKE_BENCHMARK)
    monkeypatch.setattr(gpu_check, "benchmark_command",
                        lambda check, model, modes, out: [sys.executable, str(script), "--modes", *modes, "--out",
                                                          str(out)])
    monkeypatch.setattr(gpu_check, "mode_limit", lambda check, mode: 1.0)
    monkeypatch.setitem(gpu_check.BUDGETS, "benchmark start", (2.0, 2.0))
    check = Check(out=tmp_path, rehearsal=True)
    got = gpu_check.run_benchmark_modes(check, "CANS", ["plain", "hangs", "fast", "crashes", "bf16"])
    assert got["plain"]["train_step_ms"] == 1.0 and got["fast"]["train_step_ms"] == 1.0
    assert got["hangs"]["timed_out"] == 1 and got["hangs"]["seconds"] < 10
    assert "not_run" in got["crashes"] and "not_run" in got["bf16"] and "exit 3" in got["bf16"]["not_run"]
    assert (tmp_path / "benchmark_CANS.part2.json").is_file()   # the modes after the one that hung: a new process
    report = json.loads((tmp_path / "benchmark_CANS.json").read_text())
    assert [r["mode"] for r in report["results"]] == ["plain", "hangs", "fast", "crashes", "bf16"]
    assert [judge_mode(m, got[m])[0] for m in ("plain", "hangs", "fast", "crashes")] == ["PASS", "FAIL", "PASS", "FAIL"]


# ------------------------------------------------------------------------- the rehearsal: every step on the CPU

def _rehearse(tmp_path, *args):
    out = tmp_path / "out"
    env = {"PATH": "/usr/bin:/bin", "PYTHON": sys.executable, "HOME": str(tmp_path), "GPU_CHECK_REHEARSAL": "1",
           "GPU_CHECK_DATA": str(tmp_path / "sid"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(["bash", str(REPO / "scripts/gpu_check.sh"), str(out), *args], capture_output=True,
                          text=True, timeout=600, env=env)
    rows = [line.split("\t") for line in (out / "summary.tsv").read_text().splitlines()]
    return proc, out, {r[0]: r for r in rows}


CPU_MODES = ["plain", "authors_flags", "fast", "bf16", "tf32", "channels_last", "fused_adamw"]
CHECKS = (["demo data", "CPU checkpoint"] + [f"benchmark CANS_Plus {m}" for m in CPU_MODES]
          + ["pytest -m cuda", "demo fast vs eager", "resume from a CPU checkpoint", "resume from a fast=false checkpoint",
             "infer.py compiler failure", "test.py --throughput"] + [f"benchmark CANS {m}" for m in CPU_MODES])


def test_rehearsal_runs_every_step_and_reports_it(tmp_path):
    """GPU_CHECK_REHEARSAL=1 runs the whole check on the CPU with tiny sizes: every step, the JSON
    it reads and the summary are exercised before the tool meets a GPU."""
    proc, out, rows = _rehearse(tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert list(rows) == CHECKS
    assert all(r[1] == "PASS" for r in rows.values()), rows
    summary = (out / "summary.md").read_text()
    assert "REHEARSAL" in summary and summary in proc.stdout  # the table is the last thing printed
    assert proc.stdout.rstrip().endswith(f"verdict: PASS: all {len(CHECKS)} checks passed")
    assert "not rows in a rehearsal" in summary and "cudagraphs" in summary
    for model in ("CANS_Plus", "CANS"):
        report = json.loads((out / f"benchmark_{model}.json").read_text())
        assert [r["mode"] for r in report["results"]] == CPU_MODES
        assert f"train {report['results'][0]['train_step_ms']:.1f} ms" in rows[f"benchmark {model} plain"][3]
    assert "dB against plain float32 (>= 57)" in rows["benchmark CANS_Plus bf16"][3]
    assert "ms/image mean" in rows["test.py --throughput"][3]
    assert "|diff|" in rows["demo fast vs eager"][3] and "3 x eager spread" in rows["demo fast vs eager"][3]
    for run in ("demo_fast", "demo_eager", "demo_eager2", "ckpt_cpu", "resume_from_cpu", "resume_from_eager"):
        assert json.loads((out / run / "train_summary.json").read_text())["final"]["psnr"] > 0
    for run, epochs in (("resume_from_cpu", "epochs 1 -> 2"), ("resume_from_eager", "epochs 1 -> 2")):
        assert "resumed from" in (out / f"{run}.log").read_text()
    assert "epochs 1 -> 2" in rows["resume from a CPU checkpoint"][3]
    # infer.py with the simulated compiler failure: one attempt for three photos, the hint once
    assert "1 compile attempt(s) for 3 photos, the hint shown 1 time(s)" in rows["infer.py compiler failure"][3]
    assert "compile attempts: 1; exit status 1" in (out / "infer_compile_failure.log").read_text()
    assert "skipped" in rows["pytest -m cuda"][3]  # no GPU: the CUDA tests skip


def test_rehearsal_with_no_time_fails_each_step_by_name(tmp_path):
    proc, out, rows = _rehearse(tmp_path, "--budget-scale", "0.001", "--steps", "data", "benchmark-CANS", "pytest",
                                "demo", "throughput")
    assert proc.returncode == 1
    assert rows["demo data"][1] == "FAIL" and "ran out of its 0 s" in rows["demo data"][3]
    assert rows["CPU checkpoint"][1] == "FAIL" and "not run: the demo data failed" in rows["CPU checkpoint"][3]
    for mode in CPU_MODES:
        assert rows[f"benchmark CANS {mode}"][1] == "FAIL" and "ran out of its" in rows[f"benchmark CANS {mode}"][3]
    assert rows["pytest -m cuda"][1] == "FAIL" and "ran out of its" in rows["pytest -m cuda"][3]
    assert rows["demo fast vs eager"][1] == "FAIL" and "needs demo data" in rows["demo fast vs eager"][3]
    assert rows["test.py --throughput"][1] == "FAIL" and "ran out of its" in rows["test.py --throughput"][3]
    assert proc.stdout.rstrip().splitlines()[-1].startswith("verdict: FAIL (only the steps asked for)")


def test_an_outdir_with_an_earlier_check_is_refused(tmp_path, capsys):
    """train.py never writes over a run: a second check in the same OUTDIR stops at once, plainly."""
    (tmp_path / "demo_eager").mkdir()
    assert gpu_check_cmd.main([str(tmp_path), "--rehearsal", "--steps", "demo"]) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and "demo_eager" in err and "another OUTDIR" in err
    assert not (tmp_path / "summary.md").exists()
