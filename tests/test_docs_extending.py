"""docs/extending.md's example, run exactly as written: a data set and a model from a folder
outside the repository train and test through ``package.module:Class``, with no edit of cans/."""
from __future__ import annotations

import os
import re
import shutil
import subprocess

from helpers import REPO

DOC = REPO / "docs" / "extending.md"


def blocks(lang: str):
    return re.findall(rf"```{lang}\n(.*?)```", DOC.read_text(), flags=re.S)


def test_the_documented_example_trains_and_tests(tmp_path):
    repo = tmp_path / "CANS"
    shutil.copytree(REPO, repo, ignore=shutil.ignore_patterns(".git", "runs", "datasets", "__pycache__", "tests"))
    files = {}
    for block in blocks("python") + blocks("yaml"):
        first = block.splitlines()[0]
        if first.startswith("# my_lab/"):
            files[first[2:]] = block
    assert set(files) == {"my_lab/lab.py", "my_lab/lab.yaml"}
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(text)
    commands = [line for block in blocks("sh") for line in block.splitlines() if line.startswith("PYTHONPATH=")]
    assert len(commands) == 2
    outputs = []
    for command in commands:
        proc = subprocess.run(command, shell=True, cwd=repo, capture_output=True, text=True, timeout=300,
                              env=dict(os.environ, PYTHONUNBUFFERED="1"))
        assert proc.returncode == 0, command + "\n" + proc.stdout[-2000:] + proc.stderr[-3000:]
        outputs.append(proc.stdout)
    run = repo / "runs" / "lab_demo"
    assert (run / "checkpoints" / "best.pth").is_file() and (run / "train_summary.json").is_file()
    assert "Reconstruction" in outputs[0] and "Reconstruction" in outputs[1]  # the test tables, twice
    assert (run / "test" / "metrics.json").is_file()
