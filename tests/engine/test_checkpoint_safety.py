"""Reading checkpoints never runs code from them; damaged files are refused; the authors' layouts load.

A crafted pickle (``__reduce__`` -> ``os.system``) is offered to every path that reads a ``.pth``:
the weights loader, a resume, ``train.pretrained``, and test.py / infer.py from the command line.
The marker file its command would create must never appear unless the user opts in, on the
command line only (``--trust-checkpoint``; a config cannot). An archive that would inflate far
beyond its size is refused before anything is inflated.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import DEMO, REPO, load_script, one_error_line, write

from cans.engine.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_model_weights,
    read_torch_file,
    trusted_checkpoints,
)
from cans.models import build_model

TINY = dict(type="CANS", in_channel=4, width=8, middle_blk_num=1, enc_blk_nums=[1, 1], dec_blk_nums=[1, 1],
            adaptive_size=2, block_size=2)


class Crafted:
    """Unpickling this runs a shell command that creates ``marker``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.fixture
def crafted(tmp_path):
    marker = tmp_path / "PWNED"
    path = tmp_path / "evil.pth"
    model = build_model(TINY)
    torch.save({"model": model.state_dict(), "optimizer": Crafted(marker), "epoch": 1, "step": 1}, path)
    return path, marker


def test_every_loader_refuses_a_crafted_pickle_and_names_the_opt_in(crafted):
    path, marker = crafted
    loaders = [lambda: read_torch_file(str(path)), lambda: load_checkpoint(str(path)),
               lambda: load_model_weights(build_model(TINY), str(path))]
    for load in loaders:
        with pytest.raises(CheckpointError) as info:
            load()
        text = str(info.value)
        assert "\n" not in text and "system" in text and "--trust-checkpoint" in text
        assert "train.trust_checkpoint" not in text   # a config cannot grant it
    assert not marker.exists()


def test_resume_and_pretrained_refuse_it_unless_trusted(crafted, tmp_path):
    from helpers import make_cfg, tiny_trainer
    path, marker = crafted
    with pytest.raises(CheckpointError, match="refusing to load"):
        tiny_trainer(make_cfg(tmp_path / "a"), resume=str(path), n=2, size=16)
    with pytest.raises(CheckpointError, match="train.pretrained: refusing to load"):
        tiny_trainer(make_cfg(tmp_path / "b", pretrained=str(path)), n=2, size=16)
    assert not marker.exists()
    # the explicit opt-in loads it in full (and so runs its code: that is what trusting means)
    with trusted_checkpoints():
        obj = read_torch_file(str(path))
    assert marker.exists() and obj["epoch"] == 1


@pytest.mark.parametrize("script", ["test.py", "scripts/infer.py"])
def test_the_command_line_refuses_it_in_one_line(crafted, tmp_path, script):
    path, marker = crafted
    args = [sys.executable, str(REPO / script), "-c", str(REPO / "configs/demo.yaml"), "--checkpoint", str(path),
            "--set", f"output_dir={tmp_path / 'run'}", "model.width=8", "model.enc_blk_nums=[1,1]",
            "model.dec_blk_nums=[1,1]", "model.middle_blk_num=1"]
    if script.endswith("infer.py"):
        args += ["--out", str(tmp_path / "out"), str(tmp_path / "photo.dng")]
        (tmp_path / "photo.dng").write_bytes(b"not read: the checkpoint is refused first")
    proc = subprocess.run(args, capture_output=True, text=True, cwd=tmp_path, timeout=120)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error")]
    assert proc.returncode == 2, proc.stderr
    assert len(errors) == 1 and "refusing to load" in errors[0] and "Traceback" not in proc.stderr
    assert not marker.exists()


def _pretrained_config(tmp_path, path, extra=""):
    """The demo config starting from ``path``, with no data (the run stops in its checks, after
    train.pretrained is read)."""
    return write(tmp_path / "evil.yaml", f"base: {DEMO}\noutput_dir: {tmp_path / 'run'}\n"
                                         f"data: {{data_path: {tmp_path / 'no_data'}, synthetic: {{auto_create: false}}}}\n"
                                         f"train:\n  pretrained: {path}\n{extra}")


