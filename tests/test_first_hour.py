"""A newcomer's first hour (issue 10): config cross-checks, one image per test image, one-line
checkpoint errors, log lines, resume messages, where the synthetic set may be auto-created."""
from __future__ import annotations

import importlib.util
import json
import math
import re

import pytest
import torch
from torch.utils.data import DataLoader

from cans.config import ConfigError, load_config, validate
from cans.config_checks import check_config, smallest_input
from cans.data import DataError, collate_samples, ensure_synthetic
from cans.data.synthetic import make_synthetic_sid
from cans.models import build_model

from helpers import REPO

TINY = {"type": "CANS", "in_channel": 4, "width": 8, "middle_blk_num": 1, "enc_blk_nums": [1, 1, 1, 1],
        "dec_blk_nums": [1, 1, 1, 1], "adaptive_size": 2, "block_size": 2}
QUIET = dict(log=lambda *_: None)


def _script(name):
    spec = importlib.util.spec_from_file_location(name.replace(".", "_"), REPO / name)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# ----------------------------------------------------------------------------- item 3: config checks

def test_every_shipped_config_passes_the_cross_checks():
    for path in sorted((REPO / "configs").rglob("*.yaml")):
        check_config(load_config(str(path)))


def test_switching_the_demo_to_fuji_by_hand_names_the_keys_to_change():
    cfg = load_config(str(REPO / "configs" / "demo.yaml"), ["data.type=FujiDictSet"])
    with pytest.raises(ConfigError) as info:
        check_config(cfg)
    msg = str(info.value)
    assert msg == ("data.type FujiDictSet gives packed Fuji RAW (X-Trans, 9 channels, block 3), but "
                   "model.in_channel is 4, model.block_size is 2, model.adaptive_size is 2; set "
                   "model.in_channel=9 model.block_size=3 model.adaptive_size=3 (as configs/base/Fuji.yaml does), "
                   "or change data.type"), msg
    fuji = load_config(str(REPO / "configs" / "demo_fuji.yaml"), ["model.adaptive_size=2"])
    with pytest.raises(ConfigError, match=r"but model.adaptive_size is 2; set model.adaptive_size=3 "):
        check_config(fuji)


def test_synthetic_camera_must_fit_the_data_type():
    cfg = load_config(str(REPO / "configs" / "demo_fuji.yaml"), ["data.synthetic.camera=Sony"])
    with pytest.raises(ConfigError, match=r"^data.synthetic.camera is Sony but data.type is FujiDictSet \(Fuji\); "
                                          r"set data.synthetic.camera=Fuji"):
        check_config(cfg)
    mcr = load_config(str(REPO / "configs" / "CANS" / "MCR.yaml"), ["data.synthetic.auto_create=true"])
    with pytest.raises(ConfigError, match="no synthetic set stands in for data.type MCRDictSet"):
        check_config(mcr)


@pytest.mark.parametrize("config, patch, block, suggest", [("demo.yaml", 64, 2, 98), ("demo_fuji.yaml", 128, 3, 147),
                                                           ("demo_fuji.yaml", 200, 3, 201)])
def test_patch_size_against_the_smallest_input(config, patch, block, suggest):
    cfg = load_config(str(REPO / "configs" / config), [f"data.train.patch_size={patch}"])
    with pytest.raises(ConfigError) as info:
        check_config(cfg)
    msg = str(info.value)
    assert msg.startswith(f"data.train.patch_size: {patch} does not fit this model: a patch must be a multiple of "
                          f"{block}") and msg.endswith(f"set data.train.patch_size={suggest}"), msg
    # the smallest valid patch is accepted, and it is what the model takes
    ok = load_config(str(REPO / "configs" / config), [f"data.train.patch_size={block * smallest_input(cfg)}"])
    check_config(ok)
    model = build_model(ok)
    assert smallest_input(ok) == model.min_input_size
    side = smallest_input(ok)
    rgb, raw = model(torch.zeros(1, ok["model"]["in_channel"], side, side))
    assert rgb.shape[-1] == side * block


