"""The GPU check: proves the CUDA path on one GPU, with a verdict that can fail.

    bash scripts/gpu_check.sh OUTDIR      (part 1, with the first Python on the PATH that has torch)
    python scripts/gpu_check.py OUTDIR [--part N | --steps STEP ... --modes MODE ...] [--deadline SECONDS]
    python scripts/gpu_check.py --plan    (every part: its steps, their time limits and their sum)

Nothing is downloaded. The check is cut into parts, each made to fit one command of 10 minutes on
a cold GPU (empty inductor caches): the time limits of a part's steps add up to at most the
deadline (540 s) less the time kept to stop and report (10 s). Part 1 is the default:

* ``benchmark-CANS_Plus``: ``scripts/benchmark.py`` at the paper's sizes, alone on the GPU, one row
  per mode (part 1: ``plain``, ``fast``, ``bf16``, ``triton_dwconv``): each mode must run and agree
  with plain float32 (RGB PSNR of the full frame against ``plain``: at least 60 dB, the bfloat16
  modes 57 dB: :data:`MIN_PSNR_BF16` says why);
* side by side: ``pytest`` (``pytest -m cuda tests/``: passes with no test skipped), and ``data``
  (the demo's synthetic SID; then one demo epoch trained on the CPU, for ``resume``), ``demo`` (one
  epoch of the demo trained with ``train.fast`` on and twice off, beside the CPU epoch; the fast
  run's final PSNR within max(0.5 dB, 3 x the two eager runs' difference) of the first eager
  run's), then ``resume`` (one more epoch on CUDA, compiled, from the CPU checkpoint and from the
  eager demo's) and ``infer`` (``scripts/infer.py`` with a compiler made to fail: tried once,
  one-line hint, exit 1);
* the other parts (``--part 2`` ...): ``throughput`` (``test.py --throughput``, full frame),
  ``benchmark-CANS`` and the benchmark's other modes; ``--plan`` lists them, ``--part all`` is
  everything. ``--steps`` / ``--modes`` choose steps and modes instead (a step also runs the
  steps whose output it needs).

Every step runs in processes of its own, with its own time limit (:data:`BUDGETS`, seconds;
``--budget-scale`` multiplies them): the plan gives each step a latest end, the sum of its limit
and those of the steps it waits for, so a step also has whatever time they left unused. A step that fails,
runs out of its time or could not run (a module missing, a step it needs failed, the deadline came
first) is a FAIL row that says why, and the verdict, the last line printed, is PASS only when
every row passed. ``--deadline`` (default 540 s, from the start): no step starts after it, the
running ones are ended, and the report is written before it. Exit status 0 on PASS, 1 on FAIL; on
a machine without CUDA, a message and 0 (nothing was checked). ``--rehearsal`` runs the steps on the
CPU with tiny sizes (the benchmark's CUDA-only and compiled modes are not rows there; pytest
collects tests/test_cuda.py only): it checks this tool, and no figure of it is a GPU result.

The GPU limits are sized for a cold H100 from what each step costs in the rehearsal and the
compile time of a CUDA graph (about a minute each, not measured here: no GPU): an eager benchmark
mode is a few seconds of timing (30 s), a compiled mode compiles an inference and a training graph
(150 s), ``pytest -m cuda`` compiles four graphs, two at the paper's depth (190 s), the fast demo
compiles its training step and validation (150 s), a resume finds them in inductor's cache (60 s).
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
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

REPO = Path(__file__).resolve().parents[2]

#: RGB PSNR (dB, peak 1, the full frame) a mode must reach against plain float32
MIN_PSNR = 60.0
#: the same for the bfloat16 modes: bf16 autocast measured 58.9 - 61.7 dB on the CPU (CANS and
#: CANS++, widths 8 and 32, frames 96 x 128 to 384 x 576), and 48.4 - 54.9 dB with the reference's
#: half-precision LayerNorm (``model.amp_layernorm: reference``), the error this bar is to catch
MIN_PSNR_BF16 = 57.0

#: the steps, in the order they run (``pytest`` beside ``data`` / ``demo`` / ``resume`` / ``infer``)
STEPS = ("benchmark-CANS_Plus", "pytest", "data", "demo", "resume", "infer", "throughput", "benchmark-CANS")
NEEDS = {"demo": ("data",), "resume": ("data", "demo"), "infer": ("data", "demo")}
MODELS = ("CANS_Plus", "CANS")
#: the benchmark's modes in the order they run: the baselines and the default first
MODE_ORDER = ("plain", "authors_flags", "fast", "bf16", "bf16_triton", "triton_dwconv", "cudagraphs", "bf16_compile",
              "fast_triton")

#: time limits in seconds, (GPU, rehearsal); a benchmark process's first mode also gets "benchmark start"
BUDGETS: Dict[str, Tuple[float, float]] = {
    "benchmark start": (30, 30),      # importing torch, plain's reference output, the FLOP count
    "eager mode": (30, 30),           # 2 + 5 timed runs and the profile: about 10 s (an H200's plain: 88 + 419 ms)
    "channels_last": (60, 30),        # about 3 s per full-frame inference (2821 ms on an H200): 8 of them
    "Triton mode": (45, 30),          # an eager mode that JIT-compiles the Triton kernel's 3 kernels first
    "compiled mode": (150, 30),       # an inference and a training graph, about a minute each, cold
    "pytest -m cuda": (190, 120),     # 4 inductor compiles (2 parity vectors, infer.py, the kernel), Triton JIT
    "demo data": (30, 60),            # CPU only: 5 s for the demo's synthetic SID on 2 cores
    "CPU checkpoint": (120, 90),      # CPU only, 4 threads: 15 steps and 2 validations at the demo's size
    "demo run": (150, 120),           # one epoch, 120 steps; the fast one compiles its step and validation
    "resume run": (60, 90),           # one compiled epoch: its graphs are the fast demo's, found in the cache
    "infer.py compiler failure": (45, 60),  # stops at the first compile
    "test.py --throughput": (120, 60),      # one full-frame compile, then 3 + 10 passes
}
#: the run's deadline by default (s from its start): one command of 600 s, less a minute for the
#: Python start and what comes back
DEFAULT_DEADLINE = 540.0
REQUIRED = ("torch", "numpy", "yaml", "tqdm", "pytest", "einops")
DATA_MODULES = ("rawpy", "tifffile", "skimage")
OPTIONAL = ("triton", "PIL", "tensorboard")
STEP_MODULES = {"data": DATA_MODULES, "demo": DATA_MODULES, "resume": DATA_MODULES, "infer": DATA_MODULES}
#: the run folders each step makes in OUTDIR (train.py and test.py never write over an earlier run)
STEP_FOLDERS = {"data": ("ckpt_cpu",), "demo": ("demo_fast", "demo_eager", "demo_eager2"),
                "resume": ("resume_from_cpu", "resume_from_eager"), "infer": ("infer_compile_failure",),
                "throughput": ("throughput",)}
POLL = 0.1   # seconds between looks at the running processes

# ------------------------------------------------------------------------------------------ the plan

#: part 1, the default: the paper model's modes that matter most (float32, the fast path, bf16, the
#: Triton kernel), the CUDA tests, a short demo (fast against eager), the resumes and infer.py
PART1_STEPS = ("benchmark-CANS_Plus", "pytest", "data", "demo", "resume", "infer")
PART1_MODES = {"CANS_Plus": ("plain", "fast", "bf16", "triton_dwconv")}
#: what the other parts hold, most important first: the steps part 1 leaves out (the throughput, the
#: CANS benchmark's float32, fast path, bf16 and Triton kernel), then CANS++'s other modes, then
#: CANS's (packed in this order into the first part with room; a mode of scripts/benchmark.py not
#: named here comes last)
REST_ORDER: Tuple[Union[str, Tuple[str, str]], ...] = (
    "throughput", ("CANS", "plain"), ("CANS", "fast"), ("CANS", "bf16"), ("CANS", "triton_dwconv"),
    ("CANS_Plus", "cudagraphs"), ("CANS_Plus", "bf16_compile"), ("CANS_Plus", "fast_triton"),
    ("CANS_Plus", "bf16_triton"), ("CANS_Plus", "authors_flags"), ("CANS_Plus", "tf32"), ("CANS_Plus", "fused_adamw"),
    ("CANS_Plus", "compile"), ("CANS_Plus", "channels_last"))


def reserve(deadline: float) -> float:
    """The seconds kept before the deadline to end the running processes and write the report."""
    return min(10.0, max(1.0, deadline / 10))


def mode_budget(mode: str, cuda: bool = True) -> str:
    """The :data:`BUDGETS` key of a benchmark mode (``fast`` compiles on CUDA only)."""
    from .benchmark import SPECS

    spec = SPECS.get(mode)
    if spec is None:
        return "eager mode"
    if spec.compile or (cuda and mode in ("fast", "fast_triton")):
        return "compiled mode"
    if spec.channels_last:
        return "channels_last"
    if spec.triton_dwconv:
        return "Triton mode"
    return "eager mode"


def all_modes() -> List[str]:
    """Every mode of scripts/benchmark.py, in the order the check runs them."""
    from .benchmark import MODES

    return list(MODE_ORDER) + [m for m in MODES if m not in MODE_ORDER]


def plan_ends(steps: Sequence[str], modes: Dict[str, Sequence[str]], limit: Callable[[str], float],
              cuda: bool = True) -> Dict[str, float]:
    """When each item of a run ends at the latest (seconds after the steps begin), every step taking
    all of its limit: ``benchmark MODEL MODE`` for each mode, and the :data:`BUDGETS` keys of the other
    steps. It follows :func:`run_steps`: the CANS++ benchmark alone; then pytest beside the demo data,
    which is followed by the CPU checkpoint beside the demos, which are followed by the resumes beside
    infer.py; then the throughput, then the CANS benchmark, each alone."""
    ends: Dict[str, float] = {}

    def bench(model: str, t: float) -> float:
        for i, mode in enumerate(modes.get(model, ())):
            t += limit(mode_budget(mode, cuda)) + (limit("benchmark start") if i == 0 else 0)
            ends[f"benchmark {model} {mode}"] = t
        return t

    t = bench("CANS_Plus", 0.0) if "benchmark-CANS_Plus" in steps else 0.0
    if "pytest" in steps:
        ends["pytest -m cuda"] = t + limit("pytest -m cuda")
    data = t
    if "data" in steps:
        data = ends["demo data"] = t + limit("demo data")
        ends["CPU checkpoint"] = data + limit("CPU checkpoint")
    if "demo" in steps:
        ends["demo run"] = data + limit("demo run")
    after = max([data] + [ends[k] for k in ("CPU checkpoint", "demo run") if k in ends])
    for step, key in (("resume", "resume run"), ("infer", "infer.py compiler failure")):
        if step in steps:
            ends[key] = after + limit(key)
    t = max([t] + list(ends.values()))
    if "throughput" in steps:
        t = ends["test.py --throughput"] = t + limit("test.py --throughput")
    if "benchmark-CANS" in steps:
        bench("CANS", t)
    return ends


def gpu_limit(key: str) -> float:
    return BUDGETS[key][0]


@dataclass
class Part:
    """The steps of one part of the check and the benchmark's modes it runs, per model."""
    steps: Tuple[str, ...]
    modes: Dict[str, Tuple[str, ...]]

    def ends(self, limit: Callable[[str], float] = gpu_limit) -> Dict[str, float]:
        return plan_ends(self.steps, self.modes, limit)

    def ceiling(self, limit: Callable[[str], float] = gpu_limit) -> float:
        """The longest it can take: every step using all of its limit."""
        return max(self.ends(limit).values(), default=0.0)

    def plus(self, item: Union[str, Tuple[str, str]]) -> "Part":
        """This part with one more step, or one more ``(model, mode)`` of the benchmark."""
        steps, modes = set(self.steps), {k: set(v) for k, v in self.modes.items()}
        if isinstance(item, str):
            steps.add(item)
        else:
            steps.add(f"benchmark-{item[0]}")
            modes.setdefault(item[0], set()).add(item[1])
        order = all_modes()
        return Part(tuple(s for s in STEPS if s in steps),
                    {m: tuple(x for x in order if x in modes[m]) for m in MODELS if m in modes})


