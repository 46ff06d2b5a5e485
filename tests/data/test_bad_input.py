"""Bad input to the data sets and the data scripts: every problem gives one line (a DataError)
naming the file / line / key / option; skip_bad_files counts."""
import os
import shutil
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from helpers import REPO, load_script, one_error_line, write
from torch.utils.data import DataLoader

from cans.config import load_config
from cans.data import DataError, MCRDictSet, SonyDictSet, build_dataset, collate_samples
from cans.data.prepare import cache_path, prepare_sid
from cans.io.dng import write_dng
from cans.synthetic import make_synthetic_sid

QUIET = dict(log=lambda *_: None)


@pytest.fixture(scope="module")
def base_set(tmp_path_factory):
    out = tmp_path_factory.mktemp("bad") / "sony"
    make_synthetic_sid(str(out), camera="Sony", seed=7, scenes=3, height=192, width=288, progress=False, **QUIET)
    return out


@pytest.fixture()
def sony_copy(base_set, tmp_path):
    dst = tmp_path / "copy"
    shutil.copytree(base_set, dst)
    return dst


def _truncate(path, keep=0.5):
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[: int(len(data) * keep)])


def test_missing_data_path_names_path_and_command(tmp_path):
    cfg = load_config(str(REPO / "configs" / "CANS_Plus" / "Sony.yaml"), [f"data.data_path={tmp_path}/nowhere"])
    with pytest.raises(DataError) as info:
        build_dataset(cfg, "train")
    msg = str(info.value)
    assert f"{tmp_path}/nowhere" in msg and "prepare_sid.py" in msg and "make_synthetic_sid.py" in msg


def test_missing_list_file(sony_copy):
    with pytest.raises(DataError) as info:
        SonyDictSet(str(sony_copy), "Sony_nope_list.txt", "train", patch_size=64, **QUIET)
    # the folder has list files: they are named, not the preparation (test_misspelt_list_file_... below)
    assert "Sony_nope_list.txt" in str(info.value) and "Sony_train_list.txt" in str(info.value)
    assert "prepare_sid.py" not in str(info.value)
    with pytest.raises(DataError, match="data.valid.image_list_file is not set"):
        SonyDictSet(str(sony_copy), None, "valid", **QUIET)


def test_unparsable_list_line(sony_copy):
    lst = sony_copy / "Sony_train_list.txt"
    lines = lst.read_text().splitlines()
    lines.insert(1, "./Sony/short/garbage.ARW")
    lst.write_text("\n".join(lines))
    with pytest.raises(DataError, match=r"Sony_train_list.txt:2"):
        SonyDictSet(str(sony_copy), "Sony_train_list.txt", "train", patch_size=64, **QUIET)


def test_truncated_cache_error_and_skip(sony_copy):
    bad = cache_path(str(sony_copy), "./Sony/short/00001_01_0.04s.ARW", "pack")
    _truncate(bad)
    with pytest.raises(DataError) as info:
        SonyDictSet(str(sony_copy), "Sony_train_list.txt", "train", patch_size=64, **QUIET)
    assert bad in str(info.value) and "skip_bad_files" in str(info.value)
    messages = []
    ds = SonyDictSet(str(sony_copy), "Sony_train_list.txt", "train", patch_size=64, skip_bad_files=True,
                     log=messages.append)
    assert len(ds) == 2 and len(ds.skipped) == 1 and bad in ds.skipped[0][1]
    assert any("skipped 1 of 3" in m for m in messages)
    assert all("00001_01" not in ds[i]["img_file"] for i in range(len(ds)))


def test_missing_cache_file(sony_copy):
    os.remove(cache_path(str(sony_copy), "./Sony/long/00001_00_10s.ARW", "post_int"))
    with pytest.raises(DataError, match="cache file not found: .*long_post_int"):
        SonyDictSet(str(sony_copy), "Sony_train_list.txt", "train", patch_size=64, **QUIET)