def test_smallest_input_follows_the_depth():
    for depth in (2, 3, 4):
        cfg = validate({"model": dict(TINY, enc_blk_nums=[1] * depth, dec_blk_nums=[1] * depth)})
        assert smallest_input(cfg) == build_model(cfg).min_input_size


def test_train_py_stops_on_a_mismatch_before_any_work(tmp_path, capsys):
    out, data = tmp_path / "run", tmp_path / "synthetic_sid"
    code = _script("train.py").main(["-c", str(REPO / "configs" / "demo.yaml"), "--no-progress", "--set",
                                     "data.type=FujiDictSet", f"output_dir={out}", f"data.data_path={data}"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "set model.in_channel=9" in err, err
    assert not out.exists() and not data.exists()


# ----------------------------------------------------------------------------- item 4: one image per test image

class _Pairs(torch.utils.data.Dataset):
    def __len__(self):
        return 3

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        clean = torch.rand(4, 52, 52, generator=g)
        return {"noisy_raw": clean, "clean_raw": clean, "clean_rgb": torch.rand(3, 104, 104, generator=g),
                "ratio": 100.0, "img_file": f"./Sony/short/1000{i}_00_0.1s.ARW", "lbl_file": f"gt{i}"}


def test_two_test_runs_with_different_checkpoints_leave_one_image_per_test_image(tmp_path):
    from cans.evaluate.tester import run_test

    cfg = validate({"name": "tiny", "output_dir": str(tmp_path / "run"), "model": dict(TINY),
                    "data": {"data_path": str(tmp_path)}, "test": {"save_grid": True}})
    images = tmp_path / "run" / "test" / "images"
    images.mkdir(parents=True)
    (images / "10000_00_0.1s_12.34.png").write_bytes(b"an image named with the PSNR, by an older version")
    keep = images / "notes.txt"
    keep.write_text("not an image: left alone")
    reports = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        path = tmp_path / f"ckpt{seed}.pth"
        torch.save(build_model(cfg).state_dict(), path)
        reports.append(run_test(cfg, str(path), device="cpu", progress=False, print_fn=lambda s: None,
                                loader=DataLoader(_Pairs(), batch_size=1, collate_fn=collate_samples)))
    assert reports[0]["reconstruction"]["psnr"] != reports[1]["reconstruction"]["psnr"]
    assert sorted(p.name for p in images.glob("*.png")) == [f"1000{i}_00_0.1s.png" for i in range(3)]
    assert len(list((images / "grid").glob("*.png"))) == 3 and keep.is_file()
    saved = json.loads((tmp_path / "run" / "test" / "metrics.json").read_text())
    assert saved["skipped"] == [] and [r["output"] for r in saved["per_image"]] == \
        [str(images / f"1000{i}_00_0.1s.png") for i in range(3)]


# ----------------------------------------------------------------------------- item 5: junk checkpoints

def _bad_files(tmp_path):
    good = tmp_path / "good.pth"
    torch.save(build_model(validate({"model": dict(TINY)})).state_dict(), good)
    files = {}
    files["junk.pth"] = b"hello, this is not a checkpoint at all" * 20
    files["truncated.pth"] = good.read_bytes()[: good.stat().st_size // 2]
    files["empty.pth"] = b""
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    torch.save({"conv.weight": torch.zeros(3, 3)}, tmp_path / "other_net.pth")
    return {"junk.pth": "not a PyTorch checkpoint", "truncated.pth": "truncated or damaged",
            "empty.pth": "the file is empty", "other_net.pth": "weights of another network, not CANS"}


def test_a_junk_checkpoint_is_one_plain_line(tmp_path, capsys):
    cfg_path = tmp_path / "tiny.yaml"
    cfg_path.write_text(f"model: {json.dumps(TINY)}\noutput_dir: {tmp_path / 'run'}\n")
    test_py = _script("test.py")
    for name, expected in _bad_files(tmp_path).items():
        path = tmp_path / name
        code = test_py.main(["-c", str(cfg_path), "--checkpoint", str(path), "--no-progress"])
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if not line.startswith("note:")]
        assert code == 2 and len(lines) == 1, err
        assert lines[0].startswith("error: ") and str(path) in lines[0] and expected in lines[0], err
        for noise in ("weights_only", "file an issue", "Traceback", "does the config"):
            assert noise not in err, err


def test_train_pretrained_junk_is_one_line_too(tmp_path):
    from cans.engine.checkpoint import CheckpointError, load_model_weights

    for name, expected in _bad_files(tmp_path).items():
        with pytest.raises(CheckpointError) as info:
            load_model_weights(build_model(validate({"model": dict(TINY)})), str(tmp_path / name))
        assert "\n" not in str(info.value) and expected in str(info.value) and name in str(info.value)


# ----------------------------------------------------------------------------- item 6: logs

def test_warnings_once_and_log_lines_never_glued_to_a_bar(tmp_path, capsys):
    from tqdm import tqdm
    from cans.train.logger import RunLogger

    log = RunLogger(str(tmp_path), tensorboard=False)
    log.warning("no CUDA device: a test")
    bar = tqdm(total=10, desc="epoch 1/1", file=__import__("sys").stdout, dynamic_ncols=False, ncols=60)
    for i in range(3):
        bar.update(1)
        log.info(f"line {i} while the bar runs")
    bar.close()
    log.close()
    out = capsys.readouterr().out
    assert re.search(r"\d\d:\d\d:\d\d WARNING: no CUDA device: a test\n", out) and "WARNING WARNING" not in out
    for i in range(3):
        at = out.index(f"line {i} while the bar runs") - len("00:00:00 ")
        assert re.match(r"\d\d:\d\d:\d\d ", out[at:]) and (at == 0 or out[at - 1] in "\r\n"), repr(out[max(0, at - 40):at + 5])
    text = (tmp_path / "train.log").read_text()
    assert "WARNING no CUDA device: a test" in text and "WARNING WARNING" not in text and "WARNING: WARNING" not in text


def test_a_failed_run_says_why_in_train_log(tmp_path, capsys):
    from cans.train.main import train_main

    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"junk" * 10)
    cfg = validate({"name": "tiny", "output_dir": str(tmp_path / "run"), "model": dict(TINY),
                    "data": {"data_path": str(tmp_path / "nowhere")}, "train": {"pretrained": str(bad)}})
    with pytest.raises(Exception) as info:
        train_main(cfg, progress=False)
    last = (tmp_path / "run" / "train.log").read_text().strip().splitlines()[-1]
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d ERROR ", last), last
    assert str(info.value) in last and "bad.pth" in last and "not a PyTorch checkpoint" in last


def test_validation_bar_is_labelled_valid(tmp_path, capsys):
    from cans.train.trainer import Trainer
    cfg = validate({"name": "tiny", "output_dir": str(tmp_path / "run"), "model": dict(TINY),
                    "data": {"num_workers": 0}, "train": {"epochs": 1, "save_per_epoch": 0}})
    tr = Trainer(cfg, train_set=_Pairs(), valid_set=_Pairs(), progress=True, device=torch.device("cpu"))
    tr.validate(0)
    tr.close()
    err = capsys.readouterr().err
    assert "valid:" in err and "test:" not in err, err


def test_resume_messages_give_the_real_values(tmp_path, capsys):
    from cans.train.trainer import Trainer
    base = {"name": "tiny", "output_dir": str(tmp_path / "run"), "model": dict(TINY), "data": {"num_workers": 0}}
    cfg = validate(dict(base, train={"epochs": 4, "base_lr": 1e-3, "min_lr": 1e-5, "save_per_epoch": 0}))
    tr = Trainer(cfg, train_set=_Pairs(), valid_set=False, progress=False, device=torch.device("cpu"))
    tr.fit(max_epochs=3)
    tr.close()
    capsys.readouterr()
    longer = validate(dict(base, train={"epochs": 8, "base_lr": 1e-3, "min_lr": 1e-5, "save_per_epoch": 0}))
    again = Trainer(longer, train_set=_Pairs(), valid_set=False, progress=False, device=torch.device("cpu"),
                    resume=str(tmp_path / "run" / "checkpoints" / "last.pth"))
    again.close()
    out = capsys.readouterr().out
    assert "-inf" not in out and "no validation yet" in out, out
    lr = lambda e, n: 1e-5 + 0.5 * (1e-3 - 1e-5) * (1 + math.cos(math.pi * e / n))
    # epoch 4 of the 4-epoch run trains at lr(3, 4); the longer schedule gives lr(3, 8)
    assert f"learning rate of epoch 4: {lr(3, 8):.4g} from this config's schedule " \
           f"(the checkpoint's schedule gave {lr(3, 4):.4g})" in out, out


# ----------------------------------------------------------------------------- item 7: paths

def _fuji_demo(path, *extra):
    return load_config(str(REPO / "configs" / "demo_fuji.yaml"),
                       [f"data.data_path={path}", "data.synthetic.scenes=3", "data.synthetic.height=150",
                        "data.synthetic.width=156", "data.train.patch_size=147", *extra])


def test_auto_create_refuses_a_missing_parent_and_a_misspelt_name(tmp_path):
    far = tmp_path / "elsewhere" / "datasets" / "synthetic_sid_fuji"
    with pytest.raises(DataError) as info:
        ensure_synthetic(_fuji_demo(far), **QUIET)
    assert f"{far} does not exist, nor does its folder {far.parent}" in str(info.value)
    assert not (tmp_path / "elsewhere").exists()
    typo = tmp_path / "synthetc_sid_fuji"
    with pytest.raises(DataError) as info:
        ensure_synthetic(_fuji_demo(typo), **QUIET)
    assert f"did you mean {tmp_path / 'synthetic_sid_fuji'}?" in str(info.value) and "make_synthetic_sid.py" in \
        str(info.value)
    assert not typo.exists()


def test_auto_create_replaces_a_set_made_for_the_other_camera(tmp_path):
    path = tmp_path / "synthetic_sid_fuji"
    make_synthetic_sid(str(path), camera="Sony", scenes=3, height=128, width=128, progress=False, **QUIET)
    messages = []
    assert ensure_synthetic(_fuji_demo(path), log=messages.append) is True
    assert json.loads((path / "synthetic_sid.json").read_text())["camera"] == "Fuji"
    assert any(f"{path} holds a synthetic Sony set" in m and "replacing it" in m for m in messages), messages
    assert ensure_synthetic(_fuji_demo(path), **QUIET) is False  # now the right camera: kept
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_make_synthetic_sid_script_overwrite(tmp_path, capsys):
    out = tmp_path / "set"
    args = ["--out", str(out), "--scenes", "3", "--height", "128", "--width", "128"]
    script = _script("scripts/make_synthetic_sid.py")
    assert script.main(args) == 0
    assert script.main(args + ["--camera", "Fuji", "--height", "150", "--width", "156"]) == 2
    assert "add --overwrite to replace this synthetic set" in capsys.readouterr().err
    assert script.main(args + ["--camera", "Fuji", "--height", "150", "--width", "156", "--overwrite"]) == 0
    assert json.loads((out / "synthetic_sid.json").read_text())["camera"] == "Fuji"
    assert str(out.resolve()) in capsys.readouterr().out
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "photo.txt").write_text("x")
    assert script.main(["--out", str(mine), "--overwrite"]) == 2
    assert "remove it or choose another --out" in capsys.readouterr().err and (mine / "photo.txt").is_file()


def test_a_checkpoint_of_the_other_camera_names_the_camera_not_model_keys(tmp_path):
    from cans.evaluate.tester import TestSetupError, load_model

    fuji = validate({"name": "tiny_fuji", "model": dict(TINY, in_channel=9, block_size=3, adaptive_size=3),
                     "data": {"type": "FujiDictSet"}})
    path = tmp_path / "fuji.pth"
    torch.save({"model": build_model(fuji).state_dict(), "config": fuji}, path)
    sony = validate({"name": "tiny", "model": dict(TINY)})
    with pytest.raises(TestSetupError) as info:
        load_model(sony, str(path), torch.device("cpu"))
    text = str(info.value)
    assert text.endswith("the checkpoint was trained on data.type FujiDictSet (run tiny_fuji); this config reads "
                         "SonyDictSet: use a config for FujiDictSet data") and "--set" not in text, text
