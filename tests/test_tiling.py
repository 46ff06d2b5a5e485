"""Tiled inference (cans.tiling): one tile = the whole frame, blending, bounded tile size,
the two-pass statistics hooks, --tile auto arithmetic, the out-of-memory fallback, orientation."""
from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys

import pytest
import torch
import torch.nn as nn
from helpers import REPO, TESTS, fake_cpu_bound

from cans import machine, tiling
from cans.inference import TileBar, apply_orientation
from cans.models import build_model
from cans.tiling import (
    FallbackModel,
    GlobalPoolStats,
    TiledModel,
    check_tile_arguments,
    compare_tiling,
    run_with_fallback,
    tile_for_memory,
    tile_for_model,
    tile_starts,
)


def command(script: str):
    """The command module behind a repository script: "scripts/infer.py" -> cans.cli.infer."""
    return importlib.import_module("cans.cli." + script.rsplit("/", 1)[-1][:-3])

TINY = {"width": 8, "middle_blk_num": 1, "enc_blk_nums": [1, 1, 1, 1], "dec_blk_nums": [1, 1, 1, 1]}


def tiny(kind="CANS_Plus"):
    torch.manual_seed(0)
    return build_model({"type": kind, **TINY}).eval()


class Pointwise(nn.Module):
    """Stand-in with no spatial context: tiles can only differ from the frame through blending."""
    block_size, in_channel, min_input_size, multiple = 2, 4, 16, 16

    def __init__(self):
        super().__init__()
        self.shapes = []

    def forward(self, x):
        self.shapes.append(tuple(x.shape[-2:]))
        rgb = torch.stack([x[:, 0], x[:, 1:4:2].mean(1), x[:, 2]], 1) * 1.5 + 0.1
        return rgb.repeat_interleave(2, 2).repeat_interleave(2, 3), x * 0.5


@pytest.mark.parametrize("kind", ["CANS", "CANS_Plus"])
def test_one_tile_covering_the_frame_is_the_whole_frame(kind):
    net = tiny(kind)
    x = torch.rand(1, 4, 70, 90)
    with torch.no_grad():
        rgb0, raw0 = net(x)
        rgb1, raw1 = TiledModel(net, 96, 16)(x)
        rgb2, raw2 = TiledModel(net, 96, 16, two_pass=True)(x)
    assert torch.equal(rgb0, rgb1) and torch.equal(raw0, raw1)
    assert torch.equal(rgb0, rgb2) and torch.equal(raw0, raw2)


def test_tiles_are_bounded_and_blend_to_the_frame():
    model = Pointwise()
    x = torch.rand(2, 4, 150, 230)
    with torch.no_grad():
        rgb0, raw0 = model(x)
        model.shapes.clear()
        tiled = TiledModel(model, 64, 24)
        rgb1, raw1 = tiled(x)
    # memory no longer grows with the frame: the model never saw more than one tile
    assert set(model.shapes) == {(64, 64)} and len(model.shapes) > 6
    assert rgb1.shape == rgb0.shape and raw1.shape == raw0.shape
    # blending weights sum to one everywhere: a model without spatial context is reproduced
    assert torch.allclose(rgb1, rgb0, atol=1e-5) and torch.allclose(raw1, raw0, atol=1e-5)


def test_tile_starts_cover_and_overlap():
    starts = tile_starts(240, 64, 16, 16)
    assert starts[0] == 0 and starts[-1] == 240 - 64
    assert all(b - a <= 64 - 16 for a, b in zip(starts, starts[1:]))      # overlap at least 16
    assert all(s % 16 == 0 for s in starts)
    assert tile_starts(48, 64, 16, 16) == [0]


def test_two_pass_hooks_reproduce_the_models_own_pooling():
    """Collecting the statistics over a frame and imposing them gives the model's own output:
    the hooks find every pooling point (GCP c1/c2, the heads' query and the shared key)."""
    net = tiny("CANS_Plus")
    x = torch.rand(1, 4, 64, 96)
    with torch.no_grad():
        rgb0, raw0 = net(x)
        stats = GlobalPoolStats(net, (64, 96))
        stats.mode = "collect"
        stats.start_tile(0, 0, (64, 96), (0, 64), (0, 96))
        net(x)
        n_points = len(stats.sums)
        stats.mode = "apply"
        stats.calls = {}
        rgb1, raw1 = net(x)
        # the imposed statistics are used: other statistics change the output
        for key in stats.sums:
            stats.sums[key] = stats.sums[key] * 3.0
        stats.calls = {}
        rgb2, _ = net(x)
        stats.close()
        rgb3, _ = net(x)
    assert n_points == 2 * 4 + 2 + 1       # 4 GCP x (c1, c2), 2 head queries, 1 shared key
    assert torch.allclose(rgb0, rgb1, atol=1e-5) and torch.allclose(raw0, raw1, atol=1e-5)
    assert not torch.allclose(rgb0, rgb2, atol=1e-3)
    assert torch.equal(rgb0, rgb3)         # hooks removed


