"""The GPU check: proves the CUDA path on one GPU, with a verdict that can fail.

    python scripts/gpu_check.py OUTDIR [--steps STEP ...] [--modes MODE ...]
    bash scripts/gpu_check.sh OUTDIR      (the same, with the first Python on the PATH that has torch)

Nothing is downloaded. Steps, in this order (``--steps`` picks some; a step also runs the steps
whose output it needs):

* ``data``: the demo's synthetic SID, and one demo epoch trained on the CPU (its checkpoint is
  resumed on CUDA), before anything is timed;
* ``benchmark-CANS_Plus``: ``scripts/benchmark.py`` at the paper's sizes, alone on the GPU, one
  row per mode: each mode must run and agree with plain float32 (RGB PSNR of the full frame
  against ``plain``: at least 60 dB, the bfloat16 modes 57 dB: :data:`MIN_PSNR_BF16` says why);
* ``pytest`` (``pytest -m cuda tests/``: passes with no test skipped) and ``demo`` (the demo
  trained with ``train.fast`` on and twice off; the fast run's final PSNR within max(0.5 dB,
  3 x the two eager runs' difference) of the first eager run's), side by side;
* ``resume`` (one more epoch on CUDA, compiled, from the CPU checkpoint and from the eager
  demo's) and ``infer`` (``scripts/infer.py`` with a compiler made to fail: tried once, one-line
  hint, exit 1), side by side;
* ``throughput`` (``test.py --throughput``, full frame) and ``benchmark-CANS``.

Every step runs in processes of its own, each with its own time limit (:data:`BUDGETS`, seconds;
``--budget-scale`` multiplies them all): a step that fails, runs out of time or could not run (a
module missing, a step it needs failed) is a FAIL row that says why, and the verdict, the last
line printed, is PASS only when every row passed. Exit status 0 on PASS, 1 on FAIL; on a machine
without CUDA, a message and 0 (nothing was checked). ``--rehearsal`` runs every step on the CPU
with tiny sizes (the benchmark's CUDA-only and compiled modes are not rows there): it checks this
tool, and no figure of it is a GPU result.

The GPU limits are sized for a cold H100 (empty inductor caches), from what each step costs in the
rehearsal and the compile time of a CUDA graph (about a minute each, not measured here: no GPU):
an eager benchmark mode is a few seconds of timing behind a process start (120 s), a compiled mode
compiles an inference graph and a training graph (360 s), ``pytest -m cuda`` compiles about six
times (900 s), a compiled demo or resume compiles its training step and validation (600 s / 420 s).
docs/performance.md has the table.
"""
from __future__ import annotations

import importlib
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

REPO = Path(__file__).resolve().parents[2]

#: RGB PSNR (dB, peak 1, the full frame) a mode must reach against plain float32
MIN_PSNR = 60.0
#: the same for the bfloat16 modes: bf16 autocast measured 58.9 - 61.7 dB on the CPU (CANS and
#: CANS++, widths 8 and 32, frames 96 x 128 to 384 x 576), and 48.4 - 54.9 dB with the reference's
#: half-precision LayerNorm (``model.amp_layernorm: reference``), the error this bar is to catch
MIN_PSNR_BF16 = 57.0

STEPS = ("data", "benchmark-CANS_Plus", "pytest", "demo", "resume", "infer", "throughput", "benchmark-CANS")
NEEDS = {"demo": ("data",), "resume": ("data", "demo"), "infer": ("data", "demo")}
#: the benchmark's modes in the order they run: the baselines and the default first
MODE_ORDER = ("plain", "authors_flags", "fast", "bf16", "bf16_triton", "triton_dwconv", "cudagraphs", "bf16_compile",
              "fast_triton")

#: time limits in seconds, (GPU, rehearsal); a benchmark process's first mode also gets "benchmark start"
BUDGETS: Dict[str, Tuple[float, float]] = {
    "demo data": (120, 120),
    "CPU checkpoint": (300, 180),
    "benchmark start": (90, 60),      # importing torch, plain's reference output, the FLOP count
    "eager mode": (120, 60),
    "channels_last": (180, 60),       # about 3 s per full-frame inference on an H200
    "compiled mode": (360, 600),      # an inference and a training graph, about a minute each, cold
    "pytest -m cuda": (900, 240),
    "demo run": (600, 240),
    "resume run": (420, 240),
    "infer.py compiler failure": (240, 120),
    "test.py --throughput": (300, 120),
}
REQUIRED = ("torch", "numpy", "yaml", "tqdm", "pytest", "einops")
DATA_MODULES = ("rawpy", "tifffile", "skimage")
OPTIONAL = ("triton", "PIL", "tensorboard")
STEP_MODULES = {"data": DATA_MODULES, "demo": DATA_MODULES, "resume": DATA_MODULES, "infer": DATA_MODULES}
#: the run folders each step makes in OUTDIR (train.py and test.py never write over an earlier run)
STEP_FOLDERS = {"data": ("ckpt_cpu",), "demo": ("demo_fast", "demo_eager", "demo_eager2"),
                "resume": ("resume_from_cpu", "resume_from_eager"), "infer": ("infer_compile_failure",),
                "throughput": ("throughput",)}


