r"""Enhance your own dark RAW photos with a trained CANS / CANS++ model.

    python scripts/infer.py -c configs/CANS_Plus/Sony.yaml \
        --checkpoint pretrained_weights/CANS_Plus/Sony.pth --ratio auto photo.ARW folder/ --out results/

Without an NVIDIA GPU, OpenVINO (or ONNX Runtime) runs an export of the model several times
faster than PyTorch on the CPU (scripts/export_onnx.py; infer.py on the CPU uses
<checkpoint>.onnx when it is there):

    python scripts/infer.py --onnx CANS_Plus_Sony.onnx --ratio auto photo.ARW

Any Bayer RAW that LibRaw reads (ARW, DNG, NEF, CR2, ...) or a folder of them; X-Trans
(Fuji RAF) files with the Fuji configs. Writes <out>/<file stem>.png with the input's size
(--rotate: turned as the file's orientation flag says). Large photos on a small GPU:

    python scripts/infer.py -c configs/CANS_Plus/Sony.yaml --checkpoint ... --tile auto photo.ARW
    python scripts/infer.py ... --tile 512 --overlap 64 photo.ARW   # packed pixels

On the CPU a photo that would need more than --max-memory (default 5.5 GB) runs in tiles by itself:

    python scripts/infer.py ... --max-memory 12 big_photo.ARW       # more memory: whole, sooner

A dark RAW sequence (a burst, a time-lapse, DNG video frames) as an MP4, in file-name order, one
ratio for all frames, the colour held steady over 8 frames:

    python scripts/infer.py -c configs/CANS_Plus/Sony.yaml --checkpoint ... --video night.mp4 --steady frames/

The details (phase alignment, --ratio auto, tiling) are in cans/inference.py and cans/tiling.py;
docs/tiling.md measures how close tiles come to the whole-frame result.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
from typing import Optional, Sequence

# --device mps: operators the MPS backend lacks run on the CPU (read when torch loads, so before the imports below)
os.environ.setdefault("PYTORCH_ENABLE_MPS_FALLBACK", "1")

from ..inference import DEFAULT_MAX_RATIO, DEFAULT_TARGET_MEAN, DeviceFailure, enhance_files  # noqa: E402
from ..onnx_model import PRECISIONS  # noqa: E402
from ..tiling import CPU_MEMORY_FRACTION, CPU_MEMORY_LIMIT  # noqa: E402
from ..video import DEFAULT_FPS, DEFAULT_WINDOW, enhance_video  # noqa: E402
from .common import add_set_argument, add_tile_arguments, add_trust_argument, positive_gb, run_cli  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    """The command line of infer.py (also read by tests/test_docs_commands.py)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="*", metavar="INPUT", help="RAW files and/or folders of RAW files")
    p.add_argument("-c", "--config", default=None,
                   help="model config, e.g. configs/CANS_Plus/Sony.yaml (required without --onnx; with --onnx the "
                        "config stored in the file is used)")
    p.add_argument("--checkpoint", default=None, help="weights (.pth); default: test.checkpoint of the config")
    p.add_argument("--runtime", default="auto", choices=["auto", "openvino", "onnxruntime"],
                   help="what runs an ONNX export on the CPU (default auto: OpenVINO, the faster here, else "
                        "ONNX Runtime)")
    p.add_argument("--onnx", default=None, metavar="MODEL.onnx",
                   help="run this export (scripts/export_onnx.py) on the CPU (see --runtime) instead of PyTorch")
    p.add_argument("--no-onnx", action="store_true",
                   help="on the CPU, run PyTorch even when an export of the checkpoint lies beside it "
                        "(<checkpoint>.onnx, used by default)")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads of the ONNX runtime (default: the runtime's, one per physical core)")
    p.add_argument("--ratio", default="auto",
                   help="exposure ratio (amplification) as a number, or 'auto' (default): the gain that "
                        "brings the mean of the black-subtracted, normalised RAW to --target-mean")
    p.add_argument("--target-mean", type=float, default=DEFAULT_TARGET_MEAN,
                   help="brightness target of --ratio auto, fraction of the white level "
                        f"(default {DEFAULT_TARGET_MEAN})")
    p.add_argument("--max-ratio", type=float, default=DEFAULT_MAX_RATIO,
                   help=f"upper bound of --ratio auto (default {DEFAULT_MAX_RATIO:g}, SID's largest)")
    p.add_argument("--out", default="results/infer", help="output folder (default results/infer)")
    p.add_argument("--16bit", dest="bits16", action="store_true", help="write 16-bit PNG")
    p.add_argument("--device", default=None,
                   help="cuda, cuda:1, cpu, mps (Apple silicon; operators MPS lacks run on the CPU) "
                        "(default: cuda when available)")
    p.add_argument("--precision", default="f32", choices=list(PRECISIONS),
                   help="what an ONNX export computes in on the CPU: f32 (default) or bf16 (OpenVINO's bfloat16, "
                        "for CPUs with bfloat16 instructions; its speed and fidelity: docs/performance.md); "
                        "PyTorch takes bf16 as --amp bf16")
    p.add_argument("--amp", default=None, choices=["off", "bf16", "fp16"],
                   help="autocast precision (default: test.amp of the config, 'off' in the paper configs)")
    add_set_argument(p, groups=True)   # a list per --set: parse_args splits each one's trailing inputs off
    add_tile_arguments(p)
    p.add_argument("--max-memory", type=positive_gb, default=None, metavar="GB",
                   help="on the CPU: the most memory inference may hold; a photo that would need more runs in "
                        f"two-pass tiles sized to fit (default {CPU_MEMORY_LIMIT / 2 ** 30:g}; any value is lowered to "
                        f"what the process holds plus {CPU_MEMORY_FRACTION * 100:.0f}%% of the available memory "
                        f"where that is less; GB = 2**30 bytes; docs/tiling.md)")
    add_trust_argument(p)
    p.add_argument("--rotate", action="store_true", help="apply the file's orientation flag to the output")
    p.add_argument("--video", default=None, metavar="OUT.mp4",
                   help="write the inputs, in file-name order, as one H.264 video (one size and camera; --ratio "
                        "auto picks one ratio for all frames); no PNGs unless --frames")
    p.add_argument("--fps", type=float, default=DEFAULT_FPS, help=f"--video's frame rate (default {DEFAULT_FPS:g})")
    p.add_argument("--steady", action="store_true",
                   help="--video: share the network's global colour statistics over --steady-window frames: "
                        "steady colour on a still scene (two passes per frame)")
    p.add_argument("--steady-window", type=int, default=DEFAULT_WINDOW, metavar="FRAMES",
                   help=f"frames --steady averages over (default {DEFAULT_WINDOW}; 1 is the plain output)")
    p.add_argument("--frames", action="store_true", help="--video: also write each frame's PNG into --out")
    p.add_argument("--dng", action="store_true",
                   help="also write the denoised RAW as <out>/<stem>.dng for a RAW editor (darktable, RawTherapee, "
                        "Lightroom): the input's CFA layout, levels, colour matrix, white balance and EXIF")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


_OVERRIDE = re.compile(r"^[A-Za-z_][\w-]*(\.[\w-]+)*=")  # the dotted.key= start of a --set word


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """The parsed command line, checked beyond argparse; ``--set`` groups split into overrides and inputs."""
    p = build_parser()
    args = p.parse_args(argv)
    # `--set key=value photo.ARW`: --set takes every word after it; the trailing words of each --set
    # that are not dotted.key=value (no '=', or a path such as night/iso=3200/ before it) are inputs
    overrides, inputs = [], []
    for group in args.set:
        tail = len(group)
        while tail and not _OVERRIDE.match(group[tail - 1]):
            tail -= 1
        overrides += group[:tail]
        inputs += group[tail:]
    args.inputs, args.set = inputs + args.inputs, overrides
    if not args.inputs:
        p.error("no INPUT: name RAW files and/or folders of RAW files")
    if not args.config and not args.onnx:
        p.error("-c/--config is required (or --onnx MODEL.onnx, whose file holds its config)")
    if args.onnx and args.no_onnx:
        p.error("--onnx and --no-onnx contradict each other")
    if args.threads is not None and args.threads < 1:
        p.error(f"--threads must be at least 1, got {args.threads}")
    if args.ratio != "auto":
        try:
            args.ratio = float(args.ratio)
        except ValueError:
            p.error(f"--ratio: expected a number or 'auto', got {args.ratio!r}")
        if not 0 < args.ratio < float("inf"):  # also refuses nan
            p.error(f"--ratio must be a positive number, got {args.ratio}")
        if args.ratio < 1:
            print(f"warning: --ratio {args.ratio:g} is below 1: it darkens the input (the ratio amplifies a dark "
                  f"exposure, as SID's 100 to 300; --ratio auto picks one)", file=sys.stderr)
    if not 0 < args.target_mean < float("inf"):
        p.error(f"--target-mean must be positive, got {args.target_mean}")
    if not 1 <= args.max_ratio < float("inf"):
        p.error(f"--max-ratio must be at least 1, got {args.max_ratio}")
    if args.video is None:
        for flag, given in (("--steady", args.steady), ("--frames", args.frames)):
            if given:
                p.error(f"{flag} goes with --video OUT.mp4")
    if args.steady_window < 1:
        p.error(f"--steady-window must be a number of frames (at least 1), got {args.steady_window}")
    if args.video is not None and not args.video.lower().endswith(".mp4"):
        p.error(f"--video {args.video}: expected a file name ending in .mp4")
    if not 0 < args.fps < float("inf"):
        p.error(f"--fps must be a positive number, got {args.fps}")
    return args


def run_video(args: argparse.Namespace) -> int:
    """``--video``: the frames as one MP4; prints where it went, the time and the colour flicker."""
    result = enhance_video(args.inputs, args.video, frames_dir=args.out if args.frames else None,
                           config=args.config, overrides=args.set, checkpoint=args.checkpoint, onnx=args.onnx,
                           runtime=args.runtime, threads=args.threads, use_export=not args.no_onnx,
                           device=args.device, amp=args.amp, ratio=args.ratio, target_mean=args.target_mean,
                           max_ratio=args.max_ratio, fps=args.fps,
                           steady=args.steady_window if args.steady else 0, dng=args.dng,
                           bits=16 if args.bits16 else 8, tile=args.tile, overlap=args.overlap,
                           two_pass=not args.one_pass, rotate=args.rotate, precision=args.precision,
                           progress=not args.no_progress, max_memory_gb=args.max_memory)
    n = result["frames"]
    print(f"summary: {n} frame(s) -> {args.video} at {args.fps:g} fps (ratio {result['ratio']:.1f}"
          + (f", steady colour over {min(args.steady_window, n)} frames" if args.steady else "")
          + f") in {result['seconds']:.1f} s, "
          f"{result['seconds'] / max(n, 1):.2f} s per frame; colour flicker (frame-to-frame std of the mean "
          f"colour) {result['flicker']:.2f} levels of 255" + (f"; frames in {args.out}" if args.frames else ""))
    return 0


def run(args: argparse.Namespace) -> int:
    """Enhance the files of the parsed ``args`` and print what became of each: 0 when every file was
    enhanced, 1 when some failed (or a CUDA error stopped the run); bad usage raises a user error."""
    if args.video:
        return run_video(args)
    try:
        result = enhance_files(args.inputs, args.out, config=args.config, overrides=args.set,
                               checkpoint=args.checkpoint, onnx=args.onnx, runtime=args.runtime,
                               threads=args.threads, use_export=not args.no_onnx, device=args.device, amp=args.amp,
                               ratio=args.ratio, target_mean=args.target_mean, max_ratio=args.max_ratio,
                               bits=16 if args.bits16 else 8, tile=args.tile, overlap=args.overlap,
                               two_pass=not args.one_pass, rotate=args.rotate, dng=args.dng,
                               precision=args.precision, progress=not args.no_progress,
                               max_memory_gb=args.max_memory)
    except DeviceFailure as exc:  # sticky: nothing more can run on this GPU in this process
        print(f"error: {exc}; a CUDA error leaves the GPU unusable for the rest of the process: rerun the "
              f"remaining files (--set test.fast=false runs float32 eager, --device cpu avoids the GPU)",
              file=sys.stderr)
        return 1
    for src, out, ratio in result["done"]:
        tile = result["tiles"].get(src)
        dng = result["dngs"].get(src)
        print(f"{src} -> {out}" + (f" and {dng}" if dng else "") + f" (ratio {ratio:.1f}"
              + (f", tiles of {tile}" if tile else "") + ")")
    n = len(result["done"])
    per_file = f", {result['seconds'] / n:.2f} s per file" if n else ""
    print(f"summary: {n} of {len(result['files'])} file(s) enhanced into {args.out} in {result['seconds']:.1f} s"
          f"{per_file}" + (f"; {len(result['failed'])} failed" if result["failed"] else ""))
    if result["failed"]:
        print(f"{len(result['failed'])} file(s) failed:", file=sys.stderr)
        for _, message in result["failed"]:
            print(f"  {message}", file=sys.stderr)
        return 1
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    return run_cli(lambda: run(args), trust_checkpoint=args.trust_checkpoint)


if __name__ == "__main__":
    sys.exit(main())
