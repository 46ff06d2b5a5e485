"""The trainer's seams tested directly: the optimizer-state rule of a resume, parameter names in
optimizer order (cans.train.state), and the validation image panels (cans.evaluate.images)."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from cans.engine.checkpoint import CheckpointError
from cans.evaluate.images import raw_preview, validation_panels
from cans.train.state import load_optimizer_state, param_names


def _stepped_adamw(model, **hyper):
    opt = torch.optim.AdamW(model.parameters(), **hyper)
    model(torch.ones(2, 3)).square().sum().backward()
    opt.step()
    return opt


def test_resume_takes_the_moments_and_lr_from_the_checkpoint_and_the_rest_from_the_config():
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    saved = _stepped_adamw(model, lr=1e-3, betas=(0.8, 0.9), eps=1e-6, weight_decay=0.1).state_dict()
    fresh = torch.optim.AdamW(model.parameters(), lr=5e-4, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.01)
    load_optimizer_state(fresh, saved, "ckpt.pth")
    group = fresh.param_groups[0]
    assert group["betas"] == (0.9, 0.99) and group["eps"] == 1e-8 and group["weight_decay"] == 0.01
    assert group["lr"] == 1e-3  # the learning rate is the schedule's business (sync_schedule)
    for i, p in enumerate(model.parameters()):
        assert torch.equal(fresh.state[p]["exp_avg"], saved["state"][i]["exp_avg"])
        assert torch.equal(fresh.state[p]["exp_avg_sq"], saved["state"][i]["exp_avg_sq"])


def test_an_optimizer_state_of_another_model_is_one_checkpoint_error_naming_the_file():
    saved = _stepped_adamw(nn.Linear(3, 2), lr=1e-3).state_dict()
    other = torch.optim.AdamW(nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 2)).parameters(), lr=1e-3)
    with pytest.raises(CheckpointError, match="ckpt.pth: the optimizer state does not fit"):
        load_optimizer_state(other, saved, "ckpt.pth")


def test_param_names_follow_the_optimizer_order_and_mark_foreign_parameters():
    model = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 2))
    stray = nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([{"params": [model[1].weight, model[0].bias]}, {"params": [stray, model[0].weight]}], lr=0.1)
    assert param_names(model, opt) == ["1.weight", "0.bias", "?", "0.weight"]


class _Doubler(nn.Module):
    """(1, 4, h, w) -> rgb (1, 3, 2h, 2w) = 0.25 + the first three channels upsampled, raw = 2 * input;
    refuses inputs smaller than ``smallest`` packed pixels (ValueError, as the CANS models)."""

    def __init__(self, smallest=1):
        super().__init__()
        self.smallest, self.seen = smallest, []

    def forward(self, x):
        self.seen.append((tuple(x.shape), self.training))
        if min(x.shape[-2:]) < self.smallest:
            raise ValueError("input too small")
        rgb = 0.25 + x[:, :3].repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
        return rgb, 2 * x


def _sample(h=10, w=14):
    g = torch.Generator().manual_seed(1)
    clean = torch.rand(4, h, w, generator=g) * 0.5
    return {"noisy_raw": 0.01 * clean + 0.001, "clean_raw": clean,
            "clean_rgb": torch.rand(3, 2 * h, 2 * w, generator=g)}


def test_validation_panels_show_a_centre_crop_of_input_output_and_target():
    sample, model = _sample(), _Doubler()
    model.train()
    panels = validation_panels(model, sample, 2, torch.device("cpu"), max_side=6)
    assert model.training and model.seen == [((1, 4, 6, 6), False)]  # evaluated in eval mode, mode restored
    top, left = (10 - 6) // 2, (14 - 6) // 2
    noisy = sample["noisy_raw"][:, top:top + 6, left:left + 6]
    rgb_panel = panels["valid/input_output_target"]
    assert rgb_panel.shape == (3, 12, 36) and rgb_panel.min() >= 0 and rgb_panel.max() <= 1
    expected_rgb = (0.25 + noisy[:3].repeat_interleave(2, 1).repeat_interleave(2, 2)).clamp(0, 1)
    assert torch.allclose(rgb_panel[:, :, 12:24], expected_rgb)
    assert torch.equal(rgb_panel[:, :, 24:], sample["clean_rgb"][:, 2 * top:2 * top + 12, 2 * left:2 * left + 12])
    # the dark input is brightened: its preview is much brighter than the raw values
    assert rgb_panel[:, :, :12].mean() > 10 * noisy.mean()
    raw_panel = panels["valid/raw_output_target"]
    assert raw_panel.shape == (3, 12, 24)
    assert torch.allclose(raw_panel[:, :, :12], raw_preview(2 * noisy, 2))
    assert torch.allclose(raw_panel[:, :, 12:], raw_preview(sample["clean_raw"][:, top:top + 6, left:left + 6], 2))


def test_validation_panels_skip_a_left_out_pair_and_a_crop_too_small_for_the_model():
    sample = _sample()
    assert validation_panels(_Doubler(), {k: v for k, v in sample.items() if k != "noisy_raw"}, 2,
                             torch.device("cpu")) is None
    picky = _Doubler(smallest=64)
    picky.train()
    assert validation_panels(picky, sample, 2, torch.device("cpu")) is None
    assert picky.training  # mode restored after the refusal


@pytest.mark.cuda_path
@pytest.mark.parametrize("fused_before,fused_after", [(False, True), (True, False)])
def test_a_resume_across_fused_and_plain_adamw_puts_step_where_the_kernel_reads_it(fused_before, fused_after):
    """Meta tensors stand in for CUDA ones: fused AdamW reads ``step`` on the parameter's device (a
    CPU ``step`` there is an illegal memory access on a GPU); the plain one keeps it on the CPU
    (else two host syncs per parameter and step)."""
    from cans.train.state import load_optimizer_state
    p = torch.nn.Parameter(torch.randn(3, device="meta"))
    before = torch.optim.AdamW([p], lr=1e-3, fused=True) if fused_before else torch.optim.AdamW([p], lr=1e-3)
    before.state[p].update(step=torch.tensor(5.0, device="meta" if fused_before else "cpu"),
                           exp_avg=torch.zeros(3, device="meta"), exp_avg_sq=torch.zeros(3, device="meta"))
    saved = before.state_dict()
    saved["state"][0]["step"] = torch.tensor(5.0)  # resumes read with map_location="cpu"
    q = torch.nn.Parameter(torch.empty(3, device="meta"))
    after = torch.optim.AdamW([q], lr=1e-3, betas=(0.8, 0.9), fused=True) if fused_after else \
        torch.optim.AdamW([q], lr=1e-3, betas=(0.8, 0.9))
    load_optimizer_state(after, saved, "last.pth")
    state = after.state[q]
    assert bool(after.param_groups[0].get("fused")) == fused_after and after.param_groups[0]["betas"] == (0.8, 0.9)
    assert state["exp_avg"].device.type == "meta"
    assert state["step"].device.type == ("meta" if fused_after else "cpu")
