"""cans.engine.fastpath: what the fast path enables per device (no GPU needed), and that the
compiled model has no graph breaks and compiles once per input size, evaluation at most 3 times
over frame sizes of every padding residue, training once over an epoch with a partial last batch
(dynamo with a counting backend: no inductor build, so it is quick on the CPU)."""

import pytest
import torch
from helpers import REPO

from cans.config import load_config
from cans.engine.fastpath import apply_fast_path, compile_model, plan_fast_path, plan_from_config
from cans.kernels import triton_available
from cans.models import build_model


def test_cpu_plan_changes_nothing():
    for fast in (True, False):
        plan = plan_fast_path("cpu", fast, training=True)
        assert not plan.active and plan.tf32 is None and plan.cudnn_benchmark is None and not plan.compile
    assert plan_fast_path("cpu", True, compile=True).compile  # the older train.compile switch still compiles


def test_cuda_plan_without_a_gpu():
    plan = plan_fast_path(torch.device("cuda"), True, training=True)
    assert plan.tf32 and plan.cudnn_benchmark and plan.compile and plan.fused_adamw and not plan.triton_dwconv
    assert plan_fast_path("cuda:0", True, training=False).fused_adamw is False  # no optimiser at test time
    assert plan_fast_path("cuda", True, deterministic=True).cudnn_benchmark is False
    assert plan_fast_path("cuda", True, triton_dwconv=True).triton_dwconv == triton_available()
    off = plan_fast_path("cuda", False, training=True)
    assert off.tf32 is False and not off.compile and not off.fused_adamw and not off.active
    assert "TF32 off" in off.describe() and "torch.compile" in plan.describe()


def test_plan_from_config_switches():
    cfg = load_config(str(REPO / "configs/CANS_Plus/Sony.yaml"))
    assert cfg["train"]["fast"] is True and cfg["test"]["fast"] is True  # the default
    assert plan_from_config(cfg, "cuda", "train").compile and plan_from_config(cfg, "cuda", "test").compile
    assert not plan_from_config(cfg, "cpu", "train").active
    off = load_config(str(REPO / "configs/CANS_Plus/Sony.yaml"), ["train.fast=false", "test.fast=false"])
    assert not plan_from_config(off, "cuda", "train").compile and not plan_from_config(off, "cuda", "test").compile
    tri = load_config(str(REPO / "configs/CANS_Plus/Sony.yaml"), ["test.triton_dwconv=true"])
    assert plan_from_config(tri, "cuda", "test").triton_dwconv == triton_available()


def test_applying_the_cpu_plan_leaves_model_and_flags_alone():
    model = torch.nn.Conv2d(1, 1, 1)
    flags = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark)
    run, plan = apply_fast_path(model, plan_fast_path("cpu", True, training=True))
    assert run is model and not plan.active
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
            torch.backends.cudnn.benchmark) == flags


def test_trainer_on_the_cpu_stays_eager(tmp_path):
    from helpers import TinyPairs, make_cfg

    from cans.train.trainer import Trainer

    tr = Trainer(make_cfg(tmp_path, epochs=1), train_set=TinyPairs(n=2, size=16), valid_set=False, progress=False,
                 device=torch.device("cpu"))
    assert tr.train_model is tr.model and tr.eval_model is tr.model and not tr.fast.active
    tr.close()


TINY = {"type": "CANS_Plus", "width": 4, "middle_blk_num": 1, "enc_blk_nums": [1, 1], "dec_blk_nums": [1, 1]}


