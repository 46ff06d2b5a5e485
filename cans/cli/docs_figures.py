"""Regenerate the measured figures the documentation quotes (docs/figures.md), with the versions that made them.

    python scripts/docs_figures.py                       # all demos, writes docs/figures.md
    python scripts/docs_figures.py --only demo demo_fuji --tests --out /tmp/figures.md

Each demo config is trained by ``python train.py -c CONFIG --no-progress --set output_dir=TMP/NAME``
in a fresh temporary folder (runs/ is not touched; the synthetic data sets are created under
datasets/ on first use), its train_summary.json is read and its wall time measured. The Markdown
file lists, per demo, the untrained and final validation sRGB PSNR / SSIM and RAW PSNR, the gain and
the wall time, with the date, the CPU count and the versions of python, torch, numpy and rawpy/LibRaw.
``--tests`` adds the number of tests ``python -m pytest -q --co`` collects (collection only: fast).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from typing import Optional, Sequence

from ..config import ConfigError
from ..io.files import atomic_write_text

#: the repository root, where train.py and the demo configs are (the commands run from there)
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# name -> (config, extra --set overrides): the runs the documentation quotes, in the order of
# docs/figures.md. "{demo}" stands for the demo run's folder: a run naming it trains after "demo"
# (which --only then adds) from the demo model, as docs/own_camera.md shows. The wall time
# includes making a demo's synthetic data set only when datasets/ does not hold it yet.
DEMOS = {
    "demo": ("configs/demo.yaml", ()),
    "demo_fuji": ("configs/demo_fuji.yaml", ()),
    "example_own_camera": ("configs/example_own_camera.yaml", ()),
    "example_own_camera_from_demo": ("configs/example_own_camera.yaml",
                                     ("train.pretrained={demo}/checkpoints/best.pth", "train.base_lr=2e-4")),
    "example_own_camera_xtrans": ("configs/example_own_camera_xtrans.yaml", ()),
    "example_calibrated_noise": ("configs/example_calibrated_noise.yaml", ()),
}

REGENERATE = "python scripts/docs_figures.py"


def selected(only=None) -> list:
    """The demo names to run, in the order of DEMOS: ``only`` (default all), plus "demo" when a
    chosen run starts from the demo model."""
    names = set(only or DEMOS)
    if any("{demo}" in s for n in names for s in DEMOS[n][1]):
        names.add("demo")
    return [n for n in DEMOS if n in names]


def command(name: str, output_dir: str, demo_dir: str = "") -> list:
    """The train.py command line (after the interpreter) of demo ``name`` into ``output_dir``."""
    config, extra = DEMOS[name]
    return (["train.py", "-c", config, "--no-progress", "--set", f"output_dir={output_dir}"]
            + [s.replace("{demo}", demo_dir) for s in extra])


def shown_command(name: str) -> str:
    """Demo ``name``'s command as the documentation gives it (the demo run in its usual folder)."""
    config, extra = DEMOS[name]
    sets = [s.replace("{demo}", "runs/CANS_Plus_demo") for s in extra]
    return f"python train.py -c {config}" + (" --set " + " ".join(sets) if sets else "")


def run_demo(args: list, output_dir: str) -> dict:
    """Run train.py with ``args`` (:func:`command`) training into ``output_dir`` (a subprocess of
    train.py, run from the repository root);
    return its train_summary.json with ``"measured_wall_s"`` (the whole command: data creation,
    model build, validation and training). A failing run raises ConfigError with train.py's last line."""
    cmd = [sys.executable] + list(args)
    t0 = time.time()
    proc = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wall = time.time() - t0
    summary_path = os.path.join(output_dir, "train_summary.json")
    if proc.returncode != 0 or not os.path.isfile(summary_path):
        lines = [line for line in proc.stdout.splitlines() if line.strip()]
        last = lines[-1] if lines else "no output"
        raise ConfigError(f"{' '.join(args[:3])}: train.py exited with {proc.returncode}: {last}")
    with open(summary_path, encoding="utf-8") as f:
        summary = json.load(f)
    summary["measured_wall_s"] = round(wall, 1)
    return summary


def count_tests() -> int:
    """The number of tests ``python -m pytest -q --co`` collects (collection only, nothing runs)."""
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "--co"], cwd=ROOT,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    found = re.search(r"(\d+) tests? collected", proc.stdout)
    if not found:
        lines = [line for line in proc.stdout.splitlines() if line.strip()]
        raise ConfigError(f"pytest --co: no test count in its output ({lines[-1] if lines else 'no output'})")
    return int(found.group(1))


def versions() -> dict:
    """The versions that produced the figures: python, torch, numpy, rawpy and its LibRaw (imported
    here: --help needs none of them)."""
    import numpy
    import torch
    out = {"python": platform.python_version(), "torch": torch.__version__, "numpy": numpy.__version__}
    try:
        import rawpy
        out["rawpy"] = f"{rawpy.__version__} (LibRaw {'.'.join(str(v) for v in rawpy.libraw_version)})"
    except ImportError:
        out["rawpy"] = "not installed"
    return out