def test_two_pass_runs_tiles_and_keeps_shapes():
    net = tiny("CANS_Plus")
    x = torch.rand(1, 4, 100, 140)
    with torch.no_grad():
        tiled = TiledModel(net, 64, 16, two_pass=True)
        rgb, raw = tiled(x)
    assert rgb.shape == (1, 3, 200, 280) and raw.shape == (1, 4, 100, 140)
    assert set(tiled.calls) == {(64, 64)}
    assert torch.isfinite(rgb).all()


def test_bad_tile_sizes_are_clear():
    net = tiny()
    with pytest.raises(ValueError, match="at least"):
        TiledModel(net, 32)
    with pytest.raises(ValueError, match="smaller than the tile"):
        TiledModel(net, 64, 64)


def test_tile_for_memory():
    assert tile_for_memory(1e9, 100.0, (100, 100)) is None                 # 1 MB of activations fits
    side = tile_for_memory(1e9, 1e5, (2000, 3000))
    assert side % 16 == 0 and side * side * 1e5 <= 0.7e9 and (side + 16) ** 2 * 1e5 > 0.7e9
    assert tile_for_memory(1e3, 1e5, (2000, 3000)) == 64                  # never below the smallest tile


class OOMAbove(nn.Module):
    """Stand-in that 'runs out of memory' on inputs larger than ``limit`` packed pixels."""
    block_size, in_channel, min_input_size, multiple = 2, 4, 16, 16

    def __init__(self, limit):
        super().__init__()
        self.inner, self.limit = Pointwise(), limit

    def forward(self, x):
        if x.shape[-1] * x.shape[-2] > self.limit:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return self.inner(x)


def test_out_of_memory_retries_in_tiles_with_a_message():
    model = OOMAbove(64 * 64)
    x = torch.rand(1, 4, 200, 300)
    messages = []
    rgb, raw, used = run_with_fallback(model, x, log=messages.append, name="photo.ARW")
    assert used is not None and used <= 64
    assert rgb.shape == (1, 3, 400, 600)
    assert any("photo.ARW: out of memory on the whole frame" in m for m in messages)
    wrapped = FallbackModel(OOMAbove(96 * 96), log=messages.append)
    assert wrapped(x)[1].shape == (1, 4, 200, 300) and wrapped.used is not None
    with pytest.raises(RuntimeError, match="out of memory even in tiles"):
        run_with_fallback(OOMAbove(10), x, log=messages.append)


def test_tile_arguments_are_checked_without_building_a_model():
    from cans.inference import InferenceError, check_tiling

    net = tiny()
    assert tile_for_model(net, 100) == 96 and TiledModel(net, 100).tile == 96   # rounded down to the multiple 16
    for tile in (None, "auto"):
        check_tile_arguments(net, tile, 16)    # sized later: only the overlap is checked now
        with pytest.raises(ValueError, match=">= 0"):
            check_tile_arguments(net, tile, -1)
        with pytest.raises(InferenceError, match=">= 0"):   # as infer.py's check did before the clean-up
            check_tiling(net, tile, -1)
    for tile, overlap, says in ((40, 16, "at least 64 packed pixels"), (100, 96, r"smaller than the tile \(96"),
                                (64, -1, ">= 0")):
        with pytest.raises(ValueError, match=says):
            check_tile_arguments(net, tile, overlap)
        with pytest.raises(ValueError, match=says):
            FallbackModel(net, tile, overlap)
        with pytest.raises(InferenceError, match=says):
            check_tiling(net, tile, overlap)


