"""cans.evaluate.metrics against scikit-image (the cross-check named in docs/testing.md, "Metrics")."""
import numpy as np
import pytest
import torch

skimage = pytest.importorskip("skimage")
from skimage import data as skdata  # noqa: E402
from skimage.metrics import peak_signal_noise_ratio, structural_similarity  # noqa: E402

from cans.evaluate.metrics import psnr, ssim  # noqa: E402


def _sk_scores(out, tgt, data_range):
    """skimage on (C, H, W) float64 arrays."""
    p = peak_signal_noise_ratio(tgt, out, data_range=data_range)
    s = structural_similarity(out, tgt, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                              data_range=data_range, channel_axis=0)
    return p, s


def _natural_pair(seed=0):
    rng = np.random.default_rng(seed)
    img = skdata.astronaut()[::2, ::2].astype(np.float64) / 255.0  # 256x256x3
    clean = np.transpose(img, (2, 0, 1))
    noisy = np.clip(clean + rng.normal(0, 0.05, clean.shape), 0, 1)
    return noisy, clean


def test_natural_image_matches_skimage_255_scale():
    noisy, clean = _natural_pair()
    p = psnr(torch.from_numpy(noisy)[None], torch.from_numpy(clean)[None])
    s = ssim(torch.from_numpy(noisy)[None], torch.from_numpy(clean)[None])
    # the paper's convention: scaled to 0..255, data range 255
    p_ref, s_ref = _sk_scores(noisy * 255.0, clean * 255.0, 255)
    assert p.shape == (1,) and s.shape == (1,)
    assert abs(p.item() - p_ref) < 1e-4
    assert abs(s.item() - s_ref) < 1e-4
    assert 0.2 < s.item() < 0.99  # a real, non-trivial value


def test_random_images_batch_float32_and_raw_convention():
    rng = np.random.default_rng(1)
    out = rng.random((3, 4, 40, 53))
    tgt = np.clip(out * 0.7 + 0.3 * rng.random(out.shape), 0, 1)
    p = psnr(torch.from_numpy(out).float(), torch.from_numpy(tgt).float())
    s = ssim(torch.from_numpy(out).float(), torch.from_numpy(tgt).float())
    assert p.dtype == torch.float64 and p.shape == (3,)
    for i in range(3):
        o = torch.from_numpy(out[i]).float().double().numpy()
        t = torch.from_numpy(tgt[i]).float().double().numpy()
        # RAW report convention: [0, 1] arrays, data range 1
        p_ref, s_ref = _sk_scores(o, t, 1.0)
        assert abs(p[i].item() - p_ref) < 1e-4
        assert abs(s[i].item() - s_ref) < 1e-4
    # images differ: scores differ per image
    assert len({round(v, 6) for v in s.tolist()}) == 3


def test_clamping_and_data_range():
    rng = np.random.default_rng(2)
    tgt = rng.random((1, 3, 32, 32))
    out = tgt + rng.normal(0, 0.3, tgt.shape)  # outside [0, 1]
    p = psnr(torch.from_numpy(out), torch.from_numpy(tgt)).item()
    s = ssim(torch.from_numpy(out), torch.from_numpy(tgt)).item()
    p_ref, s_ref = _sk_scores(np.clip(out[0], 0, 1), tgt[0], 1.0)
    assert abs(p - p_ref) < 1e-4 and abs(s - s_ref) < 1e-4
    # data_range=4 on a 4x scaled pair gives the same numbers
    p4 = psnr(torch.from_numpy(np.clip(out, 0, 1) * 4), torch.from_numpy(tgt * 4), data_range=4.0).item()
    s4 = ssim(torch.from_numpy(np.clip(out, 0, 1) * 4), torch.from_numpy(tgt * 4), data_range=4.0).item()
    assert abs(p4 - p) < 1e-9 and abs(s4 - s) < 1e-9


def test_identical_and_bad_inputs():
    x = torch.rand(2, 3, 16, 16)
    assert torch.isinf(psnr(x, x)).all()
    assert torch.allclose(ssim(x, x), torch.ones(2, dtype=torch.float64))
    with pytest.raises(ValueError, match="same shape"):
        psnr(x, x[:, :2])
    with pytest.raises(ValueError, match="window"):
        ssim(torch.rand(1, 1, 8, 20), torch.rand(1, 1, 8, 20))


# -------------------------------------------------------------- SSIM: no host reads of the device's tensors

def _ssim_by_convolution(x, y, data_range=1.0):
    """SSIM straight from its definition: the 11 x 11 Gaussian window (sigma 1.5) as one 2-D
    float64 convolution, valid part, population statistics, 0..255 scale (docs/testing.md)."""
    import torch.nn.functional as F

    coords = torch.arange(11, dtype=torch.float64) - 5.0
    g = torch.exp(-coords ** 2 / (2 * 1.5 ** 2))
    g = g / g.sum()
    window = torch.outer(g, g)[None, None]
    x = x.double().clamp(0, data_range) * (255.0 / data_range)
    y = y.double().clamp(0, data_range) * (255.0 / data_range)
    b, c = x.shape[:2]
    scores = torch.zeros(b, dtype=torch.float64)
    for ch in range(c):
        xc, yc = x[:, ch:ch + 1], y[:, ch:ch + 1]
        mx, my = F.conv2d(xc, window), F.conv2d(yc, window)
        vx, vy = F.conv2d(xc * xc, window) - mx * mx, F.conv2d(yc * yc, window) - my * my
        vxy = F.conv2d(xc * yc, window) - mx * my
        c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
        m = ((2 * mx * my + c1) * (2 * vxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
        scores += m.flatten(1).mean(dim=1) / c
    return scores


@pytest.mark.cuda_path
def test_ssim_reads_nothing_back_from_the_device_and_keeps_its_values():
    """SSIM on meta tensors (which refuse any read of a value, as a read of a GPU tensor would
    synchronise): before the fix the window's taps were read back one by one from the device
    (float(t)); now they are built on the CPU once. The scores are those of the definition."""
    from cans.evaluate import metrics

    out = metrics.ssim(torch.empty(2, 3, 24, 30, device="meta"), torch.empty(2, 3, 24, 30, device="meta"))
    assert out.device.type == "meta" and out.shape == (2,)
    metrics.window_taps.cache_clear()
    g = torch.Generator().manual_seed(3)
    x, y = torch.rand(2, 3, 24, 30, generator=g), torch.rand(2, 3, 24, 30, generator=g)
    y = (0.7 * x + 0.3 * y).clamp(0, 1)
    assert torch.allclose(metrics.ssim(x, y), _ssim_by_convolution(x, y), rtol=0, atol=1e-12)
    raw = torch.rand(1, 4, 16, 16, generator=g)
    assert torch.allclose(metrics.ssim(raw * 0.5, raw * 0.4, data_range=0.5),
                          _ssim_by_convolution(raw * 0.5, raw * 0.4, 0.5), rtol=0, atol=1e-12)
    assert metrics.window_taps.cache_info().misses == 1     # one window for every call
