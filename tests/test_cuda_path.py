"""The CUDA path's logic, checked on the CPU (``@pytest.mark.cuda_path``; these run everywhere).

A simulated compiler failure or CUDA error, the ``aot_eager`` backend standing in for inductor,
meta and fake tensors standing in for GPU tensors, counted compilations and host reads: each
test fails on the code before the fix it checks (issue 23).
"""
import importlib.util

import numpy as np
import pytest
import torch

from cans.models import build_model

from helpers import REPO

pytestmark = pytest.mark.cuda_path

TINY = {"type": "CANS_Plus", "width": 4, "middle_blk_num": 1, "enc_blk_nums": [1, 1], "dec_blk_nums": [1, 1]}


def tiny_model(**changes):
    torch.manual_seed(0)
    return build_model(dict(TINY, **changes))


# ---------------------------------------------------------------------------------------------
# infer.py: a compiler failure or a CUDA error stops the run at the first file
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def infer_setup(tmp_path_factory):
    """Three small Bayer DNGs, a tiny CANS++ checkpoint and its config."""
    pytest.importorskip("rawpy")
    pytest.importorskip("tifffile")
    from cans.data.synthetic import write_dng

    folder = tmp_path_factory.mktemp("infer")
    rng = np.random.default_rng(0)
    inputs = folder / "in"
    inputs.mkdir()
    for k in range(3):
        write_dng(str(inputs / f"photo_{k}.dng"), rng.integers(512, 4000, size=(64, 96), dtype=np.uint16),
                  cfa="RGGB", black=512, white=16383)
    ckpt = folder / "tiny.pth"
    torch.save({"model": tiny_model().state_dict()}, ckpt)
    cfg = folder / "tiny.yaml"
    cfg.write_text("base: %s\nmodel:\n" % (REPO / "configs/base/Sony.yaml")
                   + "".join(f"  {k}: {v}\n" for k, v in TINY.items()))
    return inputs, ckpt, cfg