def test_compare_tiling_scores_against_the_whole_frame_and_the_ground_truth():
    """The table's PSNRs are 10 log10(1 / MSE) of the clamped outputs (checked here in numpy, float64)."""
    import numpy as np

    model = Pointwise()
    gen = torch.Generator().manual_seed(0)
    samples = [{"noisy_raw": torch.rand(4, 80, 96, generator=gen), "clean_rgb": torch.rand(3, 160, 192, generator=gen)}
               for _ in range(2)]
    rows = compare_tiling(model, iter(samples), [(48, 16, False), (128, 16, True)], progress=False, total=2)
    assert [(r["tile"], r["images"]) for r in rows] == [(48, 2), (128, 2)]

    def db(a, b):
        return 10 * np.log10(1.0 / np.mean((a.numpy().astype(np.float64) - b.numpy().astype(np.float64)) ** 2))

    with torch.no_grad():
        wholes = [model(s["noisy_raw"][None])[0].clamp(0, 1) for s in samples]
    expected_gt = np.mean([db(w, s["clean_rgb"][None]) for w, s in zip(wholes, samples)])
    for r in rows:
        assert r["psnr_gt_whole"] == pytest.approx(expected_gt, abs=1e-4)
        assert r["psnr_gt_tiled"] == pytest.approx(expected_gt, abs=1e-3)   # blending reproduces a pointwise model
        assert r["psnr_vs_whole"] >= r["min_psnr_vs_whole"] > 80
    assert rows[1]["psnr_vs_whole"] == float("inf")   # one tile covers the frame: the model itself


def test_auto_tile_is_measured_once_per_input_size(monkeypatch):
    import cans.tiling as tiling

    sizes = []

    def fake_auto_tile(model, device, frame_hw, amp="off", *args, **kwargs):
        sizes.append(tuple(frame_hw))
        return 48

    monkeypatch.setattr(tiling, "auto_tile", fake_auto_tile)
    wrapped = FallbackModel(Pointwise(), "auto", 16)
    for shape in ((100, 120), (100, 120), (80, 96), (100, 120)):
        rgb, raw = wrapped(torch.rand(1, 4, *shape))
        assert wrapped.used == 48 and raw.shape[-2:] == shape
    assert sizes == [(100, 120), (80, 96)]
    run_with_fallback(Pointwise(), torch.rand(1, 4, 100, 120), tile="auto", overlap=16)
    assert sizes[-1] == (100, 120) and len(sizes) == 3   # without a dict to keep: measured every time


@pytest.mark.parametrize("flip,k", [(3, 2), (5, 1), (6, -1)])
def test_orientation_flags(flip, k):
    img = torch.arange(2 * 3 * 4, dtype=torch.float32).reshape(2, 3, 4)
    assert torch.equal(apply_orientation(img, flip), torch.rot90(img, k, dims=(-2, -1)))
    assert torch.equal(apply_orientation(img, 0), img)


def test_infer_cli_tiles_and_rejects_a_bad_tile(tmp_path, capsys):
    import importlib.util

    import numpy as np
    pytest.importorskip("rawpy")
    from cans.io.dng import write_dng

    repo = REPO
    spec = importlib.util.spec_from_file_location("infer_script", repo / "scripts" / "infer.py")
    infer = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(infer)
    ckpt = tmp_path / "tiny.pth"
    torch.save({"model": tiny().state_dict()}, ckpt)
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text("base: %s\nmodel:\n  type: CANS_Plus\n  width: 8\n  middle_blk_num: 1\n  enc_blk_nums: [1, 1, 1, 1]\n"
                   "  dec_blk_nums: [1, 1, 1, 1]\n" % (repo / "configs/base/Sony.yaml"))
    rng = np.random.default_rng(0)
    write_dng(str(tmp_path / "photo.dng"), rng.integers(512, 2000, (180, 300)).astype(np.uint16), cfa="GRBG")
    common = ["-c", str(cfg), "--checkpoint", str(ckpt), "--device", "cpu", "--no-progress", str(tmp_path / "photo.dng")]
    assert infer.main(common + ["--tile", "64", "--overlap", "16", "--out", str(tmp_path / "out")]) == 0
    text = capsys.readouterr().out
    assert "tiles of 64" in text and "summary: 1 of 1 file(s) enhanced" in text
    from PIL import Image
    assert Image.open(tmp_path / "out" / "photo.png").size == (300, 180)
    assert infer.main(common + ["--tile", "40", "--out", str(tmp_path / "out2")]) == 2
    assert "at least 64 packed pixels" in capsys.readouterr().err