@pytest.mark.parametrize("mtype", ["CANS", "CANS_Plus"])
def test_compiled_model_one_graph_per_size(mtype):
    from torch._dynamo.testing import CompileCounter

    torch._dynamo.reset()
    counter = CompileCounter()
    torch.manual_seed(0)
    model = build_model(dict(TINY, type=mtype))
    run = compile_model(model, plan_fast_path("cuda", True), backend=counter)
    try:
        model.eval()
        with torch.no_grad():
            full = torch.rand(1, 4, 18, 22)  # needs padding (to multiples of 4) inside the forward
            expected = model(full)
            got = run(full)
            assert counter.frame_count == 1  # one graph: no graph break in the forward
            for a, b in zip(got, expected):
                assert torch.allclose(a, b, atol=1e-6)
            run(torch.rand(1, 4, 18, 22))
            assert counter.frame_count == 1  # same size: no recompilation
        model.train()
        crop = torch.rand(1, 4, 16, 16)
        for _ in range(2):
            rgb, raw = run(crop)
            (rgb.mean() + raw.mean()).backward()
        assert counter.frame_count == 2  # the training crops: one more graph, once
    finally:
        torch._dynamo.reset()


def test_without_triton_the_cuda_plan_stays_eager_and_says_why(monkeypatch):
    import cans.kernels
    monkeypatch.setattr(cans.kernels, "triton_available", lambda: False)
    plan = plan_fast_path("cuda", True, training=True, triton_dwconv=True)
    assert plan.tf32 and plan.fused_adamw and not plan.compile and not plan.triton_dwconv
    assert "eager" in plan.describe() and "needs Triton" in plan.describe()
    assert plan_fast_path("cuda", True).note == plan.note != ""
    monkeypatch.setattr(cans.kernels, "triton_available", lambda: True)
    assert plan_fast_path("cuda", True).compile and plan_fast_path("cuda", True).note == ""


def _graph_shapes(dynamic):
    """Input shapes of the graphs dynamo hands the backend for two frame sizes, compiled with ``dynamic``."""
    from cans.engine.fastpath import FastPlan

    graphs = []

    def record(gm, example_inputs):
        graphs.append([tuple(node.meta["example_value"].shape) for node in gm.graph.nodes
                       if node.op == "placeholder" and isinstance(node.meta.get("example_value"), torch.Tensor)])
        return gm.forward

    torch._dynamo.reset()
    torch.manual_seed(0)
    model = build_model(dict(TINY, type="CANS_Plus")).eval()
    run = (compile_model(model, FastPlan("cuda", compile=True), backend=record) if dynamic is False
           else torch.compile(model, backend=record, dynamic=dynamic))
    try:
        with torch.no_grad():
            for size in ((18, 22), (26, 30)):  # both need padding inside the forward
                run(torch.rand(1, 4, *size))
    finally:
        torch._dynamo.reset()
    return graphs


def test_a_new_frame_size_compiles_with_static_shapes():
    """The fast path's compile (dynamic=False) traces a second frame size with plain integer
    shapes: no symbolic shapes, so none of the padding arithmetic's symbolic-shape warnings
    (``pow_by_natural``) that PyTorch's automatic dynamic shapes gave."""
    static = _graph_shapes(False)
    assert len(static) == 2
    assert all(isinstance(d, int) for graph in static for shape in graph for d in shape)
    auto = _graph_shapes(None)  # PyTorch's default: the second size is traced with symbolic sizes
    assert any(not isinstance(d, int) for shape in auto[-1] for d in shape)


# -------------- validation / test of many frame sizes: compiled throughout, never the silent eager fallback

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


@pytest.mark.cuda_path
def test_evaluation_of_nine_frame_sizes_stays_compiled():
    """Training compiles its crop; validation then sees 9 frame sizes. With one static-shape
    cache for both (before the fix) the 8th size hit dynamo's recompilation limit and it and
    the 9th ran eagerly, with a warning only; compile_eval_model compiles the first size with
    static shapes and one dynamic graph covers the rest."""
    from cans.engine.fastpath import FastPlan, compile_eval_model, compile_model

    plan = FastPlan("cuda", compile=True)
    torch.manual_seed(0)
    model = build_model(TINY)
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


