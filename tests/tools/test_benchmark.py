"""scripts/benchmark.py's logic runs on the CPU and reports every field for every mode; a bad
argument is one line naming the option, before anything is measured."""
import dataclasses
import importlib
import json
import math

import pytest
import torch
from helpers import DEMO, REPO, one_error_line

from cans.cli import benchmark as cmd_benchmark
from cans.config import load_config
from cans.tools.benchmark import MODES, format_table, mode_spec, rgb_psnr, run_benchmark


def command(script: str):
    """The command module behind a repository script: "scripts/infer.py" -> cans.cli.infer."""
    return importlib.import_module("cans.cli." + script.rsplit("/", 1)[-1][:-3])

TINY = ["model.width=4", "model.enc_blk_nums=[1,1,1,1]", "model.dec_blk_nums=[1,1,1,1]"]
NEEDS_CUDA_OR_SLOW_ON_CPU = {"compile", "cudagraphs", "bf16_compile", "triton_dwconv", "bf16_triton", "fast_triton"}


def test_benchmark_reports_every_mode_on_cpu():
    cfg = load_config(str(REPO / "configs/CANS_Plus/Sony.yaml"), TINY)
    out = run_benchmark(cfg, list(MODES), torch.device("cpu"), patch=128, full_size=(64, 80), warmup=0, iters=1)
    assert out["device"] == "cpu" and [r["mode"] for r in out["results"]] == list(MODES)
    assert out["train_gflop"] > 0 and out["infer_gflop"] > 0
    for r in out["results"]:
        if r["mode"] in NEEDS_CUDA_OR_SLOW_ON_CPU:
            assert r["skipped"] and "train_step_ms" not in r
            continue
        assert "error" not in r and "skipped" not in r, r
        assert r["train_step_ms"] > 0 and r["infer_ms"] > 0
        assert r["train_tflops"] > 0 and r["infer_tflops"] > 0
        assert r["train_peak_gb"] is None  # CPU: no device memory figure
        assert "rgb_psnr_vs_plain" in r
    by_mode = {r["mode"]: r for r in out["results"]}
    # same weights and input as plain: fp32 modes give plain's output, bf16 does not
    assert by_mode["plain"]["rgb_psnr_vs_plain"] is None and by_mode["plain"]["rgb_max_abs_diff_vs_plain"] == 0
    assert by_mode["fast"]["rgb_psnr_vs_plain"] is None and "eager" in by_mode["fast"]["plan"]  # nothing on CPU
    assert by_mode["authors_flags"]["rgb_psnr_vs_plain"] is None  # CUDA flags only: plain's computation
    bf16 = by_mode["bf16"]["rgb_psnr_vs_plain"]
    assert bf16 is not None and 25 < bf16 < 120 and by_mode["bf16"]["rgb_max_abs_diff_vs_plain"] > 0
    table = format_table(out)
    assert all(f"| {m} |" in table for m in MODES)


def test_fast_triton_is_the_cuda_fast_plan_with_the_kernel():
    """Decided without a GPU: fast_triton = fast + the Triton kernel on CUDA, skipped elsewhere."""
    cuda = torch.device("cuda")
    fast, tri = mode_spec("fast", cuda), mode_spec("fast_triton", cuda)
    assert fast.compile and fast.tf32 and fast.fused_adamw and not fast.triton_dwconv
    assert tri.triton_dwconv and tri.compile and not tri.needs_cuda
    assert dataclasses.replace(tri, triton_dwconv=False) == fast  # nothing else differs
    cpu = mode_spec("fast_triton", torch.device("cpu"))
    assert cpu.needs_cuda and cpu.triton_dwconv


def test_profile_lists_the_most_expensive_ops():
    cfg = load_config(str(REPO / "configs/CANS/Sony.yaml"), TINY)
    out = run_benchmark(cfg, ["plain"], torch.device("cpu"), patch=128, full_size=(64, 64), warmup=0, iters=1,
                        profile=True)
    prof = out["results"][0]["profile"]
    for phase in ("train", "infer"):
        rows = prof[phase]
        assert 0 < len(rows) <= 15
        totals = [r["total_ms"] for r in rows]
        assert totals == sorted(totals, reverse=True) and totals[0] > 0
        assert all(r["name"] and r["calls"] >= 1 for r in rows)
    assert any("conv" in r["name"] for r in prof["train"])


def test_rgb_psnr():
    ref = torch.rand(1, 3, 8, 8)
    assert rgb_psnr(ref.clone(), ref) is None
    assert math.isclose(rgb_psnr(ref + 0.01, ref), 40.0, rel_tol=1e-6)  # MSE 1e-4, peak 1


def _script():
    return cmd_benchmark


def test_script_arguments(capsys):
    script = _script()
    assert script.parse_args(["--modes", "all"]).modes == list(MODES)
    code = script.main(["--device", "cpu", "--patch", "32", "--full", "96", "128", "--modes", "plain"])
    one_error_line(code, capsys.readouterr().err, "packed sizes must be at least 49")  # the model's smallest input
    with pytest.raises(SystemExit):
        script.parse_args(["--modes", "turbo"])


