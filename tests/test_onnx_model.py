"""cans.onnx_model, scripts/export_onnx.py and the ONNX paths of infer.py and test.py: one export of a
tiny CANS++ at the paper's depth (about 25 s), then OpenVINO and ONNX Runtime against PyTorch at sizes
that need padding, on DNG files, a real camera RAW and a small test set; the one-line errors (missing
runtime, not an ONNX file, another model's config)."""
import datetime
import json
import os
import re
import sys
import types

import numpy as np
import pytest
import torch
from helpers import REPO, one_error_line, write

pytest.importorskip("onnxruntime")
pytest.importorskip("openvino")
pytest.importorskip("onnxscript")
pytest.importorskip("rawpy")
pytest.importorskip("tifffile")

from cans import onnx_model  # noqa: E402
from cans.cli import export_onnx as cmd_export_onnx
from cans.cli import infer as cmd_infer
from cans.cli import test as cmd_test
from cans.evaluate.metrics import fidelity_psnr  # noqa: E402
from cans.models import build_model  # noqa: E402
from cans.models.blocks import LayerNorm2d  # noqa: E402
from cans.models.published import git_blob_id  # noqa: E402
from cans.onnx_model import OnnxModel, compare_with_pytorch, default_onnx_path, read_metadata  # noqa: E402

# CANS++ at the paper's depth (4 levels: padding to 16, every pooling point), narrow and one block a level
TINY = {"type": "CANS_Plus", "in_channel": 4, "width": 8, "middle_blk_num": 1, "enc_blk_nums": [1, 1, 1, 1],
        "dec_blk_nums": [1, 1, 1, 1], "adaptive_size": 2, "block_size": 2}


