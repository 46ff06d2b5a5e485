"""Bayer and X-Trans packing, white-balance order."""
import re

import numpy as np
import pytest
from conftest import REFERENCE

from cans.cfa import (
    BAYER_RGGB,
    XTRANS_PATTERN,
    cfa_cell,
    mosaic_bayer,
    mosaic_cell,
    mosaic_xtrans,
    pack_bayer,
    pack_xtrans,
    phase_crop,
    phase_offset,
    unpack_bayer,
    unpack_xtrans,
    wb_vector,
)

REF = REFERENCE


def test_pack_bayer_channel_order():
    im = np.arange(6 * 8).reshape(6, 8)
    out = pack_bayer(im)
    assert out.shape == (4, 3, 4)
    # R (0,0), G (0,1), B (1,1), G (1,0) of each 2x2 cell
    assert out[0, 1, 2] == im[2, 4]
    assert out[1, 1, 2] == im[2, 5]
    assert out[2, 1, 2] == im[3, 5]
    assert out[3, 1, 2] == im[3, 4]
    np.testing.assert_array_equal(unpack_bayer(out), im)


def test_pack_bayer_odd_size_and_errors():
    assert pack_bayer(np.zeros((7, 9))).shape == (4, 3, 4)
    with pytest.raises(ValueError, match="2-D"):
        pack_bayer(np.zeros((2, 4, 4)))


def test_pack_bayer_colours_from_mosaic():
    rgb = np.zeros((4, 6, 3))
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 1, 2, 3
    packed = pack_bayer(mosaic_bayer(rgb))
    assert [packed[c].mean() for c in range(4)] == [1, 2, 3, 2]


def _reference_table():
    """Parse shared/reference/xtrans_pack.md into [(channel, a, b, r, q)] and green rules."""
    path = REF / "xtrans_pack.md"
    if not path.is_file():
        pytest.skip(f"reference table not found: {path}")
    text = path.read_text()
    rows = []
    for line in text.splitlines():
        m = re.match(r"\|\s*(\d)\s*\|\s*([RGB])\s*\|(.*)", line)
        if not m:
            continue
        for a, b, r, q in re.findall(r"\((\d),(\d)\)\s*<-\s*\((\d),(\d)\)", m.group(3)):
            rows.append((int(m.group(1)), m.group(2), int(a), int(b), int(r), int(q)))
    greens = [(int(c), int(r), int(q)) for c, r, q in
              re.findall(r"out\[(\d)\] = im\[(\d)::3, (\d)::3\]", text)]
    assert len(rows) == 20 and len(greens) == 4
    return rows, greens


def test_pack_xtrans_matches_reference_table():
    rows, greens = _reference_table()
    rng = np.random.default_rng(0)
    im = rng.integers(0, 16383, size=(6 * 5 + 4, 6 * 7 + 5))   # cropped to multiples of 6 first
    h6, w6 = 30, 42
    out = pack_xtrans(im)
    assert out.shape == (9, h6 // 3, w6 // 3)
    crop = im[:h6, :w6]
    expected = np.zeros_like(out)
    for c, _, a, b, r, q in rows:
        expected[c, a::2, b::2] = crop[r::6, q::6]
    for c, r, q in greens:
        expected[c] = crop[r::3, q::3]
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(unpack_xtrans(out), crop)


def test_xtrans_pattern_agrees_with_table_colours():
    rows, greens = _reference_table()
    code = {"R": 0, "G": 1, "B": 2}
    for _, colour, _, _, r, q in rows:
        assert XTRANS_PATTERN[r, q] == code[colour]
    for _, r, q in greens:
        assert XTRANS_PATTERN[r, q] == 1
    rgb = np.zeros((12, 12, 3))
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 1, 2, 3
    packed = pack_xtrans(mosaic_xtrans(rgb))
    assert [packed[c].mean() for c in range(9)] == [1, 2, 3, 1, 3, 2, 2, 2, 2]


def test_wb_vector_orders():
    np.testing.assert_array_equal(wb_vector([2.0, 1.0, 1.5], 2), [2.0, 1.0, 1.5, 1.0])
    np.testing.assert_array_equal(wb_vector([2.0, 1.0, 1.5], 3), [2, 1, 1.5, 2, 1.5, 1, 1, 1, 1])


@pytest.mark.parametrize("reference", [BAYER_RGGB, XTRANS_PATTERN], ids=["bayer", "xtrans"])
def test_phase_crop_and_offset_reach_the_reference(reference):
    """Every phase of a cell: dropping (cy, cx) rows / columns, or padding (dy, dx) in front, of a
    tiled mosaic gives the reference cell at the top-left; the smallest shift is chosen."""
    p = reference.shape[0]
    for a in range(p):
        for b in range(p):
            cell = np.roll(reference, (a, b), axis=(0, 1))
            mosaic = np.tile(cell, (3, 3))
            cy, cx = phase_crop(cell, reference)
            np.testing.assert_array_equal(mosaic[cy:cy + p, cx:cx + p], reference)
            dy, dx = phase_offset(cell, reference)
            padded = np.tile(cell, (4, 4))[p - dy:, p - dx:]   # dy rows / dx columns in front of a whole cell
            np.testing.assert_array_equal(padded[:p, :p], reference)
            assert max(cy, dy) < p and (p == 2 or (cy < 3 and dy < 3))   # X-Trans repeats under a (3, 3) shift
    with pytest.raises(ValueError, match="not a shifted copy"):
        phase_crop(np.array([[0, 0], [1, 2]], dtype=np.uint8), BAYER_RGGB)
    with pytest.raises(ValueError, match="does not match"):
        phase_offset(BAYER_RGGB, XTRANS_PATTERN)


def test_cfa_cell_and_mosaic_cell():
    """Letters and code arrays give the same cells; a GRBG mosaic keeps G, R / B, G at each 2x2 cell."""
    np.testing.assert_array_equal(cfa_cell("rggb"), BAYER_RGGB)
    np.testing.assert_array_equal(cfa_cell(XTRANS_PATTERN.tolist()), XTRANS_PATTERN)
    grbg = cfa_cell("GRBG")
    assert grbg.dtype == np.uint8 and grbg.tolist() == [[1, 0], [2, 1]]
    rgb = np.random.default_rng(0).random((5, 7, 3))
    m = mosaic_cell(rgb, grbg)
    assert m.shape == (5, 7)
    assert m[0, 0] == rgb[0, 0, 1] and m[0, 1] == rgb[0, 1, 0] and m[1, 0] == rgb[1, 0, 2] and m[3, 3] == rgb[3, 3, 1]
    for bad in ("RGGG", "RGB", [[0, 1, 2]], [[0, 3], [1, 2]]):
        with pytest.raises(ValueError, match="cfa"):
            cfa_cell(bad)
