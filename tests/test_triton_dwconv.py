"""The Triton depthwise 7x7 reflect convolution (cans.kernels.dwconv7) against torch.

The kernels themselves run under Triton's CPU interpreter in a subprocess (TRITON_INTERPRET
must be set before the kernels are defined, and pytest may already have imported them); the
interpreter is slow, so the tensors are tiny. The module swap is tested in-process (on the CPU
the swapped module takes the torch path)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from cans.kernels import TritonDWConv7, dwconv7_reflect, dwconv7_reference, swap_rde_dwconv
from cans.models import build_model
from cans.models.blocks import RDE

REPO = Path(__file__).resolve().parents[1]

# (shape, tile, bias): one tile per plane; several tiles per plane, H = 4 (the smallest
# size reflect padding 3 allows: the top and bottom folds overlap), no bias
CASES = [((1, 2, 9, 11), None, True), ((1, 1, 4, 9), (4, 8), False)]

CHECK = r"""
import json, sys
import torch
from cans.kernels.dwconv7 import dwconv7_reflect, dwconv7_reference, interpreted
assert interpreted(), "TRITON_INTERPRET=1 did not reach the kernels"
torch.manual_seed(0)
out = []
for shape, block, with_bias in json.loads(sys.argv[1]):
    x = torch.randn(*shape, requires_grad=True)
    w = torch.randn(shape[1], 1, 7, 7, requires_grad=True)
    b = torch.randn(shape[1], requires_grad=True) if with_bias else None
    args = (x, w) + ((b,) if with_bias else ())
    y = dwconv7_reflect(x, w, b, tuple(block) if block else None)
    ref = dwconv7_reference(x, w, b)
    g = torch.randn_like(ref)
    got = torch.autograd.grad(y, args, g)
    exp = torch.autograd.grad(ref, args, g)
    names = ["grad_input", "grad_weight", "grad_bias"][:len(args)]
    errs = {"forward": (y - ref).abs().max().item() / ref.abs().max().item()}
    errs.update({n: (a - e).abs().max().item() / e.abs().max().item() for n, a, e in zip(names, got, exp)})
    out.append({"shape": shape, "errors": errs, "dtype": str(y.dtype), "out_shape": list(y.shape)})
print(json.dumps(out))
"""


def test_kernels_match_torch_under_the_interpreter():
    pytest.importorskip("triton")
    env = dict(os.environ, TRITON_INTERPRET="1", OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-c", CHECK, json.dumps(CASES)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(results) == len(CASES)
    for case, r in zip(CASES, results):
        assert r["out_shape"] == list(case[0]) and r["dtype"] == "torch.float32"
        expected = {"forward", "grad_input", "grad_weight"} | ({"grad_bias"} if case[2] else set())
        assert set(r["errors"]) == expected
        for name, err in r["errors"].items():
            assert err < 1e-5, f"{r['shape']} {name}: relative error {err}"


TINY = {"type": "CANS_Plus", "width": 4, "middle_blk_num": 1, "enc_blk_nums": [1, 1], "dec_blk_nums": [1, 1]}


def test_swap_keeps_parameters_names_and_outputs():
    torch.manual_seed(0)
    model = build_model(TINY).eval()
    x = torch.rand(1, 4, 16, 20)
    keys = {k: v.clone() for k, v in model.state_dict().items()}
    params = {id(p) for p in model.parameters()}
    with torch.no_grad():
        before = model(x)
    n_rde = sum(isinstance(m, RDE) for m in model.modules())
    assert swap_rde_dwconv(model) == n_rde > 0
    assert all(isinstance(m.dconv, TritonDWConv7) for m in model.modules() if isinstance(m, RDE))
    assert {id(p) for p in model.parameters()} == params  # the optimiser's view is unchanged
    state = model.state_dict()
    assert list(state) == list(keys) and all(torch.equal(state[k], keys[k]) for k in keys)
    with torch.no_grad():
        after = model(x)
    for a, b in zip(before, after):
        assert torch.allclose(a, b, atol=1e-6)
    assert swap_rde_dwconv(model) == 0  # already swapped


def test_bad_inputs_fail_clearly():
    with pytest.raises(ValueError, match="not a depthwise 7x7"):
        TritonDWConv7.from_conv(nn.Conv2d(4, 4, 3, padding=1, groups=4))
    with pytest.raises(ValueError, match="H and W >= 4"):
        dwconv7_reflect(torch.rand(1, 2, 3, 8), torch.rand(2, 1, 7, 7))
    with pytest.raises(ValueError, match=r"weight of shape \(2, 1, 7, 7\)"):
        dwconv7_reflect(torch.rand(1, 2, 8, 8), torch.rand(3, 1, 7, 7))
    x, w, b = torch.rand(1, 2, 8, 9), torch.rand(2, 1, 7, 7), torch.rand(2)
    conv = nn.Conv2d(2, 2, 7, padding=3, padding_mode="reflect", groups=2)
    conv.weight.data.copy_(w)
    conv.bias.data.copy_(b)
    assert torch.allclose(dwconv7_reference(x, w, b), conv(x), atol=1e-6)  # the reference is the RDE's conv
