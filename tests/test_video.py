"""cans.video and infer.py --video: a RAW sequence as an MP4, one ratio for all frames, frames of one
size and camera, and steady colour (the pooled statistics shared over a window of frames)."""
import os

import av
import numpy as np
import pytest
import torch
from helpers import REPO, fake_cpu_bound

from cans.cli import infer as cmd_infer
from cans.errors import InferenceError
from cans.io.dng import write_dng
from cans.models import build_model
from cans.video import SteadyColour, colour_flicker

TINY = {"type": "CANS_Plus", "width": 8, "middle_blk_num": 1, "enc_blk_nums": [1, 1, 1], "dec_blk_nums": [1, 1, 1]}
BLACK, WHITE = 512, 16383


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return build_model(TINY).eval()


def still_scene_frames(n, h=96, w=128, seed=0, level=0.01):
    """``n`` dark exposures of one still scene (RGGB DN), each with fresh shot and read noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    scene = level * (0.6 + 0.4 * np.sin(xx / 9.0) * np.cos(yy / 7.0))
    scene[0::2, 0::2] *= 1.6          # a warm scene: red sites brighter, blue darker
    scene[1::2, 1::2] *= 0.6
    signal = scene * (WHITE - BLACK)
    for _ in range(n):
        noisy = rng.poisson(signal / 2.0) * 2.0 + rng.normal(0, 3.0, signal.shape)
        yield np.clip(np.round(noisy + BLACK), 0, WHITE).astype(np.uint16)


@torch.no_grad()
def test_a_window_of_one_frame_is_the_model_itself():
    model = tiny_model()
    x = torch.rand(1, 4, 40, 56) * 0.3
    rgb, raw = model(x)
    rgb_s, raw_s = SteadyColour(model, 1)(x)
    assert torch.allclose(rgb_s, rgb, atol=1e-5) and torch.allclose(raw_s, raw, atol=1e-5)


@torch.no_grad()
def test_steady_colour_shares_the_statistics_and_lowers_the_flicker():
    """A still scene with fresh noise per frame: the frames' mean colour varies less with the pooled
    statistics shared over 8 frames than with each frame's own."""
    from cans.cfa import pack_bayer

    model = tiny_model(1)
    frames = [torch.from_numpy(pack_bayer((f.astype(np.float32) - BLACK) / (WHITE - BLACK) * 50))[None]
              for f in still_scene_frames(16)]
    plain = np.stack([model(x)[0][0].double().mean(dim=(1, 2)).numpy() for x in frames])
    steady_model = SteadyColour(model, 8)
    steady = np.stack([steady_model(x)[0][0].double().mean(dim=(1, 2)).numpy() for x in frames])
    assert len(steady_model.history) == 8
    assert colour_flicker(steady[8:]) < colour_flicker(plain[8:])


@pytest.fixture(scope="module")
def sequence(tmp_path_factory):
    root = tmp_path_factory.mktemp("video")
    folder = root / "frames"
    folder.mkdir()
    for k, mosaic in enumerate(still_scene_frames(5)):
        write_dng(str(folder / f"frame_{k:03d}.dng"), mosaic, cfa="RGGB", black=BLACK, white=WHITE,
                  make="CANS", model="Sequence", iso=6400, exposure_time=0.01)
    ckpt = root / "tiny.pth"
    torch.save({"model": tiny_model().state_dict()}, ckpt)
    cfg = root / "tiny.yaml"
    cfg.write_text("base: %s\nmodel:\n  type: CANS_Plus\n  width: 8\n  middle_blk_num: 1\n"
                   "  enc_blk_nums: [1, 1, 1]\n  dec_blk_nums: [1, 1, 1]\n" % (REPO / "configs/base/Sony.yaml"))
    return {"folder": folder, "ckpt": str(ckpt), "cfg": str(cfg), "root": root}


def _video(sequence, tmp_path, *extra):
    return cmd_infer.main([str(sequence["folder"]), "-c", sequence["cfg"], "--checkpoint", sequence["ckpt"],
                           "--device", "cpu", "--no-onnx", "--no-progress", "--out", str(tmp_path / "frames"),
                           *extra])


def test_video_writes_an_mp4_of_every_frame_in_order(sequence, tmp_path, capsys):
    out = tmp_path / "night.mp4"
    assert _video(sequence, tmp_path, "--video", str(out), "--fps", "12", "--steady", "--frames", "--dng") == 0
    printed = capsys.readouterr().out
    assert f"5 frame(s) -> {out} at 12 fps" in printed and "steady colour over 5 frames" in printed   # the window, as far as 5 frames fill it
    assert "ratio" in printed and "colour flicker" in printed
    with av.open(str(out)) as box:
        stream = box.streams.video[0]
        assert stream.codec_context.name == "h264" and stream.average_rate == 12
        frames = [f.to_ndarray(format="rgb24") for f in box.decode(video=0)]
    assert len(frames) == 5 and frames[0].shape == (96, 128, 3)
    assert sorted(p.name for p in (tmp_path / "frames").iterdir()) == sorted(
        [f"frame_{k:03d}.png" for k in range(5)] + [f"frame_{k:03d}.dng" for k in range(5)])


