"""scripts/gpu_check.sh on a machine without a GPU: says so plainly, writes the import list, exits 0."""
import json
import subprocess
import sys

import pytest
import torch
from helpers import REPO


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: gpu_check.sh would run the checks")
def test_gpu_check_without_a_gpu(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run(["bash", str(REPO / "scripts/gpu_check.sh"), str(out)], capture_output=True, text=True,
                          timeout=120, env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable, "HOME": str(tmp_path)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "no CUDA GPU here" in proc.stdout and "NOT run" in proc.stdout
    info = json.loads((out / "imports.json").read_text())
    assert info["cuda_available"] is False and "torch" in info["found"]
    assert not (out / "summary.md").exists()  # no check ran


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: gpu_check.sh would run the checks")
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


def _rehearse(tmp_path, budget):
    out = tmp_path / "out"
    env = {"PATH": "/usr/bin:/bin", "PYTHON": sys.executable, "HOME": str(tmp_path), "GPU_CHECK_REHEARSAL": "1",
           "GPU_CHECK_BUDGET": str(budget), "GPU_CHECK_DATA": str(tmp_path / "sid"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(["bash", str(REPO / "scripts/gpu_check.sh"), str(out)], capture_output=True, text=True,
                          timeout=600, env=env)
    rows = [line.split("\t") for line in (out / "summary.tsv").read_text().splitlines()]
    return proc, out, {r[0]: r for r in rows}


CHECKS = ["benchmark CANS_Plus", "pytest -m cuda", "demo fast vs eager", "resume from a CPU checkpoint",
          "resume from a fast=false checkpoint", "infer.py compiler failure", "test.py --throughput", "benchmark CANS"]


def test_rehearsal_runs_every_step_and_reports_it(tmp_path):
    """GPU_CHECK_REHEARSAL=1 runs the whole script on the CPU with tiny sizes: every step, the JSON
    it parses and the summary table are exercised before the script meets a GPU."""
    proc, out, rows = _rehearse(tmp_path, 360)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert list(rows) == CHECKS
    assert all(r[1] == "PASS" for r in rows.values()), rows
    summary = (out / "summary.md").read_text()
    assert "REHEARSAL" in summary and summary in proc.stdout  # the table is the last thing printed
    assert proc.stdout.rstrip().endswith(summary.rstrip().splitlines()[-1])
    for model in ("CANS_Plus", "CANS"):
        report = json.loads((out / f"benchmark_{model}.json").read_text())
        modes = [r["mode"] for r in report["results"]]
        assert modes[:3] == ["plain", "authors_flags", "fast"] and len(modes) == len(set(modes))
        assert f"plain {report['results'][0]['train_step_ms']:.1f}/" in rows[f"benchmark {model}"][3]
    assert "ms/image mean" in rows["test.py --throughput"][3]
    assert "|diff|" in rows["demo fast vs eager"][3] and "3 x eager spread" in rows["demo fast vs eager"][3]
    for run in ("demo_fast", "demo_eager", "demo_eager2", "ckpt_cpu", "resume_from_cpu", "resume_from_eager"):
        assert json.loads((out / run / "train_summary.json").read_text())["final"]["psnr"] > 0
    for run, epochs in (("resume_from_cpu", "epochs 1 -> 2"), ("resume_from_eager", "epochs 1 -> 2")):
        assert "resumed from" in (out / f"{run}.log").read_text() and epochs in (out / f"{run}.result").read_text()
    # infer.py with the simulated compiler failure: one attempt for three photos, the hint once
    assert "1 compile attempt(s) for 3 photos, the hint shown 1 time(s)" in rows["infer.py compiler failure"][3]
    assert "compile attempts: 1; exit status 1" in (out / "infer_compile_failure.log").read_text()
    assert "skipped" in rows["pytest -m cuda"][3]  # no GPU: the CUDA tests skip


def test_rehearsal_with_no_time_left_skips_and_fails_plainly(tmp_path):
    proc, out, rows = _rehearse(tmp_path, 1)
    assert proc.returncode == 1  # pytest hit its time limit: a FAIL
    assert rows["benchmark CANS_Plus"][1] == "SKIP" and "budget" in rows["benchmark CANS_Plus"][3]
    assert rows["pytest -m cuda"][1] == "FAIL" and "time limit" in rows["pytest -m cuda"][3]
    assert rows["demo fast vs eager"][1] == "SKIP" and "synthetic SID failed" in rows["demo fast vs eager"][3]
    for check in ("resume from a CPU checkpoint", "resume from a fast=false checkpoint", "infer.py compiler failure"):
        assert rows[check][1] == "SKIP" and "synthetic SID failed" in rows[check][3]
    assert rows["test.py --throughput"][1] == "SKIP" and rows["benchmark CANS"][1] == "SKIP"