def test_truncated_raw_is_found_at_construction_and_skipped(sony_copy):
    """load_npy: false: a truncated RAW file fails the start-up check (its size against its own
    directory, without decoding), not the loader after training started; skip_bad_files leaves it out."""
    bad = str(sony_copy / "Sony" / "short" / "00001_00_0.1s.ARW")
    _truncate(bad, 0.9)
    with pytest.raises(DataError) as info:
        SonyDictSet(str(sony_copy), "Sony_train_list.txt", "train", patch_size=64, load_npy=False, **QUIET)
    msg = str(info.value)
    assert f"cannot read RAW file {bad}: truncated: {os.path.getsize(bad):,} bytes" in msg, msg
    assert "1 of 3 pairs have unreadable files" in msg and "data.skip_bad_files: true" in msg, msg
    messages = []
    ds = SonyDictSet(str(sony_copy), "Sony_train_list.txt", "train", patch_size=64, load_npy=False,
                     skip_bad_files=True, log=messages.append)
    assert len(ds.entries) == 2 and ds.runtime_skipped == 0
    assert ds.skipped_pairs() == [("./Sony/short/00001_00_0.1s.ARW", ds.skipped[0][1])] and bad in ds.skipped[0][1]
    assert any("skipped 1 of 3" in m and "truncated" in m for m in messages), messages
    assert all(ds[i]["img_file"] != "./Sony/short/00001_00_0.1s.ARW" for i in range(len(ds)))


def test_preflight_finds_a_truncated_raw_before_training(sony_copy):
    """The start-up checks of train.py (cans.train.main.preflight) name a truncated RAW file with
    load_npy: false; the same set with its caches (load_npy: true) is not concerned."""
    from cans.config import ConfigError
    from cans.train.main import preflight

    bad = sony_copy / "Sony" / "long" / "00001_00_10s.ARW"
    _truncate(bad, 0.99)
    cfg = load_config(str(REPO / "configs" / "demo.yaml"),
                      [f"data.data_path={sony_copy}", "data.load_npy=false", "data.train.patch_size=98",
                       "data.synthetic.auto_create=false"])
    with pytest.raises(ConfigError) as info:
        preflight(cfg)
    assert f"cannot read RAW file {bad}: truncated" in str(info.value), str(info.value)
    preflight(load_config(str(REPO / "configs" / "demo.yaml"),
                          [f"data.data_path={sony_copy}", "data.train.patch_size=98", "data.synthetic.auto_create=false"]))


def test_empty_raw_file(sony_copy):
    Path(sony_copy / "Sony" / "long" / "00001_00_10s.ARW").write_bytes(b"")
    with pytest.raises(DataError, match="RAW file is empty: .*00001_00_10s.ARW"):
        SonyDictSet(str(sony_copy), "Sony_train_list.txt", "train", patch_size=64, load_npy=False, **QUIET)


def test_wrong_cfa_for_sony(sony_copy):
    path = sony_copy / "Sony" / "short" / "00001_00_0.1s.ARW"
    write_dng(str(path), np.full((192, 288), 600, np.uint16), cfa="GRBG")
    ds = SonyDictSet(str(sony_copy), "Sony_train_list.txt", "train", patch_size=64, load_npy=False, **QUIET)
    with pytest.raises(DataError, match="CFA pattern GRBG"):
        ds[0]


def test_patch_larger_than_image_and_not_multiple(sony_copy):
    ds = SonyDictSet(str(sony_copy), "Sony_train_list.txt", "train", patch_size=512, **QUIET)
    with pytest.raises(DataError, match=r"patch_size 512 is larger than the image 192x288"):
        ds[0]
    with pytest.raises(DataError, match="multiple of the block size"):
        SonyDictSet(str(sony_copy), "Sony_train_list.txt", "train", patch_size=63, **QUIET)