def _minutes(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


def _num(metrics, key, digits=2) -> str:
    value = (metrics or {}).get(key)
    return "-" if value is None else f"{value:.{digits}f}"


def demo_table(name: str, shown: str, summary: dict) -> str:
    """One demo's Markdown section: untrained -> final validation sRGB PSNR, SSIM, RAW PSNR, the
    gain in sRGB PSNR, the best epoch, the wall time of the whole command and of training alone;
    ``shown`` is the command as the documentation gives it."""
    initial, final = summary.get("initial"), summary.get("final") or {}
    gain = (f"{final['psnr'] - initial['psnr']:+.2f} dB" if initial and final.get("psnr") is not None
            else "-")
    best = (f"{summary['best_psnr']:.2f} dB (epoch {summary['best_epoch']})"
            if summary.get("best_epoch") is not None else "-")
    rows = [
        ("validation sRGB PSNR", f"{_num(initial, 'psnr')} dB", f"{_num(final, 'psnr')} dB"),
        ("validation sRGB SSIM", _num(initial, "ssim", 4), _num(final, "ssim", 4)),
        ("validation RAW PSNR", f"{_num(initial, 'raw_psnr')} dB", f"{_num(final, 'raw_psnr')} dB"),
    ]
    start = "starting" if summary.get("started_from") else "untrained"
    lines = [f"## {name}", "", f"`{shown}`", "",
             f"| | {start} | final |", "|---|---|---|"]
    lines += [f"| {what} | {a} | {b} |" for what, a, b in rows]
    lines += ["", f"- gain (sRGB PSNR): {gain}; best {best}; {summary.get('epochs_done', '-')} epoch(s), "
                  f"{summary.get('steps', '-')} steps",
              f"- wall time: {_minutes(summary['measured_wall_s'])} for the whole command "
              f"(training {_minutes(summary.get('wall_s') or 0)})", ""]
    return "\n".join(lines)


def render(results: dict, tests: int = None, when: str = None, cpus: int = None, vers: dict = None) -> str:
    """The whole of docs/figures.md: header (date, machine, versions, test count) and one section
    per demo of ``results`` (name -> (command as shown, summary))."""
    when = when or datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    cpus = cpus if cpus is not None else os.cpu_count()
    vers = vers or versions()
    lines = ["# Measured figures", "",
             f"Generated by `{REGENERATE}` on {when}; do not edit by hand, rerun it "
             f"(`--only NAME ...` for some demos, `--tests` for the test count).", "",
             f"- machine: {cpus} CPU core(s), {platform.system()} {platform.machine()}, no GPU used",
             "- versions: " + ", ".join(f"{k} {v}" for k, v in vers.items())]
    if tests is not None:
        lines.append(f"- tests: {tests} collected by `python -m pytest -q --co`")
    lines += ["", "Validation figures are means over each demo's validation images, untrained = before "
                  "epoch 1 (`train.validate_at_start`), starting = the demo model's best.pth; runs are deterministic "
                  "on the same machine and versions.", ""]
    for name, (shown, summary) in results.items():
        lines.append(demo_table(name, shown, summary))
    return "\n".join(lines).rstrip() + "\n"


def build_parser() -> argparse.ArgumentParser:
    """The command line of docs_figures.py (also read by tests/test_docs_commands.py)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", choices=list(DEMOS), metavar="NAME",
                        help="run only these demos (default all; a run from the demo model adds demo): "
                             + ", ".join(DEMOS))
    parser.add_argument("--out", default="docs/figures.md", help="Markdown file to write (default docs/figures.md)")
    parser.add_argument("--tests", action="store_true",
                        help="also count the tests pytest collects (python -m pytest -q --co)")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    from .common import run_cli  # here, not at the top: torch takes about 1.5 s to load, and --help needs none

    def run() -> int:
        out_dir = os.path.dirname(os.path.abspath(args.out))
        if not os.path.isdir(out_dir):
            raise FileNotFoundError(f"--out {args.out}: folder {out_dir} does not exist")
        results = {}
        with tempfile.TemporaryDirectory(prefix="cans_figures_") as tmp:
            for name in selected(args.only):
                cmd = command(name, os.path.join(tmp, name), os.path.join(tmp, "demo"))
                shown = shown_command(name)
                print(f"{name}: {shown} ...", file=sys.stderr, flush=True)
                summary = run_demo(cmd, os.path.join(tmp, name))
                results[name] = (shown, summary)
                print(f"{name}: {_num(summary.get('initial'), 'psnr')} -> {_num(summary.get('final'), 'psnr')} dB, "
                      f"{_minutes(summary['measured_wall_s'])}", file=sys.stderr, flush=True)
        tests = count_tests() if args.tests else None
        atomic_write_text(args.out, render(results, tests))
        print(f"wrote {args.out}", file=sys.stderr)
        return 0

    return run_cli(run)


if __name__ == "__main__":
    sys.exit(main())