def _config(folder, name="tiny.yaml", model=TINY, extra=""):
    return write(folder / name, f"base: {REPO / 'configs/base/Sony.yaml'}\nname: tiny\noutput_dir: {folder / 'run'}\n"
                 f"model: {json.dumps(model)}\n" + extra)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny CANS++ checkpoint, its config, and its export by scripts/export_onnx.py at the default path."""
    folder = tmp_path_factory.mktemp("onnx")
    torch.manual_seed(0)
    net = build_model(TINY).eval()
    with torch.no_grad():   # LayerNorm affines of their own, as trained weights have (seeded: the identity)
        for norm in (m for m in net.modules() if isinstance(m, LayerNorm2d)):
            norm.g.add_(0.2 * torch.randn_like(norm.g)), norm.b.add_(0.2 * torch.randn_like(norm.b))
    ckpt = folder / "tiny.pth"
    torch.save({"model": net.state_dict()}, ckpt)
    cfg = _config(folder, extra=f"data:\n  data_path: {folder / 'SID'}\n  num_workers: 0\n"
                                "  synthetic: {auto_create: true, scenes: 3, height: 136, width: 200}\n")
    import contextlib
    import io
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cmd_export_onnx.main(["-c", cfg, "--checkpoint", str(ckpt)])
    assert code == 0, out.getvalue()
    return {"folder": folder, "ckpt": ckpt, "cfg": cfg, "net": net, "onnx": default_onnx_path(str(ckpt)),
            "stdout": out.getvalue()}


def test_export_checks_itself_and_records_what_it_is(exported):
    text = exported["stdout"]
    checks = [line for line in text.splitlines() if line.startswith("check: packed")]
    assert len(checks) == 3 and all("RGB PSNR" in line for line in checks), text
    assert f"written: {exported['onnx']}" in text
    meta = read_metadata(exported["onnx"])
    assert meta["block_size"] == "2" and meta["in_channel"] == "4" and meta["multiple"] == "16"
    assert meta["min_input_size"] == str(exported["net"].min_input_size)
    assert meta["weights_git_blob"] == git_blob_id(str(exported["ckpt"]))
    model = OnnxModel(exported["onnx"])
    assert model.config["model"]["width"] == 8 and model.config["model"]["type"] == "CANS_Plus"


def test_export_shows_each_step_and_estimates_what_is_left(exported):
    """Before, nothing was printed between the first line and the check (two minutes for the paper's
    model): now each graph's tracing and converting, the estimate for the tile graph and each
    checked size, in order, as they happen."""
    lines = exported["stdout"].splitlines()
    at = {}
    for graph in ("model graph", "tile graph"):
        steps = [i for i, line in enumerate(lines) if line.startswith(f"{graph}: ")]
        assert lines[steps[0]].startswith(f"{graph}: tracing (torch.export) ..."), lines
        assert any(lines[i].startswith(f"{graph}: converting: ") for i in steps), lines
        assert re.fullmatch(rf"{graph}: done in \d+ s.*", lines[steps[-1]]), lines
        at[graph] = steps
    assert max(at["model graph"]) < min(at["tile graph"]), lines
    assert re.search(r"the tile graph next, about \d+ s \(estimated", lines[max(at["model graph"])]), lines
    check = next(i for i, line in enumerate(lines) if line.startswith("check: "))
    assert check > max(at["tile graph"]) and "(estimated" in lines[check], lines
    sizes = [line for line in lines if line.startswith("check: packed")]
    assert [s.split(" ")[3] for s in sizes] == ["(1/3):", "(2/3):", "(3/3):"], sizes


@pytest.fixture(scope="module")
def runners(exported):
    """The export loaded once per runtime."""
    return {rt: OnnxModel(exported["onnx"], runtime=rt) for rt in ("openvino", "onnxruntime")}


@pytest.mark.parametrize("runtime", ["openvino", "onnxruntime"])
@pytest.mark.parametrize("size", [(49, 49), (49, 51), (64, 96), (65, 99), (97, 131), (50, 300), (160, 48 + 33)])
def test_any_size_from_the_smallest_up_matches_pytorch(exported, runners, runtime, size):
    """Sizes that need padding on one axis, both, odd ones, and none: the graph pads as the model does."""
    row, = compare_with_pytorch(runners[runtime], exported["net"], [size], seed=sum(size))
    assert row["max_abs_rgb"] < 1e-5 and row["max_abs_raw"] < 1e-5, row
    assert row["rgb_psnr"] is None or row["rgb_psnr"] >= 60.0, row


def test_auto_takes_openvino_then_onnxruntime(exported, monkeypatch):
    assert OnnxModel(exported["onnx"]).runtime == "openvino"
    monkeypatch.setitem(sys.modules, "openvino", None)
    assert OnnxModel(exported["onnx"]).runtime == "onnxruntime"


def test_too_small_input_and_wrong_channels_are_refused(runners):
    model = runners["openvino"]
    with pytest.raises(ValueError, match="too small"):
        model(torch.zeros(1, 4, 48, 64))
    with pytest.raises(ValueError, match=r"\(B, 4, H, W\)"):
        model(torch.zeros(1, 9, 64, 64))
    rgb, raw = model(torch.rand(2, 4, 49, 50))   # a batch runs one image at a time
    assert rgb.shape == (2, 3, 98, 100) and raw.shape == (2, 4, 49, 50)


def _dngs(folder):
    from cans.io.dng import write_dng
    folder.mkdir(exist_ok=True)
    rng = np.random.default_rng(3)
    # odd sizes in two phases: the phase pad and the model's padding both apply
    write_dng(str(folder / "odd.dng"), rng.integers(512, 3000, size=(203, 301), dtype=np.uint16), cfa="GRBG",
              black=512, white=16383)
    write_dng(str(folder / "wide.dng"), rng.integers(512, 3000, size=(130, 410), dtype=np.uint16), cfa="RGGB",
              black=512, white=16383)
    return folder


def _infer(args, capsys):
    code = cmd_infer.main(args + ["--no-progress"])
    out = capsys.readouterr()
    return code, out.out, out.err


def _png(path):
    import imageio.v3 as iio
    return torch.from_numpy(iio.imread(path).astype(np.float64) / 65535.0)


def test_infer_with_onnx_matches_pytorch_on_dng_files(exported, tmp_path, capsys):
    """infer.py --onnx (config from the file) against --no-onnx (PyTorch), 16-bit PNGs, a numeric
    --ratio, then two-pass tiles against PyTorch's."""
    inputs = _dngs(tmp_path / "in")
    code, out, err = _infer(["--onnx", exported["onnx"], str(inputs), "--out", str(tmp_path / "onnx"),
                             "--ratio", "20", "--16bit", "--checkpoint", str(exported["ckpt"]), "--dng"], capsys)
    assert code == 0, out + err
    assert "as ONNX" in out and "2 of 2 file(s)" in out and "--checkpoint is not used with --onnx" in out
    assert "run by OpenVINO" in out
    code, out, err = _infer(["--onnx", exported["onnx"], "--runtime", "onnxruntime", str(inputs), "--out",
                             str(tmp_path / "ort"), "--ratio", "20", "--16bit"], capsys)
    assert code == 0 and "run by ONNX Runtime" in out, out + err
    code, out, err = _infer(["-c", exported["cfg"], "--checkpoint", str(exported["ckpt"]), "--no-onnx", str(inputs),
                             "--out", str(tmp_path / "torch"), "--ratio", "20", "--16bit", "--dng"], capsys)
    assert code == 0, out + err
    assert "ONNX" not in out
    from cans.io.raw import read_raw
    for name in ("odd.dng", "wide.dng"):   # --dng with --onnx: the export's RAW output, as PyTorch's
        a, b = (read_raw(str(tmp_path / route / name)) for route in ("onnx", "torch"))
        assert a.mosaic.shape == b.mosaic.shape and np.array_equal(a.cfa, b.cfa)
        diff = np.abs(a.mosaic.astype(np.int64) - b.mosaic.astype(np.int64))
        assert diff.max() <= 2, (name, diff.max())    # a DN or two: float32 rounding at 14 bits
    for name in ("odd.png", "wide.png"):
        b = _png(tmp_path / "torch" / name)
        for runtime in ("onnx", "ort"):
            a = _png(tmp_path / runtime / name)
            assert a.shape == b.shape and a.shape[:2] in ((203, 301), (130, 410))
            psnr = fidelity_psnr(a, b)
            assert psnr is None or psnr >= 60.0, (name, runtime, psnr)
    code, out, err = _infer(["--onnx", exported["onnx"], str(inputs), "--out", str(tmp_path / "onnx_tiles"),
                             "--ratio", "20", "--16bit", "--tile", "64", "--overlap", "16"], capsys)
    assert code == 0 and "tiles of 64" in out, out + err
    code, out, err = _infer(["-c", exported["cfg"], "--checkpoint", str(exported["ckpt"]), "--no-onnx", str(inputs),
                             "--out", str(tmp_path / "torch_tiles"), "--ratio", "20", "--16bit", "--tile", "64",
                             "--overlap", "16"], capsys)
    assert code == 0, out + err
    for name in ("odd.png", "wide.png"):   # two-pass tiles (the default) with the export as with PyTorch
        psnr = fidelity_psnr(_png(tmp_path / "onnx_tiles" / name), _png(tmp_path / "torch_tiles" / name))
        assert psnr is None or psnr >= 60.0, (name, psnr)