@dataclass
class Row:
    """One check of the summary: ``status`` PASS or FAIL."""
    name: str
    status: str
    seconds: float
    details: str


@dataclass
class Check:
    """What one run of the check knows: where it writes, how it runs, what it found."""
    out: Path
    rehearsal: bool = False
    data_dir: Path = Path("/tmp/cans_gpu_check_sid")
    scale: float = 1.0
    python: str = sys.executable
    steps: Tuple[str, ...] = STEPS
    modes: Optional[Tuple[str, ...]] = None   # None: every mode the device runs
    missing: Tuple[str, ...] = ()
    rows: List[Row] = field(default_factory=list)

    def limit(self, key: str) -> float:
        gpu, rehearsal = BUDGETS[key]
        return (rehearsal if self.rehearsal else gpu) * self.scale

    def add(self, name: str, status: str, seconds: float, details: str) -> Row:
        row = Row(name, status, round(seconds, 1), details)
        self.rows.append(row)
        print(f"{status} {name} ({row.seconds:.0f} s): {details}", flush=True)
        return row

    def passed(self, *names: str) -> bool:
        found = {r.name: r.status for r in self.rows}
        return all(found.get(n) == "PASS" for n in names)

    # sizes: the paper's on a GPU, tiny in a rehearsal
    def benchmark_sizes(self) -> List[str]:
        if self.rehearsal:
            return ["--device", "cpu", "--patch", "128", "--full", "96", "128", "--warmup", "0", "--iters", "1",
                    "--set", "model.width=8"]
        return ["--warmup", "2", "--iters", "5", "--profile"]

    def demo_set(self) -> List[str]:
        extra = (["model.width=8", "train.epochs=1", "data.train.repeat=1", "train.num_threads=1",
                  "data.num_workers=1", "data.synthetic.height=192", "data.synthetic.width=288"] if self.rehearsal
                 else ["train.num_threads=null", "data.num_workers=2"])
        return [f"data.data_path={self.data_dir}", "train.test_at_end=false", "train.validate_at_start=false", *extra]


# ------------------------------------------------------------------------------------------ processes

class Job:
    """A command in a process group of its own (a time limit ends it and its children), its
    output written to ``log`` (stderr to ``err`` when given; ``append``: after what ``log`` holds)."""

    def __init__(self, cmd: Sequence[str], log: Path, limit: float, env: Optional[Dict[str, str]] = None,
                 err: Optional[Path] = None, append: bool = False):
        self.limit, self.rc, self.timed_out = limit, None, False
        self.start = time.monotonic()
        environ = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
        self._out = open(log, "ab" if append else "wb")
        self._err = open(err, "wb") if err is not None else subprocess.STDOUT
        self.proc = subprocess.Popen(list(cmd), cwd=REPO, env=environ, stdout=self._out, stderr=self._err,
                                     stdin=subprocess.DEVNULL, start_new_session=True)

    @property
    def seconds(self) -> float:
        return time.monotonic() - self.start

    def poll(self) -> Optional[int]:
        """The exit status once the process ended (a process past its limit is ended: -9)."""
        if self.rc is None:
            rc = self.proc.poll()
            if rc is None and self.seconds > self.limit:
                self.kill()
                self.timed_out, rc = True, -9
            if rc is not None:
                self.rc = rc
                self._out.close()
                if self._err is not subprocess.STDOUT:
                    self._err.close()
        return self.rc

    def kill(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.proc.pid, sig)
            except (ProcessLookupError, PermissionError):
                break
            try:
                self.proc.wait(timeout=5)
                break
            except subprocess.TimeoutExpired:
                continue

    def wait(self) -> int:
        while self.poll() is None:
            time.sleep(0.2)
        return self.rc


def wait_all(*jobs: Job) -> None:
    """Wait for every job, each ended at its own limit."""
    while any(j.poll() is None for j in jobs):
        time.sleep(0.2)


def ended(job: Job) -> str:
    """How a job ended, for a row: 'exit 1' or 'ran out of its 300 s'."""
    return f"ran out of its {job.limit:.0f} s" if job.timed_out else f"exit {job.rc}"


