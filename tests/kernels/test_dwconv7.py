"""The Triton depthwise 7x7 reflect convolution (cans.kernels.dwconv7) against torch.

The kernels themselves run under Triton's CPU interpreter in a subprocess (TRITON_INTERPRET
must be set before the kernels are defined, and pytest may already have imported them); the
interpreter is slow, so the tensors are tiny. The subprocesses count the kernel launches, so a
silent fall-back to the torch path fails them. In-process (no interpreter: the operator's CPU
kernels are the torch equivalents): the module swap, the custom operators under
``torch.library.opcheck``, and a tiny CANS++ with the swap compiled with ``fullgraph=True``.
"""
import json
import os
import subprocess
import sys
from collections import Counter

import pytest
import torch
import torch.nn as nn
from helpers import REPO

from cans.kernels import TritonDWConv7, dwconv7_reference, dwconv7_reflect, swap_rde_dwconv
from cans.models import build_model
from cans.models.blocks import RDE
from cans.requirements import release

# (shape, tile, bias): two images of two planes, one tile per plane; several tiles per plane,
# H = 4 (the smallest size reflect padding 3 allows: the top and bottom mirror rows overlap), no
# bias; 4 x 4 (every pixel near every border); two planes on a 3 x 3 grid of tiles (an interior
# tile, tiles touching one border, corners: the mirrored terms run only where a tile touches one)
CASES = [((2, 2, 9, 11), None, True), ((1, 1, 4, 9), (4, 8), False), ((1, 1, 4, 4), (4, 4), True),
         ((1, 2, 12, 21), (4, 8), True)]

# counts the launches of the three kernels (a launch is ``kernel[grid](...)``)
COUNT_LAUNCHES = r"""
from collections import Counter
import cans.kernels.dwconv7 as _k
assert _k.interpreted(), "TRITON_INTERPRET=1 did not reach the kernels"
LAUNCHES = Counter()

class _Counted:
    def __init__(self, name, kernel):
        self.name, self.kernel = name, kernel

    def __getitem__(self, grid):
        LAUNCHES[self.name] += 1
        return self.kernel[grid]

for _name in ("_fwd_kernel", "_grad_input_kernel", "_grad_weight_kernel"):
    setattr(_k, _name, _Counted(_name, getattr(_k, _name)))
"""

CHECK = COUNT_LAUNCHES + r"""
import json, sys
import torch
from cans.kernels.dwconv7 import dwconv7_reflect, dwconv7_reference
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
    out.append({"shape": shape, "errors": errs, "dtype": str(y.dtype), "out_shape": list(y.shape),
                "launches": dict(LAUNCHES)})
    LAUNCHES.clear()
print(json.dumps(out))
"""


