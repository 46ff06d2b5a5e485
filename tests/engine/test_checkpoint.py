"""Atomic checkpoint writes and RNG state round trips; a junk, truncated or empty file, or a folder,
given as a checkpoint is one plain line naming it."""
from __future__ import annotations

import json
import os
import random

import numpy as np
import pytest
import torch
from helpers import DEMO, TINY_CANS, load_script, one_error_line

from cans.config import validate
from cans.engine import checkpoint as ck
from cans.models import build_model


def _state(v):
    return {"model": {"w": torch.full((64, 64), float(v))}, "optimizer": {}, "epoch": v, "step": 10 * v}


def test_a_write_killed_midway_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    path = str(tmp_path / "checkpoints" / "last.pth")
    ck.atomic_torch_save(_state(1), path)
    real_save = torch.save

    def half_save(obj, f, *a, **k):
        import io
        buf = io.BytesIO()
        real_save(obj, buf)
        data = buf.getvalue()
        f.write(data[: len(data) // 2])  # half the bytes, then the "crash"
        raise KeyboardInterrupt("killed mid-write")

    monkeypatch.setattr(torch, "save", half_save)
    with pytest.raises(KeyboardInterrupt):
        ck.atomic_torch_save(_state(2), path)
    monkeypatch.setattr(torch, "save", real_save)
    loaded = ck.load_checkpoint(path)
    assert loaded["epoch"] == 1 and torch.equal(loaded["model"]["w"], torch.ones(64, 64))
    assert not (tmp_path / "checkpoints" / "last.pth.tmp").exists()


def test_truncated_file_gives_a_clear_error(tmp_path):
    path = tmp_path / "last.pth"
    ck.atomic_torch_save(_state(1), str(path))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="cannot read checkpoint"):
        ck.load_checkpoint(str(path))
    with pytest.raises(FileNotFoundError, match="nothere.pth"):
        ck.load_checkpoint(str(tmp_path / "nothere.pth"))


def test_weights_only_file_is_refused_for_resume(tmp_path):
    path = tmp_path / "w.pth"
    torch.save({"params": {"w": torch.zeros(1)}}, path)
    with pytest.raises(ValueError, match="train.pretrained"):
        ck.load_checkpoint(str(path))


def test_rng_round_trip(tmp_path):
    torch.manual_seed(1), np.random.seed(1), random.seed(1)
    state = ck.capture_rng_state()
    path = str(tmp_path / "rng.pth")
    ck.atomic_torch_save({"model": {}, "optimizer": {}, "epoch": 0, "step": 0, "rng": state}, path)
    expected = (torch.rand(3), np.random.rand(3), random.random())
    torch.manual_seed(2), np.random.seed(2), random.seed(2)
    ck.restore_rng_state(ck.load_checkpoint(path)["rng"])
    got = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(expected[0], got[0]) and np.array_equal(expected[1], got[1]) and expected[2] == got[2]


# ---------------------------------------------------------------------- a junk checkpoint is one plain line

def _bad_files(tmp_path):
    good = tmp_path / "good.pth"
    torch.save(build_model(validate({"model": dict(TINY_CANS)})).state_dict(), good)
    files = {}
    files["junk.pth"] = b"hello, this is not a checkpoint at all" * 20
    files["truncated.pth"] = good.read_bytes()[: good.stat().st_size // 2]
    files["empty.pth"] = b""
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    torch.save({"conv.weight": torch.zeros(3, 3)}, tmp_path / "other_net.pth")
    return {"junk.pth": "not a PyTorch checkpoint", "truncated.pth": "truncated or damaged",
            "empty.pth": "the file is empty", "other_net.pth": "weights of another network, not CANS"}


def test_a_junk_checkpoint_is_one_plain_line(tmp_path, capsys):
    cfg_path = tmp_path / "tiny.yaml"
    cfg_path.write_text(f"model: {json.dumps(TINY_CANS)}\noutput_dir: {tmp_path / 'run'}\n")
    test_py = load_script("test.py")
    for name, expected in _bad_files(tmp_path).items():
        path = tmp_path / name
        code = test_py.main(["-c", str(cfg_path), "--checkpoint", str(path), "--no-progress"])
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if not line.startswith("note:")]
        assert code == 2 and len(lines) == 1, err
        assert lines[0].startswith("error: ") and str(path) in lines[0] and expected in lines[0], err
        for noise in ("weights_only", "file an issue", "Traceback", "does the config"):
            assert noise not in err, err


def test_train_pretrained_junk_is_one_line_too(tmp_path):
    from cans.engine.checkpoint import CheckpointError, load_model_weights

    for name, expected in _bad_files(tmp_path).items():
        with pytest.raises(CheckpointError) as info:
            load_model_weights(build_model(validate({"model": dict(TINY_CANS)})), str(tmp_path / name))
        assert "\n" not in str(info.value) and expected in str(info.value) and name in str(info.value)


# ----------------------------------------------------------------------- a checkpoint path that is a folder

@pytest.fixture(scope="module")
def small_set(tmp_path_factory):
    from cans.synthetic import make_synthetic_sid
    out = tmp_path_factory.mktemp("audit") / "sid"
    make_synthetic_sid(str(out), scenes=3, height=200, width=200, log=lambda *_: None)
    return out


@pytest.mark.parametrize("script", ["test.py", "train.py"])
def test_a_checkpoint_path_that_is_a_folder_says_so(tmp_path, capsys, small_set, script):
    args = (["--checkpoint", str(tmp_path), "--device", "cpu"] if script == "test.py" else ["--resume", str(tmp_path)])
    code = load_script(script).main(["-c", DEMO, "--no-progress", *args, "--set", f"output_dir={tmp_path / 'run'}",
                                 f"data.data_path={small_set}", "data.num_workers=0", "model.width=8"])
    one_error_line(code, capsys.readouterr().err, str(tmp_path), "is a folder", ".pth")


# ----------------------------------------------------------------------- two writers of one checkpoint name

def test_atomic_saves_of_two_writers_do_not_collide(tmp_path):
    """Two processes writing the same checkpoint name each use their own temporary file."""
    path = str(tmp_path / "last.pth")
    from cans.io.files import unique_temp_name
    names = {unique_temp_name(path) for _ in range(100)}
    assert len(names) == 100 and all(n.endswith(".tmp") for n in names)
    ck.atomic_torch_save({"a": torch.ones(3)}, path)
    assert os.listdir(tmp_path) == ["last.pth"]
