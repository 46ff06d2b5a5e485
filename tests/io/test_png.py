"""cans.io.png.to_hwc_array: what a PNG's pixels are made of (rounding, range, NaN, grey)."""
import numpy as np
import pytest
import torch

from cans.io.png import to_hwc_array


@pytest.mark.parametrize("bits,dtype,peak", [(8, np.uint8, 255), (16, np.uint16, 65535)])
def test_values_are_rounded_clipped_and_nan_is_black(bits, dtype, peak):
    image = torch.tensor([0.0, 1.0, -0.3, 1.7, float("nan"), float("inf"), -float("inf"),
                          0.49 / peak, 0.51 / peak, 0.5]).reshape(1, 1, 10).expand(3, 1, 10)
    out = to_hwc_array(image, bits)
    assert out.dtype == dtype and out.shape == (1, 10, 3)
    assert out[0, :, 0].tolist() == [0, peak, 0, peak, 0, peak, 0, 0, 1, (peak + 1) // 2]


def test_grey_numpy_and_double_inputs_give_the_same_rgb():
    grey = np.random.default_rng(0).random((1, 5, 6))
    out = to_hwc_array(grey)
    assert out.shape == (5, 6, 3) and (out == out[..., :1]).all()
    np.testing.assert_array_equal(out, to_hwc_array(torch.from_numpy(grey).float()))
    np.testing.assert_array_equal(out[..., 0], np.floor(grey[0].astype(np.float32) * 255 + 0.5).astype(np.uint8))


def test_other_shapes_are_refused():
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        to_hwc_array(torch.zeros(2, 4, 4))