def test_prepare_reports_bad_raw_and_resumes(sony_copy):
    for sub in ("short_pack", "long_pack", "long_post_int"):
        shutil.rmtree(sony_copy / "Sony" / sub)
    _truncate(sony_copy / "Sony" / "short" / "00001_02_0.033s.ARW", 0.2)
    messages = []
    summary = prepare_sid(str(sony_copy), "Sony", lists_dir=str(sony_copy), workers=2, log=messages.append,
                          progress=False)
    assert list(summary["failed"]) == ["./Sony/short/00001_02_0.033s.ARW"]
    assert summary["pairs_dropped"] == 1 and any("FAILED" in m for m in messages)
    assert "00001_02" not in (sony_copy / "Sony_train_list.txt").read_text()
    again = prepare_sid(str(sony_copy), "Sony", lists_dir=str(sony_copy), workers=0, **QUIET, progress=False)
    assert again["written"] == 0 and again["skipped_existing"] == again["files"]
    assert not list(sony_copy.rglob("*.tmp"))


def test_mcr_loader(tmp_path):
    rng = np.random.default_rng(0)
    names = []
    for scene, hexexp in ((1, "00ff"), (612, "0a00")):
        stem = f"C{scene:05d}_48mp_0x8_0x{hexexp}"
        inp, gt, rgb = f"Color_RAW_Input/{stem}.png", f"Color_RAW_GT/{stem}.png", f"RGB_GT/{stem}.png"
        for rel, arr in ((inp, rng.integers(0, 20, (128, 160), dtype=np.uint8)),
                         (gt, rng.integers(0, 255, (128, 160), dtype=np.uint8)),
                         (rgb, rng.integers(0, 255, (128, 160, 3), dtype=np.uint8))):
            (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
            iio.imwrite(tmp_path / rel, arr)
        names.append(f"{inp} {gt} {rgb}")
    (tmp_path / "MCR_test_list.txt").write_text("\n".join(names) + "\n")
    ds = MCRDictSet(str(tmp_path), "MCR_test_list.txt", "test", max_clip=None, **QUIET)
    s0, s1 = ds[0], ds[1]
    assert s0["ratio"] == pytest.approx(12287 / 255) and s1["ratio"] == pytest.approx(1023 / 2560)
    raw_in = iio.imread(tmp_path / names[0].split()[0]).astype(np.float32) / 255
    np.testing.assert_allclose(s0["noisy_raw"][0].numpy(), raw_in[0::2, 0::2] * s0["ratio"], rtol=1e-6)
    rgb = iio.imread(tmp_path / names[0].split()[2]).astype(np.float32) / 255
    np.testing.assert_allclose(s0["clean_rgb"].numpy(), rgb.transpose(2, 0, 1), rtol=1e-6)
    assert s0["clean_raw"].shape == (4, 64, 80)
    torch.manual_seed(0)
    train = MCRDictSet(str(tmp_path), "MCR_test_list.txt", "train", patch_size=64, **QUIET)[0]
    assert train["noisy_raw"].shape == (4, 32, 32) and train["clean_rgb"].shape == (3, 64, 64)
    os.remove(tmp_path / names[1].split()[1])
    with pytest.raises(DataError, match="image file not found: .*Color_RAW_GT"):
        MCRDictSet(str(tmp_path), "MCR_test_list.txt", "test", **QUIET)


def test_prepare_again_on_synthetic_set_keeps_its_lists(base_set, sony_copy):
    """Re-running the preparation on a synthetic set (no --lists-dir) uses the set's own lists:
    deleted caches come back byte for byte and the list files stay as they were (it used to read
    the official SID lists and overwrite the set's lists with the few coincidental pairs)."""
    lists = {p.name: p.read_text() for p in sony_copy.glob("Sony_*list.txt")}
    gone = [cache_path(str(sony_copy), "./Sony/short/00001_01_0.04s.ARW", "pack"),
            cache_path(str(sony_copy), "./Sony/long/10001_00_10s.ARW", "post_int")]
    for path in gone:
        os.remove(path)
    summary = prepare_sid(str(sony_copy), "Sony", workers=0, progress=False, **QUIET)
    assert summary["lists_dir"] == str(sony_copy) and not summary["failed"]
    for path in gone:
        assert Path(path).read_bytes() == Path(path.replace(str(sony_copy), str(base_set))).read_bytes()
    assert {p.name: p.read_text() for p in sony_copy.glob("Sony_*list.txt")} == lists


def test_prepare_with_foreign_lists_does_not_empty_a_list(sony_copy, tmp_path):
    """Lists naming files that are not there: capped failure listing with a hint, and a list whose
    every pair failed is not replaced by an empty one; no RAW folder at all is one clear error."""
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "Sony_test_list.txt").write_text(
        "".join(f"./Sony/short/1{i:04d}_00_0.1s.ARW ./Sony/long/1{i:04d}_00_10s.ARW ISO200 F8\n"
                for i in range(500, 530)))
    before = (sony_copy / "Sony_test_list.txt").read_text()
    messages = []
    summary = prepare_sid(str(sony_copy), "Sony", lists_dir=str(foreign), workers=0, progress=False,
                          log=messages.append)
    assert len(summary["failed"]) == 60 and summary["lists_not_written"] == ["Sony_test_list.txt"]
    assert (sony_copy / "Sony_test_list.txt").read_text() == before
    assert sum("FAILED" in m for m in messages) <= 21 and any("40 more" in m for m in messages)
    assert any("60 RAW file(s)" in m and "--lists-dir" in m for m in messages)
    empty = tmp_path / "empty_sid"
    empty.mkdir()
    with pytest.raises(DataError, match=r"none of the RAW folders .*Sony/short"):
        prepare_sid(str(empty), "Sony", lists_dir=str(foreign), workers=0, progress=False, **QUIET)


