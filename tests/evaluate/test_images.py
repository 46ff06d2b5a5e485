"""cans.evaluate.images: the PNG writer (8 and 16 bit) and the validation image panels."""
import numpy as np
import torch
import torch.nn as nn

from cans.evaluate.images import raw_preview, validation_panels


def test_png_writer_8_and_16_bit(tmp_path):
    import struct
    import zlib

    from cans.io.png import write_png
    img = torch.rand(3, 7, 9, generator=torch.Generator().manual_seed(3))
    for bits, dtype, peak in ((8, np.uint8, 255), (16, np.dtype(">u2"), 65535)):
        path = write_png(str(tmp_path / f"x{bits}.png"), img, bits)
        blob = open(path, "rb").read()
        assert blob[:8] == b"\x89PNG\r\n\x1a\n"
        w, h, depth, colour = struct.unpack(">IIBB", blob[16:26])
        assert (w, h, depth, colour) == (9, 7, bits, 2)
        i = blob.index(b"IDAT")
        n = struct.unpack(">I", blob[i - 4:i])[0]
        rows = np.frombuffer(zlib.decompress(blob[i + 4:i + 4 + n]), np.uint8).reshape(7, -1)
        assert (rows[:, 0] == 0).all()
        pixels = rows[:, 1:].copy().view(dtype).reshape(7, 9, 3).astype(np.float64) / peak
        assert np.abs(pixels - img.permute(1, 2, 0).numpy()).max() <= 0.5 / peak + 1e-6


class _Doubler(nn.Module):
    """(1, 4, h, w) -> rgb (1, 3, 2h, 2w) = 0.25 + the first three channels upsampled, raw = 2 * input;
    refuses inputs smaller than ``smallest`` packed pixels (ValueError, as the CANS models)."""

    def __init__(self, smallest=1):
        super().__init__()
        self.smallest, self.seen = smallest, []

    def forward(self, x):
        self.seen.append((tuple(x.shape), self.training))
        if min(x.shape[-2:]) < self.smallest:
            raise ValueError("input too small")
        rgb = 0.25 + x[:, :3].repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
        return rgb, 2 * x


def _sample(h=10, w=14):
    g = torch.Generator().manual_seed(1)
    clean = torch.rand(4, h, w, generator=g) * 0.5
    return {"noisy_raw": 0.01 * clean + 0.001, "clean_raw": clean,
            "clean_rgb": torch.rand(3, 2 * h, 2 * w, generator=g)}


def test_validation_panels_show_a_centre_crop_of_input_output_and_target():
    sample, model = _sample(), _Doubler()
    model.train()
    panels = validation_panels(model, sample, 2, torch.device("cpu"), max_side=6)
    assert model.training and model.seen == [((1, 4, 6, 6), False)]  # evaluated in eval mode, mode restored
    top, left = (10 - 6) // 2, (14 - 6) // 2
    noisy = sample["noisy_raw"][:, top:top + 6, left:left + 6]
    rgb_panel = panels["valid/input_output_target"]
    assert rgb_panel.shape == (3, 12, 36) and rgb_panel.min() >= 0 and rgb_panel.max() <= 1
    expected_rgb = (0.25 + noisy[:3].repeat_interleave(2, 1).repeat_interleave(2, 2)).clamp(0, 1)
    assert torch.allclose(rgb_panel[:, :, 12:24], expected_rgb)
    assert torch.equal(rgb_panel[:, :, 24:], sample["clean_rgb"][:, 2 * top:2 * top + 12, 2 * left:2 * left + 12])
    # the dark input is brightened: its preview is much brighter than the raw values
    assert rgb_panel[:, :, :12].mean() > 10 * noisy.mean()
    raw_panel = panels["valid/raw_output_target"]
    assert raw_panel.shape == (3, 12, 24)
    assert torch.allclose(raw_panel[:, :, :12], raw_preview(2 * noisy, 2))
    assert torch.allclose(raw_panel[:, :, 12:], raw_preview(sample["clean_raw"][:, top:top + 6, left:left + 6], 2))


def test_validation_panels_skip_a_left_out_pair_and_a_crop_too_small_for_the_model():
    sample = _sample()
    assert validation_panels(_Doubler(), {k: v for k, v in sample.items() if k != "noisy_raw"}, 2,
                             torch.device("cpu")) is None
    picky = _Doubler(smallest=64)
    picky.train()
    assert validation_panels(picky, sample, 2, torch.device("cpu")) is None
    assert picky.training  # mode restored after the refusal
