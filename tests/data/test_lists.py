"""List files: exposures and ratios, white-balance columns, only_00, excluded scenes, MCR names."""

import pytest
from conftest import REFERENCE
from helpers import REPO

from cans.data.errors import DataError
from cans.data.lists import (
    MISALIGNED_SONY_SCENES,
    drop_scenes,
    keep_first_capture,
    mcr_exposures,
    parse_mcr_list,
    parse_sid_list,
    sid_name_parts,
    sid_ratio,
)

REF = REFERENCE


def test_exposures_and_ratio():
    assert sid_name_parts("./Sony/short/10003_00_0.04s.ARW") == ("10003", "00", 0.04)
    assert sid_name_parts("./Sony/long/10003_00_10s.ARW")[2] == 10.0
    assert sid_ratio("./Sony/short/1_00_0.1s.ARW", "./Sony/long/1_00_10s.ARW") == pytest.approx(100)
    assert sid_ratio("./Sony/short/1_00_0.04s.ARW", "./Sony/long/1_00_10s.ARW") == pytest.approx(250)
    assert sid_ratio("./Sony/short/1_00_0.033s.ARW", "./Sony/long/1_00_10s.ARW") == 300  # 303 capped
    assert sid_ratio("./Fuji/short/1_00_0.1s.RAF", "./Fuji/long/1_00_30s.RAF") == 300
    with pytest.raises(ValueError, match="exposure"):
        sid_name_parts("./Sony/short/10003_00.ARW")


def test_parse_with_and_without_white_balance(tmp_path):
    lst = tmp_path / "l.txt"
    lst.write_text("# comment\n"
                   "./Sony/short/00001_00_0.1s.ARW ./Sony/long/00001_00_10s.ARW ISO200 F8\n\n"
                   "./Sony/short/00001_01_0.04s.ARW ./Sony/long/00001_00_10s.ARW ISO200 F8 2.1 1.0 1.6\n")
    a, b = parse_sid_list(str(lst))
    assert a.wb is None and a.ratio == pytest.approx(100) and a.extra == ["ISO200", "F8"]
    assert b.wb == (2.1, 1.0, 1.6) and b.ratio == pytest.approx(250)
    assert a.source.endswith("l.txt:2") and b.source.endswith("l.txt:4")


@pytest.mark.parametrize("line, match", [
    ("./Sony/short/00001_00_0.1s.ARW", "expected"),
    ("./Sony/short/00001_00_0.1s.ARW ./Sony/long/00001_00_10s.ARW ISO200 F8 2.1 1.0", "three white-balance"),
    ("./Sony/short/00001_00_xs.ARW ./Sony/long/00001_00_10s.ARW", "exposure"),
    ("./Sony/short/00001_00_0.1s.ARW ./Sony/long/00001_00_10s.ARW 2 -1 1", "positive"),
])
def test_bad_line_names_file_and_line(tmp_path, line, match):
    lst = tmp_path / "bad_list.txt"
    lst.write_text("./Sony/short/00001_00_0.1s.ARW ./Sony/long/00001_00_10s.ARW ISO200 F8\n" + line + "\n")
    with pytest.raises(DataError, match=match) as info:
        parse_sid_list(str(lst))
    assert "bad_list.txt:2" in str(info.value)


def test_missing_list_file(tmp_path):
    with pytest.raises(DataError, match="list file not found"):
        parse_sid_list(str(tmp_path / "nope.txt"))


def test_only_00_keeps_first_captures(tmp_path):
    lst = tmp_path / "l.txt"
    lst.write_text("\n".join(f"./Sony/short/0000{s}_0{k}_0.1s.ARW ./Sony/long/0000{s}_00_10s.ARW"
                             for s in (1, 2) for k in range(3)))
    kept = keep_first_capture(parse_sid_list(str(lst)))
    assert [e.img_file for e in kept] == ["./Sony/short/00001_00_0.1s.ARW", "./Sony/short/00002_00_0.1s.ARW"]


def _official(name):
    path = REF / "sid_lists" / name
    if not path.is_file():
        pytest.skip(f"official SID lists not found: {path}")
    return parse_sid_list(str(path))


def test_new_test_list_drops_exactly_the_misaligned_scenes():
    full = _official("Sony_test_list.txt")
    new = drop_scenes(full)
    dropped = {sid_name_parts(e.img_file)[0] for e in full} - {sid_name_parts(e.img_file)[0] for e in new}
    assert dropped == set(MISALIGNED_SONY_SCENES)
    assert len(full) - len(new) == sum(sid_name_parts(e.img_file)[0] in MISALIGNED_SONY_SCENES for e in full) > 0
    shipped = parse_sid_list(str(REPO / "datasets" / "lists" / "Sony_new_test_list.txt"))
    assert [e.img_file for e in shipped] == [e.img_file for e in new]


def test_shipped_lists_equal_official():
    for name in ("Sony_train_list.txt", "Sony_val_list.txt", "Sony_test_list.txt",
                 "Fuji_train_list.txt", "Fuji_val_list.txt", "Fuji_test_list.txt"):
        official = REF / "sid_lists" / name
        if not official.is_file():
            pytest.skip(f"official SID lists not found: {official}")
        assert (REPO / "datasets" / "lists" / name).read_text() == official.read_text()


def test_scene_id_ranges_of_official_lists():
    for split, first in (("train", "0"), ("val", "2"), ("test", "1")):
        assert {e.img_file.split("/")[-1][0] for e in _official(f"Sony_{split}_list.txt")} == {first}


def test_mcr_exposures(tmp_path):
    name = "Mono_Colored_RAW_Paired_DATASET/Color_RAW_Input/C00001_48mp_0x8_0x00ff.png"
    assert mcr_exposures(name, "gt.png") == (255.0, 12287.0)
    name2 = "Mono_Colored_RAW_Paired_DATASET/Color_RAW_Input/C00612_48mp_0x8_0x0a00.png"
    assert mcr_exposures(name2, "gt.png") == (2560.0, 1023.0)
    lst = tmp_path / "mcr.txt"
    lst.write_text(f"{name} gt_raw.png gt_rgb.png\n{name} only_two.png\n")
    with pytest.raises(DataError, match="mcr.txt:2"):
        parse_mcr_list(str(lst))
    lst.write_text("in/C00001_48mp_0x8_0xzzzz.png gt.png rgb.png\n")
    with pytest.raises(DataError, match="hexadecimal"):
        parse_mcr_list(str(lst))


def test_byte_order_mark_and_non_utf8_line(tmp_path):
    line = "./Sony/short/10003_00_0.04s.ARW ./Sony/long/10003_00_10s.ARW ISO200 F9\n"
    bom = tmp_path / "bom.txt"
    bom.write_bytes(b"\xef\xbb\xbf" + line.encode())
    assert parse_sid_list(str(bom))[0].img_file == "./Sony/short/10003_00_0.04s.ARW"
    bad = tmp_path / "latin1.txt"
    bad.write_bytes(line.encode() + b"./Sony/short/10003_01_0.04s.ARW ./Sony/long/caf\xe9_10s.ARW\n")
    with pytest.raises(DataError, match=r"latin1.txt:2: not UTF-8"):
        parse_sid_list(str(bad))
    inf = tmp_path / "inf.txt"
    inf.write_text(line.strip() + " 2.0 1.0 inf\n")
    with pytest.raises(DataError, match=r"inf.txt:1: white balance"):
        parse_sid_list(str(inf))
