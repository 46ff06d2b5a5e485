"""Result images: a preview of a packed RAW, and the validation panels that training shows in
TensorBoard (PNG files: ``cans.io.png``)."""
from __future__ import annotations

import contextlib
from typing import Any, Callable, ContextManager, Dict, Mapping, Optional

import torch

# Colour of each packed channel: Bayer packs R, G, B, G (docs/data.md); X-Trans
# packs R, G, B, R, B, G, G, G, G (the white-balance order of docs/data.md).
PACKED_COLOURS = {4: (0, 1, 2, 1), 9: (0, 1, 2, 0, 2, 1, 1, 1, 1)}


def raw_preview(packed: torch.Tensor, block_size: int, gamma: float = 2.2) -> torch.Tensor:
    """A viewable RGB picture of a packed RAW: (C, h, w) -> (3, h*b, w*b) in [0, 1].

    Channels are averaged per colour (see PACKED_COLOURS; any other channel count gives
    grey), balanced to grey world, clipped to [0, 1], repeated b x b (nearest) to the RGB size and gamma-encoded
    (``x ** (1 / gamma)``) so that a dark input is visible.
    """
    packed = packed.detach().float()
    c = packed.shape[0]
    colours = PACKED_COLOURS.get(c)
    if colours is None:
        rgb = packed.mean(dim=0, keepdim=True).expand(3, -1, -1)
    else:
        planes = []
        for colour in range(3):
            idx = [i for i, col in enumerate(colours) if col == colour]
            planes.append(packed[idx].mean(dim=0))
        rgb = torch.stack(planes)
    if colours is not None:  # grey-world balance (gains within [1/4, 4]) so the preview is not green
        means = rgb.clamp(min=0).flatten(1).mean(dim=1).clamp(min=1e-6)
        rgb = rgb * (means[1] / means).clamp(0.25, 4.0).view(3, 1, 1)
    rgb = rgb.clamp(0.0, 1.0).pow(1.0 / gamma)
    if block_size > 1:
        rgb = rgb.repeat_interleave(block_size, dim=1).repeat_interleave(block_size, dim=2)
    return rgb


@torch.no_grad()
def validation_panels(model: torch.nn.Module, sample: Mapping[str, Any], block_size: int, device: torch.device,
                      *, channels_last: bool = False,
                      autocast: Callable[[], ContextManager] = contextlib.nullcontext,
                      max_side: int = 256) -> Optional[Dict[str, torch.Tensor]]:
    """The two TensorBoard panels of one validation sample, from a centre crop of at most
    ``max_side`` x ``max_side`` packed pixels:

    - ``"valid/input_output_target"``: input (brightened to mid-grey, :func:`raw_preview`) |
      RGB output | RGB target, (3, ch*b, 3*cw*b) in [0, 1];
    - ``"valid/raw_output_target"``: RAW output | RAW target as :func:`raw_preview` pictures,
      (3, ch*b, 2*cw*b) in [0, 1].

    ``sample`` is a sample dict of ``cans.data`` (``noisy_raw`` (C, h, w), ``clean_raw``
    (C, h, w), ``clean_rgb`` (3, h*b, w*b)); ``model`` returns ``(rgb, raw)`` and runs in eval
    mode on ``device`` under ``autocast()`` (its train/eval mode is restored). Returns None when
    the sample has no ``noisy_raw`` (a pair left out) or the crop is smaller than the model accepts.
    """
    if "noisy_raw" not in sample:  # a pair left out (data.skip_bad_files)
        return None
    b = block_size
    x = torch.as_tensor(sample["noisy_raw"])
    h, w = x.shape[-2:]
    ch, cw = min(h, max_side), min(w, max_side)
    top, left = (h - ch) // 2, (w - cw) // 2

    def crop(t, s: int) -> torch.Tensor:  # the same region at scale s (1: packed, b: RGB)
        return torch.as_tensor(t)[..., top * s:(top + ch) * s, left * s:(left + cw) * s]

    inp = crop(x, 1)[None].to(device, non_blocking=True)
    if channels_last:
        inp = inp.contiguous(memory_format=torch.channels_last)
    was_training = model.training
    model.eval()
    try:
        with autocast():
            rgb, raw = model(inp)
    except ValueError:  # crop smaller than the model accepts
        return None
    finally:
        model.train(was_training)
    rgb, raw = rgb[0].float().clamp(0, 1).cpu(), raw[0].float().cpu()
    bright = crop(x, 1).float()
    bright = bright / bright.mean().clamp_min(1e-6) * 0.18  # mid-grey exposure
    panel = torch.cat([raw_preview(bright, b), rgb, crop(sample["clean_rgb"], b).float()], dim=2)
    raw_panel = torch.cat([raw_preview(raw, b), raw_preview(crop(sample["clean_raw"], 1).float(), b)], dim=2)
    return {"valid/input_output_target": panel, "valid/raw_output_target": raw_panel}


__all__ = ["raw_preview", "validation_panels", "PACKED_COLOURS"]
