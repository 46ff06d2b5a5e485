"""The CUDA path: run with ``python -m pytest -m cuda`` on a machine with a GPU (part of
``scripts/gpu_check.sh``, whose verdict fails when one of these is skipped there). Every test
here skips cleanly without one.

* the fast path (TF32 + torch.compile) against float32 eager on the reference's parity vectors;
* bf16 / fp16 autocast outputs against float32 on synthetic SID test images (>= 45 dB RGB PSNR,
  peak 1, unclamped; the paper config's seed-3407 initial weights: no trained weights needed);
* an fp16 training step with the gradient scaler;
* DistributedDataParallel over NCCL with one process;
* the Triton depthwise kernel against torch on the GPU (forward and both backward passes), and
  under autocast;
* compiled evaluation over frame sizes covering every padding residue: at most 3 graphs;
* ``scripts/infer.py`` on the GPU;
* tiled inference: peak memory bounded by the tile, ``--tile auto``'s memory probe, the retry in
  tiles after an out-of-memory error.
"""
import os
import socket
import subprocess
import sys

import pytest
import torch
from conftest import REFERENCE
from helpers import REPO

from cans.engine.fastpath import apply_fast_path, plan_fast_path, set_backend_flags
from cans.models import build_model

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run on a GPU machine: "
                                                                       "python -m pytest -m cuda)")]

PARITY = REFERENCE / "parity"
DEV = torch.device("cuda")
MIN_PSNR_LOW_PRECISION = 45.0


def rgb_psnr(out: torch.Tensor, ref: torch.Tensor) -> float:
    """RGB PSNR with peak 1 on the unclamped outputs (as scripts/benchmark.py's rgb_psnr_vs_plain)."""
    from cans.tools.benchmark import rgb_psnr as psnr_or_none

    value = psnr_or_none(out, ref)
    return float("inf") if value is None else value


@pytest.fixture(autouse=True)
def _restore_flags():
    flags = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark)
    yield
    (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark) = flags
    torch._dynamo.reset()


# --------------------------------------------------------------------------------------------------
# fast path vs float32 eager on the parity vectors (one CANS and one CANS++ file: each input size
# compiles once, and compiling costs time)
# --------------------------------------------------------------------------------------------------

PARITY_FILES = [PARITY / f for f in ("w8_CANS_Sony.pt", "w8_CANS_Plus_Fuji.pt")]  # the compact fixtures' cases


@pytest.mark.parametrize("path", PARITY_FILES, ids=[p.stem for p in PARITY_FILES])
def test_fast_path_matches_fp32_eager_on_parity_vectors(path):
    if not path.is_file():
        pytest.skip(f"no parity vectors at {path.parent} (see tests/conftest.py)")
    case = torch.load(path, map_location="cpu", weights_only=False)
    model = build_model(case["model"])
    model.load_state_dict(case["state_dict"], strict=True)
    model = model.to(DEV).eval()
    x = case["inputs"][0].float().to(DEV)
    expected = case["outputs"][0]
    s = case.get("output_step", 1)  # the compact fixtures keep every s-th output row and column
    set_backend_flags(plan_fast_path(DEV, False))  # float32 eager, TF32 off
    with torch.no_grad():
        eager = [t.double().cpu() for t in model(x)]
    # the vectors were made in float64, where LayerNorm2d's eps is 1e-3 (1e-5 in float32, as the reference):
    # float32 only roughly matches them (about 44-52 dB on the CPU), so the fast path is compared with float32
    for got, exp in zip(eager, (expected["rgb"], expected["raw"])):
        assert rgb_psnr(got[..., ::s, ::s], exp) > 35.0
    fast, plan = apply_fast_path(model, plan_fast_path(DEV, True))
    assert plan.compile and plan.tf32
    with torch.no_grad():
        out = [t.double().cpu() for t in fast(x)]
    for name, got, ref in zip(("rgb", "raw"), out, eager):
        # TF32 keeps 10 mantissa bits; emulated on the CPU (convolution operands rounded to 10 bits)
        # these vectors move by at most 1e-3 of the output range, 65-73 dB
        err = (got - ref).abs().max().item() / max((ref.max() - ref.min()).item(), 1e-6)
        assert err < 1e-2, f"{name}: fast path differs from float32 eager by {err:.2e} of the range"
        assert rgb_psnr(got, ref) > 50.0


