"""Calibrate a camera's noise from dark and flat RAW frames into a noise profile (YAML).

    python scripts/calibrate_noise.py --dark calib/dark --flat calib/flat --out profile.yaml
    python scripts/calibrate_noise.py --dark calib/dark --flat calib/flat --out profile.yaml --plots calib/plots

Frames are grouped by the ISO in their metadata; flat frames by exposure time within an ISO.
How to shoot them, the profile format and the plots: docs/noise_calibration.md.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Optional, Sequence


def build_parser() -> argparse.ArgumentParser:
    """The command line of calibrate_noise.py (also read by tests/test_docs_commands.py)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dark", required=True, help="folder of dark frames (lens capped), several per ISO")
    p.add_argument("--flat", required=True,
                   help="folder of flat frames (uniform field), per ISO several exposure times, 2+ frames each")
    p.add_argument("--out", required=True, help="the noise profile to write (YAML)")
    p.add_argument("--plots", default=None,
                   help="folder for PNG plots: the photon transfer per ISO and the fits against log K")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    # imported here, not at the top: torch takes about 1.5 s to load, and --help needs none of it
    from ..noise.calibration import calibrate
    from ..noise.plots import write_plots
    from ..noise.profile import write_profile
    from .common import run_cli

    def run() -> int:
        t0 = time.time()
        profile, details = calibrate(args.dark, args.flat)
        write_profile(profile, args.out)
        fit = profile["fit"]
        print(f"fit: log(read sigma) = {fit['read_slope']:.4f} log(K) + {fit['read_bias']:.4f} "
              f"(residual {fit['read_jitter']:.4f}); log(row sigma) = {fit['row_slope']:.4f} log(K) + "
              f"{fit['row_bias']:.4f} (residual {fit['row_jitter']:.4f}); K in [{fit['k_min']:.4g}, "
              f"{fit['k_max']:.4g}]")
        if args.plots:
            paths = write_plots(profile, details, args.plots)
            print(f"{len(paths)} plots in {os.path.abspath(args.plots)}")
        print(f"noise profile of {len(profile['per_iso'])} ISOs written to {os.path.abspath(args.out)} "
              f"in {time.time() - t0:.1f} s")
        return 0

    return run_cli(run)


if __name__ == "__main__":
    sys.exit(main())