def test_fuji_loader_refuses_a_bayer_file(sony_copy):
    from cans.data import FujiDictSet
    lst = (sony_copy / "Sony_train_list.txt").read_text()
    (sony_copy / "Fuji_train_list.txt").write_text(lst)
    ds = FujiDictSet(str(sony_copy), "Fuji_train_list.txt", "test", load_npy=False, **QUIET)
    with pytest.raises(DataError, match=r"2x2 colour filter .*expects a 6x6 X-Trans"):
        ds[0]


def test_mcr_ratio_not_capped_and_16bit_png_refused(tmp_path):
    """docs/data.md: MCR ratio = gt / input exposure (no cap at 300, unlike SID)."""
    stem = "C00001_48mp_0x8_0x0010"    # input exposure 16, gt 12287: ratio 767.9
    inp, gt, rgb = f"in/{stem}.png", f"gt/{stem}.png", f"rgb/{stem}.png"
    rng = np.random.default_rng(1)
    for rel, arr in ((inp, rng.integers(0, 3, (112, 112), dtype=np.uint8)),
                     (gt, rng.integers(0, 255, (112, 112), dtype=np.uint8)),
                     (rgb, rng.integers(0, 255, (112, 112, 3), dtype=np.uint8))):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        iio.imwrite(tmp_path / rel, arr)
    (tmp_path / "MCR_test_list.txt").write_text(f"{inp} {gt} {rgb}\n")
    s = MCRDictSet(str(tmp_path), "MCR_test_list.txt", "test", max_clip=None, **QUIET)[0]
    assert s["ratio"] == pytest.approx(12287 / 16)
    raw_in = iio.imread(tmp_path / inp).astype(np.float32) / 255
    np.testing.assert_allclose(s["noisy_raw"][0].numpy(), raw_in[0::2, 0::2] * (12287 / 16), rtol=1e-6)
    iio.imwrite(tmp_path / gt, rng.integers(0, 4096, (112, 112), dtype=np.uint16))
    with pytest.raises(DataError, match=r"gt/C00001.*8-bit"):
        MCRDictSet(str(tmp_path), "MCR_test_list.txt", "test", **QUIET)[0]


