"""What several test files (and the scripts some of them run in a subprocess) share.

``REPO`` and ``TESTS`` are the repository's and this folder's paths, whatever the depth of the
file that imports them; ``tests/conftest.py`` puts this folder on ``sys.path``, so a test in any
sub-folder imports this module as ``helpers`` (a subprocess puts ``TESTS`` on its own path).
The training helpers make a CPU ``Trainer`` on tiny in-memory pairs; the evaluation stand-ins
give scores computable by hand.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
DEMO = str(REPO / "configs" / "demo.yaml")   # the quick-start config (Sony synthetic demo)


def load_script(name: str, module: str = None):
    """The repository script ``name`` (e.g. ``"train.py"``, ``"scripts/infer.py"``) imported as a
    module, without running its ``main``."""
    module = module or "script_" + name.replace("/", "_").replace(".", "_")
    spec = importlib.util.spec_from_file_location(module, REPO / name)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def write(path: Path, text: str) -> str:
    """Write ``text`` to ``path`` (its folders made as needed); returns the path as a string."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return str(path)


def one_error_line(code, err: str, *names: str) -> str:
    """``err`` holds one ``error:`` line (notes, warnings and argparse's usage aside) that names
    every one of ``names``; the exit status is not 0; no traceback. Returns that line."""
    assert code not in (0, None), err
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1, err
    for name in names:
        assert name in errors[0], (name, err)
    return errors[0]


# ------------------------------------------------------------------------------ training on tiny pairs

# a tiny CANS for Bayer (Sony) input at the paper's depth: 4 packed channels, width 8, one block a level
TINY_CANS = {"type": "CANS", "in_channel": 4, "width": 8, "middle_blk_num": 1, "enc_blk_nums": [1, 1, 1, 1],
             "dec_blk_nums": [1, 1, 1, 1], "adaptive_size": 2, "block_size": 2}

TINY_MODEL = {"type": "CANS_Plus", "in_channel": 4, "width": 8, "middle_blk_num": 1,
              "enc_blk_nums": [1, 1], "dec_blk_nums": [1, 1], "adaptive_size": 2, "block_size": 2}


class TinyPairs(Dataset):
    """Hand-made pairs: a smooth clean packed RAW, its 'RGB' (a fixed linear map, upsampled x2),
    and a noisy input; random crops of ``patch`` packed pixels drawn from the global torch and
    numpy generators (so resume must restore them). ``nan_every``: every k-th sample's input is NaN."""

    def __init__(self, n=4, size=24, patch=16, seed=0, nan_every=0, all_nan=False):
        g = torch.Generator().manual_seed(seed)
        yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
        self.clean = []
        for i in range(n):
            c = torch.rand(4, 1, 1, generator=g)
            self.clean.append((0.2 + 0.6 * c * (0.5 + 0.5 * torch.sin(3 * (xx + i) + 2 * yy))).float())
        self.noise = [0.05 * torch.randn(4, size, size, generator=g) for _ in range(n)]
        self.n, self.size, self.patch = n, size, patch
        self.nan_every, self.all_nan = nan_every, all_nan

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        clean = self.clean[i]
        noisy = clean + self.noise[i]
        y = int(torch.randint(0, self.size - self.patch + 1, (1,)).item())
        x = int(np.random.randint(0, self.size - self.patch + 1))
        sl = (slice(None), slice(y, y + self.patch), slice(x, x + self.patch))
        c, nz = clean[sl], noisy[sl].clone()
        if self.all_nan or (self.nan_every and i % self.nan_every == 0):
            nz[:] = float("nan")
        rgb = torch.stack([c[0], 0.5 * (c[1] + c[3]), c[2]])
        rgb = rgb.repeat_interleave(2, 1).repeat_interleave(2, 2).clamp(0, 1)
        return {"noisy_raw": nz, "clean_raw": c, "clean_rgb": rgb, "ratio": 100.0,
                "input_exposure": 0.1, "gt_exposure": 10.0, "img_file": f"in{i}", "lbl_file": f"gt{i}"}


