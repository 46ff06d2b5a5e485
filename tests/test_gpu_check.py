"""The GPU check (cans/tools/gpu_check.py, cans/cli/gpu_check.py, scripts/gpu_check.py, scripts/gpu_check.sh) without a GPU.

Its verdict: a mode that disagrees with plain float32, or that did not run, or ran out of its time,
is FAIL (fake benchmark results and a fake benchmark process); its plan: every part fits one
command of 600 s, and the deadline ends what runs and still writes the report; the rehearsal runs
part 1 (and the steps of the other parts) on the CPU; without a GPU it says so and exits 0."""
import json
import os
import subprocess
import sys
import time

import pytest
import torch
from helpers import REPO, one_error_line

from cans.cli import gpu_check as gpu_check_cmd
from cans.tools import gpu_check
from cans.tools.gpu_check import DEFAULT_DEADLINE, MIN_PSNR, MIN_PSNR_BF16, Check, judge_mode, parts, reserve

NO_GPU = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: gpu_check would run the checks")


@NO_GPU
def test_gpu_check_without_a_gpu(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run(["bash", str(REPO / "scripts/gpu_check.sh"), str(out)], capture_output=True, text=True,
                          timeout=120, env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable, "HOME": str(tmp_path)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "no CUDA GPU here" in proc.stdout and "NOT run" in proc.stdout
    info = json.loads((out / "imports.json").read_text())
    assert info["cuda_available"] is False and "torch" in info["found"]
    assert not (out / "summary.md").exists()  # no check ran


@NO_GPU
def test_gpu_check_skips_a_python_without_torch(tmp_path):
    """With PYTHON unset, a `python` on the PATH that cannot import torch (another interpreter than
    the one holding PyTorch, as on some GPU images) is passed over for `python3`."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").write_text("#!/bin/sh\necho 'No module named torch' >&2\nexit 1\n")
    (bin_dir / "python").chmod(0o755)
    (bin_dir / "python3").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')  # a link would lose a venv
    (bin_dir / "python3").chmod(0o755)
    out = tmp_path / "out"
    proc = subprocess.run(["bash", str(REPO / "scripts/gpu_check.sh"), str(out)], capture_output=True, text=True,
                          timeout=120, env={"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "no CUDA GPU here" in proc.stdout
    assert "torch" in json.loads((out / "imports.json").read_text())["found"]


def test_gpu_check_needs_an_outdir():
    proc = subprocess.run(["bash", str(REPO / "scripts/gpu_check.sh")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "usage: bash scripts/gpu_check.sh OUTDIR" in proc.stderr


@pytest.mark.parametrize("args, names", [
    (["--part", "99"], ["--part 99", "--plan"]),
    (["--part", "two"], ["--part", "two"]),
    (["--part", "2", "--steps", "pytest"], ["--part", "--steps"]),
    (["--deadline", "0"], ["--deadline 0"]),
    (["--deadline", "soon"], ["--deadline", "soon"]),
    (["--modes", "fastest"], ["fastest"]),
])
def test_bad_input_is_one_error_line(tmp_path, capsys, args, names):
    with pytest.raises(SystemExit) as exc:
        gpu_check_cmd.main([str(tmp_path / "out"), *args])
    one_error_line(exc.value.code, capsys.readouterr().err, *names)
    assert not (tmp_path / "out").exists()   # refused before anything was made


# ------------------------------------------------------------------------- the plan: parts that fit one command

def test_every_part_fits_one_command_and_the_parts_cover_everything():
    """The default (part 1) and every other part: their time limits, taken in full one after the other
    (side by side where the steps run side by side), end before the deadline less the time kept to
    stop and report; together the parts run every step and every mode of both models."""
    budget = DEFAULT_DEADLINE - reserve(DEFAULT_DEADLINE)
    assert DEFAULT_DEADLINE <= 600 - 60 and budget < DEFAULT_DEADLINE
    found = parts()
    first = found[0]
    assert first.steps == gpu_check.PART1_STEPS and first.modes == gpu_check.PART1_MODES
    assert {"pytest", "demo", "resume", "infer"} <= set(first.steps)
    assert {"plain", "fast", "bf16"} <= set(first.modes["CANS_Plus"])
    for n, part in enumerate(found, 1):
        assert 0 < part.ceiling() <= budget, (n, part, part.ceiling())
    assert {s for p in found for s in p.steps} == set(gpu_check.STEPS)
    covered = {(m, x) for p in found for m, xs in p.modes.items() for x in xs}
    assert covered == {(m, x) for m in gpu_check.MODELS for x in gpu_check.all_modes()}
    assert sum(len(xs) for p in found for xs in p.modes.values()) == len(covered)   # each mode in one part only


def test_the_plan_adds_each_limit_after_what_it_waits_for():
    """Part 1's latest ends, from BUDGETS: the benchmark alone, then pytest beside the demo data, the CPU
    checkpoint beside the demos, then the resumes beside infer.py; its ceiling is the longer branch."""
    def lim(key):
        return gpu_check.BUDGETS[key][0]

    ends = parts()[0].ends()
    modes = gpu_check.PART1_MODES["CANS_Plus"]
    bench = lim("benchmark start") + sum(lim(gpu_check.mode_budget(m)) for m in modes)
    assert ends[f"benchmark CANS_Plus {modes[-1]}"] == bench
    assert ends["pytest -m cuda"] == bench + lim("pytest -m cuda")
    data = bench + lim("demo data")
    assert ends["demo run"] == data + lim("demo run") and ends["CPU checkpoint"] == data + lim("CPU checkpoint")
    after = data + max(lim("demo run"), lim("CPU checkpoint"))
    assert ends["resume run"] == after + lim("resume run")
    assert ends["infer.py compiler failure"] == after + lim("infer.py compiler failure")
    assert parts()[0].ceiling() == max(ends.values())
    # what is not selected takes no time; the compiled modes get the compiled limit
    assert gpu_check.plan_ends(("pytest",), {}, lim) == {"pytest -m cuda": lim("pytest -m cuda")}
    assert gpu_check.mode_budget("fast") == gpu_check.mode_budget("cudagraphs") == "compiled mode"
    assert gpu_check.mode_budget("fast", cuda=False) == "eager mode"


def test_plan_lists_the_parts(capsys):
    assert gpu_check_cmd.main(["--plan"]) == 0
    text = capsys.readouterr().out
    sums = [float(line.split("add up to ")[1].split(" s")[0]) for line in text.splitlines() if line.startswith("part")]
    assert len(sums) == len(parts()) and sums == [p.ceiling() for p in parts()]
    assert max(sums) <= DEFAULT_DEADLINE - reserve(DEFAULT_DEADLINE)
    assert "part 1 (the default: bash scripts/gpu_check.sh OUTDIR)" in text and "pytest -m cuda" in text


# ------------------------------------------------------------------------- judging one benchmark mode

def result(psnr=None, identical=False, **extra):
    r = {"train_step_ms": 20.0, "infer_ms": 50.0, "train_peak_gb": 3.0, "infer_peak_gb": 2.0}
    if psnr is not None:
        r["rgb_psnr_vs_plain"], r["rgb_max_abs_diff_vs_plain"] = psnr, 1e-3
    elif identical:
        r["rgb_psnr_vs_plain"], r["rgb_max_abs_diff_vs_plain"] = None, 0.0
    return dict(r, **extra)


def test_a_mode_that_disagrees_with_plain_float32_fails():
    assert judge_mode("fast", result(MIN_PSNR + 5))[0] == "PASS"
    status, why = judge_mode("fast", result(MIN_PSNR - 0.5))
    assert status == "FAIL" and "below 60 dB" in why and "59.5 dB" in why
    assert judge_mode("cudagraphs", result(float("nan")))[0] == "FAIL"
    # bfloat16 has a bar of its own, below float32's
    assert judge_mode("bf16_compile", result(MIN_PSNR_BF16 + 1))[0] == "PASS"
    assert judge_mode("fast_triton", result(MIN_PSNR_BF16 + 1))[0] == "FAIL"
    assert judge_mode("bf16", result(MIN_PSNR_BF16 - 1)) == (
        "FAIL", f"train 20.0 ms, infer 50.0 ms, peak 3.00 / 2.00 GB; RGB {MIN_PSNR_BF16 - 1:.1f} dB against plain "
                f"float32, below {MIN_PSNR_BF16:.0f} dB")
    assert judge_mode("plain", result(identical=True))[0] == "PASS"
    assert judge_mode("tf32", result())[0] == "FAIL"   # no fidelity figure: not a pass


def test_a_mode_that_did_not_run_fails():
    for entry, words in ((None, "did not run"), ({"mode": "cudagraphs", "skipped": "over the time budget"},
                                                 "did not run: over the time budget"),
                         ({"mode": "fast", "timed_out": 360}, "ran out of its 360 s"),
                         ({"mode": "fast", "timed_out": 12, "deadline": 540}, "stopped at the run's deadline (540 s)"),
                         ({"mode": "fast", "not_run": "the benchmark ended (exit 1)"}, "did not run: the benchmark"),
                         ({"mode": "fast", "error": "RuntimeError: boom"}, "error: RuntimeError: boom")):
        status, why = judge_mode("cudagraphs", entry)
        assert status == "FAIL" and words in why, (entry, why)


# ------------------------------------------------------------------------- the verdict of a whole run (faked)

@pytest.fixture
def fake_gpu(monkeypatch):
    """main() believes it has a GPU; the benchmark's results are whatever the test sets."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Fake GPU")
    runs = []

    def fake_results(check, model, modes, windows=None):
        runs.append((model, list(modes)))
        return {m: dict(result(identical=m in ("plain", "authors_flags")) if m in ("plain", "authors_flags")
                        else result(MIN_PSNR_BF16 + 2 if "bf16" in m else MIN_PSNR + 10), mode=m) for m in modes}

    monkeypatch.setattr(gpu_check, "run_benchmark_modes", fake_results)
    return runs


def test_every_mode_right_passes(tmp_path, fake_gpu, capsys):
    assert gpu_check_cmd.main([str(tmp_path), "--steps", "benchmark-CANS_Plus"]) == 0
    assert fake_gpu == [("CANS_Plus", list(gpu_check.MODE_ORDER) + ["tf32", "channels_last", "compile",
                                                                     "fused_adamw"])]
    rows = json.loads((tmp_path / "summary.json").read_text())["rows"]
    assert len(rows) == 13 and all(r["status"] == "PASS" for r in rows)
    out = capsys.readouterr().out
    assert out.rstrip().splitlines()[-1] == "verdict: PASS (only the steps asked for): all 13 checks passed"
    assert "more than the" in out   # 13 modes do not fit the deadline: it says so before it starts


def test_a_part_runs_its_modes_and_says_which_part(tmp_path, fake_gpu, capsys):
    last = len(parts())
    expected = parts()[last - 1]
    assert set(expected.steps) <= {"benchmark-CANS_Plus", "benchmark-CANS"}   # the last part: modes only
    assert gpu_check_cmd.main([str(tmp_path), "--part", str(last)]) == 0
    assert fake_gpu == [(m, list(expected.modes[m])) for m in gpu_check.MODELS if m in expected.modes]
    out = capsys.readouterr().out
    assert out.rstrip().splitlines()[-1].startswith(f"verdict: PASS (part {last} of {last}): all")
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["part"] == last and summary["deadline_s"] == DEFAULT_DEADLINE
    assert max(summary["plan_ends_s"].values()) == expected.ceiling()


def test_a_wrong_number_or_a_missing_mode_fails_the_run(tmp_path, fake_gpu, monkeypatch, capsys):
    fake = gpu_check.run_benchmark_modes

    def wrong(check, model, modes, windows=None):
        results = fake(check, model, modes)
        results["bf16_compile"]["rgb_psnr_vs_plain"] = 31.0      # disagrees with plain float32
        del results["cudagraphs"]                                # never ran
        results["fast_triton"] = {"mode": "fast_triton", "skipped": "over the time budget"}
        return results

    monkeypatch.setattr(gpu_check, "run_benchmark_modes", wrong)
    assert gpu_check_cmd.main([str(tmp_path), "--steps", "benchmark-CANS_Plus"]) == 1
    rows = {r["name"]: r for r in json.loads((tmp_path / "summary.json").read_text())["rows"]}
    failed = sorted(n for n, r in rows.items() if r["status"] == "FAIL")
    assert failed == ["benchmark CANS_Plus bf16_compile", "benchmark CANS_Plus cudagraphs",
                      "benchmark CANS_Plus fast_triton"]
    assert "31.0 dB against plain float32, below 57 dB" in rows["benchmark CANS_Plus bf16_compile"]["details"]
    assert "did not run" in rows["benchmark CANS_Plus cudagraphs"]["details"]
    out = capsys.readouterr().out.rstrip().splitlines()
    assert out[-1].startswith("verdict: FAIL") and "benchmark CANS_Plus cudagraphs" in out[-1]
    assert "| benchmark CANS_Plus cudagraphs | FAIL |" in (tmp_path / "summary.md").read_text()


def test_a_step_that_needs_a_failed_step_fails_naming_it(tmp_path, fake_gpu, monkeypatch):
    """resume and infer need the demo's data: when it fails they are FAIL rows saying so, not absent."""
    monkeypatch.setattr(gpu_check, "SYNTHETIC", "import sys\nsys.exit(3)\n")
    assert gpu_check_cmd.main([str(tmp_path), "--steps", "resume", "infer"]) == 1
    rows = {r["name"]: r for r in json.loads((tmp_path / "summary.json").read_text())["rows"]}
    assert list(rows) == ["demo data", "CPU checkpoint", "demo fast vs eager", "resume from a CPU checkpoint",
                          "resume from a fast=false checkpoint", "infer.py compiler failure"]
    assert all(r["status"] == "FAIL" for r in rows.values())
    assert "exit 3; see synthetic_sid.log" in rows["demo data"]["details"]
    assert "it needs demo data, which failed" in rows["CPU checkpoint"]["details"]
    assert "it needs demo data, which failed" in rows["demo fast vs eager"]["details"]
    assert "it needs CPU checkpoint, which failed" in rows["resume from a CPU checkpoint"]["details"]


# ------------------------------------------------------------------------- the deadline

HANGS = "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\ntime.sleep(60)\n"   # needs a SIGKILL


def _gone(pid):
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_the_deadline_ends_what_runs_and_the_report_is_written_before_it(tmp_path, monkeypatch, capsys):
    """A benchmark that hangs past the deadline: its mode is a FAIL row saying the deadline stopped it, the
    modes and steps after it are FAIL rows by name, and the report and verdict are out before the deadline."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Fake GPU")
    jobs = []
    job = gpu_check.Job

    def tracked(*args, **kwargs):
        jobs.append(job(*args, **kwargs))
        return jobs[-1]

    monkeypatch.setattr(gpu_check, "Job", tracked)
    monkeypatch.setattr(gpu_check, "benchmark_command", lambda check, model, modes, out: [sys.executable, "-c", HANGS])
    deadline = 3.0
    start = time.monotonic()
    assert gpu_check_cmd.main([str(tmp_path), "--steps", "benchmark-CANS_Plus", "throughput", "--modes", "plain",
                               "fast", "--deadline", str(deadline)]) == 1
    took = time.monotonic() - start
    assert took < deadline, took
    assert all(j.rc is not None and _gone(j.proc.pid) for j in jobs) and len(jobs) == 1
    rows = {r["name"]: r for r in json.loads((tmp_path / "summary.json").read_text())["rows"]}
    assert list(rows) == ["benchmark CANS_Plus plain", "benchmark CANS_Plus fast", "test.py --throughput"]
    assert all(r["status"] == "FAIL" for r in rows.values())
    assert "stopped at the run's deadline (3 s)" in rows["benchmark CANS_Plus plain"]["details"]
    assert "did not run: the run's deadline (3 s) came first" in rows["benchmark CANS_Plus fast"]["details"]
    assert rows["test.py --throughput"]["details"] == "not run: the run's deadline (3 s) came first"
    assert capsys.readouterr().out.rstrip().splitlines()[-1].startswith("verdict: FAIL (only the steps asked for)")


def test_the_deadline_ends_side_by_side_steps_together(tmp_path, fake_gpu, monkeypatch):
    """pytest and the demo data running side by side at the deadline (one ignores SIGTERM) are both
    ended in time, and the steps that wait for the data are FAIL rows naming the deadline."""
    monkeypatch.setattr(gpu_check, "SYNTHETIC", HANGS)
    jobs = []

    def pytest_job(check):
        jobs.append(check.job("pytest -m cuda", [sys.executable, "-c", HANGS], check.out / "pytest_cuda.log"))
        return jobs[-1]

    monkeypatch.setattr(gpu_check, "pytest_job", pytest_job)
    deadline = 4.0
    start = time.monotonic()
    assert gpu_check_cmd.main([str(tmp_path), "--steps", "pytest", "resume", "--deadline", str(deadline)]) == 1
    took = time.monotonic() - start
    assert took < deadline, took
    assert jobs and all(_gone(j.proc.pid) for j in jobs)
    rows = {r["name"]: r["details"] for r in json.loads((tmp_path / "summary.json").read_text())["rows"]}
    assert rows["demo data"].startswith("stopped at the run's deadline (4 s)")
    assert rows["pytest -m cuda"].startswith("stopped at the run's deadline (4 s)")
    for name in ("CPU checkpoint", "demo fast vs eager", "resume from a CPU checkpoint",
                 "resume from a fast=false checkpoint"):
        assert rows[name] == "not run: the run's deadline (4 s) came first", (name, rows[name])


# ------------------------------------------------------------------------- each mode's own time (a fake benchmark)

FAKE_BENCHMARK = r"""
import json, sys, time
args = sys.argv[1:]
modes = args[args.index("--modes") + 1:args.index("--out")]
out, results = args[args.index("--out") + 1], []
for mode in modes:
    if mode.startswith("hangs"):
        time.sleep(60)
    if mode == "slow":
        time.sleep(1.5)
    if mode == "crashes":
        sys.exit(3)
    results.append({"mode": mode, "train_step_ms": 1.0, "infer_ms": 2.0, "rgb_psnr_vs_plain": None,
                    "rgb_max_abs_diff_vs_plain": 0.0})
    json.dump({"device": "fake", "results": results}, open(out, "w"))
"""


@pytest.fixture
def fake_benchmark(tmp_path, monkeypatch):
    script = tmp_path / "fake_benchmark.py"
    script.write_text(FAKE_BENCHMARK)
    monkeypatch.setattr(gpu_check, "benchmark_command",
                        lambda check, model, modes, out: [sys.executable, str(script), "--modes", *modes, "--out",
                                                          str(out)])
    monkeypatch.setattr(gpu_check, "mode_limit", lambda check, mode: 1.0)
    monkeypatch.setitem(gpu_check.BUDGETS, "benchmark start", (1.0, 1.0))


def test_a_mode_past_its_time_limit_is_named_and_the_next_modes_still_run(tmp_path, fake_benchmark):
    check = Check(out=tmp_path, rehearsal=True)
    modes = ["plain", "hangs", "hangs_too", "fast", "crashes", "bf16"]
    got = gpu_check.run_benchmark_modes(check, "CANS", modes)
    assert got["plain"]["train_step_ms"] == 1.0 and got["fast"]["train_step_ms"] == 1.0
    # hangs had its own second and what plain left of the start's second and of its own
    assert 1 <= got["hangs"]["timed_out"] <= 3 and got["hangs"]["seconds"] < 10 and "after" not in got["hangs"]
    assert f"ran out of its {got['hangs']['timed_out']} s (its limit 1 s and " in judge_mode("hangs", got["hangs"])[1]
    # hangs_too ran in the process started after hangs ran out of time, and its row says so
    assert got["hangs_too"]["timed_out"] == 1 and got["hangs_too"]["after"] == "hangs"
    assert "after hangs ran out of its own" in judge_mode("hangs_too", got["hangs_too"])[1]
    assert "not_run" in got["crashes"] and "not_run" in got["bf16"] and "exit 3" in got["bf16"]["not_run"]
    assert (tmp_path / "benchmark_CANS.part3.json").is_file()   # the modes after one that hung: a new process
    report = json.loads((tmp_path / "benchmark_CANS.json").read_text())
    assert [r["mode"] for r in report["results"]] == modes
    assert [judge_mode(m, got[m])[0] for m in modes] == ["PASS", "FAIL", "FAIL", "PASS", "FAIL", "FAIL"]


def test_a_mode_has_the_time_the_modes_before_it_left(tmp_path, fake_benchmark):
    """slow needs 1.5 s against its own 1 s: alone it runs out of time; after a quick mode, within the
    plan's end for it, it passes (a step's limit is its share, and unused shares roll on)."""
    check = Check(out=tmp_path, rehearsal=True)
    alone = gpu_check.run_benchmark_modes(check, "CANS", ["slow"], [(time.monotonic() + 1.0, False)])
    assert alone["slow"]["timed_out"] == 1
    now = time.monotonic()
    got = gpu_check.run_benchmark_modes(check, "CANS", ["plain", "slow"], [(now + 2.0, False), (now + 3.0, False)])
    assert got["plain"]["train_step_ms"] == 1.0 and got["slow"]["train_step_ms"] == 1.0, got


# ------------------------------------------------------------------------- the rehearsal on the CPU

class Rehearsal:
    """``bash scripts/gpu_check.sh OUT ARGS`` with GPU_CHECK_REHEARSAL=1, started at once; ``result()`` waits."""

    def __init__(self, base, name, *args):
        self.out = base / name
        env = {"PATH": "/usr/bin:/bin", "PYTHON": sys.executable, "HOME": str(base), "GPU_CHECK_REHEARSAL": "1",
               "GPU_CHECK_DATA": str(base / f"sid_{name}"), "OMP_NUM_THREADS": "1"}
        self.proc = subprocess.Popen(["bash", str(REPO / "scripts/gpu_check.sh"), str(self.out), *args], text=True,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        self.done = None

    def result(self):
        if self.done is None:
            stdout, stderr = self.proc.communicate(timeout=600)
            tsv = self.out / "summary.tsv"
            rows = [line.split("\t") for line in tsv.read_text().splitlines()] if tsv.is_file() else []
            self.done = (self.proc.returncode, stdout, stderr, {r[0]: r for r in rows})
        return self.done


@pytest.fixture(scope="module", autouse=True)
def rehearsals(request, tmp_path_factory):
    """The default rehearsal (part 1) and one of the steps part 1 leaves out, read by the tests at the
    end of this file. Started when this module's first test starts, when a test that reads them is
    selected: they run on the CPU while the tests above mostly wait on timers and subprocesses."""
    if not any("rehearsals" in item.fixturenames and item.module is request.module
               and item.originalname.startswith("test_rehearsal") for item in request.session.items):
        yield {}
        return
    base = tmp_path_factory.mktemp("rehearsals")
    runs = {"part1": Rehearsal(base, "part1"),
            "rest": Rehearsal(base, "rest", "--steps", "throughput", "benchmark-CANS", "--modes", "plain", "bf16")}
    yield runs
    for run in runs.values():
        if run.proc.poll() is None:
            run.proc.kill()


CPU_MODES = ["plain", "fast", "bf16"]   # part 1's modes the CPU runs (not triton_dwconv: CUDA only)
PART1_ROWS = ([f"benchmark CANS_Plus {m}" for m in CPU_MODES]
              + ["demo data", "CPU checkpoint", "demo fast vs eager", "pytest -m cuda", "resume from a CPU checkpoint",
                 "resume from a fast=false checkpoint", "infer.py compiler failure"])


def test_rehearsal_of_the_default_runs_part_1_and_passes(rehearsals):
    """`bash scripts/gpu_check.sh OUT` with GPU_CHECK_REHEARSAL=1 runs part 1 on the CPU with tiny sizes:
    every step, the JSON it reads and the summary are exercised before the tool meets a GPU."""
    rc, stdout, stderr, rows = rehearsals["part1"].result()
    assert rc == 0, stdout[-3000:] + stderr[-3000:]
    assert list(rows) == PART1_ROWS
    assert all(r[1] == "PASS" for r in rows.values()), rows
    out = rehearsals["part1"].out
    summary = (out / "summary.md").read_text()
    assert "REHEARSAL" in summary and summary in stdout  # the table is the last thing printed
    assert stdout.rstrip().endswith(f"verdict: PASS (part 1 of {len(parts())}): all {len(PART1_ROWS)} checks passed")
    assert "not rows in a rehearsal" in summary and "triton_dwconv" in summary
    assert f"plan: part 1 of {len(parts())}" in summary
    report = json.loads((out / "benchmark_CANS_Plus.json").read_text())
    assert [r["mode"] for r in report["results"]] == CPU_MODES
    assert f"train {report['results'][0]['train_step_ms']:.1f} ms" in rows["benchmark CANS_Plus plain"][3]
    assert "dB against plain float32 (>= 57)" in rows["benchmark CANS_Plus bf16"][3]
    assert "skipped" in rows["pytest -m cuda"][3]  # no GPU: the CUDA tests skip


def test_rehearsal_trains_resumes_and_infers(rehearsals):
    rc, _, _, rows = rehearsals["part1"].result()
    out = rehearsals["part1"].out
    assert "|diff|" in rows["demo fast vs eager"][3] and "3 x eager spread" in rows["demo fast vs eager"][3]
    for run in ("demo_fast", "demo_eager", "demo_eager2", "ckpt_cpu", "resume_from_cpu", "resume_from_eager"):
        assert json.loads((out / run / "train_summary.json").read_text())["final"]["psnr"] > 0
    for run in ("resume_from_cpu", "resume_from_eager"):
        assert "resumed from" in (out / f"{run}.log").read_text()
    assert "epochs 1 -> 2" in rows["resume from a CPU checkpoint"][3]
    assert "epochs 1 -> 2" in rows["resume from a fast=false checkpoint"][3]
    # infer.py with the simulated compiler failure: one attempt for three photos, the hint once
    assert "1 compile attempt(s) for 3 photos, the hint shown 1 time(s)" in rows["infer.py compiler failure"][3]
    assert "compile attempts: 1; exit status 1" in (out / "infer_compile_failure.log").read_text()


def test_rehearsal_of_the_other_steps(rehearsals):
    """The steps part 1 leaves out (the throughput, the CANS benchmark) as --steps runs them."""
    rc, stdout, stderr, rows = rehearsals["rest"].result()
    assert rc == 0, stdout[-3000:] + stderr[-3000:]
    assert list(rows) == ["test.py --throughput", "benchmark CANS plain", "benchmark CANS bf16"]
    assert all(r[1] == "PASS" for r in rows.values()), rows
    assert "ms/image mean" in rows["test.py --throughput"][3]
    assert stdout.rstrip().endswith("verdict: PASS (only the steps asked for): all 3 checks passed")


def test_rehearsal_with_no_time_fails_each_step_by_name(tmp_path):
    out = tmp_path / "out"
    env = {"PATH": "/usr/bin:/bin", "PYTHON": sys.executable, "HOME": str(tmp_path), "GPU_CHECK_REHEARSAL": "1",
           "GPU_CHECK_DATA": str(tmp_path / "sid"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(["bash", str(REPO / "scripts/gpu_check.sh"), str(out), "--budget-scale", "0.001",
                           "--steps", "benchmark-CANS", "pytest", "demo", "throughput"],
                          capture_output=True, text=True, timeout=600, env=env)
    rows = {r.split("\t")[0]: r.split("\t") for r in (out / "summary.tsv").read_text().splitlines()}
    assert proc.returncode == 1
    assert rows["demo data"][1] == "FAIL" and "ran out of its 0 s" in rows["demo data"][3]
    assert rows["CPU checkpoint"][1] == "FAIL" and "it needs demo data, which failed" in rows["CPU checkpoint"][3]
    for mode in ("plain", "authors_flags", "fast", "bf16", "tf32", "channels_last", "fused_adamw"):
        # ended at its end in the plan, or (that end had passed when its turn came) not started
        row = rows[f"benchmark CANS {mode}"]
        assert row[1] == "FAIL" and ("ran out of its 0 s" in row[3] or "did not run: no time left: what ran before "
                                                                       "it used up its time in the plan" in row[3]), row
    assert rows["pytest -m cuda"][1] == "FAIL" and "ran out of its" in rows["pytest -m cuda"][3]
    assert rows["demo fast vs eager"][1] == "FAIL" and "needs demo data" in rows["demo fast vs eager"][3]
    assert rows["test.py --throughput"][1] == "FAIL" and "ran out of its" in rows["test.py --throughput"][3]
    assert proc.stdout.rstrip().splitlines()[-1].startswith("verdict: FAIL (only the steps asked for)")


def test_an_outdir_with_an_earlier_check_is_refused(tmp_path, capsys):
    """train.py never writes over a run: a second check in the same OUTDIR stops at once, plainly."""
    (tmp_path / "demo_eager").mkdir()
    assert gpu_check_cmd.main([str(tmp_path), "--rehearsal", "--steps", "demo"]) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and "demo_eager" in err and "another OUTDIR" in err
    assert not (tmp_path / "summary.md").exists()