# --------------------------------------------------------------------------------------------------
# bf16 / fp16 against float32 on synthetic SID test images
# --------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def synthetic_test_images(tmp_path_factory):
    pytest.importorskip("rawpy", reason="the synthetic SID is prepared through rawpy")
    pytest.importorskip("tifffile")
    pytest.importorskip("skimage")
    from cans.config import load_config
    from cans.data import build_dataset
    from cans.synthetic import make_synthetic_sid

    root = tmp_path_factory.mktemp("synthetic") / "sid"
    make_synthetic_sid(str(root), camera="Sony", scenes=4, seed=0, height=384, width=576, progress=False,
                       log=lambda *_: None)
    cfg = load_config(str(REPO / "configs/demo.yaml"), [f"data.data_path={root}", "data.synthetic.auto_create=false"])
    data = build_dataset(cfg, "test", log=lambda *_: None)
    return [data[i]["noisy_raw"][None] for i in range(min(len(data), 3))]


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_low_precision_outputs_close_to_fp32(synthetic_test_images, amp):
    from cans.config import load_config
    from cans.engine.fastpath import autocast_context

    cfg = load_config(str(REPO / "configs/CANS_Plus/Sony.yaml"))
    torch.manual_seed(3407)  # the paper configs' initial weights (no trained weights needed)
    model = build_model(cfg).to(DEV).eval()
    set_backend_flags(plan_fast_path(DEV, False))
    for x in synthetic_test_images:
        x = x.to(DEV)
        with torch.no_grad():
            ref_rgb, _ = model(x)
            with autocast_context(DEV, amp):
                rgb, raw = model(x)
        assert torch.isfinite(rgb).all() and torch.isfinite(raw).all()
        value = rgb_psnr(rgb.float(), ref_rgb)
        assert value >= MIN_PSNR_LOW_PRECISION, f"{amp}: RGB PSNR {value:.1f} dB against float32"


# --------------------------------------------------------------------------------------------------
# fp16 training step with the gradient scaler
# --------------------------------------------------------------------------------------------------

def test_fp16_step_with_grad_scaler(tmp_path):
    from helpers import TinyPairs, make_cfg

    from cans.train.trainer import Trainer

    cfg = make_cfg(tmp_path, epochs=1, deterministic=False, save_per_epoch=0)
    cfg["train"]["amp"] = "fp16"
    cfg["train"]["fast"] = False  # the scaler is what is tested; the compiled step is in the demo check
    tr = Trainer(cfg, train_set=TinyPairs(n=2, size=16), valid_set=False, progress=False, device=DEV)
    assert tr.scaler.is_enabled()
    before = {k: v.detach().clone() for k, v in tr.model.state_dict().items()}
    batch = {k: torch.stack([tr.train_set[i][k] for i in range(2)]) for k in ("noisy_raw", "clean_raw", "clean_rgb")}
    values = tr.train_step(batch)
    tr.close()
    assert values is not None and all(torch.isfinite(torch.tensor(v)) for v in values.values())
    assert tr.scaler.get_scale() > 0
    changed = [k for k, v in tr.model.state_dict().items() if not torch.equal(v, before[k])]
    assert changed, "the fp16 step changed no weight"


# --------------------------------------------------------------------------------------------------
# DistributedDataParallel over NCCL, one process
# --------------------------------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


TINY = {"type": "CANS_Plus", "width": 8, "middle_blk_num": 1, "enc_blk_nums": [1, 1], "dec_blk_nums": [1, 1]}