def test_rotate_follows_libraws_own_rendering(tmp_path):
    """--rotate turns the output as LibRaw's rendering of the same file is turned; the training
    target of RawPairDataset (user_flip=0) is not turned."""
    import numpy as np
    rawpy = pytest.importorskip("rawpy")
    from cans.data.rawpair import read_pair_file
    from cans.inference import enhance
    from cans.io.dng import write_dng

    mosaic = np.full((64, 96), 700, np.uint16)
    mosaic[:16, :24] = 12000                     # a bright block in the stored top-left corner
    path = str(tmp_path / "portrait.dng")
    write_dng(path, mosaic, cfa="RGGB", orientation=6)
    with rawpy.imread(path) as rp:
        assert rp.sizes.flip == 6
        ref = rp.postprocess(no_auto_bright=True).mean(axis=2)            # (96, 64): turned by LibRaw
    out = enhance(Pointwise(), path, 1.0, "cpu", rotate=True)["rgb"].mean(0).numpy()
    assert out.shape == ref.shape == (96, 64)
    def centroid(img):
        ys, xs = np.nonzero(img > (img.max() + img.min()) / 2)
        return ys.mean(), xs.mean()
    # 90 degrees clockwise: the stored top-left block ends at the top right (rows 0-23, columns 48-63)
    assert np.allclose(centroid(out), centroid(ref), atol=2.0)
    assert np.allclose(centroid(out), (11.5, 55.5), atol=2.0)
    assert enhance(Pointwise(), path, 1.0, "cpu")["rgb"].shape == (3, 64, 96)
    _, _, target = read_pair_file(path, 2, render=True)
    assert target.shape == (3, 64, 96)


def test_xtrans_two_pass_and_auto_on_cpu():
    torch.manual_seed(0)
    net = build_model({"type": "CANS_Plus", "in_channel": 9, "block_size": 3, "adaptive_size": 3, **TINY}).eval()
    x = torch.rand(1, 9, 90, 120)
    with torch.no_grad():
        rgb0, _ = net(x)
        rgb1, raw1 = TiledModel(net, 64, 16, two_pass=True)(x)
        rgb2, _, used = run_with_fallback(net, x, tile="auto")     # a small frame fits the CPU's bound whole
    assert rgb1.shape == rgb0.shape == (1, 3, 270, 360) and raw1.shape == (1, 9, 90, 120)
    assert used is None and torch.equal(rgb2, rgb0)


def test_two_pass_unwraps_a_compiled_model():
    """The two-pass hooks run on the eager modules of a torch.compile'd (or DDP-wrapped) model."""
    from cans.tiling import unwrap_model  # the unwrapping TiledModel uses
    net = tiny()

    class Wrapper(nn.Module):                # what torch.compile's OptimizedModule looks like
        def __init__(self, inner):
            super().__init__()
            self._orig_mod = inner

        def forward(self, x):
            raise AssertionError("the wrapper must not run in two-pass mode")

    wrapped = Wrapper(net)
    assert unwrap_model(wrapped) is net
    x = torch.rand(1, 4, 100, 140)
    with torch.no_grad():
        rgb0, _ = TiledModel(net, 64, 16, two_pass=True)(x)
        rgb1, _ = TiledModel(wrapped, 64, 16, two_pass=True)(x)
    assert torch.equal(rgb0, rgb1)


@pytest.mark.parametrize("script_path", ["test.py", "scripts/infer.py"])
def test_both_scripts_take_the_same_tile_arguments(script_path, capsys):
    script = command(script_path)
    base = ["-c", "x.yaml"] + (["photo.ARW"] if "infer" in script_path else [])
    args = script.parse_args(base + ["--tile", "256", "--overlap", "16", "--one-pass"])
    assert (args.tile, args.overlap, args.one_pass) == (256, 16, True)
    assert script.parse_args(base + ["--tile", "auto"]).tile == "auto"
    assert script.parse_args(base).tile is None
    for bad, says in ((["--tile", "0"], "positive"), (["--tile", "big"], "'auto'"), (["--overlap", "-1"], ">= 0")):
        with pytest.raises(SystemExit) as info:
            script.parse_args(base + bad)
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert info.value.code == 2 and f"argument {bad[0]}: " in err and says in err


