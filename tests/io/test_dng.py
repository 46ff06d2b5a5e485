"""cans.io.dng: a network's RAW output written as a CFA DNG that LibRaw reads back exactly, with the
input's layout, levels, colour matrix, white balance, orientation and shot metadata."""
import numpy as np
import pytest
import rawpy

from cans.cfa import XTRANS_PATTERN, cfa_cell
from cans.io.dng import write_dng, write_output_dng
from cans.io.raw import normalize_mosaic, read_raw, read_shot_info

MATRIX = np.array([[0.6, -0.1, -0.05], [-0.35, 1.15, 0.2], [-0.07, 0.19, 0.58]])


def _input(tmp_path, cfa, black, orientation=6):
    rng = np.random.default_rng(0)
    path = str(tmp_path / "input.dng")
    write_dng(path, rng.integers(600, 4000, (96, 132)).astype(np.uint16), cfa=cfa, black=black, white=15000,
              as_shot_neutral=(0.5, 1.0, 0.625), color_matrix=MATRIX, make="SONY", model="ILCE-7SM2",
              exposure_time=0.1, iso=3200, orientation=orientation)
    return path


@pytest.mark.parametrize("cfa, black", [("RGGB", (510, 512, 514, 512)), ("GRBG", 512), ("GBRG", 512),
                                        ("BGGR", (500, 510, 520, 530)), (XTRANS_PATTERN, 1024)])
def test_the_output_dng_holds_the_output_and_the_inputs_metadata(tmp_path, cfa, black):
    source = _input(tmp_path, cfa, black)
    rf, info = read_raw(source), read_shot_info(source)
    assert (info.make, info.model, info.flip) == ("SONY", "ILCE-7SM2", 6)
    output = np.random.default_rng(1).uniform(-0.02, 1.2, rf.mosaic.shape).astype(np.float32)
    path = write_output_dng(str(tmp_path / "out.dng"), output, rf.cfa, rf.black, rf.white, rf.wb, info)

    back = read_raw(path)
    assert np.array_equal(back.cfa, cfa_cell(cfa)) and back.white == rf.white
    assert np.array_equal(back.black, rf.black)
    levels = np.tile(rf.black, (output.shape[0] // rf.black.shape[0], output.shape[1] // rf.black.shape[1]))
    expected = np.clip(np.round(output.astype(np.float64) * (rf.white - levels) + levels), 0, rf.white)
    assert np.array_equal(back.mosaic, expected.astype(np.uint16))          # exactly the output, in DN
    again = normalize_mosaic(back.mosaic, back.black, back.white)
    inside = (output > 0) & (output < 1)
    assert np.abs(again - output)[inside].max() <= 0.5 / (rf.white - rf.black.max()) + 1e-6
    np.testing.assert_allclose(back.wb, rf.wb, rtol=1e-5)
    kept = read_shot_info(path)
    assert (kept.make, kept.model, kept.flip, kept.iso) == ("SONY", "ILCE-7SM2", 6, 3200)
    assert kept.exposure == pytest.approx(0.1)
    with rawpy.imread(source) as rp:
        rgb_cam = rp.color_matrix
    with rawpy.imread(path) as rp:                                         # the same colours, and renders
        np.testing.assert_allclose(rp.color_matrix, rgb_cam, atol=1e-4)
        # LibRaw's default demosaic fails on any 6x6 CFA DNG (an I/O error); its LINEAR one renders it
        linear = {"demosaic_algorithm": rawpy.DemosaicAlgorithm.LINEAR} if rf.cfa.shape[0] == 6 else {}
        rgb = rp.postprocess(use_camera_wb=True, output_bps=8, **linear)
    assert rgb.shape[:2] == output.shape[::-1] and rgb.std() > 0          # turned by the orientation


def test_a_camera_without_a_colour_matrix_gets_srgb_primaries(tmp_path):
    source = _input(tmp_path, "RGGB", 512, orientation=1)
    rf, info = read_raw(source), read_shot_info(source)
    info.xyz_to_cam, info.make, info.model, info.exposure, info.iso = None, "", "", 0.0, 0.0
    path = write_output_dng(str(tmp_path / "out.dng"), np.full(rf.mosaic.shape, 0.2, np.float32),
                            rf.cfa, rf.black, rf.white, rf.wb, info)
    kept = read_shot_info(path)
    assert kept.xyz_to_cam is not None and kept.flip == 0 and kept.exposure == 0 and kept.iso == 0
    with rawpy.imread(path) as rp:
        assert rp.postprocess(use_camera_wb=True).std() >= 0
