"""Train-step and inference speed, peak memory and TFLOP/s of the model, per mode; JSON on stdout.

    python scripts/benchmark.py -c configs/CANS_Plus/Sony.yaml                    # GPU, paper sizes
    python scripts/benchmark.py -c configs/CANS_Plus/Sony.yaml --patch 128 --full 96 128 --iters 2
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from cans.config import ConfigError, load_config  # noqa: E402
from cans.engine.benchmark import MODES, run_benchmark  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-c", "--config", default="configs/CANS_Plus/Sony.yaml")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE")
    parser.add_argument("--modes", nargs="+", default=["plain", "tf32", "bf16"], choices=MODES)
    parser.add_argument("--patch", type=int, default=1024, help="training patch, Bayer pixels")
    parser.add_argument("--full", type=int, nargs=2, default=[1424, 2128], metavar=("H", "W"),
                        help="packed size of the inference image (default: full Sony)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    try:
        cfg = load_config(args.config, args.set)
    except ConfigError as exc:
        sys.exit(f"error: {exc}")
    result = run_benchmark(cfg, args.modes, torch.device(args.device), args.patch, args.full,
                           args.warmup, args.iters)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
