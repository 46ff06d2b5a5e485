"""Train-step and inference speed, peak memory and fidelity of the model, per mode; JSON out.

    python scripts/benchmark.py -c configs/CANS_Plus/Sony.yaml --modes all            # GPU, paper sizes
    python scripts/benchmark.py --device cpu --patch 128 --full 96 128 --iters 2 --modes all
    python scripts/benchmark.py --modes bf16 tf32 --profile --out bench.json          # + top-15 kernels
    python scripts/benchmark.py --modes plain fast all --budget 150 --out bench.json  # plain, fast first

Modes: plain, authors_flags, tf32, bf16, channels_last, compile, fused_adamw, cudagraphs,
bf16_compile, triton_dwconv, bf16_triton, fast, fast_triton (see cans/tools/benchmark.py and
docs/performance.md); 'all' stands for every mode not named before it. Prints the JSON, then a
Markdown table on stderr; --out is rewritten after each mode, so a run cut short keeps what it
measured.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Optional, Sequence

import torch

from ..config import ConfigError, load_config
from ..config_checks import smallest_input
from ..io.files import atomic_write_text
from ..outdirs import check_output_file
from ..tools.benchmark import MODES, format_table, run_benchmark
from .common import add_set_argument, run_cli


def expand_modes(names):
    """The names in order, 'all' replaced by every mode of MODES not named before it, no repeats."""
    modes = []
    for name in names:
        for m in (MODES if name == "all" else (name,)):
            if m not in modes:
                modes.append(m)
    return modes


def write_json(path, report):
    """Write ``report`` to ``path`` whole or not at all (:func:`cans.io.files.atomic_write_text`)."""
    atomic_write_text(path, json.dumps(report, indent=2) + "\n")


def build_parser() -> argparse.ArgumentParser:
    """The command line of benchmark.py (also read by tests/test_docs_commands.py)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-c", "--config", default="configs/CANS_Plus/Sony.yaml",
                        help="model config (default configs/CANS_Plus/Sony.yaml)")
    add_set_argument(parser)
    parser.add_argument("--modes", nargs="+", default=["plain", "tf32", "bf16"], choices=MODES + ("all",),
                        metavar="MODE", help="modes to run, in this order (default plain tf32 bf16); 'all' adds "
                                             "every mode not named before it. MODE: " + ", ".join(MODES + ("all",)))
    parser.add_argument("--patch", type=int, default=1024, help="training patch, Bayer pixels (default 1024)")
    parser.add_argument("--full", type=int, nargs=2, default=[1424, 2128], metavar=("H", "W"),
                        help="packed size of the inference image (default 1424 2128: a full Sony frame)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed runs before each timing (default 3)")
    parser.add_argument("--iters", type=int, default=10, help="timed runs, their median is reported (default 10)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="cuda, cuda:1 or cpu (default: cuda when available)")
    parser.add_argument("--profile", action="store_true",
                        help="add the 15 most expensive kernels of each mode (torch.profiler) to the JSON")
    parser.add_argument("--cpu-compile", action="store_true",
                        help="run the compile modes on the CPU too (skipped there: the build takes many minutes)")
    parser.add_argument("--budget", type=float, default=None, metavar="SECONDS",
                        help="start no mode after this many seconds (the rest are reported as skipped)")
    parser.add_argument("--out", default=None, help="also write the JSON to this file (after each mode)")
    return parser


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """The parsed command line, checked beyond argparse; ``modes`` with 'all' expanded."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.modes = expand_modes(args.modes)
    if args.iters < 1 or args.warmup < 0:
        parser.error("--iters must be >= 1 and --warmup >= 0")
    if args.budget is not None and args.budget <= 0:
        parser.error("--budget must be > 0 seconds")
    return args


def run(args: argparse.Namespace) -> int:
    """Benchmark the modes of the parsed ``args``; print the JSON, then the table on stderr."""
    cfg = load_config(args.config, args.set)
    try:
        device = torch.device(args.device)
    except RuntimeError:
        raise ConfigError(f"--device {args.device}: not a device name; use cpu, cuda or cuda:N") from None
    if args.out:
        check_output_file(args.out, "--out")  # now, not after the first mode
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {args.device}: no CUDA device is visible; use --device cpu")
    block = int(cfg["model"]["block_size"])
    smallest = smallest_input(cfg)
    if args.patch % block or args.patch // block < smallest or min(args.full) < smallest:
        raise ConfigError(f"--patch {args.patch} / --full {args.full[0]} {args.full[1]}: the packed sizes must "
                          f"be at least {smallest} (patch a multiple of {block} Bayer pixels)")
    save = (lambda report: write_json(args.out, report)) if args.out else None
    result = run_benchmark(cfg, args.modes, device, args.patch, args.full, args.warmup, args.iters,
                           profile=args.profile, progress=True, cpu_compile=args.cpu_compile,
                           budget_s=args.budget, on_result=save)
    print(json.dumps(result, indent=2))
    print(format_table(result), file=sys.stderr)
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    return run_cli(lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