def test_video_without_frames_writes_no_pngs_and_one_ratio(sequence, tmp_path, capsys, monkeypatch):
    import cans.video as video

    seen = []
    real = video.enhance
    monkeypatch.setattr(video, "enhance", lambda model, path, ratio, *a, **k: seen.append(ratio) or
                        real(model, path, ratio, *a, **k))
    assert _video(sequence, tmp_path, "--video", str(tmp_path / "a.mp4")) == 0
    assert len(seen) == 5 and len(set(seen)) == 1           # one ratio for the whole sequence
    assert not (tmp_path / "frames").exists() and (tmp_path / "a.mp4").stat().st_size > 0


def test_mixed_frames_are_one_line_before_the_model_loads(sequence, tmp_path, capsys, monkeypatch):
    import cans.video as video

    folder = tmp_path / "mixed"
    folder.mkdir()
    for name in sorted(os.listdir(sequence["folder"]))[:2]:
        (folder / name).write_bytes((sequence["folder"] / name).read_bytes())
    write_dng(str(folder / "frame_999.dng"), np.full((64, 64), 600, np.uint16), cfa="RGGB", make="CANS",
              model="Sequence")
    monkeypatch.setattr(video, "load_runner", lambda **k: pytest.fail("the model loaded"))
    with pytest.raises(InferenceError, match=r"frame_999.dng is 64x64 pixels, but .*frame_000.dng is 96x128"):
        video.enhance_video([str(folder)], str(tmp_path / "v.mp4"), config=sequence["cfg"])
    assert not (tmp_path / "v.mp4").exists()


@pytest.mark.parametrize("args, message", [
    (["--steady"], "--steady goes with --video"),
    (["--frames"], "--frames goes with --video"),
    (["--video", "out.avi"], "expected a file name ending in .mp4"),
    (["--video", "o.mp4", "--fps", "0"], "--fps must be a positive number"),
])
def test_video_options_are_checked(args, message, capsys):
    with pytest.raises(SystemExit):
        cmd_infer.parse_args(["x.dng", "-c", "c.yaml", *args])
    assert message in capsys.readouterr().err


def test_steady_with_tiles_is_refused(sequence, tmp_path, capsys):
    code = _video(sequence, tmp_path, "--video", str(tmp_path / "t.mp4"), "--steady", "--tile", "64")
    assert code == 2 and "--steady runs whole frames" in capsys.readouterr().err


def test_frames_of_one_name_from_two_folders_keep_both_pngs(sequence, tmp_path, capsys):
    """--frames: two folders holding frame_000.dng ... write frame_000.png and frame_000_1.png (as
    infer.py names photos of one name), not one over the other."""
    import shutil

    other = tmp_path / "other"
    shutil.copytree(sequence["folder"], other)
    code = cmd_infer.main([str(sequence["folder"]), str(other), "-c", sequence["cfg"], "--checkpoint",
                           sequence["ckpt"], "--device", "cpu", "--no-onnx", "--no-progress", "--out",
                           str(tmp_path / "frames"), "--video", str(tmp_path / "v.mp4"), "--frames"])
    assert code == 0
    names = sorted(p.name for p in (tmp_path / "frames").iterdir())
    assert len(names) == 10 and "frame_000.png" in names and "frame_000_1.png" in names
    assert "note: frame_000.png is taken by" in capsys.readouterr().out


def test_video_keeps_to_the_cpu_memory_bound_and_steady_runs_whole_frames(sequence, tmp_path, capsys, monkeypatch):
    """--max-memory reaches the frames of a video (measured once for the sequence); --steady keeps
    whole frames, its statistics being the frame's, whatever the bound."""
    asked = fake_cpu_bound(monkeypatch, 32)
    assert _video(sequence, tmp_path, "--video", str(tmp_path / "a.mp4"), "--max-memory", "3") == 0
    assert asked == [((48, 64), 3 * 2 ** 30)]                 # 5 frames, one measurement
    assert "tiles of 32" in capsys.readouterr().out
    assert _video(sequence, tmp_path, "--video", str(tmp_path / "b.mp4"), "--steady", "--max-memory", "3") == 0
    assert len(asked) == 1
