r"""Inference speed on the CPU per runtime, in one run: PyTorch eager, torch.compile (inductor),
ONNX Runtime, and OpenVINO when it is installed; each with its RGB PSNR against PyTorch float32 eager.

    python scripts/benchmark_cpu.py                                   # CANS++ Sony, a full frame (packed 1424 x 2128)
    python scripts/benchmark_cpu.py --size 256 384 --out cpu.json     # a quick look
    python scripts/benchmark_cpu.py --modes eager onnxruntime --checkpoint pretrained_weights/CANS_Plus/Sony.pth
    python scripts/benchmark_cpu.py --modes openvino --counters       # and where OpenVINO spends the frame

Each mode runs in a process of its own (its peak memory is its own); seeded random weights unless
--checkpoint. Prints the JSON, then a Markdown table on stderr; --out writes the JSON, --table the
table. What the modes are and the figures measured here: docs/performance.md ("On the CPU").
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Optional, Sequence

from ..config import ConfigError, load_config
from ..engine.loading import check_checkpoint_path
from ..io.files import atomic_write_text
from ..outdirs import check_output_file
from ..tools.cpu_benchmark import MODES, format_cpu_table, run_cpu_benchmark
from .common import add_set_argument, run_cli


def build_parser() -> argparse.ArgumentParser:
    """The command line of benchmark_cpu.py (also read by tests/test_docs_commands.py)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-c", "--config", default="configs/CANS_Plus/Sony.yaml",
                   help="model config (default configs/CANS_Plus/Sony.yaml)")
    add_set_argument(p)
    p.add_argument("--checkpoint", default=None, help="weights (default: seeded random weights)")
    p.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES, metavar="MODE",
                   help=f"modes (default all: {' '.join(MODES)}); eager always runs, as the reference")
    p.add_argument("--size", type=int, nargs=2, default=[1424, 2128], metavar=("H", "W"),
                   help="packed input size (default 1424 2128: a full Sony frame)")
    p.add_argument("--warmup", type=int, default=1, help="untimed runs per mode (default 1)")
    p.add_argument("--iters", type=int, default=3, help="timed runs per mode, median reported (default 3)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: PyTorch's and ONNX Runtime's)")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds one mode may take (default 3600)")
    p.add_argument("--out", default=None, help="write the JSON report here")
    p.add_argument("--table", default=None, help="write the Markdown table here")
    p.add_argument("--counters", action="store_true",
                   help="also where OpenVINO spends a frame: its per-layer counters by operator type, from one "
                        "more run of each OpenVINO mode after the timed ones (in the JSON and the table)")
    return p


def run(args: argparse.Namespace) -> int:
    """Time the modes of the parsed ``args``; print the JSON, then the table on stderr."""
    cfg = load_config(args.config, args.set)
    for name, value in (("--size", min(args.size)), ("--iters", args.iters), ("--warmup", args.warmup + 1)):
        if value < 1:
            raise ConfigError(f"{name}: expected positive numbers")
    for path, what in ((args.out, "--out"), (args.table, "--table")):
        if path:
            check_output_file(path, what)
    if args.checkpoint:
        check_checkpoint_path(args.checkpoint)
    report = run_cpu_benchmark(cfg["model"], args.modes, args.size, checkpoint=args.checkpoint,
                               warmup=args.warmup, iters=args.iters, threads=args.threads,
                               timeout_s=args.timeout, counters=args.counters,
                               log=lambda m: print(m, file=sys.stderr, flush=True))
    text = json.dumps(report, indent=2)
    print(text)
    table = format_cpu_table(report)
    print(table, file=sys.stderr)
    if args.out:
        atomic_write_text(args.out, text + "\n")
    if args.table:
        atomic_write_text(args.table, table)
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli(lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
