"""Test a CANS / CANS++ checkpoint: the paper's reconstruction and denoising tables.

    python test.py -c configs/CANS_Plus/Sony.yaml --checkpoint pretrained_weights/CANS_Plus/Sony.pth
    python test.py -c configs/demo.yaml --checkpoint runs/CANS_Plus_demo/checkpoints/best.pth
    python test.py -c configs/demo_fuji.yaml --checkpoint runs/CANS_Plus_demo_fuji/checkpoints/best.pth
    python test.py -c configs/CANS_Plus/Sony.yaml --throughput
    python test.py -c configs/demo.yaml --onnx runs/CANS_Plus_demo/checkpoints/best.onnx   # on the CPU

Writes <output_dir>/test/{metrics.json, metrics.csv, tables.md, images/}; see cans/evaluate/tester.py.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Sequence

# --device mps: operators the MPS backend lacks run on the CPU (read when torch loads, so before the imports below)
os.environ.setdefault("PYTORCH_ENABLE_MPS_FALLBACK", "1")

from ..config import load_config  # noqa: E402
from ..errors import TestSetupError  # noqa: E402
from ..evaluate.tester import run_test, run_throughput  # noqa: E402
from ..onnx_model import OnnxModel, config_for_export  # noqa: E402
from .common import add_set_argument, add_tile_arguments, add_trust_argument, run_cli  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    """The command line of test.py (also read by tests/test_docs_commands.py)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-c", "--config", default=None,
                   help="config file (default configs/CANS_Plus/Sony.yaml; with --onnx, the config stored in the file)")
    p.add_argument("--checkpoint", default=None,
                   help="weights; default test.checkpoint, else pretrained_weights/<model.type>/<camera>.pth")
    add_set_argument(p, "config overrides, e.g. test.save_grid=true")
    p.add_argument("--out", default=None, help="result folder (default <output_dir>/test)")
    p.add_argument("--device", default=None,
                   help="cuda, cuda:1, cpu or mps (Apple silicon) (default: cuda when available)")
    p.add_argument("--runtime", default="auto", choices=["auto", "openvino", "onnxruntime"],
                   help="what runs an ONNX export on the CPU (default auto: OpenVINO, the faster here, else "
                        "ONNX Runtime)")
    p.add_argument("--onnx", default=None, metavar="MODEL.onnx",
                   help="score this export (scripts/export_onnx.py) on the CPU (see --runtime) instead of a "
                        "checkpoint")
    p.add_argument("--compare-paper", action="store_true",
                   help="show the paper's numbers and the difference; warns when the data or protocol differ")
    p.add_argument("--all-frames", action="store_true",
                   help="score every frame of the test list (the paper configs score only the first capture "
                        "of each scene: 88 Sony / 94 Fuji images)")
    p.add_argument("--no-images", action="store_true", help="do not save the output images")
    p.add_argument("--max-images", type=int, default=None, help="score only the first N test images")
    p.add_argument("--throughput", action="store_true", help="time the model per full-resolution image instead")
    p.add_argument("--size", type=int, nargs=2, default=None, metavar=("H", "W"),
                   help="throughput on a random packed input of this size instead of the first test image")
    p.add_argument("--random-weights", action="store_true", help="throughput without loading a checkpoint")
    add_tile_arguments(p)
    add_trust_argument(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def run(args: argparse.Namespace) -> int:
    """The test (or the throughput) the parsed ``args`` ask for (run through :func:`run_cli`)."""
    overrides = list(args.set) + (["data.test.only_00=false"] if args.all_frames else [])
    if args.onnx and not args.config:   # the export's own config
        cfg = config_for_export(OnnxModel(args.onnx, runtime=args.runtime), None, overrides)
    else:
        cfg = load_config(args.config or "configs/CANS_Plus/Sony.yaml", overrides)
    if args.throughput and args.onnx:
        raise TestSetupError("--throughput times the PyTorch model; for an ONNX export use "
                             "scripts/benchmark_cpu.py (it times eager, compile, ONNX Runtime and OpenVINO)")
    if args.throughput:
        run_throughput(cfg, args.checkpoint, device=args.device, size=args.size, out_dir=args.out,
                       random_weights=args.random_weights, progress=not args.no_progress)
    else:
        run_test(cfg, args.checkpoint, device=args.device, out_dir=args.out,
                 compare_paper=True if args.compare_paper else None,
                 save_images=False if args.no_images else None, max_images=args.max_images,
                 progress=not args.no_progress, tile=args.tile, overlap=args.overlap, two_pass=not args.one_pass,
                 onnx=args.onnx, runtime=args.runtime)
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    return run_cli(lambda: run(args), trust_checkpoint=args.trust_checkpoint)


if __name__ == "__main__":
    sys.exit(main())