def _tiny_twins():
    """Two tiny CANS++ on the GPU with the same (seed-0) weights."""
    torch.manual_seed(0)
    ref = build_model(TINY).to(DEV)
    twin = build_model(TINY).to(DEV)
    twin.load_state_dict(ref.state_dict())
    return ref, twin


def _backward(net, x):
    rgb, raw = net(x)
    (rgb.square().mean() + raw.abs().mean()).backward()


def _assert_same_grads(ref, net, rtol):
    for (name, a), b in zip(ref.named_parameters(), net.parameters()):
        assert torch.allclose(a.grad, b.grad, rtol=rtol, atol=1e-6), name


def test_ddp_nccl_one_process():
    import torch.distributed as dist

    if not dist.is_nccl_available():
        pytest.skip("this torch build has no NCCL")
    plain, ddp_net = _tiny_twins()
    dist.init_process_group("nccl", init_method=f"tcp://127.0.0.1:{_free_port()}", rank=0, world_size=1)
    try:
        ddp = torch.nn.parallel.DistributedDataParallel(ddp_net, device_ids=[DEV.index or 0])
        x = torch.rand(1, 4, 32, 32, device=DEV)
        for net in (plain, ddp):
            _backward(net, x)
        t = torch.ones(1, device=DEV)
        dist.all_reduce(t)
        assert t.item() == 1.0
    finally:
        dist.destroy_process_group()
    _assert_same_grads(plain, ddp_net, rtol=1e-4)


# --------------------------------------------------------------------------------------------------
# the Triton kernel on the GPU
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_triton_dwconv_on_gpu(dtype):
    pytest.importorskip("triton")
    from cans.kernels import dwconv7_reference, dwconv7_reflect

    torch.manual_seed(0)
    x = torch.randn(2, 8, 67, 131, device=DEV, dtype=dtype, requires_grad=True)
    w = torch.randn(8, 1, 7, 7, device=DEV, requires_grad=True)
    b = torch.randn(8, device=DEV, requires_grad=True)
    set_backend_flags(plan_fast_path(DEV, False))
    y = dwconv7_reflect(x, w.to(dtype), b.to(dtype))
    x32 = x.detach().float().requires_grad_()
    ref = dwconv7_reference(x32, w, b)  # float32 torch on the same (rounded) input
    g = torch.randn_like(ref).to(dtype).float()
    got = torch.autograd.grad(y, (x, w, b), g.to(dtype))
    exp = torch.autograd.grad(ref, (x32, w, b), g)
    tol = 1e-4 if dtype == torch.float32 else 3e-2
    assert y.dtype == dtype
    assert (y.float() - ref).abs().max().item() <= tol * ref.abs().max().item()
    for name, a, e in zip(("grad_input", "grad_weight", "grad_bias"), got, exp):
        assert (a.float() - e).abs().max().item() <= tol * e.abs().max().item(), name


def test_triton_swap_in_training_step():
    pytest.importorskip("triton")
    from cans.kernels import swap_rde_dwconv

    ref, net = _tiny_twins()
    assert swap_rde_dwconv(net) > 0
    set_backend_flags(plan_fast_path(DEV, False))
    x = torch.rand(1, 4, 40, 36, device=DEV)
    for m in (ref, net):
        _backward(m, x)
    _assert_same_grads(ref, net, rtol=1e-3)


# --------------------------------------------------------------------------------------------------
# scripts/infer.py on the GPU
# --------------------------------------------------------------------------------------------------