def parts() -> Tuple[Part, ...]:
    """The parts, each fitting one command on a GPU (its :meth:`Part.ceiling` at most the default
    deadline less :func:`reserve`): part 1, then the rest packed in :data:`REST_ORDER` into the
    first part with room. Together they run every step and every mode of both models."""
    budget = DEFAULT_DEADLINE - reserve(DEFAULT_DEADLINE)
    first = Part(PART1_STEPS, dict(PART1_MODES))
    done = set(first.steps) | {(m, x) for m, xs in first.modes.items() for x in xs}
    items = [i for i in REST_ORDER if i not in done]
    items += [s for s in STEPS if s not in done and s not in items and not s.startswith("benchmark-")]
    items += [(m, x) for m in MODELS for x in all_modes() if (m, x) not in done and (m, x) not in items]
    rest: List[Part] = []
    for item in items:
        for i, part in enumerate(rest):
            trial = part.plus(item)
            if trial.ceiling() <= budget:
                rest[i] = trial
                break
        else:
            rest.append(Part((), {}).plus(item))
    return (first, *rest)


def describe_parts() -> str:
    """Every part: its steps and modes, each limit, and their sum (``--plan``)."""
    budget = DEFAULT_DEADLINE - reserve(DEFAULT_DEADLINE)
    lines = []
    for n, part in enumerate(parts(), 1):
        ends = part.ends()
        what = "the default: bash scripts/gpu_check.sh OUTDIR" if n == 1 else f"--part {n}"
        lines.append(f"part {n} ({what}): the limits add up to {max(ends.values()):.0f} s of the {budget:.0f} s "
                     f"before the deadline ({DEFAULT_DEADLINE:.0f} s, less {reserve(DEFAULT_DEADLINE):.0f} s to "
                     f"stop and report)")
        for model in MODELS:
            if model in part.modes:
                modes = part.modes[model]
                lines.append(f"  benchmark {model}: start {gpu_limit('benchmark start'):.0f} s + "
                             + ", ".join(f"{m} {gpu_limit(mode_budget(m)):.0f} s" for m in modes)
                             + f" (done by {ends[f'benchmark {model} {modes[-1]}']:.0f} s)")
        side = [k for k in ("pytest -m cuda", "demo data", "CPU checkpoint", "demo run", "resume run",
                            "infer.py compiler failure") if k in ends]
        if side:
            lines.append("  side by side: " + ", ".join(f"{k} {gpu_limit(k):.0f} s" for k in side)
                         + f" (done by {max(ends[k] for k in side):.0f} s: pytest beside the demo data, then "
                           "the CPU checkpoint beside the 3 demos, then the 2 resumes beside infer.py)")
        if "test.py --throughput" in ends:
            lines.append(f"  test.py --throughput {gpu_limit('test.py --throughput'):.0f} s "
                         f"(done by {ends['test.py --throughput']:.0f} s)")
    return "\n".join(lines) + "\n"