def test_a_config_cannot_grant_trust_the_command_line_can(crafted, tmp_path, capsys):
    """train.trust_checkpoint: true in a YAML unpickled the crafted file; now trust is train.py's
    --trust-checkpoint, as for test.py and infer.py."""
    path, marker = crafted
    train = load_script("train.py").main
    config = _pretrained_config(tmp_path, path, "  trust_checkpoint: true\n")
    code = train(["-c", config, "--no-progress"])
    one_error_line(code, capsys.readouterr().err, f"{config}, line 6", "train.trust_checkpoint",
                   "only by --trust-checkpoint on the command line")
    code = train(["-c", DEMO, "--no-progress", "--set", f"train.pretrained={path}", "train.trust_checkpoint=true"])
    one_error_line(code, capsys.readouterr().err, "--set train.trust_checkpoint=true", "--trust-checkpoint")
    assert not marker.exists()
    config = _pretrained_config(tmp_path, path)
    code = train(["-c", config, "--no-progress"])   # refused: the opt-in is named
    one_error_line(code, capsys.readouterr().err, "train.pretrained", "refusing to load", "--trust-checkpoint")
    assert not marker.exists()
    code = train(["-c", config, "--no-progress", "--trust-checkpoint"])
    err = capsys.readouterr().err
    assert "full unpickler" in err and "trusted by --trust-checkpoint" in err, err
    assert marker.exists()   # loaded in full, so its code ran: that is what trusting means
    assert code == 2 and "refusing" not in err   # then the missing data stops the run


def _zip_bomb(path, megabytes=100):
    """A zip whose one DEFLATE record inflates ``megabytes`` of zeros from about 1/1000 of that."""
    import zipfile
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        with archive.open("archive/data/0", "w", force_zip64=True) as record:
            for _ in range(megabytes):
                record.write(bytes(1 << 20))
    return str(path)


def test_a_record_that_would_inflate_far_beyond_the_file_is_refused_without_inflating(tmp_path, monkeypatch):
    """A 4 MB file declaring 4.85 GB took 211 s in testzip(); the sizes come from the zip directory."""
    import zipfile
    path = _zip_bomb(tmp_path / "bomb.pth")
    size = os.path.getsize(path)
    assert size < 200_000

    def inflating(self):
        raise AssertionError("testzip() inflated the records")
    monkeypatch.setattr(zipfile.ZipFile, "testzip", inflating)
    with pytest.raises(CheckpointError) as info:
        read_torch_file(path)
    text = str(info.value)
    assert "\n" not in text and path in text and "archive/data/0" in text, text
    assert "104,857,600 bytes" in text and f"{size:,}-byte file" in text, text


def test_checkpoints_as_saved_pass_the_size_check(tmp_path):
    """torch.save's records are stored uncompressed; a re-zipped (deflated) one barely shrinks."""
    import zipfile
    model = build_model(TINY)
    path = tmp_path / "w.pth"
    torch.save(model.state_dict(), path)
    with zipfile.ZipFile(path) as archive:
        assert all(info.compress_type == zipfile.ZIP_STORED for info in archive.infolist())
        records = [(info, archive.read(info)) for info in archive.infolist()]
    rezipped = tmp_path / "rezipped.pth"
    with zipfile.ZipFile(rezipped, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for info, data in records:
            archive.writestr(info.filename, data)
    for weights in (path, rezipped):
        assert set(read_torch_file(str(weights))) == set(model.state_dict())


def test_a_damaged_record_is_refused(tmp_path):
    """One flipped byte inside the weights: torch.load alone returns the wrong number silently."""
    model = build_model(TINY)
    path = tmp_path / "w.pth"
    torch.save(model.state_dict(), path)
    data = bytearray(path.read_bytes())
    needle = model.state_dict()["backbone.intro.weight"].numpy().tobytes()[8:24]
    at = data.find(needle)
    assert at > 0
    data[at + 2] ^= 0x40
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"damaged \(record .* fails its checksum\)"):
        read_torch_file(str(path))


@pytest.mark.parametrize("name", ["CANS_Plus_w4_Sony_maxpsnr_numpy.pth", "CANS_Plus_w4_Sony_maxpsnr_tensor.pth",
                                  "CANS_Plus_w4_Sony_state_dict.pth"])
def test_the_authors_layouts_load_without_trust(reference_dir, name):
    """Their checkpoints hold ``max_psnr`` as a float, a tensor or a numpy float64: all are data."""
    from cans.config import load_config
    cfg = load_config(str(REPO / "configs/CANS_Plus/Sony.yaml"), ["model.width=4"])
    model = build_model(cfg["model"])
    obj = load_model_weights(model, str(reference_dir / "authors_checkpoint_like" / name), cfg)
    assert obj is not None


def test_our_training_checkpoints_need_no_trust(tmp_path):
    """RNG states (numpy arrays), optimizer, schedule and config: all load weights-only."""
    from helpers import make_cfg, tiny_trainer
    tr = tiny_trainer(make_cfg(tmp_path, epochs=1), n=2, size=16)
    tr.fit()
    tr.close()
    path = tmp_path / "run" / "checkpoints" / "last.pth"
    scan = getattr(torch.serialization, "get_unsafe_globals_in_checkpoint", None)  # torch >= 2.5
    if scan is not None:
        assert scan(str(path)), "expected numpy's RNG state globals, allowed as data"
    ckpt = load_checkpoint(str(path))
    assert ckpt["epoch"] == 1 and "numpy" in ckpt["rng"]
