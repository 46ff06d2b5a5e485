"""cans.cli.common: the entry points' user errors become one ``error:`` line (exit 2), a failing
torch.compile one line naming the switch (exit 1); every other exception keeps its traceback;
``--set`` given several times applies every group, in order."""
import importlib

import pytest
from helpers import DEMO, REPO, load_script

from cans.cli import infer as cmd_infer
from cans.cli import train as cmd_train
from cans.config import load_config


def command(script: str):
    """The command module behind a repository script: "scripts/infer.py" -> cans.cli.infer."""
    return importlib.import_module("cans.cli." + script.rsplit("/", 1)[-1][:-3])


def test_cli_turns_user_errors_into_one_line(capsys):
    from cans.cli.common import run_cli
    from cans.data import DataError

    def bad_config():
        load_config("nowhere.yaml")

    def worker_error():  # as torch re-raises an error from a DataLoader worker
        raise DataError("Caught DataError in DataLoader worker process 0.\nOriginal Traceback (most recent "
                        "call last):\n  File \"x.py\", line 1\ncans.data.errors.DataError: data.train.patch_size "
                        "4096 is larger than the image\n")

    assert run_cli(bad_config) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: config file not found: ") and err.endswith("nowhere.yaml")
    assert run_cli(worker_error) == 2
    assert capsys.readouterr().err.strip() == "error: data.train.patch_size 4096 is larger than the image"
    assert run_cli(lambda: 0) == 0


def test_cli_turns_a_failing_torch_compile_into_one_line_naming_the_switch(capsys):
    import torch

    from cans.cli.common import run_cli

    def no_triton(gm, example_inputs):  # what inductor raises on a CUDA machine without Triton
        raise RuntimeError("Cannot find a working triton installation (simulated)")

    def compiled_step():
        torch.compile(torch.nn.Linear(3, 3), backend=no_triton)(torch.rand(2, 3))

    assert run_cli(compiled_step) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: torch.compile failed on this machine (")
    assert "Cannot find a working triton installation (simulated)" in err and "--set train.fast=false" in err

    def other_bug():
        raise RuntimeError("not a compile error")

    with pytest.raises(RuntimeError, match="not a compile error"):  # everything else keeps its traceback
        run_cli(other_bug)


@pytest.mark.parametrize("script, extra", [
    ("train.py", []), ("test.py", []), ("scripts/export_onnx.py", ["-c", "x.yaml"]),
    ("scripts/tiling_table.py", ["-c", "x.yaml", "--checkpoint", "w.pth"]), ("scripts/benchmark.py", []),
    ("scripts/benchmark_cpu.py", []),
])
def test_every_set_given_applies_in_order(script, extra):
    """``--set a=1 --set b=2``: argparse's nargs="*" kept only the last group; all apply, in order."""
    parser = command(script).build_parser()
    args = parser.parse_args([*extra, "--set", "train.epochs=2", "model.width=8", "--set", "output_dir=/tmp/r",
                              "--set", "train.epochs=3"])
    assert args.set == ["train.epochs=2", "model.width=8", "output_dir=/tmp/r", "train.epochs=3"]
    assert parser.parse_args(extra).set == []   # the default is not shared with an earlier parse
    assert parser.parse_args(extra).set is not args.set


def test_infer_set_groups_apply_in_order_and_their_trailing_words_are_inputs():
    args = cmd_infer.parse_args(["-c", "x.yaml", "--set", "train.epochs=2", "a.ARW",
                                                       "--set", "model.width=8", "b.ARW", "c.ARW"])
    assert args.set == ["train.epochs=2", "model.width=8"] and args.inputs == ["a.ARW", "b.ARW", "c.ARW"]


def test_repeated_set_reaches_the_config(tmp_path):
    args = cmd_train.parse_args(["-c", DEMO, "--set", "train.epochs=2", "--set",
                                               f"output_dir={tmp_path / 'r'}"])
    cfg = load_config(args.config, args.set)
    assert cfg["train"]["epochs"] == 2 and cfg["output_dir"] == str(tmp_path / "r")


SCRIPTS = ["train.py", "test.py"] + sorted(p.relative_to(REPO).as_posix() for p in (REPO / "scripts").glob("*.py"))


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_script_runs_its_command_module(script):
    """train.py, test.py and scripts/X.py are shims: their main is cans.cli.<name>.main, and the command
    module has the build_parser() the docs check reads."""
    module = command(script)
    assert load_script(script).main is module.main
    assert callable(module.build_parser) and module.build_parser().format_help()


def test_the_library_has_no_command_line():
    """argparse is imported by cans.cli only: the library takes explicit parameters."""
    hits = [str(p.relative_to(REPO)) for p in (REPO / "cans").rglob("*.py")
            if "import argparse" in p.read_text(encoding="utf-8") and p.parent.name != "cli"]
    assert hits == []
