"""scripts/gpu_check.sh on a machine without a GPU: says so plainly, writes the import list, exits 0."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


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


def test_gpu_check_needs_an_outdir():
    proc = subprocess.run(["bash", str(REPO / "scripts/gpu_check.sh")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "usage: bash scripts/gpu_check.sh OUTDIR" in proc.stderr