def _score_test_split(ds):
    """evaluate() with an oracle-free stand-in model (identity on RAW, grey RGB) over a real DataLoader."""
    from torch.utils.data import DataLoader

    from cans.data import collate_samples
    from cans.evaluate.scores import evaluate

    class Flat(torch.nn.Module):
        block_size = 2

        def forward(self, x):
            n, _, h, w = x.shape
            return torch.full((n, 3, 2 * h, 2 * w), 0.5), x.clamp(0, 1)

    return evaluate(Flat(), DataLoader(ds, batch_size=1, collate_fn=collate_samples), "cpu", progress=False)


@pytest.mark.parametrize("load_npy", [False, True])
def test_skipped_test_pair_is_left_out_in_both_modes(sony_copy, load_npy):
    """valid/test with skip_bad_files: a pair with a truncated file is left out of the scores (no stand-in,
    no duplicate row), in RAW mode as in cache mode (both found at construction),
    and the report lists it under "skipped"."""
    probe = SonyDictSet(str(sony_copy), "Sony_test_list.txt", "test", load_npy=False, **QUIET)
    first = probe.entries[0]
    n = len(probe.entries)
    bad = (os.path.normpath(os.path.join(str(sony_copy), first.img_file)) if not load_npy
           else cache_path(str(sony_copy), first.img_file, "pack"))
    _truncate(bad, 0.3)
    messages = []
    ds = SonyDictSet(str(sony_copy), "Sony_test_list.txt", "test", load_npy=load_npy, skip_bad_files=True,
                     log=messages.append)
    report = _score_test_split(ds)
    files = [r["img_file"] for r in report["per_image"]]
    assert len(files) == len(set(files)) == n - 1 and first.img_file not in files
    assert report["reconstruction"]["images"] == n - 1
    assert sum(report["denoising"][g]["images"] for g in ("x100", "x250", "x300")) == n - 1
    assert len(report["skipped"]) == 1 and report["skipped"][0]["source"] == first.source
    assert bad in report["skipped"][0]["reason"]
    assert not any("stands in" in m for m in messages)
    from cans.evaluate.scores import format_tables
    assert f"left out (data.skip_bad_files, unreadable files): 1 pair(s): {first.source}" in format_tables(report)


def _make_legacy(folder: Path) -> int:
    """Turn the caches of a set into this project's old layout: float32 (normalised, clipped at 0)
    under names without the RAW extension; returns how many files were turned."""
    n = 0
    for sub in ("short_pack", "long_pack", "long_post_int"):
        for f in sorted((folder / "Sony" / sub).glob("*.ARW.npy")):
            arr = np.load(f)
            if sub != "long_post_int":
                arr = np.maximum(arr.astype(np.float32) - 512, 0) / (16383 - 512)
            np.save(f.parent / (f.name[:-len(".ARW.npy")] + ".npy"), arr)
            f.unlink()
            n += 1
    return n


def test_old_float32_caches_say_to_prepare_again(sony_copy):
    (sony_copy / "synthetic_sid.json").unlink()          # a real (non-synthetic) SID folder
    assert _make_legacy(sony_copy) > 0
    with pytest.raises(DataError) as info:
        SonyDictSet(str(sony_copy), "Sony_test_list.txt", "test", **QUIET)
    msg = str(info.value)
    assert "old float32 layout" in msg and f"prepare_sid.py --data-path {sony_copy} --camera Sony" in msg
    # a cache of the right name but float32 content is refused the same way
    prepare_sid(str(sony_copy), "Sony", lists_dir=str(sony_copy), workers=0, progress=False, **QUIET)
    first_short = (sony_copy / "Sony_test_list.txt").read_text().split()[0]
    bad = cache_path(str(sony_copy), first_short, "pack")
    np.save(bad, np.load(bad).astype(np.float32))
    with pytest.raises(DataError, match="old float32 layout"):
        SonyDictSet(str(sony_copy), "Sony_test_list.txt", "test", **QUIET)


