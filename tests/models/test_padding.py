"""Padding: every packed size from 64 to 100 runs and comes back at the exact size."""
import pytest
import torch

from cans.models import build_model

SMALL = dict(width=4, middle_blk_num=1, enc_blk_nums=[1, 1, 1, 1], dec_blk_nums=[1, 1, 1, 1])
CAMERAS = {"bayer": dict(in_channel=4, adaptive_size=2, block_size=2),
           "xtrans": dict(in_channel=9, adaptive_size=3, block_size=3)}


@pytest.fixture(scope="module", params=[(t, c) for t in ("CANS", "CANS_Plus") for c in CAMERAS],
                ids=lambda p: f"{p[0]}-{p[1]}")
def model(request):
    mtype, cam = request.param
    torch.manual_seed(0)
    return build_model(dict(type=mtype, **SMALL, **CAMERAS[cam])).eval()


def test_all_sizes_64_to_100(model):
    b, c = model.block_size, model.in_channel
    with torch.no_grad():
        # padding is separable (each axis on its own): each height and each width once, plus the diagonal
        sizes = [(h, 77) for h in range(64, 101)] + [(71, w) for w in range(64, 101)] + \
                [(s, s) for s in range(64, 101)]
        for h, w in sizes:
            rgb, raw = model(torch.rand(1, c, h, w))
            assert raw.shape == (1, b * b, h, w), (h, w)
            assert rgb.shape == (1, 3, h * b, w * b), (h, w)
            assert torch.isfinite(rgb).all() and torch.isfinite(raw).all()


def test_padding_is_centred_and_reference_compatible(model):
    # Multiples of 16 are not padded; others split the padding top = dh // 2.
    assert model.padding(64, 80) == (0, 0, 0, 0)
    assert model.padding(75, 90) == ((96 - 90) // 2, 6 - 3, (80 - 75) // 2, 5 - 2)


def test_too_small_input_raises_value_error(model):
    with pytest.raises(ValueError, match=r"smallest size accepted is 49x49"):
        model(torch.rand(1, model.in_channel, 32, 32))
    with pytest.raises(ValueError, match="smallest size"):
        model(torch.rand(1, model.in_channel, 100, 40))
    with torch.no_grad():  # the smallest accepted size works
        model(torch.rand(1, model.in_channel, 49, 49))


def test_wrong_channel_count_raises(model):
    with pytest.raises(ValueError, match="expects a packed RAW tensor"):
        model(torch.rand(1, model.in_channel + 1, 64, 64))


def test_padding_follows_depth():
    m = build_model(dict(type="CANS", in_channel=4, width=4, middle_blk_num=1, enc_blk_nums=[1, 1, 1],
                         dec_blk_nums=[1, 1, 1], adaptive_size=2, block_size=2)).eval()
    assert m.multiple == 8 and m.min_input_size == 25
    with torch.no_grad():
        rgb, raw = m(torch.rand(1, 4, 30, 27))
    assert raw.shape == (1, 4, 30, 27) and rgb.shape == (1, 3, 60, 54)