def test_evaluation_over_every_padding_residue_stays_compiled():
    """Frame sizes covering every residue of the model's multiple (4 here) in both axes, so every
    pattern of zero / non-zero pads. With the pad and the crop inside the dynamic-shape graph,
    each pattern was a guard (the ``if`` that skips a zero pad, the cropped views' contiguity):
    8 graphs, dynamo's limit, then eager. Padded outside the graph: at most 3, none eager."""
    from cans.engine.fastpath import FastPlan, PaddedEval, compile_eval_model
    from cans.models import unwrap_model

    torch.manual_seed(0)
    model = build_model(TINY).eval()
    m, base = model.multiple, model.min_input_size
    sizes = [(base + 5 * i, base + 2 + 5 * j) for i in range(m) for j in range(m)]
    assert {h % m for h, _ in sizes} == {w % m for _, w in sizes} == set(range(m))
    backend = CountingBackend()
    torch._dynamo.reset()
    try:
        evaluation = compile_eval_model(model, FastPlan("cuda", compile=True), backend=backend)
        assert isinstance(evaluation, PaddedEval) and unwrap_model(evaluation) is model
        with torch.no_grad():
            for k, (h, w) in enumerate(sizes):
                x = torch.rand(1, 4, h, w)
                got = evaluation(x)
                assert backend.calls == k + 1, f"{h}x{w} ran eagerly"
                for a, b in zip(got, model(x)):
                    assert a.shape == b.shape
                    torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    finally:
        torch._dynamo.reset()
    assert backend.graphs <= 3, f"{backend.graphs} graphs for {len(sizes)} sizes"


def test_evaluation_of_another_model_compiles_its_forward():
    """A model without ``forward_padded`` / ``pad_run_crop`` is compiled whole, as before."""
    from cans.engine.fastpath import EvalEntry, FastPlan, compile_eval_model

    conv = torch.nn.Conv2d(4, 4, 3, padding=1)
    run = compile_eval_model(conv, FastPlan("cuda", compile=True), backend="eager")
    assert isinstance(run._orig_mod, EvalEntry) and not run._orig_mod.padded
    x = torch.rand(1, 4, 8, 8)
    try:
        assert torch.equal(run(x), conv(x))
    finally:
        torch._dynamo.reset()


def test_compiled_training_sees_one_batch_shape(tmp_path, monkeypatch):
    """5 samples in batches of 2: the epoch's last partial batch is dropped (it was a second input
    shape for the static-shape compiled step: a second compile), so one graph for two epochs; a
    resume at batch 1 gives the uninterrupted epoch's second batch. A set smaller than a batch
    keeps its one partial batch."""
    from helpers import TinyPairs, make_cfg

    import cans.engine.fastpath as fastpath
    from cans.train.loaders import TrainLoader
    from cans.train.trainer import Trainer

    cfg = make_cfg(tmp_path, epochs=2, compile=True, save_per_epoch=0)
    loading = TrainLoader(TinyPairs(n=5, size=16), cfg, torch.device("cpu"), seed=3)
    loading.set_epoch(1)
    batches = [b["img_file"] for b in loading.loader]
    assert [len(b) for b in batches] == [2, 2] and len(loading.loader) == 2
    loading.set_epoch(1, start_batch=1)
    assert [b["img_file"] for b in loading.loader] == batches[1:] and len(loading.loader) == 1
    small = TrainLoader(TinyPairs(n=1, size=16), cfg, torch.device("cpu"), seed=3)
    assert [len(b["img_file"]) for b in small.loader] == [1]

    counter = CountingBackend()
    compile_model = fastpath.compile_model
    monkeypatch.setattr(fastpath, "compile_model", lambda model, plan: compile_model(model, plan, backend=counter))
    torch._dynamo.reset()
    try:
        tr = Trainer(cfg, train_set=TinyPairs(n=5, size=16), valid_set=False, progress=False,
                     device=torch.device("cpu"))
        summary = tr.fit()
        tr.close()
    finally:
        torch._dynamo.reset()
    assert summary["steps"] == 4 and counter.calls == 4
    assert counter.graphs == 1, f"{counter.graphs} training graphs"
