"""Messages a user meets past the quick start (issue 22): where a bad config key came from and
what it likely meant, a misspelt list file, an unreadable own-camera RAW file, infer.py's notes."""
from __future__ import annotations

import pytest

from cans.config import ConfigError, load_config

from helpers import REPO


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return str(path)


# ---------------------------------------------------------------------------------------------
# 1. config keys: where they came from, likeliest suggestions first
# ---------------------------------------------------------------------------------------------

def config_error(path, overrides=()):
    with pytest.raises(ConfigError) as err:
        load_config(path, list(overrides))
    return str(err.value)


def test_set_key_error_names_the_override_and_ranks_suffix_matches(tmp_path):
    path = write(tmp_path / "c.yaml", "train:\n  epochs: 1\n")
    msg = config_error(path, ["train.lr=1e-3"])
    assert msg.startswith("--set train.lr=1e-3: unknown config key train.lr; did you mean "
                          "train.base_lr, train.min_lr"), msg
    assert str(path) not in msg
    # a value out of range from --set: the override is named too, not the file
    msg = config_error(path, ["train.epochs=-1"])
    assert msg.startswith("--set train.epochs=-1: train.epochs: expected int >= 0"), msg
    # a whole section set by --set
    assert config_error(path, ["train={lr: 2}"]).startswith("--set train={lr: 2}: unknown config key train.lr")


def test_file_key_error_names_file_and_line_or_the_base(tmp_path):
    write(tmp_path / "base" / "b.yaml", "model:\n  width: 8\ntrain:\n  epochs: 1\n  lr: 3\n")
    path = write(tmp_path / "c.yaml", "base: base/b.yaml\nname: x\ntrain:\n  epochs: -2\n")
    msg = config_error(path)
    assert msg.startswith(f"{path}, line 4: train.epochs: expected int >= 0, got -2"), msg
    # the override fixes epochs; the unknown key then comes from the base file, line 5
    msg = config_error(path, ["train.epochs=2"])
    base = str(tmp_path / "base" / "b.yaml")
    assert msg.startswith(f"{base}, line 5 (a base of {path}): unknown config key train.lr; "
                          f"did you mean train.base_lr, train.min_lr"), msg


def test_key_suggestions_find_the_same_name_in_another_section(tmp_path):
    path = write(tmp_path / "c.yaml", "{}\n")
    msg = config_error(path, ["train.batch_size=4"])
    assert "did you mean data.train.batch_size," in msg, msg
    assert "did you mean train.epochs?" in config_error(path, ["epochs=3"])
    # a close spelling still wins where nothing begins or ends the same
    assert "did you mean train.base_lr" in config_error(path, ["train.base_rl=1e-4"])


# ---------------------------------------------------------------------------------------------
# 2. a misspelt list file: the list files that exist, not the preparation
# ---------------------------------------------------------------------------------------------

def list_file_error(data_path, name):
    from cans.data import DataError, build_dataset
    cfg = load_config(write(data_path.parent / "c.yaml", "{}\n"),
                      [f"data.data_path={data_path}", f"data.train.image_list_file={name}"])
    with pytest.raises(DataError) as err:
        build_dataset(cfg, "train")
    return str(err.value)


def test_misspelt_list_file_suggests_the_list_files_there(tmp_path):
    data = tmp_path / "SID"
    for name in ("Sony_train_list.txt", "Sony_val_list.txt", "Sony_test_list.txt"):
        write(data / name, "")
    msg = list_file_error(data, "Sony_trian_list.txt")
    assert msg.startswith(f"data.train.image_list_file: list file not found: {data / 'Sony_trian_list.txt'}; "
                          f"did you mean Sony_train_list.txt? (list files there: "), msg
    assert "prepare_sid.py" not in msg and "\n" not in msg
    # written with a folder: the suggestion is written the same way
    write(data / "lists" / "Sony_train_list.txt", "")
    assert "did you mean lists/Sony_train_list.txt?" in list_file_error(data, "lists/Sony_trian_list.txt")
    # nothing close: the list files there
    assert f"the list files in {data} are Sony_test_list.txt, Sony_train_list.txt, Sony_val_list.txt" in \
        list_file_error(data, "mine.txt")


def test_missing_list_file_in_a_folder_without_lists_keeps_the_preparation_advice(tmp_path):
    (tmp_path / "SID").mkdir()
    msg = list_file_error(tmp_path / "SID", "Sony_train_list.txt")
    assert "prepare_sid.py" in msg and "did you mean" not in msg, msg