def test_auto_create_leaves_the_old_caches_of_a_real_sid_folder_alone(sony_copy):
    """Only a synthetic set (its synthetic_sid.json) is rebuilt in place; in a real SID folder the
    old caches stay and the loader says to rerun prepare_sid.py."""
    from cans.synthetic import ensure_synthetic
    (sony_copy / "synthetic_sid.json").unlink()
    n = _make_legacy(sony_copy)
    cfg = load_config(str(REPO / "configs" / "demo.yaml"), [f"data.data_path={sony_copy}"])
    messages = []
    assert ensure_synthetic(cfg, log=messages.append) is False
    assert not messages
    assert len([f for sub in ("short_pack", "long_pack", "long_post_int")
                for f in (sony_copy / "Sony" / sub).glob("*.npy") if not f.name.endswith(".ARW.npy")]) == n
    with pytest.raises(DataError, match="old float32 layout"):
        SonyDictSet(str(sony_copy), "Sony_test_list.txt", "test", **QUIET)


# ------------------------------------- a misspelt list file: the list files that exist, not the preparation

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


# ------------------------------------ the data scripts: one line naming the option or file, before any work

def test_make_synthetic_sid_onto_a_file_keeps_the_file(tmp_path, capsys):
    out = tmp_path / "synthetic"
    out.write_text("keep me")
    code = load_script("scripts/make_synthetic_sid.py").main(["--out", str(out), "--scenes", "3"])
    one_error_line(code, capsys.readouterr().err, str(out), "not a folder")
    assert out.read_text() == "keep me" and sorted(p.name for p in tmp_path.iterdir()) == ["synthetic"]


@pytest.mark.parametrize("script, args", [
    ("scripts/make_synthetic_sid.py", ["--out", "{tmp}/x"]),
    ("scripts/prepare_pairs.py", ["--data-path", "{tmp}", "--lists", "l.txt"]),
    ("scripts/prepare_sid.py", ["--data-path", "{tmp}", "--camera", "Sony"]),
])
def test_negative_workers_are_refused(tmp_path, capsys, script, args):
    with pytest.raises(SystemExit) as info:
        load_script(script).main([a.replace("{tmp}", str(tmp_path)) for a in args] + ["--workers", "-1"])
    one_error_line(info.value.code, capsys.readouterr().err, "--workers", "-1")
    assert not list(tmp_path.iterdir())


def test_prepare_sid_checks_the_summary_path_before_preparing(tmp_path, capsys):
    code = load_script("scripts/prepare_sid.py").main(["--data-path", str(tmp_path / "SID"), "--camera", "Sony",
                                                   "--summary-json", str(tmp_path)])
    one_error_line(code, capsys.readouterr().err, "--summary-json", str(tmp_path), "is a folder")


@pytest.mark.parametrize("script, args, names", [
    ("scripts/prepare_sid.py", ["--data-path", "{tmp}/SID", "--camera", "Sony"], ["{tmp}/SID", "SID folder not found"]),
    ("scripts/prepare_sid.py", ["--data-path", "{tmp}", "--camera", "Sony", "--lists-dir", "{tmp}/lists"],
     ["{tmp}/lists", "Sony_*_list.txt"]),
    ("scripts/prepare_pairs.py", ["--data-path", "{tmp}/mine", "--lists", "l.txt"], ["{tmp}/mine", "not found"]),
    ("scripts/prepare_pairs.py", ["--data-path", "{tmp}", "--lists", "none.txt"], ["{tmp}/none.txt", "not found"]),
])
def test_data_scripts_name_a_missing_folder_or_list(tmp_path, capsys, script, args, names):
    fill = lambda s: s.replace("{tmp}", str(tmp_path))
    code = load_script(script).main([fill(a) for a in args])
    one_error_line(code, capsys.readouterr().err, *[fill(n) for n in names])


# ----------------------------------------------------------------------------- the skipped pairs, as a list

