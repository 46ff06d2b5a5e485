"""cans.registry: a user class named ``package.module:Class`` as model.type or data.type that cannot
be imported or does not fit is one ``error:`` line from train.py, before any work."""
from __future__ import annotations

import subprocess

import pytest
from helpers import REPO


@pytest.mark.parametrize("override,expected", [
    ("data.type=nowhere_at_all:Thing", "data.type: cannot import 'nowhere_at_all'"),
    ("data.type=cans.models:CANS", "lacks the class attribute(s) packed_channels"),
    ("model.type=cans.data:SonyDictSet", "model: cans.data:SonyDictSet(in_channel=..."),
    ("data.type=cans.data:build_dataset", "is a function, not a class"),
])
def test_a_class_that_does_not_fit_is_one_line(tmp_path, override, expected):
    import sys
    proc = subprocess.run([sys.executable, str(REPO / "train.py"), "-c", str(REPO / "configs" / "demo.yaml"),
                           "--set", override, f"output_dir={tmp_path / 'run'}"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2 and len(errors) == 1 and expected in errors[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
