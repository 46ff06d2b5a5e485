"""cans.train.state, the trainer's resumable state tested directly: the optimizer-state rule of a
resume, parameter names in optimizer order."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from cans.engine.checkpoint import CheckpointError
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