def test_infer_script_on_gpu(tmp_path):
    pytest.importorskip("rawpy", reason="infer.py reads RAW files through rawpy")
    pytest.importorskip("tifffile")
    import numpy as np

    from cans.io.dng import write_dng

    tiny = {"type": "CANS_Plus", "width": 8, "middle_blk_num": 1, "enc_blk_nums": [1, 1, 1],
            "dec_blk_nums": [1, 1, 1]}
    torch.manual_seed(0)
    ckpt = tmp_path / "tiny.pth"
    torch.save({"model": build_model(tiny).state_dict()}, ckpt)
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text("base: %s\nmodel:\n  type: CANS_Plus\n  width: 8\n  middle_blk_num: 1\n"
                   "  enc_blk_nums: [1, 1, 1]\n  dec_blk_nums: [1, 1, 1]\n" % (REPO / "configs/base/Sony.yaml"))
    rng = np.random.default_rng(0)
    mosaic = (512 + rng.random((120, 160)) * 2000).astype(np.uint16)
    write_dng(str(tmp_path / "shot.dng"), mosaic, cfa="RGGB", black=512, white=16383)
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, str(REPO / "scripts/infer.py"), "-c", str(cfg), "--checkpoint", str(ckpt),
                           str(tmp_path / "shot.dng"), "--out", str(out), "--no-progress", "--device", "cuda"],
                          capture_output=True, text=True, timeout=600, env=dict(os.environ))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "torch.compile" in proc.stdout + proc.stderr  # test.fast is on by default on CUDA
    from PIL import Image
    assert Image.open(out / "shot.png").size == (160, 120)


# --------------------------------------------------------------------------------------------------
# tiled inference on the GPU: the memory probe, bounded peak memory, the out-of-memory fallback
# --------------------------------------------------------------------------------------------------

def _tiny_cans_plus():
    from cans.config import validate
    cfg = validate({"name": "tiny", "model": {"type": "CANS_Plus", "width": 8, "middle_blk_num": 1,
                                               "enc_blk_nums": [1, 1, 1, 1], "dec_blk_nums": [1, 1, 1, 1]}})
    torch.manual_seed(0)
    return build_model(cfg).to(DEV).eval()


@torch.no_grad()
def test_tiles_bound_peak_memory_and_auto_plans_for_free_memory():
    from cans.tiling import auto_tile, measure_bytes_per_pixel, run_with_fallback
    net = _tiny_cans_plus()
    x = torch.rand(1, 4, 512, 768, device=DEV)
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    whole_rgb, _, _ = run_with_fallback(net, x, tile=None, log=lambda *_: None)
    whole_peak = torch.cuda.max_memory_allocated() - base
    torch.cuda.reset_peak_memory_stats()
    tiled_rgb, _, used = run_with_fallback(net, x, tile=128, overlap=16, log=lambda *_: None)
    tiled_peak = torch.cuda.max_memory_allocated() - base
    assert used == 128
    # activations scale with the tile, not the frame (the outputs themselves are frame-sized)
    assert tiled_peak < 0.5 * whole_peak, (tiled_peak, whole_peak)
    assert rgb_psnr(tiled_rgb, whole_rgb) > 40.0
    per_pixel = measure_bytes_per_pixel(net, DEV)
    assert per_pixel > 0
    tile = auto_tile(net, DEV, (512, 768))
    assert tile is None or tile >= 64      # None: the whole frame fits this GPU


@torch.no_grad()
def test_out_of_memory_on_the_whole_frame_retries_in_tiles():
    from cans.tiling import run_with_fallback
    net = _tiny_cans_plus()
    x = torch.rand(1, 4, 256, 384, device=DEV)
    calls = {"n": 0}
    forward = net.forward

    def fail_on_the_whole_frame(inp, *a, **k):
        calls["n"] += 1
        if inp.shape[-2:] == x.shape[-2:]:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return forward(inp, *a, **k)

    net.forward = fail_on_the_whole_frame
    messages = []
    rgb, raw, used = run_with_fallback(net, x, tile=None, log=messages.append)
    assert used is not None and rgb.shape[-2:] == (512, 768) and calls["n"] > 1
    assert any("out of memory" in m.lower() for m in messages)


# --------------------------------------------------------------------------------------------------
# the Triton kernel inside the compiled fast path (the custom operator cans::dwconv7_reflect under
# inductor): one graph, the outputs and gradients of the eager model without the swap
# --------------------------------------------------------------------------------------------------