# ---------------------------------------------------------------------------------------------
# 3. a truncated RAW file of an own-camera set: unreadable, and data.skip_bad_files leaves it out
# ---------------------------------------------------------------------------------------------

def test_truncated_own_camera_raw_is_named_unreadable_with_skip_bad_files(tmp_path):
    pytest.importorskip("rawpy")
    from cans.data import DataError
    from cans.data.rawpair import RawPairDataset, prepare_pairs
    from cans.data.synthetic import make_own_camera_set

    out = tmp_path / "own"
    make_own_camera_set(str(out), scenes=3, height=112, width=112, progress=False, prepare=False,
                        log=lambda m: None)
    short = (out / "train_list.txt").read_text().split()[0]      # scene_01/IMG_0002.DNG
    data = (out / short).read_bytes()
    (out / short).write_bytes(data[: len(data) // 2])
    logged = []
    summary = prepare_pairs(str(out), ["train_list.txt"], progress=False, log=logged.append)
    assert list(summary["failed"]) == [short]
    assert any("unreadable" in m and "data.skip_bad_files: true" in m for m in logged), logged
    for load_npy in (True, False):
        with pytest.raises(DataError) as err:
            RawPairDataset(str(out), "train_list.txt", "train", load_npy=load_npy, log=lambda m: None)
        msg = str(err.value)
        assert "1 of 3 pairs have unreadable files" in msg and f"cannot read RAW file {out / short}" in msg, msg
        assert msg.endswith("set data.skip_bad_files: true to leave these pairs out"), msg
        assert "prepare_pairs.py" not in msg and "not prepared" not in msg, msg
        ds = RawPairDataset(str(out), "train_list.txt", "train", load_npy=load_npy, skip_bad_files=True,
                            log=lambda m: None)
        assert len(ds.entries) == 2 and ds.skipped_pairs()[0][0] == short


# ---------------------------------------------------------------------------------------------
# 7. scripts/infer.py: sub-folders, two files of one name, the tile that runs, a ratio below 1
# ---------------------------------------------------------------------------------------------

def infer_script():
    import importlib.util
    spec = importlib.util.spec_from_file_location("infer_second_hour", REPO / "scripts" / "infer.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
    script = infer_script()
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

    from cans.data.synthetic import write_dng
    from cans.models import build_model
    from cans.config import validate

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
    code = infer_script().main(["-c", cfg, "--checkpoint", str(ckpt), "--device", "cpu", "--no-progress",
                                "--tile", "100", "--overlap", "16", "--out", str(out), str(photos)])
    text = capsys.readouterr().out
    assert code == 0, text
    assert "--tile 100: tiles are a multiple of 16 packed pixels; using 96" in text, text
    assert "tiles of 96" in text and "tiles of 100" not in text, text
    assert f"note: a.png is taken by {photos / 'a.dng'}: {photos / 'a.kdc'} -> a_1.png" in text, text
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "a_1.png"]


# ---------------------------------------------------------------------------------------------
# 9. no documented make_synthetic_sid.py command writes one camera's set into a demo folder of the other
# ---------------------------------------------------------------------------------------------

def test_documented_synthetic_sets_go_to_the_folder_of_their_camera():
    import re
    import shlex

    repo = REPO
    camera_of = {}   # demo data folder -> the camera its config reads
    for name in ("demo.yaml", "demo_fuji.yaml"):
        cfg = load_config(str(repo / "configs" / name))
        camera_of[cfg["data"]["data_path"]] = "Fuji" if cfg["data"]["type"] == "FujiDictSet" else "Sony"
    assert camera_of == {"datasets/synthetic_sid": "Sony", "datasets/synthetic_sid_fuji": "Fuji"}
    commands = []
    for doc in [repo / "README.md", repo / "datasets" / "README.md", *sorted((repo / "docs").glob("*.md"))]:
        for number, line in enumerate(doc.read_text().splitlines(), start=1):
            if re.search(r"make_synthetic_sid\.py .*--out", line):
                words = shlex.split(re.sub(r"\[[^\]]*\]", "", line.split("#")[0]).strip("` "))
                out = words[words.index("--out") + 1]
                camera = words[words.index("--camera") + 1] if "--camera" in words else "Sony"
                commands.append((f"{doc.name}:{number}", out, camera))
    assert commands, "no make_synthetic_sid.py command found in the docs"
    wrong = [(where, out, camera) for where, out, camera in commands if camera_of.get(out, camera) != camera]
    assert not wrong, f"a documented command puts a set where a demo of the other camera reads: {wrong}"