def _bad_pairs_dataset(tmp_path, split):
    """A PairDataset of four pairs with data.skip_bad_files: s0 fails the construction check, s2
    fails when loaded."""
    import numpy as np

    from cans.data import DataError
    from cans.data.base import PairDataset
    from cans.data.lists import PairEntry

    class Pairs(PairDataset):
        def prepare_hint(self):
            return "no hint"

        def _entries(self):
            return [PairEntry(f"s{i}.ARW", f"l{i}.ARW", source=f"list.txt:{i + 1}", input_exposure=0.1,
                              gt_exposure=10.0) for i in range(4)]

        def _check_entry(self, entry):
            if entry.img_file == "s0.ARW":
                raise DataError("s0.ARW: RAW file not found")

        def _levels(self, entry):
            return (0.0, 1000.0), (0.0, 1000.0)

        def _arrays(self, entry):
            if entry.img_file == "s2.ARW":
                raise DataError("s2.ARW: truncated")
            return (np.full((4, 8, 8), 10, np.uint16), np.full((4, 8, 8), 500, np.uint16),
                    np.zeros((3, 16, 16), np.uint16))

    (tmp_path / "list.txt").write_text("read by _entries\n")
    return Pairs(str(tmp_path), "list.txt", split, skip_bad_files=True, log=lambda s: None)


def test_skipped_pairs_lists_what_skip_bad_files_left_out(tmp_path):
    ds = _bad_pairs_dataset(tmp_path, "train")
    assert ds.skipped_pairs() == [("s0.ARW", "s0.ARW: RAW file not found")]
    for _ in range(2):   # two epochs: s2 is met twice, listed once
        assert [b["img_file"] for b in DataLoader(ds, batch_size=1, collate_fn=collate_samples)] == \
            [["s1.ARW"], ["s3.ARW"], ["s3.ARW"]]          # s2 replaced by the next pair
    assert ds.skipped_pairs() == [("s0.ARW", "s0.ARW: RAW file not found"), ("s2.ARW", "s2.ARW: truncated")]

    # valid with a worker process: its find comes back as a marker of the batch
    ds = _bad_pairs_dataset(tmp_path, "valid")
    markers = []
    for batch in DataLoader(ds, batch_size=2, collate_fn=collate_samples, num_workers=1,
                            multiprocessing_context="fork"):
        markers.extend(batch.get("skipped") or [])
    assert ds.skipped_pairs() == [("s0.ARW", "s0.ARW: RAW file not found")]     # the worker's copy saw s2
    assert ds.skipped_pairs(markers) == [("s0.ARW", "s0.ARW: RAW file not found"), ("s2.ARW", "s2.ARW: truncated")]
    assert ds.skipped_pairs([{"img_file": "", "source": "list.txt:1", "reason": "x"}]) == ds.skipped_pairs()


# ------------------------------------------------------------- a full disk while preparing: one line, resumable

def _failing_save(monkeypatch, succeed: int, error: OSError) -> list:
    """np.save writes ``succeed`` files, then raises ``error`` (as on a full disk); returns the paths written."""
    import cans.data.prepare as prepare

    real, written = np.save, []

    def save(fh, array, *args, **kwargs):
        if len(written) >= succeed:
            raise error
        written.append(fh.name)
        return real(fh, array, *args, **kwargs)

    monkeypatch.setattr(prepare.np, "save", save)
    return written


@pytest.mark.parametrize("error", [OSError(28, "No space left on device"), OSError("2097152 requested and 0 written")],
                         ids=["ENOSPC", "numpy-short-write"])