def read_json(path: Path) -> Optional[dict]:
    """The JSON in ``path``, or None (missing or not yet whole)."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


# ------------------------------------------------------------------------------------------ imports

def find_modules(names: Sequence[str]) -> Tuple[Dict[str, str], List[str]]:
    """({module: version} of those that import, [those that do not])."""
    found, missing = {}, []
    for name in names:
        try:
            module = importlib.import_module(name)
        except Exception:
            missing.append(name)
        else:
            found[name] = str(getattr(module, "__version__", "?"))
    return found, missing


# ------------------------------------------------------------------------------------------ benchmark

def benchmark_modes(check: Check) -> List[str]:
    """The modes that are rows: every mode on a GPU; in a rehearsal those the CPU runs (not the
    CUDA-only ones, not the compiled ones: inductor's CPU build takes minutes). ``--modes`` narrows."""
    import torch

    from .benchmark import MODES, mode_spec

    order = list(MODE_ORDER) + [m for m in MODES if m not in MODE_ORDER]
    if check.rehearsal:
        cpu = torch.device("cpu")
        order = [m for m in order if not mode_spec(m, cpu).needs_cuda and not mode_spec(m, cpu).compile]
    if check.modes is not None:
        order = [m for m in order if m in check.modes] + [m for m in check.modes if m not in order]
    return order


def not_in_rehearsal() -> List[str]:
    """The benchmark's modes a rehearsal leaves out (CUDA only, or compiled)."""
    import torch

    from .benchmark import MODES, mode_spec

    cpu = torch.device("cpu")
    return [m for m in MODES if mode_spec(m, cpu).needs_cuda or mode_spec(m, cpu).compile]


def mode_limit(check: Check, mode: str) -> float:
    """The time limit of one benchmark mode on this check's device."""
    from .benchmark import mode_spec

    if mode == "channels_last":
        return check.limit("channels_last")
    compiled = mode_spec(mode, "cpu" if check.rehearsal else "cuda").compile
    return check.limit("compiled mode" if compiled else "eager mode")


def benchmark_command(check: Check, model: str, modes: Sequence[str], out: Path) -> List[str]:
    """scripts/benchmark.py for ``modes`` of ``model``'s Sony config, its JSON rewritten to ``out`` after each."""
    return [check.python, "scripts/benchmark.py", "-c", f"configs/{model}/Sony.yaml", *check.benchmark_sizes(),
            "--modes", *modes, "--out", str(out)]


def run_benchmark_modes(check: Check, model: str, modes: Sequence[str]) -> Dict[str, dict]:
    """Each mode's result of ``scripts/benchmark.py`` (its JSON entry, ``seconds`` added), each mode
    with its own time limit: the benchmark writes its JSON after every mode, so a mode past its
    limit ends the process, is reported ``timed_out``, and a new process runs the modes after it.
    A mode the process never reached is reported ``not_run``. All of it: OUT/benchmark_MODEL.json."""
    log = check.out / f"benchmark_{model}.log"
    results: Dict[str, dict] = {}
    header: Dict[str, object] = {}
    pending, part = list(modes), 0
    while pending:
        part += 1
        path = check.out / f"benchmark_{model}.part{part}.json"
        path.unlink(missing_ok=True)   # an earlier run's, in the same OUTDIR
        first = check.limit("benchmark start") + mode_limit(check, pending[0])
        job = Job(benchmark_command(check, model, pending, path), log, math.inf, append=part > 1)
        seen, since, limit = 0, job.start, first
        while True:
            rc = job.poll()
            report = read_json(path) or {}
            for r in report.get("results", [])[seen:]:
                now = time.monotonic()
                results[r["mode"]] = dict(r, seconds=round(now - since, 1))
                seen, since = seen + 1, now
                limit = mode_limit(check, pending[seen]) if seen < len(pending) else math.inf
            header = header or {k: v for k, v in report.items() if k != "results"}
            if rc is not None or seen == len(pending):
                job.limit = job.seconds + 60   # after its last mode it prints the report and exits
                job.wait()
                for m in pending[seen:]:
                    results[m] = {"mode": m, "not_run": f"the benchmark ended ({ended(job)}) before this mode; "
                                                         f"see {log.name}"}
                pending = []
                break
            if time.monotonic() - since > limit:
                job.kill()
                job.wait()
                m = pending[seen]
                results[m] = {"mode": m, "timed_out": round(limit), "seconds": round(time.monotonic() - since, 1)}
                pending = pending[seen + 1:]
                break
            time.sleep(0.2)
    merged = dict(header, results=[results[m] for m in modes])
    (check.out / f"benchmark_{model}.json").write_text(json.dumps(merged, indent=2) + "\n")
    return results


def judge_mode(mode: str, result: Optional[dict]) -> Tuple[str, str]:
    """(PASS or FAIL, why) for one mode's benchmark entry: it must have run, and its full-frame RGB
    output must agree with plain float32's (:data:`MIN_PSNR`, :data:`MIN_PSNR_BF16` for bfloat16)."""
    from .benchmark import SPECS

    if result is None:
        return "FAIL", "did not run: no result"
    if "timed_out" in result:
        return "FAIL", f"ran out of its {result['timed_out']} s"
    for key, what in (("not_run", "did not run"), ("skipped", "did not run"), ("error", "error")):
        if key in result:
            return "FAIL", f"{what}: {result[key]}"
    if "train_step_ms" not in result or "infer_ms" not in result:
        return "FAIL", "no timings in its result"
    spec = SPECS.get(mode)
    bar = MIN_PSNR_BF16 if spec is not None and spec.amp == "bf16" else MIN_PSNR
    times = f"train {result['train_step_ms']:.1f} ms, infer {result['infer_ms']:.1f} ms"
    peaks = [result.get("train_peak_gb"), result.get("infer_peak_gb")]
    if all(p is not None for p in peaks):
        times += f", peak {peaks[0]:.2f} / {peaks[1]:.2f} GB"
    psnr = result.get("rgb_psnr_vs_plain")
    if psnr is None:
        if result.get("rgb_max_abs_diff_vs_plain") == 0.0:
            return "PASS", f"{times}; identical to plain"
        return "FAIL", f"{times}; no RGB PSNR against plain float32"
    if not psnr >= bar:   # NaN fails too
        return "FAIL", f"{times}; RGB {psnr:.1f} dB against plain float32, below {bar:.0f} dB"
    return "PASS", f"{times}; RGB {psnr:.1f} dB against plain float32 (>= {bar:.0f})"


def step_benchmark(check: Check, model: str) -> None:
    """One row per benchmark mode of ``model``."""
    modes = benchmark_modes(check)
    results = run_benchmark_modes(check, model, modes)
    for mode in modes:
        status, why = judge_mode(mode, results.get(mode))
        check.add(f"benchmark {model} {mode}", status, (results.get(mode) or {}).get("seconds", 0.0), why)


# ------------------------------------------------------------------------------------------ data

SYNTHETIC = ("import sys\nfrom cans.config import load_config\nfrom cans.synthetic import ensure_synthetic\n"
             "ensure_synthetic(load_config('configs/demo.yaml', sys.argv[1:]))\n")


def step_data(check: Check) -> None:
    """Rows 'demo data' and 'CPU checkpoint' (a demo epoch on the CPU, for the resume step)."""
    job = Job([check.python, "-c", SYNTHETIC, *check.demo_set()], check.out / "synthetic_sid.log",
              check.limit("demo data"))
    job.wait()
    check.add("demo data", "PASS" if job.rc == 0 else "FAIL", job.seconds,
              f"the synthetic SID in {check.data_dir}" if job.rc == 0 else f"{ended(job)}; see synthetic_sid.log")
    if job.rc != 0:
        check.add("CPU checkpoint", "FAIL", 0, "not run: the demo data failed")
        return
    job = Job([check.python, "train.py", "-c", "configs/demo.yaml", "--no-progress", "--set", *check.demo_set(),
               f"output_dir={check.out / 'ckpt_cpu'}", "train.epochs=1", "data.train.repeat=1"],
              check.out / "ckpt_cpu.log", check.limit("CPU checkpoint"), env={"CUDA_VISIBLE_DEVICES": ""})
    job.wait()
    ok = job.rc == 0 and (check.out / "ckpt_cpu" / "checkpoints" / "last.pth").is_file()
    check.add("CPU checkpoint", "PASS" if ok else "FAIL", job.seconds,
              "one demo epoch on the CPU (15 steps)" if ok else f"{ended(job)}; see ckpt_cpu.log")


# ------------------------------------------------------------------------------------------ pytest, demo

def pytest_job(check: Check) -> Job:
    """``pytest -m cuda tests/``, started."""
    (check.out / "pytest_cuda.xml").unlink(missing_ok=True)
    return Job([check.python, "-m", "pytest", "-m", "cuda", "tests/", "-q", "-rs", "-p", "no:cacheprovider",
                f"--junitxml={check.out / 'pytest_cuda.xml'}"], check.out / "pytest_cuda.log",
               check.limit("pytest -m cuda"))


def judge_pytest(check: Check, job: Job) -> Tuple[str, str]:
    """PASS: exit 0 and, on a GPU, no test skipped (a skip is a check not made)."""
    try:
        suite = ET.parse(check.out / "pytest_cuda.xml").getroot()
        suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
        counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
        skipped = [case.get("name") for case in suite.iter("testcase") if case.find("skipped") is not None]
    except (OSError, ET.ParseError, AttributeError, ValueError):
        return "FAIL", f"{ended(job)}, no test report; see pytest_cuda.log"
    ran = counts["tests"] - counts["skipped"]
    text = (f"{ran - counts['failures'] - counts['errors']} passed, {counts['failures'] + counts['errors']} failed, "
            f"{counts['skipped']} skipped")
    if job.rc != 0:
        return "FAIL", f"{ended(job)}: {text}; see pytest_cuda.log"
    if check.rehearsal:
        return "PASS", f"{text} (no GPU in a rehearsal: the CUDA tests skip)"
    if counts["skipped"] or not ran:
        return "FAIL", f"{text}: {', '.join(skipped) or 'no test ran'} (a skipped test is a check not made)"
    return "PASS", text


def demo_jobs(check: Check) -> Dict[str, Job]:
    """The three demo trainings (train.fast on, off, off), started side by side."""
    jobs = {}
    for name, fast in (("fast", "true"), ("eager", "false"), ("eager2", "false")):
        jobs[name] = Job([check.python, "train.py", "-c", "configs/demo.yaml", "--no-progress", "--set",
                          *check.demo_set(), f"output_dir={check.out / ('demo_' + name)}", f"train.fast={fast}"],
                         check.out / f"demo_{name}.log", check.limit("demo run"))
    return jobs


def judge_demo(check: Check, jobs: Dict[str, Job]) -> Tuple[str, str]:
    """PASS: the fast run's final PSNR within max(0.5 dB, 3 x the eager runs' spread) of eager's."""
    vals = {}
    for name, job in jobs.items():
        summary = read_json(check.out / f"demo_{name}" / "train_summary.json")
        if job.rc != 0 or summary is None:
            return "FAIL", f"demo_{name}: {ended(job)}; see demo_{name}.log"
        psnr = (summary.get("final") or {}).get("psnr")
        if psnr is None or not math.isfinite(psnr):
            return "FAIL", f"demo_{name}: no finite final validation PSNR in its train_summary.json"
        vals[name] = (psnr, summary.get("wall_s"))
    fast, eager, eager2 = (vals[n][0] for n in ("fast", "eager", "eager2"))
    spread = abs(eager - eager2)   # eager run to run: the order of the GPU's atomic sums
    tol, diff = max(0.5, 3 * spread), abs(fast - eager)
    return ("PASS" if diff <= tol else "FAIL",
            f"final PSNR fast {fast:.2f} / eager {eager:.2f} and {eager2:.2f} dB (|diff| {diff:.2f} <= max(0.5, "
            f"3 x eager spread {spread:.2f}) = {tol:.2f}); wall {vals['fast'][1]} s / {vals['eager'][1]} s")


# ------------------------------------------------------------------------------------------ resume, infer

def resume_job(check: Check, source: str, target: str, *extra: str) -> Optional[Job]:
    """One more epoch on CUDA, compiled, from a copy of OUT/source's last.pth (a resume writes its
    checkpoint's own run folder, and this one branches off); None when there is nothing to resume."""
    ckpt = check.out / source / "checkpoints" / "last.pth"
    summary = read_json(check.out / source / "train_summary.json")
    if not ckpt.is_file() or summary is None:
        return None
    copy = check.out / f"{source}.last.pth"
    shutil.copyfile(ckpt, copy)
    return Job([check.python, "train.py", "-c", "configs/demo.yaml", "--no-progress", "--resume", str(copy), "--set",
                *check.demo_set(), f"output_dir={check.out / target}", f"train.epochs={summary['epochs_done'] + 1}",
                "train.fast=true", *extra], check.out / f"{target}.log", check.limit("resume run"))


def judge_resume(check: Check, source: str, target: str, job: Optional[Job]) -> Tuple[str, str]:
    """PASS: one more epoch, no skipped step, final PSNR at most 1 dB below the checkpoint's."""
    if job is None:
        return "FAIL", f"not run: no checkpoint to resume ({source} did not finish)"
    a, b = read_json(check.out / source / "train_summary.json"), read_json(check.out / target / "train_summary.json")
    if job.rc != 0 or b is None:
        return "FAIL", f"{ended(job)}; see {target}.log"
    pa, pb = ((s.get("final") or {}).get("psnr") for s in (a, b))
    skipped = b["nonfinite_steps"] - a["nonfinite_steps"]
    resumed = "resumed from" in (check.out / f"{target}.log").read_text(errors="replace")
    ok = (resumed and b["epochs_done"] == a["epochs_done"] + 1 and b["steps"] > a["steps"] and skipped == 0
          and pa is not None and pb is not None and math.isfinite(pb) and pb >= pa - 1.0)

    def fmt(p):
        return "none" if p is None else f"{p:.2f}"

    return ("PASS" if ok else "FAIL",
            f"epochs {a['epochs_done']} -> {b['epochs_done']}, steps {a['steps']} -> {b['steps']}, {skipped} skipped; "
            f"final PSNR {fmt(pa)} -> {fmt(pb)} dB (at most 1 dB lower)"
            + ("" if resumed else "; no 'resumed from' in the log") + f"; see {target}.log")


def infer_with_failing_compiler(argv: Sequence[str]) -> int:
    """``scripts/infer.py argv`` (:mod:`cans.cli.infer`) with ``test.fast`` as usual, then a compiler that
    always fails (what a broken inductor / Triton install raises); prints how often it was tried. For the
    ``infer`` step."""
    import torch

    import cans.engine.fastpath as fastpath
    from cans.models import unwrap_model

    attempts = []

    def failing_compiler(gm, example_inputs):
        attempts.append(1)
        raise RuntimeError("simulated compiler failure (gpu_check)")

    original = fastpath.fast_model_for_test

    def fast_model_for_test(cfg, model, device, log=print):
        model, plan = original(cfg, model, device, log)
        return torch.compile(unwrap_model(model), backend=failing_compiler), plan

    fastpath.fast_model_for_test = fast_model_for_test
    # imported only now: cans.inference binds fast_model_for_test when it is first imported
    infer = importlib.import_module("cans.cli.infer")
    status = infer.main(list(argv))
    print(f"compile attempts: {len(attempts)}; exit status {status}", flush=True)
    return status


INFER = "import sys\nfrom cans.tools.gpu_check import infer_with_failing_compiler as f\nsys.exit(f(sys.argv[1:]))\n"


def infer_job(check: Check) -> Optional[Job]:
    """infer.py on three demo photos with the failing compiler, started; None without them."""
    photos = sorted((check.data_dir / "Sony" / "short").glob("*.ARW"))[:3]
    ckpt = check.out / "demo_fast" / "checkpoints" / "last.pth"
    if not ckpt.is_file() or len(photos) < 3:
        return None
    device = ["--device", "cpu"] if check.rehearsal else []
    return Job([check.python, "-c", INFER, "-c", "configs/demo.yaml", "--checkpoint", str(ckpt),
                "--out", str(check.out / "infer_compile_failure"), "--no-progress", *device,
                "--set", *check.demo_set(), *map(str, photos)],
               check.out / "infer_compile_failure.log", check.limit("infer.py compiler failure"),
               err=check.out / "infer_compile_failure.err")


def judge_infer(check: Check, job: Optional[Job]) -> Tuple[str, str]:
    """PASS: exit 1, the compiler tried once for three photos, the one-line hint once, no traceback."""
    if job is None:
        return "FAIL", "not run: no demo_fast checkpoint or no demo photos"
    err = (check.out / "infer_compile_failure.err").read_text(errors="replace")
    m = re.search(r"compile attempts: (\d+)", (check.out / "infer_compile_failure.log").read_text(errors="replace"))
    attempts = int(m.group(1)) if m else None
    hints = err.count("torch.compile failed")
    ok = job.rc == 1 and attempts == 1 and hints == 1 and "test.fast=false" in err and "Traceback" not in err
    return ("PASS" if ok else "FAIL", f"{ended(job)}, {attempts} compile attempt(s) for 3 photos, the hint shown "
                                      f"{hints} time(s); see infer_compile_failure.err")


# ------------------------------------------------------------------------------------------ throughput

def step_throughput(check: Check) -> None:
    """Row 'test.py --throughput' (CANS++, a full frame, test.fast)."""
    size = ["--size", "96", "128", "--device", "cpu"] if check.rehearsal else ["--size", "1424", "2128"]
    job = Job([check.python, "test.py", "-c", "configs/CANS_Plus/Sony.yaml", "--throughput", "--random-weights",
               *size, "--out", str(check.out / "throughput")], check.out / "throughput.log",
              check.limit("test.py --throughput"))
    job.wait()
    found = re.search(r"[0-9.]+ ms/image mean", (check.out / "throughput.log").read_text(errors="replace"))
    ok = job.rc == 0 and found is not None
    check.add("test.py --throughput", "PASS" if ok else "FAIL", job.seconds,
              f"{found.group(0)} (CANS++, {size[1]}x{size[2]} packed)" if ok else f"{ended(job)}; see throughput.log")


# ------------------------------------------------------------------------------------------ the run

def selected(steps: Sequence[str]) -> Tuple[str, ...]:
    """``steps`` with the steps they need, in the order of :data:`STEPS`."""
    want = set(steps)
    for s in list(want):
        want.update(NEEDS.get(s, ()))
    return tuple(s for s in STEPS if s in want)


def missing_for(check: Check, step: str) -> List[str]:
    """The modules ``step`` needs that are missing."""
    return [m for m in STEP_MODULES.get(step, ()) if m in check.missing]


def run_steps(check: Check) -> None:
    """Every selected step, in order; their rows go to ``check.rows``."""
    def can_run(step, rows, needed_rows=()):
        lacking = missing_for(check, step)
        why = (f"not run: missing {', '.join(lacking)} (pip install -r requirements.txt)" if lacking else
               None if check.passed(*needed_rows) else f"not run: it needs {', '.join(needed_rows)}, which failed")
        if why:
            for row in rows:
                check.add(row, "FAIL", 0, why)
        return why is None

    steps = check.steps
    if "data" in steps and can_run("data", ("demo data", "CPU checkpoint")):
        step_data(check)
    if "benchmark-CANS_Plus" in steps:
        step_benchmark(check, "CANS_Plus")
    test = pytest_job(check) if "pytest" in steps else None
    demos = demo_jobs(check) if "demo" in steps and can_run("demo", ("demo fast vs eager",), ("demo data",)) else None
    wait_all(*([test] if test else []), *(demos.values() if demos else []))
    if test is not None:
        status, why = judge_pytest(check, test)
        check.add("pytest -m cuda", status, test.seconds, why)
    if demos is not None:
        status, why = judge_demo(check, demos)
        check.add("demo fast vs eager", status, max(j.seconds for j in demos.values()), why)
    jobs = {}
    if "resume" in steps:
        for row, source, target, extra in (("resume from a CPU checkpoint", "ckpt_cpu", "resume_from_cpu",
                                             ("data.train.repeat=1",)),
                                            ("resume from a fast=false checkpoint", "demo_eager", "resume_from_eager",
                                             ())):
            if can_run("resume", (row,), ("CPU checkpoint",) if source == "ckpt_cpu" else ()):
                jobs[row] = (source, target, resume_job(check, source, target, *extra))
    infer = None
    if "infer" in steps and can_run("infer", ("infer.py compiler failure",)):
        infer = ("infer", None, infer_job(check))
        jobs["infer.py compiler failure"] = infer
    wait_all(*(j[2] for j in jobs.values() if j[2] is not None))
    for row, (source, target, job) in jobs.items():
        verdict = judge_infer(check, job) if source == "infer" else judge_resume(check, source, target, job)
        check.add(row, verdict[0], job.seconds if job is not None else 0, verdict[1])
    if "throughput" in steps:
        step_throughput(check)
    if "benchmark-CANS" in steps:
        step_benchmark(check, "CANS")


def verdict(check: Check) -> str:
    """The last line: PASS only when every row passed."""
    failed = [r.name for r in check.rows if r.status != "PASS"]
    subset = "" if set(check.steps) == set(STEPS) and check.modes is None else " (only the steps asked for)"
    if not check.rows:
        return "verdict: FAIL: no check ran"
    if failed:
        return f"verdict: FAIL{subset}: {len(failed)} of {len(check.rows)} checks: " + ", ".join(failed)
    return f"verdict: PASS{subset}: all {len(check.rows)} checks passed"


def _cell(text: str) -> str:
    """``text`` in a Markdown table cell (``|`` escaped)."""
    return text.replace("|", "\\|")


def write_summary(check: Check, where: str, seconds: float, notes: Sequence[str]) -> str:
    """OUT/summary.tsv, .json and .md; returns the Markdown (its last line: the verdict)."""
    rows = check.rows
    (check.out / "summary.tsv").write_text("".join(f"{r.name}\t{r.status}\t{r.seconds:.0f}\t{r.details}\n"
                                                   for r in rows))
    lines = [f"gpu_check on {where}: {seconds:.0f} s in all", *notes, "",
             "| check | result | seconds | details |", "|---|---|---:|---|"]
    lines += [f"| {r.name} | {r.status} | {r.seconds:.0f} | {_cell(r.details)} |" for r in rows]
    lines += ["", verdict(check)]
    text = "\n".join(lines) + "\n"
    (check.out / "summary.md").write_text(text)
    (check.out / "summary.json").write_text(json.dumps(
        {"where": where, "seconds": round(seconds, 1), "verdict": verdict(check), "steps": list(check.steps),
         "rows": [r.__dict__ for r in rows]}, indent=2) + "\n")
    return text


class UsageError(ValueError):
    """A command-line value :func:`run_check` finds wrong (the command prints it as argparse does)."""


def run_check(outdir: str, *, steps: Optional[Sequence[str]] = None, modes: Optional[Sequence[str]] = None,
              rehearsal: bool = False, budget_scale: float = 1.0, data: str = "/tmp/cans_gpu_check_sid") -> int:
    """The whole check into ``outdir``: the ``steps`` (default all, plus those they need), the benchmark's
    ``modes`` (default every mode the device runs), on the CPU with tiny sizes when ``rehearsal``, every
    time limit times ``budget_scale``, the demo's synthetic SID made and kept in ``data``. Prints the
    summary; returns 0 on PASS (or with no CUDA GPU: nothing checked), 1 on FAIL, 2 when ``outdir``
    cannot be made or holds an earlier check. An unknown mode raises :class:`UsageError`."""
    out = Path(outdir).resolve()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(f"gpu_check: error: cannot make {out}: {exc.strerror}", file=sys.stderr)
        return 2
    found, missing = find_modules(REQUIRED + DATA_MODULES + OPTIONAL)
    info = {"found": found, "missing": missing, "python": sys.version.split()[0], "executable": sys.executable}
    if "torch" in found:
        import torch
        info.update(cuda_available=torch.cuda.is_available(), cuda=torch.version.cuda,
                    gpu=torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)
    (out / "imports.json").write_text(json.dumps(info, indent=2) + "\n")
    print("modules found: " + ", ".join(f"{k} {v}" for k, v in found.items()))
    print("modules missing: " + (", ".join(missing) if missing else "none"))
    if "torch" in missing:
        print("gpu_check: error: torch is not installed (pip install -r requirements.txt); nothing was checked",
              file=sys.stderr)
        return 1
    lacking = [m for m in REQUIRED if m in missing]
    if lacking:
        print(f"gpu_check: error: missing {', '.join(lacking)}: pip install -r requirements.txt", file=sys.stderr)
        return 1
    if not rehearsal and not info["cuda_available"]:
        print("gpu_check: no CUDA GPU here (torch.cuda.is_available() is False): the CUDA checks were NOT run.")
        print(f"Run this on a machine with an NVIDIA GPU. Imports: {out / 'imports.json'}")
        return 0
    if os.environ.get("GPU_CHECK_BUDGET"):
        print("gpu_check: note: GPU_CHECK_BUDGET is no longer read: each step has its own time limit "
              "(--budget-scale / GPU_CHECK_BUDGET_SCALE multiplies them)")
    check = Check(out=out, rehearsal=rehearsal, data_dir=Path(data).resolve(), scale=budget_scale,
                  steps=selected(steps or STEPS), modes=tuple(modes) if modes else None,
                  missing=tuple(missing))
    if check.modes is not None:
        from .benchmark import MODES
        unknown = [m for m in check.modes if m not in MODES]
        if unknown:
            raise UsageError(f"--modes {' '.join(unknown)}: not a mode of scripts/benchmark.py ({', '.join(MODES)})")
    taken = [f for step in check.steps for f in STEP_FOLDERS.get(step, ()) if (out / f).exists()]
    if taken:
        print(f"gpu_check: error: {out} already holds an earlier check's {', '.join(taken)}: give another OUTDIR",
              file=sys.stderr)
        return 2
    where = ("the CPU (REHEARSAL: tiny sizes, the CUDA tests skip; no figure here is a GPU result)" if check.rehearsal
             else info["gpu"])
    print(f"gpu_check on {where}; steps {', '.join(check.steps)}; results in {out}", flush=True)
    notes = []
    if check.rehearsal:
        notes.append("not rows in a rehearsal (CUDA only, or compiled: inductor's CPU build takes minutes): benchmark "
                     "modes " + ", ".join(not_in_rehearsal()))
    if [m for m in DATA_MODULES if m in missing]:
        notes.append("missing: " + ", ".join(m for m in DATA_MODULES if m in missing))
    start = time.monotonic()
    run_steps(check)
    text = write_summary(check, where, time.monotonic() - start, notes)
    print("\n" + text, end="", flush=True)
    return 0 if verdict(check).startswith("verdict: PASS") else 1


__all__ = ["BUDGETS", "Check", "MIN_PSNR", "MIN_PSNR_BF16", "Row", "STEPS", "UsageError", "judge_mode",
           "run_benchmark_modes", "run_check", "run_steps"]
