"""cans.registry: a user class named ``package.module:Class`` as model.type or data.type that cannot
be imported or does not fit is one ``error:`` line from train.py, before any work; a class of the
wrong kind (``subprocess:Popen``) is refused before anything calls it."""
from __future__ import annotations

import subprocess
import sys

import pytest
from helpers import REPO, load_script, one_error_line, write


@pytest.mark.parametrize("override,expected", [
    ("data.type=nowhere_at_all:Thing", "data.type: cannot import 'nowhere_at_all'"),
    ("data.type=torch.utils.data:TensorDataset", "lacks the class attribute(s) packed_channels"),
    ("data.type=cans.models:CANS", "not a torch.utils.data.Dataset subclass"),
    ("model.type=torch.nn:Conv2d", "model: torch.nn:Conv2d(in_channel=..."),
    ("model.type=cans.data:SonyDictSet", "not a torch.nn.Module subclass"),
    ("data.type=cans.data:build_dataset", "is a function, not a class"),
])
def test_a_class_that_does_not_fit_is_one_line(tmp_path, override, expected):
    proc = subprocess.run([sys.executable, str(REPO / "train.py"), "-c", str(REPO / "configs" / "demo.yaml"),
                           "--set", override, f"output_dir={tmp_path / 'run'}"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2 and len(errors) == 1 and expected in errors[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("registry,base", [("MODELS", "torch.nn.Module"), ("DATASETS", "torch.utils.data.Dataset"),
                                           ("LOSSES", "torch.nn.Module")])
def test_each_registry_takes_only_classes_of_its_kind(registry, base):
    import torch.nn as nn

    from cans import registry as reg
    from cans.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        getattr(reg, registry).get("subprocess:Popen")
    assert "'subprocess:Popen' is a class but not a " + base + " subclass" in str(info.value)
    assert "\n" not in str(info.value)
    if base == "torch.nn.Module":   # a class of the right kind still imports
        assert getattr(reg, registry).get("torch.nn:Identity") is nn.Identity


def _popen_config(tmp_path, marker):
    """A config (no base:) whose model.type is subprocess:Popen, with the command that makes ``marker``."""
    return write(tmp_path / "evil.yaml", f'model: {{type: "subprocess:Popen", args: [touch, "{marker}"]}}\n'
                                         f"output_dir: {tmp_path / 'run'}\n")


def test_a_config_cannot_call_popen(tmp_path, capsys):
    """The class is checked when the config is read: neither loading it, nor train.py, nor infer.py
    calls it (before, train.py and infer.py ran the command)."""
    from cans.config import ConfigError, load_config

    marker = tmp_path / "PWNED"
    config = _popen_config(tmp_path, marker)
    with pytest.raises(ConfigError) as info:
        load_config(config)
    text = str(info.value)
    assert text.startswith(f"{config}, line 1: model.type: 'subprocess:Popen'") and "torch.nn.Module" in text, text
    code = load_script("train.py").main(["-c", config, "--no-progress"])
    one_error_line(code, capsys.readouterr().err, "model.type", "subprocess:Popen", "torch.nn.Module")
    photo, ckpt = write(tmp_path / "photo.dng", "not read"), write(tmp_path / "w.pth", "not read")
    code = load_script("scripts/infer.py").main(["-c", config, "--checkpoint", ckpt, photo, "--out",
                                                 str(tmp_path / "out"), "--device", "cpu", "--no-progress"])
    one_error_line(code, capsys.readouterr().err, "model.type", "subprocess:Popen", "torch.nn.Module")
    assert not marker.exists()