@pytest.mark.parametrize("runtime", ["openvino", "onnxruntime"])
def test_two_pass_tiles_through_the_tile_graph_equal_pytorch_s(exported, runners, runtime):
    """The tile graph written beside the export serves the two-pass statistics: its tiles match
    PyTorch's two-pass tiles far more closely than one pass matches two, on an odd size."""
    from cans.tiling import TiledModel

    net, onnx = exported["net"], runners[runtime]
    assert onnx.meta["tile_graph"] == "tiny.tiles.onnx" and len(onnx.pool_points) > 0
    x = torch.rand(1, 4, 150, 203, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        torch_two = TiledModel(net, 64, 16, True)(x)[0]
        torch_one = TiledModel(net, 64, 16, False)(x)[0]
    onnx_two = TiledModel(onnx, 64, 16, True)(x)[0]
    gap = fidelity_psnr(torch_one, torch_two)
    assert gap is not None and gap < 120, gap      # the second pass changes the output
    psnr = fidelity_psnr(onnx_two, torch_two)
    assert psnr is None or psnr > 130, psnr         # and the export's second pass changes it the same way
    assert onnx._stats is None                      # closed after the frame


def test_two_pass_tiles_without_the_tile_graph_say_what_to_do(exported, tmp_path):
    import shutil

    from cans.errors import InferenceError
    from cans.tiling import TiledModel

    shutil.copy(exported["onnx"], tmp_path / "tiny.onnx")   # the model file alone, its tile graph left behind
    model = OnnxModel(str(tmp_path / "tiny.onnx"))
    with pytest.raises(InferenceError, match="tile graph .* missing.*--one-pass"):
        TiledModel(model, 64, 16, True)(torch.rand(1, 4, 100, 130))
    rgb, _ = TiledModel(model, 64, 16, False)(torch.rand(1, 4, 100, 130))   # one pass needs only the model
    assert rgb.shape == (1, 3, 200, 260)


def test_infer_on_the_cpu_uses_the_export_beside_the_checkpoint_only_for_its_weights(exported, tmp_path, capsys):
    inputs = _dngs(tmp_path / "in")
    args = ["-c", exported["cfg"], "--checkpoint", str(exported["ckpt"]), "--device", "cpu", str(inputs / "odd.dng")]
    code, out, err = _infer(args + ["--out", str(tmp_path / "a")], capsys)
    assert code == 0 and "the export beside the checkpoint; --no-onnx runs PyTorch" in out, out + err
    assert "run by OpenVINO" in out and out.count("weights:") == 1
    # --amp asks for another precision than the export's: PyTorch runs, and a note says why
    code, out, err = _infer(args + ["--out", str(tmp_path / "amp"), "--amp", "bf16"], capsys)
    assert code == 0 and "not using" in out and "bf16" in out and "as ONNX" not in out, out + err
    # other weights under another name: the export beside it is not theirs
    other = tmp_path / "other.pth"
    torch.manual_seed(1)
    torch.save({"model": build_model(TINY).state_dict()}, other)
    (tmp_path / "other.onnx").write_bytes(open(exported["onnx"], "rb").read())
    code, out, err = _infer(["-c", exported["cfg"], "--checkpoint", str(other), "--device", "cpu",
                             str(inputs / "odd.dng"), "--out", str(tmp_path / "b")], capsys)
    assert code == 0 and "exported from other weights" in out and "as ONNX" not in out, out + err
    assert f"export_onnx.py -c {exported['cfg']} --checkpoint" in out   # the command to copy, with the config
    # no export at all: one line says how to make one
    (tmp_path / "other.onnx").unlink()
    code, out, err = _infer(["-c", exported["cfg"], "--checkpoint", str(other), "--device", "cpu",
                             str(inputs / "odd.dng"), "--out", str(tmp_path / "c")], capsys)
    assert code == 0 and "tip: on the CPU, an ONNX export" in out and "scripts/export_onnx.py" in out, out + err


def test_real_camera_raw_through_onnx_matches_pytorch(exported, runners, reference_dir):
    from cans.inference import enhance

    path = reference_dir / "real_raw" / "kodak_dc50.kdc"
    if not path.exists():
        pytest.skip(f"no {path}")
    torch_out = enhance(exported["net"], str(path), "auto", "cpu", log=lambda *_: None)
    for runtime, model in runners.items():
        onnx = enhance(model, str(path), "auto", "cpu", log=lambda *_: None)
        assert onnx["rgb"].shape == torch_out["rgb"].shape == (3, 512, 768)
        psnr = fidelity_psnr(onnx["rgb"], torch_out["rgb"])
        assert psnr is None or psnr >= 60.0, (runtime, psnr)


def test_test_py_scores_the_export_as_it_scores_the_checkpoint(exported, tmp_path, capsys):
    test_main = cmd_test.main
    common = ["--no-progress", "--no-images", "--all-frames"]
    assert test_main(common + ["-c", exported["cfg"], "--checkpoint", str(exported["ckpt"])]) == 0
    # without -c: the config stored in the export (the same data set); the report goes to test_onnx/
    code = test_main(common + ["--onnx", exported["onnx"]])
    out = capsys.readouterr()
    assert code == 0, out.out + out.err
    assert f"testing {exported['onnx']}" in out.out
    run = exported["folder"] / "run"
    a = json.loads((run / "test" / "metrics.json").read_text())
    b = json.loads((run / "test_onnx" / "metrics.json").read_text())
    assert b["weights"]["onnx"].endswith("tiny.onnx") and b["weights"]["git_blob"] == a["weights"]["git_blob"]
    assert len(a["per_image"]) == len(b["per_image"]) >= 3
    for ra, rb in zip(a["per_image"], b["per_image"]):
        assert ra["img_file"] == rb["img_file"]
        for key in ("rgb_psnr", "raw_psnr"):
            assert abs(ra[key] - rb[key]) < 1e-3, (key, ra[key], rb[key])
    assert "run by OpenVINO" in (run / "test_onnx" / "tables.md").read_text()


def test_missing_runtime_is_one_line(exported, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)   # `import openvino` raises ImportError
    inputs = _dngs(tmp_path / "in")
    code, out, err = _infer(["--onnx", exported["onnx"], "--runtime", "openvino", str(inputs), "--out",
                             str(tmp_path / "o")], capsys)
    one_error_line(code, err, "OpenVINO is not installed", "pip install openvino")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    code, out, err = _infer(["--onnx", exported["onnx"], str(inputs), "--out", str(tmp_path / "o")], capsys)
    one_error_line(code, err, "neither OpenVINO nor ONNX Runtime is installed", "pip install")
    assert not (tmp_path / "o").exists()
    code = cmd_export_onnx.main(["-c", exported["cfg"], "--checkpoint", str(exported["ckpt"]),
                                                       "--out", str(tmp_path / "x.onnx")])
    one_error_line(code, capsys.readouterr().err, "neither OpenVINO nor ONNX Runtime is installed")
    # without the runtime, infer.py on the CPU runs PyTorch and says why it did not use the export
    code, out, err = _infer(["-c", exported["cfg"], "--checkpoint", str(exported["ckpt"]), "--device", "cpu",
                             str(inputs / "odd.dng"), "--out", str(tmp_path / "p")], capsys)
    assert code == 0 and "neither OpenVINO nor ONNX Runtime" in out and "as ONNX" not in out, out + err


def test_export_out_must_be_an_onnx_file_name(exported, tmp_path, capsys):
    """Not the checkpoint (it would be overwritten), not a folder, checked before the export."""
    export_main = cmd_export_onnx.main
    before = exported["ckpt"].read_bytes()
    for out in (str(exported["ckpt"]), str(tmp_path / "newdir") + "/", str(tmp_path / "x.pth")):
        code = export_main(["-c", exported["cfg"], "--checkpoint", str(exported["ckpt"]), "--out", out])
        one_error_line(code, capsys.readouterr().err, "--out", ".onnx")
    assert exported["ckpt"].read_bytes() == before and not (tmp_path / "newdir").exists()


@pytest.mark.parametrize("how", ["--no-onnx", "cpu"])
def test_an_export_given_as_checkpoint_says_to_use_onnx(exported, tmp_path, capsys, how):
    """On the CPU (the export beside a checkpoint is looked for) the error comes alone: before, a tip
    to export it first ("... writes tiny.onnx.onnx") came ahead of it."""
    inputs = _dngs(tmp_path / "in")
    extra = ["--no-onnx"] if how == "--no-onnx" else ["--device", "cpu"]
    code, out, err = _infer(["-c", exported["cfg"], "--checkpoint", exported["onnx"], *extra, str(inputs),
                             "--out", str(tmp_path / "o")], capsys)
    one_error_line(code, err, "an ONNX export", f"--onnx {exported['onnx']}")
    assert "tip" not in out + err and ".onnx.onnx" not in out + err, out + err


def test_missing_exporter_is_one_line(exported, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxscript", None)
    code = cmd_export_onnx.main(["-c", exported["cfg"], "--checkpoint", str(exported["ckpt"]),
                                                       "--out", str(tmp_path / "x.onnx")])
    one_error_line(code, capsys.readouterr().err, "onnxscript", "pip install")
    assert not (tmp_path / "x.onnx").exists()


def test_bad_onnx_inputs_are_one_line(exported, tmp_path, capsys):
    inputs = _dngs(tmp_path / "in")
    cases = [
        (["--onnx", str(exported["ckpt"])], [str(exported["ckpt"]), "not a readable ONNX model"]),
        (["--onnx", str(tmp_path / "missing.onnx")], ["missing.onnx", "no such file"]),
        (["--onnx", exported["onnx"], "-c", str(REPO / "configs/CANS/Sony.yaml")], ["another model", "type"]),
        (["--onnx", exported["onnx"], "--amp", "bf16"], ["--amp bf16", "float32"]),
    ]
    for args, names in cases:
        code, out, err = _infer(args + [str(inputs), "--out", str(tmp_path / "o")], capsys)
        one_error_line(code, err, *names)
    code = cmd_test.main(["-c", exported["cfg"], "--throughput", "--onnx", exported["onnx"]])
    one_error_line(code, capsys.readouterr().err, "--throughput", "scripts/benchmark_cpu.py")
    # an ONNX model from elsewhere: no cans.* metadata
    import onnx
    proto = onnx.load(exported["onnx"])
    del proto.metadata_props[:]
    onnx.save(proto, str(tmp_path / "foreign.onnx"))
    code, out, err = _infer(["--onnx", str(tmp_path / "foreign.onnx"), str(inputs), "--out", str(tmp_path / "o")],
                            capsys)
    one_error_line(code, err, "foreign.onnx", "metadata")


def test_mps_device_that_is_not_there_is_one_line(monkeypatch):
    from cans.engine.loading import pick_device
    from cans.errors import TestSetupError

    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(TestSetupError, match="MPS backend is not available"):
        pick_device("mps")


def test_ctrl_c_after_openvino_models_were_freed_is_an_interrupt_not_a_crash(exported):
    """With one openvino.Core per model, loading and freeing two models made the next SIGINT a
    segmentation fault (found when the test suite crashed); the models now share one Core."""
    import subprocess

    code = ("import gc, os, signal, sys\n"
            f"sys.path.insert(0, {str(REPO)!r})\n"
            "from cans.onnx_model import OnnxModel, tile_graph_path, _openvino_runner\n"
            f"path = {exported['onnx']!r}\n"
            "runners = [_openvino_runner(path, None), _openvino_runner(tile_graph_path(path), None)]\n"
            "del runners\n"
            "gc.collect()\n"
            "try:\n"
            "    os.kill(os.getpid(), signal.SIGINT)\n"
            "except KeyboardInterrupt:\n"
            "    print('interrupted')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "interrupted" in proc.stdout, (proc.returncode, proc.stderr[-2000:])


# ------------------------------------------ a model file is data: its metadata and external data are checked

def _edited_copy(exported, path, edit):
    """A copy of the export at ``path`` after ``edit(proto)``."""
    import onnx
    proto = onnx.load(exported["onnx"])
    edit(proto)
    onnx.save(proto, str(path))
    return str(path)


def test_a_class_named_in_the_stored_config_is_never_imported(exported, tmp_path, capsys, monkeypatch):
    """The stored config's data.type was validated through the registry, importing the module it names."""
    import yaml
    marker = tmp_path / "IMPORTED"
    write(tmp_path / "cans_evil_module.py", f"open({str(marker)!r}, 'w').close()\nclass Thing:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))

    def evil(proto):
        for prop in proto.metadata_props:
            if prop.key == "cans.config":
                cfg = yaml.safe_load(prop.value)
                cfg["data"]["type"] = "cans_evil_module:Thing"
                prop.value = yaml.safe_dump(cfg)
    path = _edited_copy(exported, tmp_path / "evil.onnx", evil)
    inputs = _dngs(tmp_path / "in")
    code, out, err = _infer(["--onnx", path, str(inputs), "--out", str(tmp_path / "o")], capsys)
    one_error_line(code, err, path, "data.type", "cans_evil_module:Thing", "pass -c")
    code = cmd_test.main(["--onnx", path, "--no-progress", "--set", f"output_dir={tmp_path / 'run'}"])
    one_error_line(code, capsys.readouterr().err, path, "data.type", "cans_evil_module:Thing")
    assert not marker.exists() and "cans_evil_module" not in sys.modules
    # the user's own config (-c) still runs the export: the class is named on the command line then
    code, out, err = _infer(["--onnx", path, "-c", exported["cfg"], str(inputs / "odd.dng"), "--out",
                             str(tmp_path / "o2")], capsys)
    assert code == 0, out + err


@pytest.mark.parametrize("runtime", ["openvino", "onnxruntime"])
@pytest.mark.parametrize("location", ["../" * 40 + "etc/passwd", "/etc/passwd"], ids=["relative", "absolute"])
def test_external_data_outside_the_folder_is_one_line_naming_the_file_and_why(exported, tmp_path, runtime, location):
    """OpenVINO's error began with 'Exception from src/inference/src/cpp/core.cpp:132:', which was all
    the line showed; both runtimes refuse such a path, and the line now says why."""
    from onnx import TensorProto

    from cans.errors import InferenceError

    def external(proto):
        tensor = next(t for t in proto.graph.initializer if len(t.raw_data) >= 16)
        length = len(tensor.raw_data)
        tensor.ClearField("raw_data")
        tensor.data_location = TensorProto.EXTERNAL
        for key, value in (("location", location), ("offset", "0"), ("length", str(length))):
            entry = tensor.external_data.add()
            entry.key, entry.value = key, value
    path = _edited_copy(exported, tmp_path / "external.onnx", external)
    with pytest.raises(InferenceError) as info:
        OnnxModel(path, runtime=runtime)
    text = str(info.value)
    assert "\n" not in text and text.startswith(f"{path}: ") and "cannot load it" in text, text
    assert "Exception from" not in text and "ONNXRuntimeError" not in text, text
    assert any(why in text for why in ("outside the base directory", "escapes model directory",
                                       "Absolute path not allowed")), text


def test_bf16_precision_runs_openvino_in_bfloat16_and_stays_close(exported, runners):
    """--precision bf16: OpenVINO's bfloat16 hint; close to float32 (far from 60 dB bit-faithfulness
    on a random tiny network, well above noise), and ONNX Runtime refused in one line."""
    from cans.errors import InferenceError

    bf16 = OnnxModel(exported["onnx"], precision="bf16")
    assert bf16.runtime == "openvino" and bf16.precision == "bf16"
    x = torch.rand(1, 4, 64, 96) * 0.5
    rgb32, _ = runners["openvino"](x)
    rgb16, raw16 = bf16(x)
    assert raw16.dtype == torch.float32 and rgb16.shape == rgb32.shape
    psnr = fidelity_psnr(rgb16, rgb32)
    assert psnr is None or psnr >= 30.0, psnr
    with pytest.raises(InferenceError, match="--precision bf16 runs on OpenVINO"):
        OnnxModel(exported["onnx"], runtime="onnxruntime", precision="bf16")


def test_openvino_compiles_the_whole_frame_graph_for_each_size(exported, runners, monkeypatch):
    """OnnxModel's OpenVINO runs the whole-frame graph compiled for the input's size: the outputs of
    the graph compiled for any size, a compile only when the size changes, and a size the graph
    cannot take is an InferenceError naming the file and the size. The tile graph (tiles of several
    sizes in turn) stays compiled for any size."""
    from cans.errors import InferenceError
    from cans.onnx_model import INPUT_NAME, _openvino_runner, _SizedOpenVINORunner

    model = runners["openvino"]
    assert isinstance(model._run, _SizedOpenVINORunner)
    model.pool_stats((64, 96)).close()
    assert not isinstance(model._tiles, _SizedOpenVINORunner)
    sized, any_size = _SizedOpenVINORunner(exported["onnx"], None), _openvino_runner(exported["onnx"], None)
    compiles = []
    compile_size = sized._compile
    monkeypatch.setattr(sized, "_compile", lambda size: compiles.append(size) or compile_size(size))
    gen = np.random.default_rng(0)
    inputs = {size: gen.random((1, 4) + size, dtype=np.float32) for size in [(49, 51), (64, 96)]}
    for size in [(49, 51), (49, 51), (64, 96), (49, 51)]:
        got, want = sized({INPUT_NAME: inputs[size]}), any_size({INPUT_NAME: inputs[size]})
        assert [g.shape for g in got] == [w.shape for w in want] == [(1, 3, 2 * size[0], 2 * size[1]), (1, 4) + size]
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, atol=1e-5)
    assert compiles == [(1, 4, 49, 51), (1, 4, 64, 96), (1, 4, 49, 51)]
    with pytest.raises(InferenceError, match=r"tiny\.onnx: OpenVINO cannot compile it for an input of 1x4x2x2"):
        sized({INPUT_NAME: np.zeros((1, 4, 2, 2), np.float32)})


def test_openvino_counters_say_where_a_run_goes_by_operator_type(exported):
    """The per-layer counters of one run, summed by operator type: the graph's convolutions are
    there, every figure is a duration, the largest come first and the total is their sum."""
    from cans.onnx_model import openvino_counters

    x = np.random.default_rng(0).random((1, 4, 64, 96), dtype=np.float32)
    counters = openvino_counters(exported["onnx"], x, threads=1)
    kinds = {k: v for k, v in counters.items() if k != "total"}
    assert "Convolution" in kinds and kinds["Convolution"] > 0 and min(kinds.values()) >= 0
    assert list(kinds.values()) == sorted(kinds.values(), reverse=True)
    assert counters["total"] == pytest.approx(sum(kinds.values()))


def test_openvino_counters_leave_the_first_run_out(monkeypatch):
    """A request's counters are the mean over its runs so far (as OpenVINO's CPU plugin keeps them);
    the first run, which touches every buffer for the first time, is taken out of the figures."""
    durations = {"conv": [9.0, 2.0, 3.0], "pad": [4.0, 0.5, 0.5]}   # seconds of runs 1, 2, 3

    class Request:
        runs = 0

        def infer(self, feeds):
            self.runs += 1

        def get_profiling_info(self):
            return [types.SimpleNamespace(node_name=name, node_type=name.title(), real_time=datetime.timedelta(
                seconds=sum(d[:self.runs]) / self.runs)) for name, d in durations.items()]

    monkeypatch.setattr(onnx_model, "_openvino_core", lambda: types.SimpleNamespace(read_model=lambda path: None))
    monkeypatch.setattr(onnx_model, "_compile_for_size", lambda *a: types.SimpleNamespace(create_infer_request=Request))
    counters = onnx_model.openvino_counters("any.onnx", np.zeros((1, 4, 8, 8), np.float32))
    assert counters == pytest.approx({"total": 3.0, "Conv": 2.5, "Pad": 0.5})
    assert list(counters) == ["total", "Conv", "Pad"]


def test_precision_table_compares_bf16_with_f32_on_raw_files(exported, tmp_path, capsys):
    from cans.cli import precision_table

    inputs = _dngs(tmp_path / "in")
    out = tmp_path / "precision.md"
    assert precision_table.main([str(inputs), "--onnx", exported["onnx"], "--ratio", "20", "--out", str(out)]) == 0
    rows = json.loads(out.with_suffix(".json").read_text())
    assert sorted(os.path.basename(r["file"]) for r in rows) == ["odd.dng", "wide.dng"]
    for r in rows:
        assert r["psnr_8bit"] is None or r["psnr_8bit"] >= 25.0, r
        assert 0 <= r["changed"] <= 1 and r["f32_s"] > 0 and r["bf16_s"] > 0
    assert "8-bit PSNR bf16 vs f32" in capsys.readouterr().out and out.is_file()


def test_steady_colour_through_the_exports_tile_graph(exported, runners):
    """--video --steady with an export: the statistics go through the tile graph; a window of one
    frame is the export's own output, a longer one keeps a history per pooling point."""
    from cans.video import SteadyColour

    x = torch.rand(1, 4, 64, 96) * 0.3
    rgb, raw = runners["openvino"](x)
    rgb1, raw1 = SteadyColour(runners["openvino"], 1)(x)
    assert float((rgb1 - rgb).abs().max()) < 1e-5 and float((raw1 - raw).abs().max()) < 1e-5
    steady = SteadyColour(runners["openvino"], 3)
    for k in range(4):
        steady(x + 0.02 * k)
    assert len(steady.history) == 3 and len(steady.history[-1]) == len(runners["openvino"].pool_points)