def test_auto_keeps_the_tile_an_out_of_memory_retry_fell_back_to(monkeypatch):
    """--tile auto in a run: when the measured tile runs out of memory and a smaller one works, the
    next input of that size starts from the smaller one (no second failure, no second message)."""
    import cans.tiling as tiling

    monkeypatch.setattr(tiling, "auto_tile", lambda model, device, frame_hw, amp="off", *a, **k: 128)
    messages = []
    wrapped = FallbackModel(OOMAbove(80 * 80), "auto", 16, log=messages.append)
    x = torch.rand(1, 4, 150, 200)
    first = wrapped(x)[0]
    assert wrapped.used == 64 and len(messages) == 1 and "out of memory on tiles of 128" in messages[0]
    second = wrapped(x)[0]
    assert wrapped.used == 64 and len(messages) == 1
    assert torch.equal(first, second)


# ------------------------- --tile auto and the out-of-memory retry: the memory probe runs the eager network

@pytest.mark.cuda_path
def test_memory_probe_runs_the_eager_network_not_the_compiled_wrapper(monkeypatch):
    """The probe behind --tile auto and the out-of-memory retry measures the module the tiles run:
    the compiled wrapper is not called (no compile for the probe's 128 x 128 size)."""
    from torch._dynamo.testing import CompileCounter

    import cans.tiling as tiling

    # the CUDA memory counters, as a GPU would give them: 3 bytes per packed pixel of the probe
    for name in ("synchronize", "reset_peak_memory_stats"):
        monkeypatch.setattr(torch.cuda, name, lambda *a, **k: None)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda *a, **k: 1000)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda *a, **k: 1000 + 3 * 128 * 128)
    torch.manual_seed(0)
    net = build_model(dict(TINY, type="CANS_Plus", width=4, enc_blk_nums=[1, 1], dec_blk_nums=[1, 1])).eval()
    eager_calls = []
    net.register_forward_hook(lambda mod, inputs, output: eager_calls.append(tuple(inputs[0].shape)))
    counter = CompileCounter()
    torch._dynamo.reset()
    try:
        compiled = torch.compile(net, backend=counter, dynamic=False)
        per_pixel = tiling.measure_bytes_per_pixel(compiled, torch.device("cpu"))
    finally:
        torch._dynamo.reset()
    assert counter.frame_count == 0, "the probe compiled the wrapper"
    assert eager_calls == [(1, 4, tiling.PROBE_SIZE, tiling.PROBE_SIZE)]
    assert per_pixel == pytest.approx(3.0)


# ---------------------------------------------------------------------------------------------
# The CPU's memory bound: --max-memory, --tile auto and infer.py's default on the CPU
# ---------------------------------------------------------------------------------------------

