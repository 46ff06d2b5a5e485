r"""Measure how much --steady steadies a video's colour (docs/inference.md, "A dark RAW sequence").

    python scripts/flicker_table.py -c configs/demo.yaml \
        --checkpoint runs/CANS_Plus_demo/checkpoints/best.pth --out results/flicker

Makes a still synthetic scene filmed in the dark (the same exposure, fresh noise in every frame:
every colour change is the noise's), or takes --sequence FOLDER of your own RAW frames, enhances
it plainly and with --steady over each window, and prints the colour flicker (frame-to-frame
standard deviation of the mean R, G, B, levels of 255) as a Markdown table; writes the table,
its JSON and one MP4 per setting to --out.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Sequence

import torch

from ..config import load_config
from ..engine.loading import load_model, pick_device
from ..inference import find_inputs
from ..models import build_model
from ..noise.model import NOISE
from ..outdirs import prepare_output_dir
from ..synthetic.sequence import make_still_sequence
from ..tools.flicker import format_flicker_table, measure_flicker
from ..video import check_sequence, sequence_ratio
from .common import add_set_argument, add_trust_argument, run_cli, write_table


def build_parser() -> argparse.ArgumentParser:
    """The command line of flicker_table.py (also read by tests/test_docs_commands.py)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-c", "--config", required=True, help="model config")
    p.add_argument("--checkpoint", default=None, help="weights (.pth); or --random-weights")
    p.add_argument("--random-weights", action="store_true", help="the config's network with seeded random weights")
    p.add_argument("--sequence", default=None, metavar="FOLDER",
                   help="RAW frames of your own (default: a synthetic still scene made in --out/sequence)")
    p.add_argument("--frames", type=int, default=48, help="frames of the synthetic sequence (default 48)")
    p.add_argument("--size", type=int, nargs=2, default=[384, 576], metavar=("H", "W"),
                   help="its frame size in pixels (default 384 576)")
    p.add_argument("--scene", type=int, default=0, help="which synthetic scene (default 0)")
    p.add_argument("--gain", type=float, default=NOISE["k_max"],
                   help=f"the synthetic sequence's system gain K, DN per electron: its noise (default "
                        f"{NOISE['k_max']:g}, the noisiest of ELD's Sony A7S2 fit; {NOISE['k_min']:g} the cleanest)")
    p.add_argument("--windows", type=int, nargs="+", default=[4, 8, 16], help="--steady windows (default 4 8 16)")
    p.add_argument("--device", default=None, help="cpu, cuda (default: cuda when available)")
    p.add_argument("--out", default="results/flicker", help="folder for the table, its JSON and the videos")
    add_set_argument(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_trust_argument(p)
    return p


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = build_parser()
    args = p.parse_args(argv)
    if bool(args.checkpoint) == bool(args.random_weights):
        p.error("give --checkpoint PATH or --random-weights (one of the two)")
    if any(w < 1 for w in args.windows):
        p.error(f"--windows must be numbers of frames (at least 1), got {args.windows}")
    if not 0 < args.gain < float("inf"):
        p.error(f"--gain must be a positive number of DN per electron, got {args.gain}")
    if args.frames < 2 or min(args.size) < 32:
        p.error("--frames must be at least 2 and --size at least 32 pixels a side")
    return args


def run(args: argparse.Namespace) -> int:
    """Measure the flicker of the parsed ``args``'s sequence; print and write the table."""
    cfg = load_config(args.config, args.set)
    device = pick_device(args.device)
    prepare_output_dir(args.out, "--out")
    if args.sequence:
        files = sorted(find_inputs([args.sequence]), key=os.path.basename)
        what = f"{len(files)} frames of {args.sequence}"
    else:
        camera = "Sony" if cfg["model"].get("in_channel", 4) == 4 else "Fuji"
        files = make_still_sequence(os.path.join(args.out, "sequence"), args.frames, camera, args.scene,
                                    height=args.size[0], width=args.size[1], gain=args.gain)
        what = (f"a still synthetic scene ({args.frames} frames of {args.size[0]}x{args.size[1]}, gain K "
                f"{args.gain:g}, fresh noise each)")
    check_sequence(files)
    if args.random_weights:
        torch.manual_seed(0)
        model = build_model(cfg).to(device).eval()
        weights = f"{cfg['model']['type']} with seeded random weights"
    else:
        model = load_model(cfg, args.checkpoint, device)
        weights = args.checkpoint
    ratio = sequence_ratio(files)
    rows = measure_flicker(model, files, args.out, ratio, device, args.windows, progress=not args.no_progress)
    table = (f"{what}, ratio {ratio:.1f}, {weights}, {device}\n\n" + format_flicker_table(rows, len(files)))
    print(table)
    write_table(os.path.join(args.out, "flicker.md"), table,
                {"sequence": what, "ratio": ratio, "weights": weights, "rows": rows})
    print(f"written: {os.path.join(args.out, 'flicker.md')}, flicker.json and one MP4 per row")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    return run_cli(lambda: run(args), trust_checkpoint=args.trust_checkpoint)


if __name__ == "__main__":
    sys.exit(main())
