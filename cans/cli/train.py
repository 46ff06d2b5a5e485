"""Train CANS / CANS++ (the paper's recipe, or any config).

    python train.py -c configs/CANS_Plus/Sony.yaml
    python train.py -c configs/demo.yaml --set train.epochs=2 data.train.patch_size=256
    python train.py -c configs/CANS_Plus/Sony.yaml --resume runs/CANS_Plus_Sony/checkpoints/last.pth
    torchrun --nproc_per_node 4 train.py -c configs/CANS_Plus/Sony.yaml      # several GPUs (DDP)

The run folder (output_dir, default runs/<name>) gets config.yaml, train.log, tensorboard/,
checkpoints/{last,best,epoch_XXXX}.pth and train_summary.json; see cans/train/trainer.py.
"""
from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from ..config import load_config
from ..train.main import train_main
from .common import add_set_argument, add_trust_argument, run_cli


def build_parser() -> argparse.ArgumentParser:
    """The command line of train.py (also read by tests/test_docs_commands.py)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-c", "--config", default="configs/CANS_Plus/Sony.yaml", help="config file")
    add_set_argument(p, "config overrides, values parsed as YAML, e.g. train.base_lr=1e-4 train.amp=bf16")
    p.add_argument("--resume", default=None, metavar="PATH",
                   help="continue from a training checkpoint (model, optimizer, schedule, epoch, RNG)")
    add_trust_argument(p)
    p.add_argument("--no-progress", action="store_true", help="no tqdm bars")
    return p


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    return run_cli(lambda: train_main(load_config(args.config, args.set), resume=args.resume,
                                      progress=not args.no_progress), trust_checkpoint=args.trust_checkpoint)


if __name__ == "__main__":
    sys.exit(main())
