r"""Export a trained CANS / CANS++ model to ONNX, for OpenVINO or ONNX Runtime on a CPU (no NVIDIA GPU needed).

    python scripts/export_onnx.py -c configs/CANS_Plus/Sony.yaml \
        --checkpoint pretrained_weights/CANS_Plus/Sony.pth --out CANS_Plus_Sony.onnx
    python scripts/infer.py --onnx CANS_Plus_Sony.onnx --ratio auto photo.ARW

Height and width are dynamic: any packed size from the model's smallest input up runs, padding
included. The file holds the config, block size and the weights' git blob id as metadata. After
the export, the runtime and PyTorch are run on inputs that need padding and compared; the file is
written only when they agree (RGB PSNR at least 60 dB). Default --out: the checkpoint's path with
.onnx, where infer.py on the CPU looks for it. Beside it goes X.tiles.onnx, the tile graph that
two-pass tiles (--tile) run. About a minute for the paper's CANS++ on 2 CPU cores: each step
(tracing, converting, each checked size) is printed as it starts, with estimates of what is left.
Details: docs/inference.md.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Sequence

from ..onnx_model import MIN_CHECK_PSNR, default_onnx_path, export_checkpoint, tile_graph_path
from .common import add_set_argument, add_trust_argument, run_cli


def build_parser() -> argparse.ArgumentParser:
    """The command line of export_onnx.py (also read by tests/test_docs_commands.py)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-c", "--config", required=True, help="model config, e.g. configs/CANS_Plus/Sony.yaml")
    p.add_argument("--checkpoint", default=None, help="weights (.pth); default: test.checkpoint of the config, "
                                                      "else pretrained_weights/<model.type>/<camera>.pth")
    p.add_argument("--out", default=None, help="the .onnx file (default: the checkpoint's path with .onnx)")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default: the exporter's)")
    p.add_argument("--runtime", default="auto", choices=["auto", "openvino", "onnxruntime"],
                   help="the runtime the check after the export runs (default auto: OpenVINO, else ONNX Runtime)")
    add_set_argument(p)
    add_trust_argument(p)
    return p


def run(args: argparse.Namespace) -> int:
    """Export as the parsed ``args`` say and print where the file went and how to use it: 1 when the
    check against PyTorch fails (nothing written then), 0 otherwise."""
    result = export_checkpoint(args.config, overrides=args.set, checkpoint=args.checkpoint, out=args.out,
                               opset=args.opset, runtime=args.runtime, log=lambda line: print(line, flush=True))
    out, checkpoint = result["out"], result["checkpoint"]
    if not result["written"]:
        print(f"error: the export differs from PyTorch (RGB PSNR {result['worst_psnr']:.1f} dB, below "
              f"{MIN_CHECK_PSNR:g}); nothing written to {out}", file=sys.stderr)
        return 1
    print(f"written: {os.path.abspath(out)} (and its tile graph for two-pass tiles, "
          f"{os.path.basename(tile_graph_path(out))})")
    found = os.path.abspath(out) == os.path.abspath(default_onnx_path(checkpoint))
    beside = f"  (on the CPU, infer.py -c {args.config} --checkpoint {checkpoint} finds it by itself)"
    print(f"use it: python scripts/infer.py --onnx {out} PHOTO.ARW" + (beside if found else ""))
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli(lambda: run(args), trust_checkpoint=args.trust_checkpoint)


if __name__ == "__main__":
    sys.exit(main())