@dataclass
class Row:
    """One check of the summary: ``status`` PASS or FAIL."""
    name: str
    status: str
    seconds: float
    details: str


@dataclass
class Check:
    """What one run of the check knows: where it writes, how it runs, its plan, what it found."""
    out: Path
    rehearsal: bool = False
    data_dir: Path = Path("/tmp/cans_gpu_check_sid")
    scale: float = 1.0
    python: str = sys.executable
    steps: Tuple[str, ...] = STEPS
    modes: Optional[Dict[str, Tuple[str, ...]]] = None   # None: every mode the device runs
    explicit_modes: bool = False   # the modes were asked for by name (--modes): a rehearsal keeps them all
    missing: Tuple[str, ...] = ()
    rows: List[Row] = field(default_factory=list)
    deadline: float = DEFAULT_DEADLINE
    deadline_at: float = math.inf        # time.monotonic() after which nothing runs
    steps_start: Optional[float] = None  # time.monotonic() when the steps began
    ends: Dict[str, float] = field(default_factory=dict)   # plan_ends() of this run

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

    @property
    def grace(self) -> float:
        """Seconds between asking a process to end (SIGTERM) and killing it."""
        return reserve(self.deadline) / 4

    def time_up(self) -> bool:
        return time.monotonic() >= self.deadline_at

    def deadline_note(self) -> str:
        return f"not run: the run's deadline ({self.deadline:.0f} s) came first"

    def window(self, item: str) -> Tuple[float, bool]:
        """(when a process of ``item`` is ended, by time.monotonic(); whether that is the run's deadline
        rather than the item's end in the plan). An item outside the plan gets its own limit from now."""
        if item in self.ends and self.steps_start is not None:
            end = self.steps_start + self.ends[item]
        else:   # a BUDGETS key, or 'benchmark MODEL MODE'
            key = item if item in BUDGETS else mode_budget(item.rsplit(" ", 1)[-1], cuda=not self.rehearsal)
            end = time.monotonic() + self.limit(key)
        return (end, False) if end < self.deadline_at else (self.deadline_at, True)

    def job(self, item: str, cmd: Sequence[str], log: Path, **kwargs) -> "Job":
        """``cmd`` started as a process of ``item`` (a :data:`BUDGETS` key), ended at :meth:`window`."""
        until, by_deadline = self.window(item)
        return Job(cmd, log, until, deadline=self.deadline if by_deadline else None, grace=self.grace,
                   limit=self.limit(item), **kwargs)

    # sizes: the paper's on a GPU, tiny in a rehearsal
    def benchmark_sizes(self) -> List[str]:
        if self.rehearsal:
            return ["--device", "cpu", "--patch", "128", "--full", "96", "128", "--warmup", "0", "--iters", "1",
                    "--set", "model.width=8"]
        return ["--warmup", "2", "--iters", "5", "--profile"]

    def demo_set(self) -> List[str]:
        extra = (["model.width=8", "model.middle_blk_num=1", "model.enc_blk_nums=[1,1,1,1]",
                  "model.dec_blk_nums=[1,1,1,1]", "train.epochs=1", "data.train.repeat=1", "train.num_threads=1",
                  "data.num_workers=0", "train.valid_per_epoch=1", "data.synthetic.height=192",
                  "data.synthetic.width=288"] if self.rehearsal
                 else ["train.epochs=1", "train.num_threads=null", "data.num_workers=2"])
        return [f"data.data_path={self.data_dir}", "train.test_at_end=false", "train.validate_at_start=false", *extra]