def _infer_main():
    spec = importlib.util.spec_from_file_location("infer_script", REPO / "scripts/infer.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script.main


def _run_infer(infer_setup, tmp_path, monkeypatch, wrap):
    """scripts/infer.py on the three files, the fast path's model replaced by ``wrap(model)``."""
    import cans.engine.fastpath as fastpath

    inputs, ckpt, cfg = infer_setup
    original = fastpath.fast_model_for_test

    def fast_model_for_test(cfg_, model, device, log=print):
        model, plan = original(cfg_, model, device, log)
        return wrap(model), plan

    monkeypatch.setattr(fastpath, "fast_model_for_test", fast_model_for_test)
    return _infer_main()(["-c", str(cfg), "--checkpoint", str(ckpt), str(inputs), "--out", str(tmp_path / "out"),
                          "--no-progress", "--device", "cpu"])


def test_infer_stops_at_the_first_compiler_failure_with_the_hint_once(infer_setup, tmp_path, monkeypatch, capsys):
    """A failing compiler (what inductor raises on a CUDA machine without a working Triton) is
    tried once, not once per file, and the run ends with the one-line hint naming test.fast."""
    attempts = []

    def failing_backend(gm, example_inputs):
        attempts.append(len(example_inputs))
        raise RuntimeError("Cannot find a working triton installation (simulated)")

    torch._dynamo.reset()
    try:
        status = _run_infer(infer_setup, tmp_path, monkeypatch,
                            lambda model: torch.compile(model, backend=failing_backend, dynamic=False))
    finally:
        torch._dynamo.reset()
    err = capsys.readouterr().err
    assert status == 1
    assert len(attempts) == 1, f"{len(attempts)} compile attempts for 3 files"
    assert err.count("torch.compile failed") == 1 and "--set" in err and "test.fast=false" in err, err
    assert "(simulated)" in err and "FAILED" not in err and "Traceback" not in err
    assert not list((tmp_path / "out").glob("*.png"))


def test_infer_stops_at_the_first_cuda_error(infer_setup, tmp_path, monkeypatch, capsys):
    """A CUDA error is sticky: the first one stops the run with one line naming the file."""
    error = getattr(torch, "AcceleratorError", RuntimeError)
    calls = []

    class Broken(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.module = net

        def forward(self, x):
            calls.append(tuple(x.shape))
            raise error("CUDA error: an illegal memory access was encountered (simulated)")

    status = _run_infer(infer_setup, tmp_path, monkeypatch, Broken)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert status == 1 and len(calls) == 1, (status, calls)
    assert len(lines) == 1 and lines[0].startswith("error: ") and "photo_0.dng" in lines[0], err
    assert "illegal memory access" in lines[0] and "test.fast=false" in lines[0] and "0 of 3" in lines[0]


def _raise_from(filename: str, message: str):
    """Raise ``RuntimeError(message)`` from a frame whose file is ``filename`` (as code the
    compiler generated, or the compiler itself, would)."""
    namespace = {}
    exec(compile(f"def boom():\n    raise RuntimeError({message!r})\n", filename, "exec"), namespace)
    namespace["boom"]()


def test_compiler_and_cuda_failures_are_told_from_errors_of_one_file():
    from torch._dynamo.exc import BackendCompilerFailed, TorchDynamoException

    from cans.inference import compiler_failure, cuda_failure

    def caught(fn, *args):
        try:
            fn(*args)
        except Exception as exc:  # noqa: BLE001 - the point is to classify it
            return exc
        raise AssertionError("nothing raised")

    inductor = caught(_raise_from, "/site-packages/torch/_inductor/codecache.py", "C++ compile error (simulated)")
    generated = caught(_raise_from, "/tmp/torchinductor_me/ab/cabc.py", "kernel failed (simulated)")
    user = caught(_raise_from, "/home/me/cans/models/networks.py", "shape mismatch")
    assert compiler_failure(inductor) and compiler_failure(generated) and not compiler_failure(user)
    assert compiler_failure(BackendCompilerFailed.__new__(BackendCompilerFailed))
    assert isinstance(BackendCompilerFailed.__new__(BackendCompilerFailed), TorchDynamoException)
    assert not compiler_failure(torch.OutOfMemoryError("CUDA out of memory (simulated)"))
    assert cuda_failure(RuntimeError("CUDA error: device-side assert triggered"))
    assert cuda_failure(getattr(torch, "AcceleratorError", RuntimeError)("CUDA error: misaligned address"))
    assert not cuda_failure(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"))
    assert not cuda_failure(RuntimeError("two-pass tiling: no statistics collected")) and not cuda_failure(user)


def test_a_compiler_runtime_error_stops_run_inference_as_a_compile_failure(infer_setup, tmp_path):
    """A RuntimeError from inside the compiler (not wrapped by dynamo) stops the run as a
    TorchDynamoException, which cans.cli.run_cli turns into the one-line hint."""
    from torch._dynamo.exc import TorchDynamoException

    from cans.cli import run_cli
    from cans.inference import run_inference

    inputs, _, _ = infer_setup
    calls = []

    class FailsInInductor(torch.nn.Module):
        block_size, in_channel, min_input_size = 2, 4, 16

        def forward(self, x):
            calls.append(1)
            _raise_from("/site-packages/torch/_inductor/runtime/triton_heuristics.py", "autotuning failed (simulated)")

    files = sorted(str(p) for p in inputs.glob("*.dng"))
    with pytest.raises(TorchDynamoException, match="autotuning failed"):
        run_inference(FailsInInductor(), files, str(tmp_path), 1.0, "cpu", progress=False)
    assert len(calls) == 1
    assert run_cli(lambda: run_inference(FailsInInductor(), files, str(tmp_path), 1.0, "cpu", progress=False)) == 1


# ---------------------------------------------------------------------------------------------
# loss.prior.weighting: gradient_agreement under torch.compile, after a resume
# ---------------------------------------------------------------------------------------------

INDUCTOR_SLOW = ("inductor compiles the tiny model's forward and backward in 30 s (its C++ kernels cached) to "
                 "120 s (cold) on 2 CPU cores; run it with CANS_SLOW_COMPILE_TESTS=1")


@pytest.mark.parametrize("backend", [
    "aot_eager",
    pytest.param("inductor", marks=pytest.mark.skipif(not __import__("os").environ.get("CANS_SLOW_COMPILE_TESTS"),
                                                      reason=INDUCTOR_SLOW)),
])
def test_gradient_agreement_under_compile_after_a_resume(backend, monkeypatch):
    """A resumed run whose first compiled backward is a plain one (step 1, prior every 2 steps),
    then the prior's retain_graph=True gradients at step 2: the same gamma and gradients as eager.
    Before the fix the step-2 update failed ("compiled with non-empty donated buffers") with
    aot_eager, and with inductor on the CPU when its caches were cold."""
    import copy

    import torch._functorch.config as functorch_config

    from cans.train.prior import AdaptivePrior

    monkeypatch.setattr(functorch_config, "donated_buffer", True)   # PyTorch's default, whatever ran before
    if backend == "inductor":                                       # a warm cache hides the failure
        import torch._inductor.config as inductor_config
        monkeypatch.setattr(inductor_config, "fx_graph_cache", False)
        monkeypatch.setattr(functorch_config, "enable_autograd_cache", False)
    model = tiny_model()
    eager = copy.deepcopy(model)
    priors = {"compiled": AdaptivePrior("gradient_agreement", every=2),
              "eager": AdaptivePrior("gradient_agreement", every=2)}
    torch._dynamo.reset()
    run = torch.compile(model, backend=backend, dynamic=False)
    x = torch.rand(1, 4, 16, 16, generator=torch.Generator().manual_seed(1))
    try:
        for step in (1, 2):   # the steps of a run resumed after step 0
            grads = {}
            for name, net in (("compiled", run), ("eager", eager)):
                net.zero_grad(set_to_none=True)
                rgb, raw = net(x)
                terms = {"raw": raw.abs().mean(), "rgb": (rgb - 0.5).abs().mean()}
                priors[name].maybe_update(step, terms, net)
                w = priors[name].weights()
                (w["raw"] * terms["raw"] + w["rgb"] * terms["rgb"]).backward()
                grads[name] = torch.cat([p.grad.reshape(-1) for p in getattr(net, "_orig_mod", net).parameters()])
            assert priors["compiled"].gamma == pytest.approx(priors["eager"].gamma, abs=1e-5)
            assert torch.allclose(grads["compiled"], grads["eager"], atol=1e-5, rtol=1e-4), step
    finally:
        torch._dynamo.reset()
    assert priors["eager"].gamma != 0.5   # step 2 did update gamma


# ---------------------------------------------------------------------------------------------
# --tile auto and the out-of-memory retry: the memory probe runs the eager network
# ---------------------------------------------------------------------------------------------

def test_memory_probe_runs_the_eager_network_not_the_compiled_wrapper(monkeypatch):
    """The probe behind --tile auto and the out-of-memory retry measures the module the tiles run:
    the compiled wrapper is not called (no compile for the probe's 128 x 128 size)."""
    from torch._dynamo.testing import CompileCounter

    import cans.tiling as tiling

    # the CUDA memory counters, as a GPU would give them: 3 bytes per packed pixel of the probe
    for name in ("synchronize", "reset_peak_memory_stats"):
        monkeypatch.setattr(torch.cuda, name, lambda *a, **k: None)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda *a, **k: 1000)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda *a, **k: 1000 + 3 * 128 * 128)
    net = tiny_model().eval()
    eager_calls = []
    net.register_forward_hook(lambda mod, inputs, output: eager_calls.append(tuple(inputs[0].shape)))
    counter = CompileCounter()
    torch._dynamo.reset()
    try:
        compiled = torch.compile(net, backend=counter, dynamic=False)
        per_pixel = tiling.measure_bytes_per_pixel(compiled, torch.device("cpu"))
    finally:
        torch._dynamo.reset()
    assert counter.frame_count == 0, "the probe compiled the wrapper"
    assert eager_calls == [(1, 4, tiling.PROBE_SIZE, tiling.PROBE_SIZE)]
    assert per_pixel == pytest.approx(3.0)


# ---------------------------------------------------------------------------------------------
# validation / test of many frame sizes: compiled throughout, never the silent eager fallback
# ---------------------------------------------------------------------------------------------

class CountingBackend:
    """``aot_eager`` that counts the graphs it compiles and the calls of the compiled graphs."""

    def __init__(self):
        from torch._dynamo.testing import CompileCounterWithBackend
        self.compiler = CompileCounterWithBackend("aot_eager")
        self.calls = 0

    @property
    def graphs(self):
        return self.compiler.frame_count

    def __call__(self, gm, example_inputs):
        compiled = self.compiler(gm, example_inputs)

        def run(*args):
            self.calls += 1
            return compiled(*args)
        return run


def test_evaluation_of_nine_frame_sizes_stays_compiled():
    """Training compiles its crop; validation then sees 9 frame sizes. With one static-shape
    cache for both (before the fix) the 8th size hit dynamo's recompilation limit and it and
    the 9th ran eagerly, with a warning only; compile_eval_model compiles the first size with
    static shapes and one dynamic graph covers the rest."""
    from cans.engine.fastpath import FastPlan, compile_eval_model, compile_model

    plan = FastPlan("cuda", compile=True)
    model = tiny_model()
    train_backend, eval_backend = CountingBackend(), CountingBackend()
    messages = []
    torch._dynamo.reset()
    try:
        train = compile_model(model, plan, backend=train_backend)
        rgb, raw = train(torch.rand(1, 4, 16, 16))
        (rgb.mean() + raw.mean()).backward()
        evaluation = compile_eval_model(model, plan, backend=eval_backend, log=messages.append)
        model.eval()
        with torch.no_grad():
            for k in range(9):
                x = torch.rand(1, 4, 18 + 4 * k, 22 + 4 * k)   # 9 sizes, all padded inside the forward
                got = evaluation(x)
                assert eval_backend.calls == k + 1, f"frame size {k + 1} of 9 ran eagerly"
                for a, b in zip(got, model(x)):
                    assert torch.allclose(a, b, atol=1e-5)
    finally:
        torch._dynamo.reset()
    assert train_backend.graphs == 1
    assert eval_backend.graphs <= 3, f"{eval_backend.graphs} graphs for 9 sizes"
    assert len(messages) == 1 and "static shapes for the first frame size, then dynamic shapes" in messages[0]


# ---------------------------------------------------------------------------------------------
# the Triton launchers run on the tensors' GPU, not the current one
# ---------------------------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------------------------
# SSIM: no host reads of the device's tensors
# ---------------------------------------------------------------------------------------------

def _ssim_by_convolution(x, y, data_range=1.0):
    """SSIM straight from its definition: the 11 x 11 Gaussian window (sigma 1.5) as one 2-D
    float64 convolution, valid part, population statistics, 0..255 scale (docs/testing.md)."""
    import torch.nn.functional as F

    coords = torch.arange(11, dtype=torch.float64) - 5.0
    g = torch.exp(-coords ** 2 / (2 * 1.5 ** 2))
    g = g / g.sum()
    window = torch.outer(g, g)[None, None]
    x = x.double().clamp(0, data_range) * (255.0 / data_range)
    y = y.double().clamp(0, data_range) * (255.0 / data_range)
    b, c = x.shape[:2]
    scores = torch.zeros(b, dtype=torch.float64)
    for ch in range(c):
        xc, yc = x[:, ch:ch + 1], y[:, ch:ch + 1]
        mx, my = F.conv2d(xc, window), F.conv2d(yc, window)
        vx, vy = F.conv2d(xc * xc, window) - mx * mx, F.conv2d(yc * yc, window) - my * my
        vxy = F.conv2d(xc * yc, window) - mx * my
        c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
        m = ((2 * mx * my + c1) * (2 * vxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
        scores += m.flatten(1).mean(dim=1) / c
    return scores


def test_ssim_reads_nothing_back_from_the_device_and_keeps_its_values():
    """SSIM on meta tensors (which refuse any read of a value, as a read of a GPU tensor would
    synchronise): before the fix the window's taps were read back one by one from the device
    (float(t)); now they are built on the CPU once. The scores are those of the definition."""
    from cans.evaluate import metrics

    out = metrics.ssim(torch.empty(2, 3, 24, 30, device="meta"), torch.empty(2, 3, 24, 30, device="meta"))
    assert out.device.type == "meta" and out.shape == (2,)
    metrics.window_taps.cache_clear()
    g = torch.Generator().manual_seed(3)
    x, y = torch.rand(2, 3, 24, 30, generator=g), torch.rand(2, 3, 24, 30, generator=g)
    y = (0.7 * x + 0.3 * y).clamp(0, 1)
    assert torch.allclose(metrics.ssim(x, y), _ssim_by_convolution(x, y), rtol=0, atol=1e-12)
    raw = torch.rand(1, 4, 16, 16, generator=g)
    assert torch.allclose(metrics.ssim(raw * 0.5, raw * 0.4, data_range=0.5),
                          _ssim_by_convolution(raw * 0.5, raw * 0.4, 0.5), rtol=0, atol=1e-12)
    assert metrics.window_taps.cache_info().misses == 1     # one window for every call