def make_cfg(tmp_path, **train):
    """A validated config for a tiny CANS++ run in ``tmp_path / "run"``; ``train`` overrides the
    train section's keys."""
    from cans.config import validate

    tcfg = {"base_lr": 2e-3, "min_lr": 2e-4, "epochs": 2, "clip_grad": 1.0, "save_per_epoch": 1,
            "manual_seed": 7, "deterministic": True, "log_every": 1}
    tcfg.update(train)
    return validate({"name": "tiny", "output_dir": str(tmp_path / "run"), "model": TINY_MODEL,
                     "data": {"num_workers": 0, "train": {"batch_size": 2}}, "train": tcfg})


def tiny_trainer(cfg, resume=None, **data):
    """A CPU Trainer on ``TinyPairs(**data)`` without validation."""
    from cans.train.trainer import Trainer

    return Trainer(cfg, train_set=TinyPairs(**data), valid_set=False, resume=resume, progress=False,
                   device=torch.device("cpu"))


def weights(trainer):
    """A copy of the trainer's model weights."""
    return {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}


# ------------------------------------------------------------------------------ evaluation stand-ins

class PairSet(Dataset):
    """Random samples with the data pipeline's keys; ratios 100, 250, 300, 300."""

    ratios = (100.0, 250.0, 300.0, 300.0)

    def __init__(self, size=(52, 60)):
        self.size = size

    def __len__(self):
        return len(self.ratios)

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        h, w = self.size
        clean_raw = torch.rand(4, h, w, generator=g)
        return {"noisy_raw": (clean_raw + 0.05 * torch.randn(4, h, w, generator=g)).clamp(0, 1),
                "clean_raw": clean_raw, "clean_rgb": torch.rand(3, 2 * h, 2 * w, generator=g),
                "ratio": self.ratios[i], "img_file": f"./Sony/short/1000{i}_00_0.1s.ARW",
                "lbl_file": f"./Sony/long/1000{i}_00_10s.ARW"}


class Oracle(torch.nn.Module):
    """Returns the noisy input as RAW and a fixed grey RGB: scores computable by hand."""
    block_size = 2

    def forward(self, x):
        b, _, h, w = x.shape
        return torch.full((b, 3, 2 * h, 2 * w), 0.5), x


class IdentityPairs(Dataset):
    """``n`` samples of random packed RAW (4 x 52 x 52) whose noisy input is the clean target, an
    unrelated RGB target (3 x 104 x 104), ratio 100 and SID-style names. ``stop_at``: loading that
    index raises KeyboardInterrupt (a Ctrl-C in the middle of a run)."""

    def __init__(self, n=3, stop_at=None):
        self.n, self.stop_at = n, stop_at

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if i == self.stop_at:
            raise KeyboardInterrupt
        g = torch.Generator().manual_seed(i)
        clean = torch.rand(4, 52, 52, generator=g)
        return {"noisy_raw": clean, "clean_raw": clean, "clean_rgb": torch.rand(3, 104, 104, generator=g),
                "ratio": 100.0, "img_file": f"./Sony/short/1000{i}_00_0.1s.ARW", "lbl_file": f"gt{i}"}


def fake_cpu_bound(monkeypatch, tile: int) -> list:
    """Stand in for the CPU's memory probe (cans.tiling.cpu_tile): every frame gets ``tile``; the
    list returned records each call's (packed (h, w), limit in bytes). The machine's available
    memory is unknown, so a --max-memory is taken as given."""
    import cans.tiling as tiling

    asked = []

    def fake_cpu_tile(model, frame_hw, limit, two_pass=True):
        asked.append((tuple(frame_hw), limit))
        return tile, f"tiles of {tile} (a stand-in)"

    monkeypatch.setattr(tiling, "cpu_tile", fake_cpu_tile)
    monkeypatch.setattr(tiling, "available_memory", lambda: None)
    return asked