# ------------------------------------------------------------------------------------------ processes

class Job:
    """A command in a process group of its own, ended (SIGTERM, then SIGKILL after ``grace`` seconds)
    once time.monotonic() passes ``until``; its output written to ``log`` (stderr to ``err`` when
    given; ``append``: after what ``log`` holds). ``deadline``: the run's deadline in seconds when
    ``until`` is that deadline (for the row), else None; ``limit``: its own limit (for the row)."""

    def __init__(self, cmd: Sequence[str], log: Path, until: float, env: Optional[Dict[str, str]] = None,
                 err: Optional[Path] = None, append: bool = False, deadline: Optional[float] = None,
                 grace: float = 3.0, limit: Optional[float] = None):
        self.until, self.deadline, self.grace, self.limit = until, deadline, grace, limit
        self.rc, self.timed_out, self._term_at, self._killed = None, False, None, False
        self.start = time.monotonic()
        self.given = max(until - self.start, 0.0)   # the seconds it had
        environ = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
        self._out = open(log, "ab" if append else "wb")
        self._err = open(err, "wb") if err is not None else subprocess.STDOUT
        self.proc = subprocess.Popen(list(cmd), cwd=REPO, env=environ, stdout=self._out, stderr=self._err,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        self.end: Optional[float] = None

    @property
    def seconds(self) -> float:
        return (self.end if self.end is not None else time.monotonic()) - self.start

    def _signal(self, sig: int) -> None:
        try:
            os.killpg(self.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def poll(self) -> Optional[int]:
        """The exit status once the process ended; past ``until`` it is asked to end, and killed
        ``grace`` seconds later (the row says it ran out of time). Never waits."""
        if self.rc is None:
            rc = self.proc.poll()
            now = time.monotonic()
            if rc is None and now >= self.until:
                if self._term_at is None:
                    self.timed_out, self._term_at = True, now
                    self._signal(signal.SIGTERM)
                elif not self._killed and now >= self._term_at + self.grace:
                    self._killed = True
                    self._signal(signal.SIGKILL)
            if rc is not None:
                self.rc, self.end = rc, now
                self._out.close()
                if self._err is not subprocess.STDOUT:
                    self._err.close()
        return self.rc

    def stop(self) -> None:
        """End it now (at the next :meth:`poll`)."""
        self.until = min(self.until, time.monotonic())

    def wait(self) -> int:
        wait_all(self)
        return self.rc


def nap(jobs: Sequence[Job], until: float = math.inf) -> None:
    """Sleep until the next look: at most :data:`POLL`, less when a job's time (or ``until``) ends sooner."""
    now = time.monotonic()
    soonest = min([j.until for j in jobs if j.rc is None and j.until > now] + [until if until > now else math.inf])
    time.sleep(min(POLL, max(soonest - now, 0.005)))


def wait_all(*jobs: Optional[Job], also: Sequence[Optional[Job]] = ()) -> None:
    """Wait for every job of ``jobs``, each ended at its own time; the jobs of ``also`` are looked
    at meanwhile (so they too end on time) but not waited for."""
    jobs = [j for j in jobs if j is not None]
    others = [j for j in also if j is not None]
    while any(j.poll() is None for j in jobs):
        for j in others:
            j.poll()
        nap(jobs + others)
    for j in others:
        j.poll()


def out_of_time(given: float, limit: Optional[float]) -> str:
    """'ran out of its 212 s (its limit 190 s and 22 s left by the steps before it)'."""
    extra = (f" (its limit {limit:.0f} s and {given - limit:.0f} s left by the steps before it)"
             if limit is not None and given - limit >= 1 else "")
    return f"ran out of its {given:.0f} s{extra}"


def ended(job: Job) -> str:
    """How a job ended, for a row: 'exit 1', 'ran out of its 300 s' or 'stopped at the run's deadline'."""
    if not job.timed_out:
        return f"exit {job.rc}"
    if job.deadline is not None:
        return f"stopped at the run's deadline ({job.deadline:.0f} s) after {job.seconds:.0f} s"
    return out_of_time(job.given, job.limit)


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

def benchmark_modes(check: Check, model: str) -> List[str]:
    """The modes of ``model`` that are rows: those of the part (default every mode) the device runs; in a
    rehearsal not the CUDA-only or compiled ones (inductor's CPU build takes minutes), except those
    asked for by name with ``--modes``, which run and fail."""
    import torch

    from .benchmark import mode_spec

    order = all_modes()
    if check.rehearsal:
        cpu = torch.device("cpu")
        order = [m for m in order if not mode_spec(m, cpu).needs_cuda and not mode_spec(m, cpu).compile]
    if check.modes is None:
        return order
    asked = check.modes.get(model, ())
    chosen = [m for m in order if m in asked]
    return chosen + [m for m in asked if m not in order] if check.explicit_modes else chosen


def not_in_rehearsal() -> List[str]:
    """The benchmark's modes a rehearsal leaves out (CUDA only, or compiled)."""
    import torch

    from .benchmark import MODES, mode_spec

    cpu = torch.device("cpu")
    return [m for m in MODES if mode_spec(m, cpu).needs_cuda or mode_spec(m, cpu).compile]


def mode_limit(check: Check, mode: str) -> float:
    """The time limit of one benchmark mode on this check's device."""
    return check.limit(mode_budget(mode, cuda=not check.rehearsal))


def benchmark_command(check: Check, model: str, modes: Sequence[str], out: Path) -> List[str]:
    """scripts/benchmark.py for ``modes`` of ``model``'s Sony config, its JSON rewritten to ``out`` after each."""
    return [check.python, "scripts/benchmark.py", "-c", f"configs/{model}/Sony.yaml", *check.benchmark_sizes(),
            "--modes", *modes, "--out", str(out)]


def run_benchmark_modes(check: Check, model: str, modes: Sequence[str],
                        windows: Optional[Sequence[Tuple[float, bool]]] = None) -> Dict[str, dict]:
    """Each mode's result of ``scripts/benchmark.py`` (its JSON entry, ``seconds`` added). Mode i must
    deliver by ``windows[i]`` (time.monotonic(), and whether that is the run's deadline; default:
    the benchmark's start and each mode's own limit, one after the other, from now): the benchmark
    writes its JSON after every mode, so a mode past its time ends the process, is reported
    ``timed_out`` (the seconds it had), and a new process runs the modes after it. A mode the
    process never reached is reported ``not_run``. All of it: OUT/benchmark_MODEL.json."""
    log = check.out / f"benchmark_{model}.log"
    if windows is None:
        t, windows = time.monotonic() + check.limit("benchmark start"), []
        for mode in modes:
            t += mode_limit(check, mode)
            windows.append((t, False) if t < check.deadline_at else (check.deadline_at, True))
    results: Dict[str, dict] = {}
    header: Dict[str, object] = {}
    pending, part, hung = list(range(len(modes))), 0, None
    while pending:
        if check.time_up():
            for i in pending:
                results[modes[i]] = {"mode": modes[i], "not_run": f"the run's deadline ({check.deadline:.0f} s) "
                                                                  f"came first"}
            break
        now = time.monotonic()
        while pending and windows[pending[0]][0] <= now:   # the modes before it used up its time in the plan
            results[modes[pending[0]]] = {"mode": modes[pending[0]], "not_run": "no time left: what ran before it "
                                                                                 "used up its time in the plan"}
            pending.pop(0)
        if not pending:
            break
        part += 1
        path = check.out / f"benchmark_{model}.part{part}.json"
        path.unlink(missing_ok=True)   # an earlier run's, in the same OUTDIR
        job = Job(benchmark_command(check, model, [modes[i] for i in pending], path), log, math.inf,
                  append=part > 1, grace=check.grace)
        seen, since = 0, job.start
        while True:
            rc = job.poll()
            report = read_json(path) or {}
            for r in report.get("results", [])[seen:]:
                now = time.monotonic()
                results[r["mode"]] = dict(r, seconds=round(now - since, 1))
                seen, since = seen + 1, now
            header = header or {k: v for k, v in report.items() if k != "results"}
            if rc is not None or seen == len(pending):
                # after its last mode it prints the report and exits
                job.until = min(time.monotonic() + 10, check.deadline_at)
                job.wait()
                for i in pending[seen:]:
                    results[modes[i]] = {"mode": modes[i], "not_run": f"the benchmark ended ({ended(job)}) before "
                                                                      f"this mode; see {log.name}"}
                pending = []
                break
            until, by_deadline = windows[pending[seen]]
            if time.monotonic() >= until:
                job.stop()
                job.wait()
                m = modes[pending[seen]]
                first = check.limit("benchmark start") if part == 1 and seen == 0 else 0
                results[m] = {"mode": m, "timed_out": max(round(until - since), 0),
                              "limit": mode_limit(check, m) + first, "seconds": round(time.monotonic() - since, 1)}
                if by_deadline:
                    results[m]["deadline"] = round(check.deadline)
                if seen == 0 and hung is not None:
                    results[m]["after"] = hung
                hung, pending = m, pending[seen + 1:]
                break
            nap([job], until)
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
        if "deadline" in result:
            return "FAIL", f"stopped at the run's deadline ({result['deadline']} s) after {result['timed_out']} s"
        after = (f" (in a new benchmark process, whose start came out of this time, after {result['after']} ran out of "
                 f"its own)" if result.get("after") else "")
        return "FAIL", out_of_time(result["timed_out"], result.get("limit")) + after
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
    modes = benchmark_modes(check, model)
    if check.time_up():
        for mode in modes:
            check.add(f"benchmark {model} {mode}", "FAIL", 0, check.deadline_note())
        return
    windows = [check.window(f"benchmark {model} {m}") for m in modes]
    results = run_benchmark_modes(check, model, modes, windows)
    for mode in modes:
        status, why = judge_mode(mode, results.get(mode))
        check.add(f"benchmark {model} {mode}", status, (results.get(mode) or {}).get("seconds", 0.0), why)


# ------------------------------------------------------------------------------------------ data

SYNTHETIC = ("import sys\nfrom cans.config import load_config\nfrom cans.synthetic import ensure_synthetic\n"
             "ensure_synthetic(load_config('configs/demo.yaml', sys.argv[1:]))\n")


def data_job(check: Check) -> Job:
    """The demo's synthetic SID, made (or found) in ``check.data_dir``, started."""
    return check.job("demo data", [check.python, "-c", SYNTHETIC, *check.demo_set()], check.out / "synthetic_sid.log")


def ckpt_job(check: Check) -> Job:
    """One demo epoch of 15 steps on the CPU (no GPU visible), started: the checkpoint ``resume`` resumes on CUDA."""
    threads = [] if check.rehearsal else ["train.num_threads=4"]   # beside the demos and pytest's compiles
    return check.job("CPU checkpoint", [check.python, "train.py", "-c", "configs/demo.yaml", "--no-progress", "--set",
                                        *check.demo_set(), f"output_dir={check.out / 'ckpt_cpu'}", "train.epochs=1",
                                        "data.train.repeat=1", *threads],
                     check.out / "ckpt_cpu.log", env={"CUDA_VISIBLE_DEVICES": ""})


def judge_ckpt(check: Check, job: Job) -> Tuple[str, str]:
    ok = job.rc == 0 and (check.out / "ckpt_cpu" / "checkpoints" / "last.pth").is_file()
    return ("PASS", "one demo epoch on the CPU (15 steps)") if ok else ("FAIL", f"{ended(job)}; see ckpt_cpu.log")


# ------------------------------------------------------------------------------------------ pytest, demo

def pytest_job(check: Check) -> Job:
    """``pytest -m cuda tests/`` (a rehearsal: tests/test_cuda.py, where the CUDA tests are), started."""
    (check.out / "pytest_cuda.xml").unlink(missing_ok=True)
    where = "tests/test_cuda.py" if check.rehearsal else "tests/"
    return check.job("pytest -m cuda", [check.python, "-m", "pytest", "-m", "cuda", where, "-q", "-rs", "-p",
                                        "no:cacheprovider", f"--junitxml={check.out / 'pytest_cuda.xml'}"],
                     check.out / "pytest_cuda.log")


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
    """The three demo trainings (train.fast on, off, off; one epoch each), started side by side."""
    jobs = {}
    for name, fast in (("fast", "true"), ("eager", "false"), ("eager2", "false")):
        jobs[name] = check.job("demo run", [check.python, "train.py", "-c", "configs/demo.yaml", "--no-progress",
                                            "--set", *check.demo_set(), f"output_dir={check.out / ('demo_' + name)}",
                                            f"train.fast={fast}"], check.out / f"demo_{name}.log")
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
    return check.job("resume run", [check.python, "train.py", "-c", "configs/demo.yaml", "--no-progress", "--resume",
                                    str(copy), "--set", *check.demo_set(), f"output_dir={check.out / target}",
                                    f"train.epochs={summary['epochs_done'] + 1}", "train.fast=true", *extra],
                     check.out / f"{target}.log")


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
    return check.job("infer.py compiler failure",
                     [check.python, "-c", INFER, "-c", "configs/demo.yaml", "--checkpoint", str(ckpt),
                      "--out", str(check.out / "infer_compile_failure"), "--no-progress", *device,
                      "--set", *check.demo_set(), *map(str, photos)],
                     check.out / "infer_compile_failure.log", err=check.out / "infer_compile_failure.err")


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
    if check.time_up():
        check.add("test.py --throughput", "FAIL", 0, check.deadline_note())
        return
    size = ["--size", "96", "128", "--device", "cpu"] if check.rehearsal else ["--size", "1424", "2128"]
    job = check.job("test.py --throughput", [check.python, "test.py", "-c", "configs/CANS_Plus/Sony.yaml",
                                             "--throughput", "--random-weights", *size,
                                             "--out", str(check.out / "throughput")], check.out / "throughput.log")
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


def run_side_by_side(check: Check) -> None:
    """pytest beside the demo data, then the CPU checkpoint beside the three demos, then the two
    resumes beside infer.py (each group starts when what it needs is done)."""
    steps = check.steps

    def can_run(step, rows, needed_rows=()):
        lacking = missing_for(check, step)
        why = (f"not run: missing {', '.join(lacking)} (pip install -r requirements.txt)" if lacking else
               check.deadline_note() if check.time_up() else
               None if check.passed(*needed_rows) else f"not run: it needs {', '.join(needed_rows)}, which failed")
        if why:
            for row in rows:
                check.add(row, "FAIL", 0, why)
        return why is None

    test = pytest_job(check) if "pytest" in steps and can_run("pytest", ("pytest -m cuda",)) else None
    ckpt = demos = None
    if "data" in steps and can_run("data", ("demo data",)):
        data = data_job(check)
        wait_all(data, also=[test])
        check.add("demo data", "PASS" if data.rc == 0 else "FAIL", data.seconds,
                  f"the synthetic SID in {check.data_dir}" if data.rc == 0 else f"{ended(data)}; see synthetic_sid.log")
    if "data" in steps and can_run("data", ("CPU checkpoint",), ("demo data",)):
        ckpt = ckpt_job(check)
    if "demo" in steps and can_run("demo", ("demo fast vs eager",), ("demo data",)):
        demos = demo_jobs(check)
    wait_all(ckpt, *(demos or {}).values(), also=[test])
    if ckpt is not None:
        status, why = judge_ckpt(check, ckpt)
        check.add("CPU checkpoint", status, ckpt.seconds, why)
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
    if "infer" in steps and can_run("infer", ("infer.py compiler failure",)):
        jobs["infer.py compiler failure"] = ("infer", None, infer_job(check))
    wait_all(test, *(j[2] for j in jobs.values()))
    if test is not None:
        status, why = judge_pytest(check, test)
        check.add("pytest -m cuda", status, test.seconds, why)
    for row, (source, target, job) in jobs.items():
        verdict = judge_infer(check, job) if source == "infer" else judge_resume(check, source, target, job)
        check.add(row, verdict[0], job.seconds if job is not None else 0, verdict[1])


def run_steps(check: Check) -> None:
    """Every selected step, in the plan's order; their rows go to ``check.rows``."""
    check.steps_start = time.monotonic()
    check.ends = plan_of(check)
    if "benchmark-CANS_Plus" in check.steps:
        step_benchmark(check, "CANS_Plus")
    run_side_by_side(check)
    if "throughput" in check.steps:
        step_throughput(check)
    if "benchmark-CANS" in check.steps:
        step_benchmark(check, "CANS")


def plan_of(check: Check) -> Dict[str, float]:
    """:func:`plan_ends` of this check's steps and modes, with its device's limits."""
    modes = {m: benchmark_modes(check, m) for m in MODELS if f"benchmark-{m}" in check.steps}
    return plan_ends(check.steps, modes, check.limit, cuda=not check.rehearsal)


def scope(check: Check, part: Union[int, str, None]) -> str:
    """What the verdict covers: '' (everything), ' (part 1 of 6)' or ' (only the steps asked for)'."""
    if set(check.steps) == set(STEPS) and check.modes is None:
        return ""
    if isinstance(part, int):
        return f" (part {part} of {len(parts())})"
    return " (only the steps asked for)"


def verdict(check: Check, part: Union[int, str, None] = None) -> str:
    """The last line: PASS only when every row passed."""
    failed = [r.name for r in check.rows if r.status != "PASS"]
    subset = scope(check, part)
    if not check.rows:
        return "verdict: FAIL: no check ran"
    if failed:
        return f"verdict: FAIL{subset}: {len(failed)} of {len(check.rows)} checks: " + ", ".join(failed)
    return f"verdict: PASS{subset}: all {len(check.rows)} checks passed"


def _cell(text: str) -> str:
    """``text`` in a Markdown table cell (``|`` escaped)."""
    return text.replace("|", "\\|")


def write_summary(check: Check, where: str, seconds: float, notes: Sequence[str],
                  part: Union[int, str, None] = None) -> str:
    """OUT/summary.tsv, .json and .md; returns the Markdown (its last line: the verdict)."""
    rows = check.rows
    last = verdict(check, part)
    (check.out / "summary.tsv").write_text("".join(f"{r.name}\t{r.status}\t{r.seconds:.0f}\t{r.details}\n"
                                                   for r in rows))
    lines = [f"gpu_check on {where}: {seconds:.0f} s in all", *notes, "",
             "| check | result | seconds | details |", "|---|---|---:|---|"]
    lines += [f"| {r.name} | {r.status} | {r.seconds:.0f} | {_cell(r.details)} |" for r in rows]
    lines += ["", last]
    text = "\n".join(lines) + "\n"
    (check.out / "summary.md").write_text(text)
    (check.out / "summary.json").write_text(json.dumps(
        {"where": where, "seconds": round(seconds, 1), "verdict": last, "steps": list(check.steps),
         "part": part, "deadline_s": check.deadline, "plan_ends_s": {k: round(v, 1) for k, v in check.ends.items()},
         "rows": [r.__dict__ for r in rows]}, indent=2) + "\n")
    return text


class UsageError(ValueError):
    """A command-line value :func:`run_check` finds wrong (the command prints it as argparse does)."""


def run_check(outdir: str, *, steps: Optional[Sequence[str]] = None, modes: Optional[Sequence[str]] = None,
              part: Union[int, str, None] = None, rehearsal: bool = False, budget_scale: float = 1.0,
              deadline: float = DEFAULT_DEADLINE, data: str = "/tmp/cans_gpu_check_sid") -> int:
    """The check into ``outdir``: ``part`` (1 when neither it nor ``steps`` / ``modes`` is given; 'all':
    everything), or the ``steps`` (default all, plus those they need) and the benchmark's ``modes``
    (default every mode the device runs); on the CPU with tiny sizes when ``rehearsal``, every time
    limit times ``budget_scale``, nothing started after ``deadline`` seconds (the report written
    before it), the demo's synthetic SID made and kept in ``data``. Prints the summary; returns 0 on
    PASS (or with no CUDA GPU: nothing checked), 1 on FAIL, 2 when ``outdir`` cannot be made or holds
    an earlier check. A wrong mode, part or deadline raises :class:`UsageError`."""
    started = time.monotonic()
    if not deadline > 0:
        raise UsageError(f"--deadline {deadline:g}: it must be > 0 seconds")
    if part is not None and (steps or modes):
        raise UsageError("--part chooses the steps and modes: give it or --steps / --modes, not both")
    if part is None and not steps and not modes:
        part = 1
    if part is not None and part != "all" and not (isinstance(part, int) and 1 <= part <= len(parts())):
        raise UsageError(f"--part {part}: there are parts 1 to {len(parts())} and all (--plan lists them)")
    if modes:
        from .benchmark import MODES
        unknown = [m for m in modes if m not in MODES]
        if unknown:
            raise UsageError(f"--modes {' '.join(unknown)}: not a mode of scripts/benchmark.py ({', '.join(MODES)})")
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
              "(--budget-scale / GPU_CHECK_BUDGET_SCALE multiplies them, --deadline ends the run)")
    if part == "all":
        chosen_steps, chosen_modes = STEPS, None
    elif part is not None:
        chosen = parts()[part - 1]
        chosen_steps, chosen_modes = chosen.steps, dict(chosen.modes)
    else:
        chosen_steps = selected(steps or STEPS)
        chosen_modes = {m: tuple(modes) for m in MODELS} if modes else None
    check = Check(out=out, rehearsal=rehearsal, data_dir=Path(data).resolve(), scale=budget_scale,
                  steps=chosen_steps, modes=chosen_modes, explicit_modes=bool(modes), missing=tuple(missing),
                  deadline=float(deadline), deadline_at=started + deadline - reserve(deadline))
    taken = [f for step in check.steps for f in STEP_FOLDERS.get(step, ()) if (out / f).exists()]
    if taken:
        print(f"gpu_check: error: {out} already holds an earlier check's {', '.join(taken)}: give another OUTDIR",
              file=sys.stderr)
        return 2
    where = ("the CPU (REHEARSAL: tiny sizes, the CUDA tests skip; no figure here is a GPU result)" if check.rehearsal
             else info["gpu"])
    what = ("everything" if part == "all" else f"part {part} of {len(parts())}" if part is not None
            else "the steps asked for")
    print(f"gpu_check on {where}; {what}: steps {', '.join(check.steps)}; results in {out}", flush=True)
    ceiling = max(plan_of(check).values(), default=0.0)
    room = deadline - reserve(deadline) - (time.monotonic() - started)
    notes = [f"plan: {what}; its time limits add up to {ceiling:.0f} s; deadline {deadline:.0f} s "
             f"(python scripts/gpu_check.py --plan lists the parts)"]
    if ceiling > room:
        notes.append(f"the limits add up to more than the {room:.0f} s left before the deadline: what the deadline "
                     f"reaches is a FAIL row (--deadline SECONDS to change it; --part N for a part that fits)")
    if check.rehearsal:
        notes.append("not rows in a rehearsal (CUDA only, or compiled: inductor's CPU build takes minutes): benchmark "
                     "modes " + ", ".join(not_in_rehearsal()) + "; pytest collects tests/test_cuda.py only")
    if [m for m in DATA_MODULES if m in missing]:
        notes.append("missing: " + ", ".join(m for m in DATA_MODULES if m in missing))
    for note in notes:
        print(f"gpu_check: note: {note}", flush=True)
    run_steps(check)
    text = write_summary(check, where, time.monotonic() - started, notes, part)
    print("\n" + text, end="", flush=True)
    return 0 if verdict(check, part).startswith("verdict: PASS") else 1


__all__ = ["BUDGETS", "Check", "DEFAULT_DEADLINE", "MIN_PSNR", "MIN_PSNR_BF16", "Part", "Row", "STEPS", "UsageError",
           "describe_parts", "judge_mode", "parts", "plan_ends", "run_benchmark_modes", "run_check", "run_steps"]