def _interpret(script: str, *args: str):
    """Run ``script`` under TRITON_INTERPRET=1 in a fresh process; its last stdout line, as JSON."""
    triton = pytest.importorskip("triton")
    import numpy
    if release(triton.__version__) < (3, 2) and release(numpy.__version__) >= (2, 0):
        # seen with Triton 3.0 and 3.1 (PyTorch 2.4, 2.5): a one-line store kernel left its CPU
        # tensor unchanged under NumPy 2 and wrote it under NumPy 1.26; Triton 3.2 writes it under both
        pytest.skip(f"Triton {triton.__version__}'s interpreter drops the kernels' stores under "
                    f"NumPy {numpy.__version__} (Triton >= 3.2 or NumPy < 2 runs these tests)")
    env = dict(os.environ, TRITON_INTERPRET="1", OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-c", script, *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


ONE_LAUNCH_EACH = {"_fwd_kernel": 1, "_grad_input_kernel": 1, "_grad_weight_kernel": 1}


def test_kernels_match_torch_under_the_interpreter():
    results = _interpret(CHECK, json.dumps(CASES))
    assert len(results) == len(CASES)
    for r in results:
        assert r["launches"] == ONE_LAUNCH_EACH, r  # the kernels ran, not the torch path
    for case, r in zip(CASES, results):
        assert r["out_shape"] == list(case[0]) and r["dtype"] == "torch.float32"
        expected = {"forward", "grad_input", "grad_weight"} | ({"grad_bias"} if case[2] else set())
        assert set(r["errors"]) == expected
        for name, err in r["errors"].items():
            assert err < 1e-5, f"{r['shape']} {name}: relative error {err}"


COMPILED = COUNT_LAUNCHES + r"""
import json
import torch
from cans.kernels.dwconv7 import TritonDWConv7
torch.manual_seed(0)
conv = torch.nn.Conv2d(2, 2, 7, padding=3, padding_mode="reflect", groups=2)
run = torch.compile(TritonDWConv7.from_conv(conv), backend="aot_eager", fullgraph=True, dynamic=False)
x = torch.randn(1, 2, 5, 6, requires_grad=True)
y = run(x)
ref = conv(x)
g = torch.randn_like(ref)
params = (x, conv.weight, conv.bias)
got = torch.autograd.grad(y, params, g)
exp = torch.autograd.grad(ref, params, g)
errs = {"forward": (y - ref).abs().max().item() / ref.abs().max().item()}
errs.update({n: (a - e).abs().max().item() / e.abs().max().item()
             for n, a, e in zip(("grad_input", "grad_weight", "grad_bias"), got, exp)})
print(json.dumps({"errors": errs, "launches": dict(LAUNCHES)}))
"""


def test_compiled_operator_runs_the_kernels_under_the_interpreter():
    """torch.compile (aot_eager, one graph) of the swapped layer: the compiled forward and
    backward call the operators, whose CPU kernels run the Triton kernels under the interpreter."""
    r = _interpret(COMPILED)
    assert r["launches"] == ONE_LAUNCH_EACH, r
    assert set(r["errors"]) == {"forward", "grad_input", "grad_weight", "grad_bias"}
    for name, err in r["errors"].items():
        assert err < 1e-5, f"{name}: relative error {err}"


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


@pytest.mark.parametrize("with_bias", [True, False], ids=["bias", "no_bias"])
def test_operators_pass_opcheck(with_bias):
    """Schema, autograd registration, fake (meta) implementation against the real one, and
    AOT dispatch with dynamic shapes, for the forward and both backward operators."""
    torch.manual_seed(0)
    x = torch.randn(1, 2, 8, 9, requires_grad=True)
    w = torch.randn(2, 1, 7, 7, requires_grad=True)
    b = torch.randn(2, requires_grad=True) if with_bias else None
    dy = torch.randn(1, 2, 8, 9)
    ops = torch.ops.cans
    cases = [(ops.dwconv7_reflect.default, (x, w, b, 0, 0)), (ops.dwconv7_reflect.default, (x, w, b, 4, 8))]
    if with_bias:  # the backward operators take no bias: once is enough
        cases += [(ops.dwconv7_reflect_grad_input.default, (dy, w.detach(), 0, 0)),
                  (ops.dwconv7_reflect_grad_params.default, (x.detach(), dy, w.detach(), 0, 0))]
    for op, args in cases:
        result = torch.library.opcheck(op, args)
        assert set(result.values()) == {"SUCCESS"}, (op, result)


def test_compiled_swapped_model_is_one_graph_and_matches_eager():
    """A tiny CANS++ with the swap under torch.compile(fullgraph=True) (AOT autograd with no-op
    compilers, i.e. ``aot_eager``, recording the graphs): one forward and one backward graph,
    holding the operators as nodes (no graph break around them), with the outputs and gradients
    of the eager model without the swap."""
    from torch._dynamo.backends.common import aot_autograd
    from torch._functorch.aot_autograd import make_boxed_func

    graphs = {"forward": [], "backward": []}

    def record(kind):
        def compiler(gm, example_inputs):
            graphs[kind].append(gm)
            return make_boxed_func(gm.forward)
        return compiler

    torch.manual_seed(0)
    ref = build_model(TINY)
    net = build_model(TINY)
    net.load_state_dict(ref.state_dict())
    n_rde = swap_rde_dwconv(net)
    torch._dynamo.reset()
    try:
        run = torch.compile(net, backend=aot_autograd(fw_compiler=record("forward"), bw_compiler=record("backward")),
                            fullgraph=True, dynamic=False)
        x = torch.rand(1, 4, 18, 22)  # padded inside the forward to a multiple of 4
        outs = []
        for model in (run, ref):
            rgb, raw = model(x)
            (rgb.square().mean() + raw.abs().mean()).backward()
            outs.append((rgb.detach(), raw.detach()))
    finally:
        torch._dynamo.reset()
    assert len(graphs["forward"]) == 1 and len(graphs["backward"]) == 1

    def calls(gm):
        return Counter(str(n.target) for n in gm.graph.nodes if n.op == "call_function" and "cans." in str(n.target))

    assert calls(graphs["forward"][0]) == {"cans.dwconv7_reflect.default": n_rde}
    assert calls(graphs["backward"][0]) == {"cans.dwconv7_reflect_grad_input.default": n_rde,
                                            "cans.dwconv7_reflect_grad_params.default": n_rde}
    for got, exp in zip(*outs):
        assert torch.allclose(got, exp, rtol=1e-5, atol=1e-6)
    for (name, a), b in zip(ref.named_parameters(), net.parameters()):
        assert torch.allclose(b.grad, a.grad, rtol=1e-4, atol=1e-7), name



# compiles the three kernels as the CUDA path launches them (launch_config's tile and warps, for a
# 512 x 512 plane) for sm_90, with ptxas's report of each: registers per thread, spill stores
AOT = r"""
import contextlib, inspect, io, json, re, sys
import triton
import cans.kernels.dwconv7 as k
try:
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    assert "constexprs" in inspect.signature(ASTSource).parameters
except (ImportError, AssertionError):
    print(json.dumps({"skip": f"Triton {triton.__version__} has another ahead-of-time compile API"}))
    sys.exit(0)
t = "*" + sys.argv[1]
kernels = {
    "_fwd_kernel": ({"x_ptr": t, "w_ptr": t, "b_ptr": t, "y_ptr": t, "C": "i32", "H": "i32", "W": "i32",
                     "HAS_BIAS": "constexpr", "BH": "constexpr", "BW": "constexpr"}, {"HAS_BIAS": True}),
    "_grad_input_kernel": ({"dy_ptr": t, "w_ptr": t, "dx_ptr": t, "C": "i32", "H": "i32", "W": "i32",
                            "BH": "constexpr", "BW": "constexpr"}, {}),
    "_grad_weight_kernel": ({"x_ptr": t, "dy_ptr": t, "part_ptr": "*fp32", "C": "i32", "H": "i32", "W": "i32",
                             "TILES_W": "i32", "BH": "constexpr", "BW": "constexpr"}, {}),
}
bh, bw, warps = k.launch_config(512, 512)
out = {}
for name, (signature, constexprs) in kernels.items():
    src = ASTSource(fn=getattr(k, name), signature=signature, constexprs=dict(constexprs, BH=bh, BW=bw))
    log = io.StringIO()
    with contextlib.redirect_stdout(log):  # TRITON_DUMP_PTXAS_LOG prints ptxas -v here
        compiled = triton.compile(src, target=GPUTarget("cuda", 90, 32), options={"num_warps": warps})
    text = log.getvalue()
    regs = re.search(r"Used (\d+) registers", text)
    spills = re.search(r"(\d+) bytes spill stores", text)
    out[name] = {"cubin": len(compiled.asm["cubin"]), "entry": (".entry " + name) in compiled.asm["ptx"],
                 "regs": int(regs.group(1)) if regs else None, "spills": int(spills.group(1)) if spills else None}
print(json.dumps(out))
"""


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_kernels_compile_for_hopper_without_a_gpu(dtype, tmp_path):
    """The interpreter runs the kernels' Python, not Triton's compiler: type rules, the runtime
    branches of the input-gradient kernel and what ptxas accepts are only checked by compiling.
    Triton compiles to a cubin for sm_90 (H100 / H200) with no GPU present, so the three kernels
    are built here as the CUDA path launches them (float32 or bfloat16 tensors, the default tile
    and warps), in a fresh process with an empty kernel cache so that ptxas runs and reports: no
    at most 128 registers per thread (else few warps fit on an SM) and no more than a few bytes spilled."""
    pytest.importorskip("triton")
    env = dict(os.environ, TRITON_ALWAYS_COMPILE="1", TRITON_DUMP_PTXAS_LOG="1",
               TRITON_CACHE_DIR=str(tmp_path), OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    env.pop("TRITON_INTERPRET", None)
    proc = subprocess.run([sys.executable, "-c", AOT, dtype], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    if "skip" in report:
        pytest.skip(report["skip"])
    assert set(report) == {"_fwd_kernel", "_grad_input_kernel", "_grad_weight_kernel"}
    for name, r in report.items():
        assert r["cubin"] > 0 and r["entry"], (name, r)
        assert r["regs"] is not None and r["spills"] is not None, f"{name}: no ptxas report in the log: {r}"
        # a few bytes of spill come and go with small code changes and Triton versions; the forward
        # with 4 warps spilled 52 B at 255 registers
        assert r["spills"] <= 16 and r["regs"] <= 128, f"{name} ({dtype}): {r['regs']} registers, {r['spills']} B spilled"


# ---------------------------------------- the Triton launchers run on the tensors' GPU, not the current one

@pytest.mark.cuda_path
def test_triton_launches_are_guarded_by_the_tensors_device(monkeypatch):
    """Each of the three launchers makes its tensors' CUDA device current around the launch
    (``torch.cuda.device``): with --device cuda:1 the kernels must not run on GPU 0. Fake
    tensors on cuda:1 stand in for the GPU; the kernels record the device current at launch."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    from cans.kernels import dwconv7

    if dwconv7.triton is None:
        pytest.skip("Triton is not installed: there are no Triton launchers")
    current = [None]
    launches = []

    class DeviceGuard:   # what torch.cuda.device does, without a GPU
        def __init__(self, device):
            self.device = torch.device(device)

        def __enter__(self):
            self.previous, current[0] = current[0], self.device

        def __exit__(self, *exc):
            current[0] = self.previous

    class Kernel:
        def __init__(self, name):
            self.name = name

        def __getitem__(self, grid):
            return lambda *args, **kwargs: launches.append((self.name, current[0]))

    monkeypatch.setattr(torch.cuda, "device", DeviceGuard)
    for name in ("_fwd_kernel", "_grad_input_kernel", "_grad_weight_kernel"):
        monkeypatch.setattr(dwconv7, name, Kernel(name))
    with FakeTensorMode():
        x = torch.empty(1, 2, 8, 8, device="cuda:1")
        weight = torch.empty(2, 1, 7, 7, device="cuda:1")
        bias = torch.empty(2, device="cuda:1")
        dwconv7._forward(x, weight, bias, None)
        dwconv7._grad_input(x, weight, None)
        dwconv7._grad_weight(x, x, None)
    assert launches == [(name, torch.device("cuda:1"))
                        for name in ("_fwd_kernel", "_grad_input_kernel", "_grad_weight_kernel")], launches
    assert current[0] is None


# ---------------------------------------- autocast and memory format

def test_swapped_convolution_follows_autocast():
    """Autocast runs a convolution in its dtype whatever the input's; a custom operator is not
    autocast, so the module casts: under bf16 autocast a float32 input gives the bf16 result of the
    convolution it replaces, eager and compiled (before: float32 compiled, as on the GPU's Triton
    path). The operator itself computes in its inputs' dtype, as its fake implementation says."""
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 3, 7, padding=3, padding_mode="reflect", groups=3)
    swapped = TritonDWConv7.from_conv(conv)
    x = torch.rand(1, 3, 9, 11)
    torch._dynamo.reset()
    try:
        compiled = torch.compile(swapped, backend="aot_eager", fullgraph=True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            expected = conv(x)
            outs = {"eager": swapped(x), "compiled": compiled(x)}
            op = dwconv7_reflect(x, conv.weight, conv.bias)
    finally:
        torch._dynamo.reset()
    assert expected.dtype == torch.bfloat16
    for name, y in outs.items():
        assert y.dtype == torch.bfloat16 and torch.equal(y, expected), name
    assert op.dtype == torch.float32
    outs["eager"].float().sum().backward()
    assert conv.weight.grad.dtype == torch.float32 and conv.bias.grad is not None


def test_a_channels_last_input_gives_a_contiguous_output():
    """The kernels compute NCHW planes: a channels_last input is read as a contiguous copy and the
    output is NCHW (docs/performance.md: one more read and write of the activation per call)."""
    torch.manual_seed(0)
    x, w, b = torch.rand(2, 3, 9, 11), torch.rand(3, 1, 7, 7), torch.rand(3)
    y = dwconv7_reflect(x.contiguous(memory_format=torch.channels_last), w, b)
    assert y.is_contiguous() and not y.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(y, dwconv7_reference(x, w, b), rtol=1e-6, atol=1e-6)
