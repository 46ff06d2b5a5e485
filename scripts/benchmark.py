"""Train-step and inference speed, peak memory and fidelity of the model, per mode; JSON out.

    python scripts/benchmark.py -c configs/CANS_Plus/Sony.yaml --modes all            # GPU, paper sizes
    python scripts/benchmark.py --device cpu --patch 128 --full 96 128 --iters 2 --modes all
    python scripts/benchmark.py --modes bf16 tf32 --profile --out bench.json          # + top-15 kernels

Modes: plain, tf32, bf16, channels_last, compile, fused_adamw, cudagraphs, bf16_compile,
triton_dwconv, fast, fast_triton (see cans/engine/benchmark.py and docs/performance.md). Prints the JSON
(and writes it to --out), then a Markdown table on stderr.
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from cans.config import ConfigError, load_config  # noqa: E402
from cans.engine.benchmark import MODES, format_table, run_benchmark  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-c", "--config", default="configs/CANS_Plus/Sony.yaml")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE")
    parser.add_argument("--modes", nargs="+", default=["plain", "tf32", "bf16"], choices=MODES + ("all",),
                        help="modes to run, or 'all'")
    parser.add_argument("--patch", type=int, default=1024, help="training patch, Bayer pixels")
    parser.add_argument("--full", type=int, nargs=2, default=[1424, 2128], metavar=("H", "W"),
                        help="packed size of the inference image (default: full Sony)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--profile", action="store_true",
                        help="add the 15 most expensive kernels of each mode (torch.profiler) to the JSON")
    parser.add_argument("--cpu-compile", action="store_true",
                        help="run the compile modes on the CPU too (skipped there: the build takes many minutes)")
    parser.add_argument("--out", default=None, help="also write the JSON to this file")
    args = parser.parse_args(argv)
    if "all" in args.modes:
        args.modes = list(MODES)
    if args.iters < 1 or args.warmup < 0:
        parser.error("--iters must be >= 1 and --warmup >= 0")
    return args


def main(argv=None):
    args = parse_args(argv)
    try:
        cfg = load_config(args.config, args.set)
    except ConfigError as exc:
        sys.exit(f"error: {exc}")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit(f"error: --device {args.device}: no CUDA device is visible; use --device cpu")
    block = int(cfg["model"]["block_size"])
    smallest = 4 * 2 ** len(cfg["model"]["enc_blk_nums"])
    if args.patch % block or args.patch // block < smallest or min(args.full) < smallest:
        sys.exit(f"error: --patch {args.patch} / --full {args.full[0]} {args.full[1]}: the packed sizes must be at "
                 f"least {smallest} (patch a multiple of {block} Bayer pixels)")
    result = run_benchmark(cfg, args.modes, device, args.patch, args.full, args.warmup, args.iters,
                           profile=args.profile, progress=True, cpu_compile=args.cpu_compile)
    text = json.dumps(result, indent=2)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
    print(text)
    print(format_table(result), file=sys.stderr)


if __name__ == "__main__":
    main()