def test_triton_swap_under_inductor_compile():
    pytest.importorskip("triton")
    from torch._dynamo.testing import CompileCounterWithBackend

    from cans.engine.fastpath import compile_model
    from cans.kernels import swap_rde_dwconv

    ref, net = _tiny_twins()
    assert swap_rde_dwconv(net) > 0
    counter = CompileCounterWithBackend("inductor")
    run = compile_model(net, plan_fast_path(DEV, True), backend=counter)  # the fast path's compile, inductor
    set_backend_flags(plan_fast_path(DEV, False))  # TF32 off: float32 against float32
    x = torch.rand(1, 4, 40, 36, device=DEV)
    outs = []
    for model in (run, ref):
        rgb, raw = model(x)
        (rgb.square().mean() + raw.abs().mean()).backward()
        outs.append((rgb.detach(), raw.detach()))
    assert counter.frame_count == 1  # the operator is one node of the graph, no graph break around it
    for name, got, exp in zip(("rgb", "raw"), *outs):
        err = (got - exp).abs().max().item() / max(exp.abs().max().item(), 1e-6)
        assert err < 1e-4, f"{name}: compiled with the kernel differs from eager by {err:.2e} of the maximum"
    _assert_same_grads(ref, net, rtol=1e-3)


def test_triton_swap_follows_autocast():
    """Under bf16 autocast a float32 input runs the kernel in bfloat16, as autocast runs the
    convolution it replaces (a custom operator is not autocast: the module casts)."""
    pytest.importorskip("triton")
    from cans.kernels import TritonDWConv7

    torch.manual_seed(0)
    conv = torch.nn.Conv2d(8, 8, 7, padding=3, padding_mode="reflect", groups=8).to(DEV)
    swapped = TritonDWConv7.from_conv(conv)
    x = torch.rand(2, 8, 40, 36, device=DEV)
    set_backend_flags(plan_fast_path(DEV, False))
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        expected, got = conv(x), swapped(x)
    assert expected.dtype == got.dtype == torch.bfloat16
    assert (got.float() - expected.float()).abs().max().item() <= 3e-2 * expected.float().abs().max().item()


# --------------------------------------------------------------------------------------------------
# compiled evaluation over every padding residue: the device's own guards (its choice of convolution
# kernel by size) may add graphs; aot_eager traces as inductor does, without building kernels
# --------------------------------------------------------------------------------------------------

def test_compiled_evaluation_over_every_padding_residue():
    from torch._dynamo.testing import CompileCounterWithBackend

    from cans.engine.fastpath import FastPlan, compile_eval_model

    torch.manual_seed(0)
    model = build_model({"type": "CANS_Plus", "width": 4, "middle_blk_num": 1, "enc_blk_nums": [1, 1, 1, 1],
                         "dec_blk_nums": [1, 1, 1, 1]}).to(DEV).eval()
    m, base = model.multiple, model.min_input_size
    sizes = [(base + 3 * k, base + 5 * k + 2) for k in range(m)]   # every residue of 16, both sides
    counter = CompileCounterWithBackend("aot_eager")
    calls = []

    def backend(gm, example_inputs):
        compiled = counter(gm, example_inputs)
        return lambda *args: calls.append(1) or compiled(*args)

    set_backend_flags(plan_fast_path(DEV, False))
    evaluation = compile_eval_model(model, FastPlan("cuda", compile=True), backend=backend)
    with torch.no_grad():
        for k, (h, w) in enumerate(sizes):
            x = torch.rand(1, 4, h, w, device=DEV)
            got = evaluation(x)
            assert len(calls) == k + 1, f"{h}x{w} ran eagerly"
            for a, b in zip(got, model(x)):
                assert torch.allclose(a, b, atol=1e-5)
    assert counter.frame_count <= 3, f"{counter.frame_count} graphs for {len(sizes)} sizes"
