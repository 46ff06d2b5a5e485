"""The evaluation progress bar shows the running mean PSNR (what the report gives), labelled as a mean."""
import math

import torch

from cans.evaluate.scores import evaluate


class _Echo(torch.nn.Module):
    """A stand-in network: RAW out = RAW in, RGB out = its first three channels, 2x nearest upsampled."""
    block_size = 2

    def forward(self, x):
        return x[:, :3].repeat_interleave(2, -1).repeat_interleave(2, -2), x


def _batch(name, noise, seed):
    g = torch.Generator().manual_seed(seed)
    clean = torch.rand(1, 4, 16, 16, generator=g) * 0.5 + 0.25
    noisy = clean + noise * torch.randn(1, 4, 16, 16, generator=g)
    return {"noisy_raw": noisy, "clean_raw": clean,
            "clean_rgb": clean[:, :3].repeat_interleave(2, -1).repeat_interleave(2, -2),
            "ratio": torch.tensor([100.0]), "img_file": [name], "lbl_file": [name + "_gt"]}


def test_progress_bar_shows_the_running_mean_psnr(capsys):
    torch.manual_seed(0)
    loader = [_batch("a", 0.01, 1), _batch("b", 0.1, 2)]   # about 40 dB and 20 dB: mean != last
    report = evaluate(_Echo(), loader, "cpu", progress=True)
    err = capsys.readouterr().err
    rgb = [r["rgb_psnr"] for r in report["per_image"]]
    raw = [r["raw_psnr"] for r in report["per_image"]]
    assert abs(rgb[0] - rgb[1]) > 5
    mean = report["reconstruction"]["psnr"]
    assert math.isclose(mean, sum(rgb) / 2)
    final = err.replace("\r", "\n").strip().splitlines()[-1]   # the bar as it was closed
    assert f"rgb_psnr_mean={mean:.2f}" in final, final
    assert f"raw_psnr_mean={report['denoising']['all_images']['psnr']:.2f}" in final, final
    assert f"={rgb[1]:.2f}" not in final and f"={raw[1]:.2f}" not in final   # not the last image's