def test_all_adds_the_modes_not_named_before_it():
    script = _script()
    modes = script.parse_args(["--modes", "fast", "plain", "all", "fast"]).modes
    assert modes[:2] == ["fast", "plain"] and sorted(modes) == sorted(MODES)


def test_budget_skips_the_modes_that_would_start_late_and_each_mode_is_reported_as_it_ends():
    cfg = load_config(str(REPO / "configs/CANS/Sony.yaml"), TINY)
    seen = []
    out = run_benchmark(cfg, ["plain", "tf32"], torch.device("cpu"), patch=128, full_size=(64, 64), warmup=0,
                        iters=1, budget_s=1e-6, on_result=lambda r: seen.append([m["mode"] for m in r["results"]]))
    assert seen == [["plain"], ["plain", "tf32"]]
    assert all("over the time budget" in r["skipped"] for r in out["results"])
    out = run_benchmark(cfg, ["plain"], torch.device("cpu"), patch=128, full_size=(64, 64), warmup=0, iters=1,
                        budget_s=3600)
    assert out["results"][0]["train_step_ms"] > 0


def test_script_writes_the_json_after_each_mode(tmp_path, monkeypatch):
    script = _script()
    written = []
    real = script.write_json
    monkeypatch.setattr(script, "write_json", lambda path, report: (written.append(len(report["results"])),
                                                                    real(path, report)))
    path = tmp_path / "sub" / "bench.json"
    script.main(["-c", str(REPO / "configs/CANS/Sony.yaml"), "--set", *TINY, "--device", "cpu", "--patch", "128",
                 "--full", "64", "64", "--warmup", "0", "--iters", "1", "--modes", "plain", "bf16",
                 "--out", str(path)])
    assert written == [1, 2]
    report = json.loads(path.read_text())
    assert [r["mode"] for r in report["results"]] == ["plain", "bf16"] and not list(path.parent.glob("*.tmp"))


def test_fast_mode_sets_what_the_fast_path_sets_and_flags_are_restored():
    from cans.tools import benchmark
    cuda = torch.device("cuda")  # deciding the plan touches no GPU
    fast = benchmark.mode_spec("fast", cuda)
    plan = benchmark.plan_fast_path(cuda, True, training=True)
    assert (fast.tf32, fast.cudnn_benchmark, fast.compile, fast.fused_adamw) == \
        (plan.tf32, plan.cudnn_benchmark, plan.compile, plan.fused_adamw) == (True, True, True, True)
    authors = benchmark.mode_spec("authors_flags", cuda)
    assert (authors.tf32, authors.matmul_tf32, authors.cudnn_benchmark, authors.compile) == (True, False, True, False)
    assert benchmark.mode_spec("plain", cuda).cudnn_benchmark is False
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark)
    with benchmark._flags(authors.tf32, authors.matmul_tf32, authors.cudnn_benchmark):
        assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
                torch.backends.cudnn.benchmark) == (False, True, True)
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
            torch.backends.cudnn.benchmark) == before


def test_a_failing_profiler_keeps_the_timings(monkeypatch):
    from cans.tools import benchmark

    def broken(*_a, **_k):
        raise RuntimeError("CUPTI unavailable (simulated)")

    monkeypatch.setattr(benchmark, "_profile", broken)
    cfg = load_config(str(REPO / "configs/CANS/Sony.yaml"), TINY)
    r = run_benchmark(cfg, ["plain"], torch.device("cpu"), patch=128, full_size=(64, 64), warmup=0, iters=1,
                      profile=True)["results"][0]
    assert r["train_step_ms"] > 0 and r["infer_ms"] > 0 and "error" not in r
    assert r["profile_error"] == "RuntimeError: CUPTI unavailable (simulated)"


# ---------------------------------------------- bad arguments: one line naming the option, before measuring

@pytest.mark.parametrize("script, args, names", [
    ("scripts/benchmark.py", ["--modes", "nonsense"], ["--modes", "nonsense"]),
    ("scripts/benchmark.py", ["--full", "10"], ["--full", "expected 2 arguments"]),
])
def test_argument_mistakes_name_the_option(capsys, script, args, names):
    with pytest.raises(SystemExit) as info:
        command(script).parse_args(args)
    one_error_line(info.value.code, capsys.readouterr().err, *names)


@pytest.mark.parametrize("args, names", [
    (["--device", "gpu"], ["--device gpu", "cpu, cuda"]),
    (["--out", "{tmp}"], ["--out", "{tmp}", "is a folder"]),
    (["--patch", "3"], ["--patch 3"]),
])
def test_benchmark_checks_its_arguments_before_measuring(tmp_path, capsys, args, names):
    fill = lambda s: s.replace("{tmp}", str(tmp_path))
    code = cmd_benchmark.main(["-c", DEMO, "--device", "cpu", "--modes", "plain",
                                                     *[fill(a) for a in args]])
    line = one_error_line(code, capsys.readouterr().err, *[fill(n) for n in names])  # through run_cli
    assert code == 2 and line.startswith("error: ")
    assert not list(tmp_path.iterdir())
