"""Seeded initialisation: ``train.manual_seed: 3407`` gives the authors' initial weights.

The authors seed every generator and then build the model on the CPU, so the initial
weights are fixed by the order in which modules are created. The reference fingerprints
(per tensor: shape, float64 sum, sum of squares, first values) are compared with the model
that the Trainer itself builds from the repository's paper configs.
"""
from __future__ import annotations

import json

import pytest
import torch
from helpers import REPO, TinyPairs

from cans.config import load_config
from cans.models import build_model
from cans.models.backbone import Backbone
from cans.models.heads import RawHead, RGBHead
from cans.train.trainer import Trainer, seed_everything

PAPER = ["CANS/Sony", "CANS/Fuji", "CANS_Plus/Sony", "CANS_Plus/Fuji"]
REL = 1e-6


@pytest.fixture(scope="module")
def fingerprints(reference_dir):
    path = reference_dir / "init_seed3407.json"
    if not path.is_file():
        pytest.skip(f"{path} not found: no reference fingerprints of the seeded initial weights")
    return json.loads(path.read_text())


def trainer_model(name: str, tmp_path) -> tuple:
    """The config of ``configs/<name>.yaml`` and the CPU model its Trainer builds (no data read)."""
    cfg = load_config(str(REPO / "configs" / f"{name}.yaml"))
    cfg["output_dir"] = str(tmp_path / "run")
    cfg["data"]["num_workers"] = 0
    trainer = Trainer(cfg, train_set=TinyPairs(n=1, size=16, patch=16), valid_set=False, progress=False,
                      device=torch.device("cpu"))
    trainer.close()
    return cfg, trainer.model


def mismatches(model: torch.nn.Module, expected: dict) -> list:
    """Names (with the reason) of the tensors whose fingerprint differs from ``expected``."""
    state = {k: v.detach().double() for k, v in model.state_dict().items()}
    bad = [f"{k}: missing in the model" for k in expected if k not in state]
    bad += [f"{k}: not in the reference" for k in state if k not in expected]
    for name, fp in expected.items():
        if name not in state:
            continue
        t = state[name]
        if list(t.shape) != fp["shape"]:
            bad.append(f"{name}: shape {list(t.shape)} != {fp['shape']}")
            continue
        scale = max(abs(fp["sum"]), fp["sumsq"] ** 0.5, 1e-12)  # the sum may be close to 0
        first = torch.tensor(fp["first"], dtype=torch.float64)
        if abs(t.sum().item() - fp["sum"]) > REL * scale:
            bad.append(f"{name}: sum {t.sum().item()!r} != {fp['sum']!r}")
        elif abs((t * t).sum().item() - fp["sumsq"]) > REL * max(fp["sumsq"], 1e-12):
            bad.append(f"{name}: sum of squares {(t * t).sum().item()!r} != {fp['sumsq']!r}")
        elif not torch.allclose(t.flatten()[:len(first)], first, rtol=REL, atol=1e-9):
            bad.append(f"{name}: first values {t.flatten()[:len(first)].tolist()} != {fp['first']}")
    return bad


@pytest.mark.parametrize("name", PAPER)
def test_paper_config_initial_weights_match_the_authors(name, fingerprints, tmp_path):
    reference = fingerprints[name]
    cfg, model = trainer_model(name, tmp_path)
    assert cfg["train"]["manual_seed"] == 3407
    from cans.models import MODEL_ARGS
    architecture = {k: v for k, v in cfg["model"].items() if k in MODEL_ARGS + ("type",)}  # not amp_layernorm
    assert architecture == reference["model"], "the paper config's model differs from the reference's"
    assert all(p.device.type == "cpu" for p in model.parameters())
    bad = mismatches(model, reference["tensors"])
    assert not bad, f"{len(bad)} of {len(reference['tensors'])} tensors differ:\n" + "\n".join(bad[:20])


def test_fingerprint_check_notices_another_seed_or_order(fingerprints):
    """The comparison is not vacuous: another seed fails it, and so does creating the RAW
    head before the RGB head (only the heads' tensors then differ)."""
    reference = fingerprints["CANS/Sony"]
    mc = reference["model"]
    seed_everything(3408)
    assert len(mismatches(build_model(mc), reference["tensors"])) > 150

    seed_everything(3407)
    backbone = Backbone(mc["in_channel"], mc["width"], mc["middle_blk_num"], mc["enc_blk_nums"],
                        mc["dec_blk_nums"], mc["adaptive_size"])
    raw_head = RawHead(mc["width"], mc["block_size"])
    rgb_head = RGBHead(mc["width"], mc["block_size"])
    swapped = build_model(mc)
    swapped.backbone, swapped.raw_head, swapped.rgb_head = backbone, raw_head, rgb_head
    bad = mismatches(swapped, reference["tensors"])
    assert bad and all(b.startswith(("raw_head.", "rgb_head.")) for b in bad), bad