def test_prepare_sid_on_a_full_disk_is_one_line_and_a_rerun_goes_on(sony_copy, capsys, monkeypatch, error):
    """scripts/prepare_sid.py on a disk that fills: one `error:` line (exit 2) naming the folder, the full
    disk, what is still needed and that the caches written are valid; no FAILED list; the rerun goes on."""
    for sub in ("short_pack", "long_pack", "long_post_int"):
        shutil.rmtree(sony_copy / "Sony" / sub)
    written = _failing_save(monkeypatch, 4, error)      # the first two long exposures (pack + rendering each)
    args = ["--data-path", str(sony_copy), "--camera", "Sony", "--lists-dir", str(sony_copy), "--workers", "0"]
    code = load_script("scripts/prepare_sid.py").main(args)
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    line = one_error_line(code, err, f"no space left in {sony_copy / 'Sony' / 'long_pack'}", "(disk full)",
                          "10 RAW file(s) are not cached yet and need about", "the 2 file(s) cached are complete and "
                          "valid", "run the preparation again, it goes on where it stopped")
    assert "FAILED" not in out + err and "OSError" not in line, (out, err)
    assert len(written) == 4 and all(np.load(p[: -len(".tmp")].rsplit(".", 2)[0]).dtype == np.uint16 for p in written)
    assert not list(sony_copy.rglob("*.tmp"))
    monkeypatch.undo()
    summary = prepare_sid(str(sony_copy), "Sony", lists_dir=str(sony_copy), workers=0, progress=False, **QUIET)
    assert summary["skipped_existing"] == 2 and summary["written"] == 10 and not summary["failed"]


def test_prepare_sid_checks_the_free_space_before_the_work(sony_copy, capsys, monkeypatch):
    """Too little room for the caches to write is found before any file is decoded or written."""
    import cans.io.files

    shutil.rmtree(sony_copy / "Sony" / "short_pack")
    monkeypatch.setattr(cans.io.files.shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10 ** 9, 10 ** 9, 10))
    written = _failing_save(monkeypatch, 10 ** 6, OSError("not reached"))
    code = load_script("scripts/prepare_sid.py").main(["--data-path", str(sony_copy), "--camera", "Sony",
                                                       "--lists-dir", str(sony_copy)])
    one_error_line(code, capsys.readouterr().err, f"no space left in {sony_copy / 'Sony'} for the caches of 9 RAW "
                   "file(s): 0.9 MiB needed, 0.0 MiB free (disk full)", "the 3 file(s) cached already are kept")
    assert code == 2 and written == [] and not (sony_copy / "Sony" / "short_pack").exists()


@pytest.mark.parametrize("script, args", [
    ("scripts/prepare_pairs.py", ["--data-path", "{tmp}/mine", "--lists", "l.txt"]),
    ("scripts/prepare_sid.py", ["--data-path", "{tmp}/SID", "--camera", "Sony"]),
])
def test_absurd_workers_are_refused_before_any_process_starts(tmp_path, capsys, monkeypatch, script, args):
    import cans.config_checks

    monkeypatch.setattr(cans.config_checks, "usable_cpus", lambda: 4, raising=False)
    monkeypatch.setattr(cans.config_checks, "available_memory", lambda: 64 * 2 ** 30, raising=False)
    code = load_script(script).main([a.replace("{tmp}", str(tmp_path)) for a in args] + ["--workers", "100000"])
    one_error_line(code, capsys.readouterr().err, "--workers: 100000 worker processes are more than this machine can "
                   "run: it has 4 CPU(s)", "set --workers to at most 16")
    assert code == 2 and not list(tmp_path.iterdir())


def test_temporary_files_of_killed_writers_are_removed(tmp_path):
    """After a full disk stops a pool of workers, their half-written temporary files go (they only
    take space); a live writer's stays, and so does every finished file."""
    from cans.io.files import remove_orphaned_temps, unique_temp_name

    dead = subprocess_pid_that_exited()
    (tmp_path / "a.npy").write_bytes(b"whole")
    orphan = tmp_path / f"b.npy.{dead}.0123abcd.tmp"
    orphan.write_bytes(b"half")
    live = Path(unique_temp_name(str(tmp_path / "c.npy")))
    live.write_bytes(b"being written")
    assert remove_orphaned_temps(str(tmp_path)) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["a.npy", live.name])


def subprocess_pid_that_exited() -> int:
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid
