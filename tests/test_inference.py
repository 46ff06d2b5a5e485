"""scripts/infer.py and cans.inference on synthetic DNGs in the four Bayer phases (and X-Trans); the
notes it prints; a compiler failure or a CUDA error, simulated on the CPU, stops it at the first file."""
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import REFERENCE

pytest.importorskip("rawpy")
pytest.importorskip("tifffile")

from helpers import DEMO, REPO, one_error_line, write  # noqa: E402

from cans.cli import infer as cmd_infer
from cans.inference import InferenceError, auto_ratio, enhance, periodic_pad, phase_offset, read_mosaic  # noqa: E402
from cans.io.dng import write_dng  # noqa: E402
from cans.models import build_model  # noqa: E402

packing = pytest.importorskip("cans.cfa")

REF = REFERENCE
H, W = 101, 131  # odd on purpose: the output must keep this size
CODES = {"R": 0, "G": 1, "B": 2}
BLACK, WHITE = 512, 16383


def scene():
    """Grey background, a red, a green and a blue patch: (H, W, 3) in [0, 1]."""
    img = np.full((H, W, 3), 0.3)
    img[10:40, 10:50] = (0.9, 0.1, 0.1)
    img[55:90, 20:60] = (0.1, 0.8, 0.1)
    img[30:80, 80:120] = (0.1, 0.1, 0.9)
    return img


PATCHES = {"red": (slice(14, 36), slice(14, 46), 0), "green": (slice(59, 86), slice(24, 56), 1),
           "blue": (slice(34, 76), slice(84, 116), 2)}


def mosaic_of(img, cell):
    p = cell.shape[0]
    idx = np.tile(cell, (H // p + 1, W // p + 1))[:H, :W]
    values = np.take_along_axis(img, idx[..., None].astype(np.intp), axis=2)[..., 0]
    return np.round(BLACK + values * (WHITE - BLACK)).astype(np.uint16)


def bayer_cell(pattern):
    return np.array([CODES[c] for c in pattern], dtype=np.uint8).reshape(2, 2)


class Demosaic(torch.nn.Module):
    """Stand-in model: each packed pixel's colour average, repeated b x b (no learning).

    Its output is right only if the pipeline packed the mosaic in the model's phase."""

    def __init__(self, block_size=2):
        super().__init__()
        self.block_size = block_size
        self.in_channel = 4 if block_size == 2 else 9
        self.min_input_size = 1
        self.colours = (0, 1, 2, 1) if block_size == 2 else (0, 1, 2, 0, 2, 1, 1, 1, 1)

    def forward(self, x):
        planes = [x[:, [i for i, c in enumerate(self.colours) if c == k]].mean(1) for k in range(3)]
        rgb = torch.stack(planes, 1)
        b = self.block_size
        return rgb.repeat_interleave(b, 2).repeat_interleave(b, 3), x


@pytest.fixture(scope="module")
def bayer_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dng")
    img = scene()
    for pattern in ("RGGB", "GRBG", "GBRG", "BGGR"):
        write_dng(str(folder / f"scene_{pattern}.dng"), mosaic_of(img, bayer_cell(pattern)), cfa=pattern,
                            black=BLACK, white=WHITE)
    return folder


@pytest.mark.parametrize("pattern", ["RGGB", "GRBG", "GBRG", "BGGR"])
def test_four_bayer_phases_keep_size_and_colours(bayer_files, pattern):
    path = str(bayer_files / f"scene_{pattern}.dng")
    m = read_mosaic(path)
    assert m.pattern == pattern and m.data.shape == (H, W)
    out = enhance(Demosaic(), path, 1.0, "cpu")
    rgb = out["rgb"].numpy()
    assert rgb.shape == (3, H, W)
    for name, (ys, xs, channel) in PATCHES.items():
        mean = rgb[:, ys, xs].mean(axis=(1, 2))
        others = [c for c in range(3) if c != channel]
        assert mean[channel] > 0.6 and mean[others].max() < 0.2, (pattern, name, mean)
    # grey stays grey
    assert np.allclose(rgb[:, 95:100, 65:75].mean(axis=(1, 2)), 0.3, atol=0.02)


def test_auto_tile_measured_once_for_files_of_one_size(bayer_files, tmp_path, monkeypatch):
    import cans.tiling as tiling
    from cans.inference import run_inference

    sizes = []
    monkeypatch.setattr(tiling, "auto_tile", lambda model, device, hw, amp="off", *a, **k: sizes.append(tuple(hw)) or 32)
    files = sorted(str(p) for p in bayer_files.glob("*.dng"))
    result = run_inference(Demosaic(), files, str(tmp_path), 1.0, "cpu", tile="auto", overlap=8, progress=False)
    assert not result["failed"] and len(result["done"]) == 4 and set(result["tiles"].values()) == {32}
    assert sizes == [(51, 66)]   # the four phases pad to the same packed size: one measurement


def test_xtrans_phase(tmp_path):
    cell = np.roll(packing.XTRANS_PATTERN, (2, 3), axis=(0, 1))  # a shifted X-Trans layout
    path = str(tmp_path / "xtrans.dng")
    write_dng(path, mosaic_of(scene(), cell), cfa=cell, black=BLACK, white=WHITE)
    out = enhance(Demosaic(3), path, 1.0, "cpu")
    rgb = out["rgb"].numpy()
    assert rgb.shape == (3, H, W) and out["pattern"] == "X-Trans"
    for name, (ys, xs, channel) in PATCHES.items():
        mean = rgb[:, ys, xs].mean(axis=(1, 2))
        assert mean[channel] > 0.6 and np.delete(mean, channel).max() < 0.2, (name, mean)
    with pytest.raises(InferenceError, match="Fuji"):
        enhance(Demosaic(2), path, 1.0, "cpu")


def test_helpers():
    cell = bayer_cell("GBRG")
    dy, dx = phase_offset(cell, bayer_cell("RGGB"))
    padded, _ = periodic_pad(np.arange(20.0).reshape(4, 5), dy, dx, 2)
    assert (dy, dx) == (1, 0) and padded.shape == (6, 6)
    assert np.array_equal(padded[0, :5], np.arange(5, 10))  # row -1 copies row 1
    data = np.full((10, 10), 0.002)
    assert auto_ratio(data, 0.1) == pytest.approx(50.0)
    assert auto_ratio(data, 0.1, max_ratio=20) == 20.0
    assert auto_ratio(np.full((4, 4), 0.5), 0.1) == 1.0


def test_cli_with_tiny_model_and_corrupt_file(bayer_files, tmp_path):
    from cans.models import build_model
    torch.manual_seed(0)
    tiny = {"type": "CANS_Plus", "width": 8, "middle_blk_num": 1, "enc_blk_nums": [1, 1, 1],
            "dec_blk_nums": [1, 1, 1]}
    ckpt = tmp_path / "tiny.pth"
    torch.save({"model": build_model(tiny).state_dict()}, ckpt)
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text("base: %s\nmodel:\n  type: CANS_Plus\n  width: 8\n  middle_blk_num: 1\n"
                   "  enc_blk_nums: [1, 1, 1]\n  dec_blk_nums: [1, 1, 1]\n" % (REPO / "configs/base/Sony.yaml"))
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name in ("scene_RGGB.dng", "scene_BGGR.dng"):
        (inputs / name).write_bytes((bayer_files / name).read_bytes())
    (inputs / "broken.ARW").write_bytes(b"not a raw file" * 100)
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, str(REPO / "scripts/infer.py"), "-c", str(cfg), "--checkpoint", str(ckpt),
                           "--ratio", "auto", str(inputs), "--out", str(out), "--no-progress", "--device", "cpu",
                           "--dng"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "broken.ARW" in proc.stderr
    assert sorted(p.name for p in out.glob("*.png")) == ["scene_BGGR.png", "scene_RGGB.png"]
    assert sorted(p.name for p in out.glob("*.dng")) == ["scene_BGGR.dng", "scene_RGGB.dng"]   # --dng
    assert f"and {out / 'scene_BGGR.dng'} (ratio" in proc.stdout
    import rawpy
    with rawpy.imread(str(out / "scene_BGGR.dng")) as rp:
        assert rp.raw_image_visible.shape == (H, W) and rp.postprocess().shape == (H, W, 3)
    from PIL import Image
    assert Image.open(out / "scene_BGGR.png").size == (W, H)


def test_real_camera_file():
    path = REF / "real_raw" / "kodak_dc50.kdc"
    if not path.exists():
        pytest.skip(f"reference data not found: {path}")
    m = read_mosaic(str(path))
    assert m.pattern == "GRBG" and m.data.shape == (512, 768)
    out = enhance(Demosaic(), str(path), "auto", "cpu")
    assert out["rgb"].shape == (3, 512, 768) and 1.0 <= out["ratio"] <= 300.0
    with pytest.raises(InferenceError, match="not found|cannot read"):
        read_mosaic(str(REF / "real_raw" / "missing.kdc"))


def test_non_mosaic_sensor_is_a_clear_error(tmp_path):
    import tifffile
    data = (np.random.default_rng(0).random((64, 64, 3)) * 4000).astype(np.uint16)
    tags = [(271, "s", 0, "X", True), (272, "s", 0, "Y", True), (50706, "B", 4, (1, 4, 0, 0), True),
            (50708, "s", 0, "X Y", True), (50714, "H", 1, (0,), True), (50717, "H", 1, (4095,), True),
            (50721, "2i", 9, (1, 1, 0, 1, 0, 1, 0, 1, 1, 1, 0, 1, 0, 1, 0, 1, 1, 1), True),
            (50778, "H", 1, (21,), True)]
    path = tmp_path / "linear.dng"
    # planarconfig: tifffile 2026.11 no longer takes the last axis of 3 for samples with this photometric
    tifffile.imwrite(str(path), data, photometric=34892, planarconfig="contig", subfiletype=0, extratags=tags)
    with pytest.raises(InferenceError, match="not a colour-filter-array sensor"):
        read_mosaic(str(path))


def test_folder_scan_skips_hidden_files(tmp_path):
    """macOS copies leave ``._NAME.ARW`` resource forks next to the photos: not RAW files."""
    from cans.inference import find_inputs
    (tmp_path / "IMG_0001.ARW").write_bytes(b"x")
    (tmp_path / "._IMG_0001.ARW").write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("x")
    assert find_inputs([str(tmp_path)]) == [str(tmp_path / "IMG_0001.ARW")]


def test_cli_rejects_bad_auto_ratio_options(capsys):
    script = cmd_infer
    for bad in (["--target-mean", "0"], ["--max-ratio", "0.5"]):   # --ratio: test_infer_refuses_a_ratio_...
        with pytest.raises(SystemExit) as info:
            script.parse_args(["-c", "x.yaml", "photo.ARW", *bad])
        assert info.value.code == 2 and bad[0] in capsys.readouterr().err
    assert script.parse_args(["-c", "x.yaml", "photo.ARW", "--ratio", "250"]).ratio == 250.0


def test_below_black_values_reach_the_model_negative(tmp_path):
    """As in training (the authors' loader): no clip at 0; only the configured clips apply."""
    from cans.inference import prepare_input
    dark = np.full((H, W), BLACK, np.uint16)
    dark[::2, ::3] = BLACK - 40            # read noise below the black level
    dark[1::2, 1::2] = BLACK + 60
    path = str(tmp_path / "dark.dng")
    write_dng(path, dark, cfa="RGGB", black=BLACK, white=WHITE)
    mosaic = read_mosaic(path)
    assert float(mosaic.data.min()) == pytest.approx(-40 / (WHITE - BLACK), rel=1e-6)
    packed, _, _ = prepare_input(mosaic, 100.0, 2, 4, max_clip=1.0, min_clip=None)
    assert float(packed.min()) == pytest.approx(-4000 / (WHITE - BLACK), rel=1e-5)
    clipped, _, _ = prepare_input(mosaic, 100.0, 2, 4, max_clip=1.0, min_clip=0.0)
    assert float(clipped.min()) == 0.0


# ------------------ a compiler failure or a CUDA error stops the run at the first file (checked on the CPU)

TINY_PLUS = {"type": "CANS_Plus", "width": 4, "middle_blk_num": 1, "enc_blk_nums": [1, 1], "dec_blk_nums": [1, 1]}


def tiny_plus():
    torch.manual_seed(0)
    return build_model(TINY_PLUS)


@pytest.fixture(scope="module")
def infer_setup(tmp_path_factory):
    """Three small Bayer DNGs, a tiny CANS++ checkpoint and its config."""
    pytest.importorskip("rawpy")
    pytest.importorskip("tifffile")
    from cans.io.dng import write_dng

    folder = tmp_path_factory.mktemp("infer")
    rng = np.random.default_rng(0)
    inputs = folder / "in"
    inputs.mkdir()
    for k in range(3):
        write_dng(str(inputs / f"photo_{k}.dng"), rng.integers(512, 4000, size=(64, 96), dtype=np.uint16),
                  cfa="RGGB", black=512, white=16383)
    ckpt = folder / "tiny.pth"
    torch.save({"model": tiny_plus().state_dict()}, ckpt)
    cfg = folder / "tiny.yaml"
    cfg.write_text("base: %s\nmodel:\n" % (REPO / "configs/base/Sony.yaml")
                   + "".join(f"  {k}: {v}\n" for k, v in TINY_PLUS.items()))
    return inputs, ckpt, cfg


def _infer_main():
    return cmd_infer.main


def _run_infer(infer_setup, tmp_path, monkeypatch, wrap):
    """scripts/infer.py on the three files, the fast path's model replaced by ``wrap(model)``."""
    import cans.inference

    inputs, ckpt, cfg = infer_setup
    original = cans.inference.fast_model_for_test

    def fast_model_for_test(cfg_, model, device, log=print):
        model, plan = original(cfg_, model, device, log)
        return wrap(model), plan

    monkeypatch.setattr(cans.inference, "fast_model_for_test", fast_model_for_test)
    return _infer_main()(["-c", str(cfg), "--checkpoint", str(ckpt), str(inputs), "--out", str(tmp_path / "out"),
                          "--no-progress", "--device", "cpu"])


@pytest.mark.cuda_path
def test_infer_stops_at_the_first_compiler_failure_with_the_hint_once(infer_setup, tmp_path, monkeypatch, capsys):
    """A failing compiler (what inductor raises on a CUDA machine without a working Triton) is
    tried once, not once per file, and the run ends with the one-line hint naming test.fast."""
    attempts = []

    def failing_backend(gm, example_inputs):
        attempts.append(len(example_inputs))
        raise RuntimeError("Cannot find a working triton installation (simulated)")

    torch._dynamo.reset()
    try:
        status = _run_infer(infer_setup, tmp_path, monkeypatch,
                            lambda model: torch.compile(model, backend=failing_backend, dynamic=False))
    finally:
        torch._dynamo.reset()
    err = capsys.readouterr().err
    assert status == 1
    assert len(attempts) == 1, f"{len(attempts)} compile attempts for 3 files"
    assert err.count("torch.compile failed") == 1 and "--set" in err and "test.fast=false" in err, err
    assert "(simulated)" in err and "FAILED" not in err and "Traceback" not in err
    assert not list((tmp_path / "out").glob("*.png"))


@pytest.mark.cuda_path
def test_infer_stops_at_the_first_cuda_error(infer_setup, tmp_path, monkeypatch, capsys):
    """A CUDA error is sticky: the first one stops the run with one line naming the file."""
    error = getattr(torch, "AcceleratorError", RuntimeError)
    calls = []

    class Broken(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.module = net

        def forward(self, x):
            calls.append(tuple(x.shape))
            raise error("CUDA error: an illegal memory access was encountered (simulated)")

    status = _run_infer(infer_setup, tmp_path, monkeypatch, Broken)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert status == 1 and len(calls) == 1, (status, calls)
    assert len(lines) == 1 and lines[0].startswith("error: ") and "photo_0.dng" in lines[0], err
    assert "illegal memory access" in lines[0] and "test.fast=false" in lines[0] and "0 of 3" in lines[0]


def _raise_from(filename: str, message: str):
    """Raise ``RuntimeError(message)`` from a frame whose file is ``filename`` (as code the
    compiler generated, or the compiler itself, would)."""
    namespace = {}
    exec(compile(f"def boom():\n    raise RuntimeError({message!r})\n", filename, "exec"), namespace)
    namespace["boom"]()


@pytest.mark.cuda_path
def test_compiler_and_cuda_failures_are_told_from_errors_of_one_file():
    from torch._dynamo.exc import BackendCompilerFailed, TorchDynamoException

    from cans.engine.failures import compiler_failure, cuda_failure

    def caught(fn, *args):
        try:
            fn(*args)
        except Exception as exc:  # noqa: BLE001 - the point is to classify it
            return exc
        raise AssertionError("nothing raised")

    inductor = caught(_raise_from, "/site-packages/torch/_inductor/codecache.py", "C++ compile error (simulated)")
    generated = caught(_raise_from, "/tmp/torchinductor_me/ab/cabc.py", "kernel failed (simulated)")
    user = caught(_raise_from, "/home/me/cans/models/networks.py", "shape mismatch")
    assert compiler_failure(inductor) and compiler_failure(generated) and not compiler_failure(user)
    assert compiler_failure(BackendCompilerFailed.__new__(BackendCompilerFailed))
    assert isinstance(BackendCompilerFailed.__new__(BackendCompilerFailed), TorchDynamoException)
    assert not compiler_failure(torch.OutOfMemoryError("CUDA out of memory (simulated)"))
    assert cuda_failure(RuntimeError("CUDA error: device-side assert triggered"))
    assert cuda_failure(getattr(torch, "AcceleratorError", RuntimeError)("CUDA error: misaligned address"))
    assert not cuda_failure(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"))
    assert not cuda_failure(RuntimeError("two-pass tiling: no statistics collected")) and not cuda_failure(user)


@pytest.mark.cuda_path
def test_a_compiler_runtime_error_stops_run_inference_as_a_compile_failure(infer_setup, tmp_path):
    """A RuntimeError from inside the compiler (not wrapped by dynamo) stops the run as a
    TorchDynamoException, which cans.cli.common.run_cli turns into the one-line hint."""
    from torch._dynamo.exc import TorchDynamoException

    from cans.cli.common import run_cli
    from cans.inference import run_inference

    inputs, _, _ = infer_setup
    calls = []

    class FailsInInductor(torch.nn.Module):
        block_size, in_channel, min_input_size = 2, 4, 16

        def forward(self, x):
            calls.append(1)
            _raise_from("/site-packages/torch/_inductor/runtime/triton_heuristics.py", "autotuning failed (simulated)")

    files = sorted(str(p) for p in inputs.glob("*.dng"))
    with pytest.raises(TorchDynamoException, match="autotuning failed"):
        run_inference(FailsInInductor(), files, str(tmp_path), 1.0, "cpu", progress=False)
    assert len(calls) == 1
    assert run_cli(lambda: run_inference(FailsInInductor(), files, str(tmp_path), 1.0, "cpu", progress=False)) == 1


# ---------------------------------- sub-folders, two files of one name, the tile that runs, a ratio below 1

def test_infer_folder_says_how_many_sub_folders_it_did_not_enter(tmp_path):
    from cans.inference import InferenceError, find_inputs
    (tmp_path / "IMG_0001.DNG").write_bytes(b"x")
    for sub in ("sub", "more"):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / "IMG_0002.DNG").write_bytes(b"x")
    notes = []
    assert find_inputs([str(tmp_path)], log=notes.append) == [str(tmp_path / "IMG_0001.DNG")]
    assert notes == [f"note: {tmp_path}: 2 sub-folder(s) not entered (more, sub); name them as inputs to "
                     f"enhance their files too"]
    notes.clear()
    assert find_inputs([str(tmp_path / "sub")], log=notes.append) == [str(tmp_path / "sub" / "IMG_0002.DNG")]
    assert notes == []
    (tmp_path / "IMG_0001.DNG").unlink()
    with pytest.raises(InferenceError) as err:   # only sub-folders: say so, not "no RAW files" alone
        find_inputs([str(tmp_path)], log=notes.append)
    assert "2 sub-folder(s) (more, sub) are not entered" in str(err.value) and str(tmp_path / "more") in \
        str(err.value)


def test_infer_ratio_below_one_warns_that_it_darkens(capsys):
    script = cmd_infer
    assert script.parse_args(["photo.ARW", "-c", "x.yaml", "--ratio", "0.5"]).ratio == 0.5
    err = capsys.readouterr().err
    assert err.startswith("warning: --ratio 0.5 is below 1: it darkens the input"), err
    for fine in ("1", "100", "auto"):
        script.parse_args(["photo.ARW", "-c", "x.yaml", "--ratio", fine])
        assert capsys.readouterr().err == ""


def test_infer_prints_renamed_outputs_and_the_tile_that_runs(tmp_path, capsys):
    import numpy as np
    import torch
    pytest.importorskip("rawpy")

    from cans.config import validate
    from cans.io.dng import write_dng
    from cans.models import build_model

    repo = REPO
    tiny = {"type": "CANS_Plus", "width": 8, "middle_blk_num": 1, "enc_blk_nums": [1, 1, 1, 1],
            "dec_blk_nums": [1, 1, 1, 1]}
    torch.manual_seed(0)
    ckpt = tmp_path / "tiny.pth"
    torch.save({"model": build_model(validate({"model": tiny})).state_dict()}, ckpt)
    cfg = write(tmp_path / "tiny.yaml", "base: %s\nmodel: %s\n" % (repo / "configs/base/Sony.yaml", tiny))
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a.dng", "a.kdc"):   # LibRaw reads the DNG content whatever the extension
        write_dng(str(photos / name), rng.integers(512, 2000, (240, 240)).astype(np.uint16), cfa="RGGB")
    out = tmp_path / "out"
    code = cmd_infer.main(["-c", cfg, "--checkpoint", str(ckpt), "--device", "cpu", "--no-progress",
                                "--tile", "100", "--overlap", "16", "--out", str(out), str(photos)])
    text = capsys.readouterr().out
    assert code == 0, text
    assert "--tile 100: tiles are a multiple of 16 packed pixels; using 96" in text, text
    assert "tiles of 96" in text and "tiles of 100" not in text, text
    assert f"note: a.png is taken by {photos / 'a.dng'}: {photos / 'a.kdc'} -> a_1.png" in text, text
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "a_1.png"]


# ------------------------------------------ bad input: one line naming the option or file, before the model

@pytest.mark.parametrize("ratio", ["0", "-2", "abc", "nan", "inf"])
def test_infer_refuses_a_ratio_that_is_not_a_positive_number(capsys, ratio):
    with pytest.raises(SystemExit) as info:
        cmd_infer.parse_args(["photo.ARW", "-c", DEMO, "--ratio", ratio])
    one_error_line(info.value.code, capsys.readouterr().err, "--ratio", ratio)


def test_infer_inputs_written_after_set_are_inputs_not_overrides():
    args = cmd_infer.parse_args(["-c", DEMO, "--set", "model.width=8", "test.amp=off",
                                                   "a.ARW", "folder"])
    assert args.set == ["model.width=8", "test.amp=off"] and args.inputs == ["a.ARW", "folder"]


def test_infer_a_path_with_an_equals_sign_after_set_is_an_input():
    args = cmd_infer.parse_args(["-c", DEMO, "--set", "test.amp=off", "night/iso=3200/",
                                                   "/photos/a=b.ARW"])
    assert args.set == ["test.amp=off"] and args.inputs == ["night/iso=3200/", "/photos/a=b.ARW"]
    args = cmd_infer.parse_args(["-c", DEMO, "x.ARW", "--set", "test.amp=off", "trian.epochs=2"])
    assert args.set == ["test.amp=off", "trian.epochs=2"] and args.inputs == ["x.ARW"]  # a misspelt key stays an override


def test_infer_without_inputs_says_so(capsys):
    with pytest.raises(SystemExit) as info:
        cmd_infer.parse_args(["-c", DEMO, "--set", "model.width=8"])
    one_error_line(info.value.code, capsys.readouterr().err, "INPUT")


@pytest.mark.parametrize("case", ["missing input", "out is a file", "empty folder", "folder without RAW"])
def test_infer_checks_inputs_and_out_before_the_model(tmp_path, capsys, case):
    photo = tmp_path / "photo.ARW"
    photo.write_bytes(b"not read: the check comes first")
    (tmp_path / "not_read.pth").write_bytes(b"")  # exists (its path is checked before --out), never read
    out, inputs, names = tmp_path / "out", [str(photo)], []
    if case == "missing input":
        inputs, names = [str(tmp_path / "typo.ARW")], [str(tmp_path / "typo.ARW"), "no such file"]
    elif case == "out is a file":
        out.write_text("keep me")
        names = ["--out", str(out)]
    else:
        folder = tmp_path / "folder"
        folder.mkdir()
        if case == "folder without RAW":
            (folder / "notes.txt").write_text("x")
        inputs, names = [str(folder)], [str(folder), "no RAW files"]
    code = cmd_infer.main([*inputs, "-c", DEMO, "--checkpoint", str(tmp_path / "not_read.pth"),
                                             "--out", str(out), "--no-progress", "--device", "cpu"])
    one_error_line(code, capsys.readouterr().err, *names)
    assert case != "out is a file" or out.read_text() == "keep me"


def test_infer_with_a_missing_checkpoint_leaves_no_result_folder(tmp_path, capsys):
    photo = tmp_path / "photo.ARW"
    photo.write_bytes(b"never read")
    out = tmp_path / "results"
    code = cmd_infer.main([str(photo), "-c", DEMO, "--checkpoint", str(tmp_path / "missing.pth"),
                                             "--out", str(out), "--device", "cpu", "--no-progress"])
    one_error_line(code, capsys.readouterr().err, "checkpoint not found", "missing.pth")
    assert not out.exists()


@pytest.mark.parametrize("where", ["--checkpoint", "test.checkpoint"])
def test_an_onnx_file_as_checkpoint_is_one_error_and_no_tip(tmp_path, capsys, where):
    """Before, infer.py on the CPU first printed a tip to export it ("... writes best.onnx.onnx"),
    then the error; now the error alone, and no result folder."""
    photo, onnx = tmp_path / "photo.ARW", tmp_path / "best.onnx"
    photo.write_bytes(b"never read")
    onnx.write_bytes(b"\x08\x09\x12\x07pytorch" + bytes(64))   # the start of a protobuf, as an export's
    cfg = write(tmp_path / "c.yaml", f"base: {DEMO}\ntest:\n  checkpoint: {onnx}\n")
    args = ["--checkpoint", str(onnx)] if where == "--checkpoint" else []
    code = cmd_infer.main([str(photo), "-c", cfg, *args, "--out", str(tmp_path / "out"),
                                                 "--device", "cpu", "--no-progress"])
    out, err = capsys.readouterr()
    one_error_line(code, err, f"cannot read checkpoint {onnx}: an ONNX export", f"--onnx {onnx}")
    assert "tip" not in out + err and "onnx.onnx" not in out + err, out + err
    assert not (tmp_path / "out").exists()


def test_a_pytorch_checkpoint_named_onnx_is_not_taken_for_an_export(tmp_path):
    from cans.inference import check_not_an_export

    torch.save({"model": {}}, tmp_path / "odd.onnx")   # a zip archive: its loading decides what it is
    check_not_an_export(str(tmp_path / "odd.onnx"))
    check_not_an_export(str(tmp_path / "missing.onnx"))   # a missing file: check_checkpoint_path says so
    (tmp_path / "real.onnx").write_bytes(b"\x08\x09")
    with pytest.raises(InferenceError, match="an ONNX export, not a PyTorch checkpoint"):
        check_not_an_export(str(tmp_path / "real.onnx"))


@pytest.mark.parametrize("name, fmt, kind", [("photo.jpg", "JPEG", "a JPEG image"), ("photo.png", "PNG", "a PNG image"),
                                             ("IMG_0001.HEIC", None, "a HEIC image")])
def test_infer_says_a_jpeg_is_not_raw_before_loading_the_model(tmp_path, capsys, monkeypatch, name, fmt, kind):
    """Before, the model was loaded (seconds to minutes with a large one) and then the file failed."""
    from PIL import Image

    import cans.inference

    path = tmp_path / name
    if fmt:
        Image.new("RGB", (16, 16), (200, 30, 30)).save(path, fmt)
    else:   # the ISO base media box a HEIC file starts with
        path.write_bytes(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(64))

    def no_model(**kwargs):
        raise AssertionError("the model was loaded before the inputs were checked")
    monkeypatch.setattr(cans.inference, "load_runner", no_model)
    (tmp_path / "w.pth").write_bytes(b"not read")
    code = cmd_infer.main([str(path), "-c", DEMO, "--checkpoint", str(tmp_path / "w.pth"),
                                                 "--out", str(tmp_path / "out"), "--device", "cpu", "--no-progress"])
    one_error_line(code, capsys.readouterr().err, str(path), kind, "not a camera RAW file")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("pattern", ["RGGB", "GRBG", "GBRG", "BGGR", "X-Trans"])
def test_dng_holds_the_raw_output_in_the_inputs_layout(tmp_path, pattern):
    """--dng: with a model whose RAW output is its input, the DNG's mosaic is the input's times the
    ratio (clipped at white), site for site: unpacked and cropped back in the input's phase; the
    layout, levels and white balance are the input's."""
    from cans.inference import run_inference
    from cans.io.raw import read_raw

    xtrans = pattern == "X-Trans"
    cell = np.roll(packing.XTRANS_PATTERN, (2, 3), axis=(0, 1)) if xtrans else bayer_cell(pattern)
    path = str(tmp_path / "in.dng")
    write_dng(path, mosaic_of(scene(), cell), cfa=cell if xtrans else pattern, black=BLACK, white=WHITE,
              as_shot_neutral=(0.5, 1.0, 0.8), iso=1600, exposure_time=0.05)
    source = read_raw(path)
    for ratio in (1.0, 2.0):
        out = tmp_path / f"x{ratio:g}"
        result = run_inference(Demosaic(3 if xtrans else 2), [path], str(out), ratio, "cpu", dng=True,
                               progress=False)
        assert not result["failed"] and result["dngs"][path] == str(out / "in.dng")
        back = read_raw(str(out / "in.dng"))
        expected = np.clip(np.round((source.mosaic.astype(np.float64) - BLACK) * ratio + BLACK), 0, WHITE)
        assert np.array_equal(back.mosaic, expected.astype(np.uint16))
        assert np.array_equal(back.cfa, source.cfa) and np.array_equal(back.black, source.black)
        assert back.white == source.white and np.allclose(back.wb, source.wb)