class Hungry(Pointwise):
    """Holds PER_PIXEL bytes per packed pixel while it runs: a known appetite for the CPU's probe."""
    PER_PIXEL = 4096

    def forward(self, x):
        hold = torch.ones(self.PER_PIXEL // 4, *x.shape[-2:])     # float32, written: resident
        return super().forward(x + hold[:1].unsqueeze(0) * 0)


needs_proc = pytest.mark.skipif(not machine.reset_peak_memory(), reason="no /proc/self/clear_refs (not Linux)")


@needs_proc
def test_cpu_memory_probe_measures_what_a_pass_holds():
    per_pixel, fixed = tiling.measure_cpu_memory(Hungry())
    assert 0.95 * Hungry.PER_PIXEL <= per_pixel <= 1.5 * Hungry.PER_PIXEL
    assert fixed >= 0
    per_tile, _ = tiling.measure_cpu_memory(Hungry(), tiled=True)   # the tiles' first pass, through the tap
    assert 0.95 * Hungry.PER_PIXEL <= per_tile <= 1.5 * Hungry.PER_PIXEL


def bounded_tile_run():
    """A frame that would need about 600 MB whole runs in tiles, and the process's peak (the probes
    included) stays within the bound it was given; the output is the two-pass tiles' one. Run by
    the test below in a process of its own, as ``infer.py`` runs."""
    model, x = Hungry(), torch.rand(1, 4, 640, 768)
    model.PER_PIXEL = 1024
    machine.trim_memory()
    held = machine.resident_memory()
    limit_gb = (held + 400 * 2 ** 20) / 2 ** 30
    lines = []
    assert machine.reset_peak_memory()
    rgb, raw, used = run_with_fallback(model, x, tile="auto", overlap=16, max_memory_gb=limit_gb, log=lines.append)
    over = (machine.peak_memory() - limit_gb * 2 ** 30) / 2 ** 20
    assert over <= 32, f"{over:.0f} MB over the bound: {lines}"    # 32 MB for the interpreter's own
    assert used is not None and used < 640 and raw.shape[-2:] == (640, 768)
    assert any("more than" in line and f"tiles of {used}" in line for line in lines), lines
    expected, _ = TiledModel(Pointwise(), used, 16)(x)
    torch.testing.assert_close(rgb, expected)


@needs_proc
def test_tiles_keep_a_cpu_run_within_the_bound():
    """:func:`bounded_tile_run` in a fresh interpreter: after hundreds of tests in this one, its
    heap made the same run's peak 60 MB higher once (CI), which no user's ``infer.py`` has."""
    code = "import test_tiling; test_tiling.bounded_tile_run()"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), str(REPO)]))
    done = subprocess.run([sys.executable, "-c", code], cwd=TESTS, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


def test_tiles_report_each_pass_of_both(capsys):
    """``progress(done, total)`` after every tile pass, the two passes counted in one total; infer's
    run shows them as a second bar ("tiles") while a photo runs in tiles."""
    calls = []
    x = torch.rand(1, 4, 70, 90)
    tiled = TiledModel(Pointwise(), 48, 16, two_pass=True, progress=lambda done, total: calls.append((done, total)))
    tiled(x)
    n = len(tiled.calls) // 2
    assert n > 1 and calls == [(k, 2 * n) for k in range(1, 2 * n + 1)]
    calls.clear()
    TiledModel(Pointwise(), 48, 16, two_pass=False, progress=lambda done, total: calls.append((done, total)))(x)
    assert calls == [(k, n) for k in range(1, n + 1)]
    bar = TileBar()
    for done in range(1, 5):
        bar(done, 4)
    assert bar.bar.n == 4 and "tiles" in capsys.readouterr().err
    bar(1, 6)                       # the next photo's tiles: a bar of its own
    assert bar.bar.total == 6 and bar.bar.n == 1
    bar.close()
    assert bar.bar is None


def test_cpu_tiles_are_the_largest_within_the_room_left(monkeypatch):
    """With measured figures given, a frame that fits runs whole, one that does not gets the
    largest tile (a multiple of 16) whose planned memory stays within the bound."""
    figures = {False: (1000.0, 50e6), True: (3000.0, 80e6)}
    monkeypatch.setattr(tiling, "_cpu_memory", lambda model, tiled: figures[tiled])
    monkeypatch.setattr(tiling, "resident_memory", lambda: 500e6)
    limit = 4e9
    frame = tiling.frame_bytes_per_pixel(Pointwise())
    assert tiling.cpu_tile(Pointwise(), (1000, 1500), limit)[0] is None        # 0.5 + 0.05 + 1.5 GB and the frame's
    tile, why = tiling.cpu_tile(Pointwise(), (3000, 4000), limit)            # 12.55e9 bytes and the frame's whole
    whole_gib = (12.55e9 + frame * 3000 * 4000) / 2 ** 30                   # GiB, as every figure printed
    assert tile % 16 == 0 and "tiles of" in why and f"{whole_gib:.2f} GB" in why
    # a frame that fits on the network's figure alone, but not with its own buffers, runs in tiles
    hw = (1000, int((limit - 550e6) / 1000.0 / 1000) - 10)
    assert tiling.cpu_tile(Pointwise(), hw, limit)[0] is not None
    # whole while it needs no more than nine tenths of the room left; the line names the bound that would
    room = tiling.CPU_PLAN_SHARE * (limit - 500e6)
    width = int((room - 50e6) / (1000.0 + frame) / 1000)
    assert tiling.cpu_tile(Pointwise(), (1000, width), limit)[0] is None
    over, line = tiling.cpu_tile(Pointwise(), (1000, width + 2), limit)
    planned = (500e6 + room) / 2 ** 30
    assert over is not None and f"more than the {planned:.2f} GB planned within {limit / 2 ** 30:.2f} GB" in line
    asked = float(re.search(r"--max-memory ([0-9.]+) would run it whole", line).group(1)) * 2 ** 30
    assert tiling.cpu_tile(Pointwise(), (1000, width + 2), asked)[0] is None
    assert tiling.cpu_tile(Pointwise(), (1000, width + 2), asked - 0.1 * 2 ** 30)[0] is not None

    def planned(t):
        return 500e6 + figures[True][1] + (figures[True][0] * t * t + frame * 3000 * 4000) / tiling.CPU_PLAN_SHARE

    assert planned(tile) <= limit < planned(tile + 16)
    assert tiling.cpu_tile(Pointwise(), (3000, 4000), limit, two_pass=False)[0] > tile   # one pass: 1000 B


def test_the_tile_probe_starts_from_memory_handed_back(monkeypatch):
    """The tile probe runs after the whole-frame probe's runtime buffers are released and the C
    library's free memory is handed back: reused, that memory served the tile probe's first size
    and not its second, so a tile's memory per pixel read low (3.9 against 5.2 KB for the paper's
    CANS++), and a 24 MP photo ran in tiles whose peak passed the bound (6.05 GB against 5.5)."""
    events = []

    class Export(Pointwise):
        def release_memory(self):
            events.append("release")

    figures = {False: (1000.0, 50e6), True: (3000.0, 80e6)}
    monkeypatch.setattr(tiling, "_cpu_memory", lambda model, tiled: events.append(("probe", tiled)) or figures[tiled])
    monkeypatch.setattr(tiling, "trim_memory", lambda: events.append("trim"))
    monkeypatch.setattr(tiling, "resident_memory", lambda: 500e6)
    assert tiling.cpu_tile(Export(), (3000, 4000), 4e9)[0] is not None
    assert events[events.index(("probe", False)):events.index(("probe", True))] == [("probe", False), "release", "trim"]


def test_cpu_limit_is_the_smaller_of_the_setting_and_the_machine(monkeypatch):
    monkeypatch.setattr(tiling, "resident_memory", lambda: 1e9)
    monkeypatch.setattr(tiling, "available_memory", lambda: 100e9)
    assert tiling.cpu_memory_limit() == tiling.CPU_MEMORY_LIMIT
    assert tiling.cpu_memory_limit(8) == 8 * 2 ** 30
    monkeypatch.setattr(tiling, "available_memory", lambda: 2e9)
    assert tiling.cpu_memory_limit(8) == 1e9 + tiling.CPU_MEMORY_FRACTION * 2e9


def test_infer_bounds_memory_on_the_cpu_by_default(tmp_path, monkeypatch, capsys):
    """infer.py's photos on the CPU without --tile run what the memory bound chose (here: tiles of
    48), measured once per size; --max-memory reaches the bound; a --tile of one's own is kept."""
    import numpy as np

    from cans.inference import run_inference
    from cans.io.dng import write_dng

    paths = [str(tmp_path / f"photo{k}.dng") for k in range(2)]
    for k, path in enumerate(paths):
        write_dng(path, (600 + np.random.default_rng(k).random((192, 256)) * 400).astype(np.uint16))
    asked = fake_cpu_bound(monkeypatch, 48)
    out = run_inference(Pointwise(), paths, str(tmp_path / "out"), 4.0, "cpu", progress=False, max_memory_gb=2)
    assert out["tiles"] == {p: 48 for p in paths} and asked == [((96, 128), 2 * 2 ** 30)]
    assert "tiles of 48" in capsys.readouterr().out
    out = run_inference(Pointwise(), paths[:1], str(tmp_path / "out2"), 4.0, "cpu", progress=False, tile=64)
    assert out["tiles"] == {paths[0]: 64} and len(asked) == 1


def test_max_memory_must_be_a_positive_number(capsys):
    for bad in ("0", "-1", "lots", "inf"):
        with pytest.raises(SystemExit) as exc:
            command("scripts/infer.py").parse_args(["--max-memory", bad, "x.dng"])
        assert exc.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert "--max-memory" in err[-1] and "gigabytes" in err[-1]


def test_auto_on_a_device_other_than_cuda_or_cpu_runs_whole_frames(monkeypatch):
    """MPS shares the machine's memory in a way the process's resident size does not show: no CPU probe."""
    monkeypatch.setattr(tiling, "cpu_tile", lambda *a, **k: pytest.fail("the CPU probe ran for mps"))
    assert tiling.auto_tile(Pointwise(), "mps", (4000, 6000)) is None
