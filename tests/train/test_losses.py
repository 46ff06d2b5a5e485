"""The two loss terms built from the YAML ``loss:`` section."""
from __future__ import annotations

import pytest
import torch

from cans.config import validate
from cans.train.losses import build_loss


def test_terms_and_weights_follow_the_config():
    cfg = validate({"loss": {"raw": {"type": "MSE", "weight": 0.5}, "rgb": {"type": "L1", "weight": 2.0}}})
    loss = build_loss(cfg)
    rgb, raw = torch.full((1, 3, 8, 8), 0.5), torch.full((1, 4, 4, 4), 0.25)
    targets = {"clean_rgb": torch.zeros(1, 3, 8, 8), "clean_raw": torch.ones(1, 4, 4, 4)}
    terms = loss((rgb, raw), targets)
    assert terms["raw"].item() == pytest.approx(0.75 ** 2)
    assert terms["rgb"].item() == pytest.approx(0.5)
    assert loss.weighted_sum(terms).item() == pytest.approx(0.5 * 0.5625 + 2.0 * 0.5)
    assert loss.weighted_sum(terms, {"raw": 0.0, "rgb": 1.0}).item() == pytest.approx(0.5)


def test_shape_mismatch_names_the_target():
    loss = build_loss(validate({}))
    with pytest.raises(ValueError, match="clean_raw"):
        loss((torch.zeros(1, 3, 8, 8), torch.zeros(1, 4, 4, 4)),
             {"clean_rgb": torch.zeros(1, 3, 8, 8), "clean_raw": torch.zeros(1, 4, 5, 4)})


def test_low_precision_outputs_are_summed_in_float32():
    loss = build_loss(validate({}))
    terms = loss((torch.zeros(1, 3, 8, 8, dtype=torch.bfloat16), torch.zeros(1, 4, 4, 4, dtype=torch.bfloat16)),
                 {"clean_rgb": torch.ones(1, 3, 8, 8), "clean_raw": torch.ones(1, 4, 4, 4)})
    assert all(t.dtype == torch.float32 for t in terms.values())
