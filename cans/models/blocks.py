"""Building blocks of the CANS backbone: LayerNorm2d, RDE, GCP and the CNP block.

All tensors are feature maps of shape (B, C, H, W); values are unbounded floats.
Attribute names follow the authors' implementation so that their ``state_dict``
(the published weights) loads with ``strict=True``; the tests check the key lists.
"""
from __future__ import annotations

import contextlib
from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

#: the deepest feature map is at least this many pixels a side (the RDE's 7x7 reflect padding
#: needs it; the networks pad and check their input for it)
MIN_DEEPEST_SIZE = 4


class LayerNorm2d(nn.Module):
    """LayerNorm over the channel axis of a (B, C, H, W) map, per pixel, as the reference computes it.

    Mean and *biased* variance over C; ``eps`` 1e-5 for float32 input and 1e-3 for any other dtype
    (the reference's rule); parameters ``g`` and ``b`` of shape (1, C, 1, 1). Under autocast,
    ``amp_float32`` (``model.amp_layernorm: float32``, the default) computes it in float32 with eps
    1e-5, because the reference's half-precision rule takes the output far from the float32 model's
    (docs/performance.md has the figures); ``amp_float32 = False`` keeps the reference's rule.
    """

    amp_float32: bool = True

    def __init__(self, channels: int):
        super().__init__()
        self.g = nn.Parameter(torch.ones(1, channels, 1, 1))
        self.b = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (self.amp_float32 and x.dtype in (torch.bfloat16, torch.float16)
                and torch.is_autocast_enabled(x.device.type)):
            x = x.float()
        return self._normalise(x, self.eps_for(x.dtype))

    @staticmethod
    def eps_for(dtype: torch.dtype) -> float:
        """The reference's eps: 1e-5 for float32, 1e-3 for any other dtype."""
        return 1e-5 if dtype == torch.float32 else 1e-3

    def _normalise(self, x: torch.Tensor, eps: float) -> torch.Tensor:
        if exporting():
            return self.standardised(x, eps) * self.g + self.b
        mean = x.mean(dim=1, keepdim=True)
        var = (x - mean).pow(2).mean(dim=1, keepdim=True)
        return (x - mean) * torch.rsqrt(var + eps) * self.g + self.b

    def standardised(self, x: torch.Tensor, eps: Optional[float] = None) -> torch.Tensor:
        """The exported form before the affine ``g``, ``b``: ``(x - mean) / sqrt(var + eps)`` per
        pixel, the variance from the channels' L2 norm of ``x - mean``, squared (the runtime
        reduces it in one pass, where the squares would be a full-resolution map of their own).
        LayerNorms of the same input share it; each applies its affine where that is linear to do
        (``affine`` of :func:`pooled_conv` and :func:`conv_chunk`). ``eps``: by default as
        :meth:`forward` chooses it for ``x``'s dtype."""
        centred, scale = self.centred_and_scale(x, eps)
        return centred * scale

    def centred_and_scale(self, x: torch.Tensor, eps: Optional[float] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """The two factors of :meth:`standardised`: ``x - mean`` (B, C, H, W) and ``1 / sqrt(var +
        eps)`` (B, 1, H, W), for a form that applies the scale after a 1x1 convolution
        (:meth:`SGU.of_layer_norm`)."""
        if eps is None:
            eps = self.eps_for(x.dtype)
        centred = x - x.mean(dim=1, keepdim=True)
        var = torch.linalg.vector_norm(centred, 2, dim=1, keepdim=True).square() / x.shape[1]
        return centred, torch.rsqrt(var + eps)


def channel_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """Channel-affinity attention used by GCP and the CANS++ heads.

    query, key: (B, C, h, w) pooled maps (h * w = s * s); value: (B, C, H, W).
    Returns ``softmax(q @ k^T, -1) @ v`` reshaped to (B, C, H, W): a (B, C, C) affinity
    between channels, whatever the spatial size (the reshapes as the authors write them).
    """
    h, w = value.shape[-2:]
    q = rearrange(query, "b c h w -> b c (h w)")
    k = rearrange(key, "b c h w -> b c (h w)")
    attn = torch.softmax(q @ k.transpose(-2, -1), dim=-1)  # (B, C, C)
    return rearrange(attn @ rearrange(value, "b c h w -> b c (h w)"), "b c (h w) -> b c h w", h=h, w=w)


def exporting() -> bool:
    """True while ``torch.export`` traces the model (ONNX export), where the shapes are symbolic."""
    is_exporting = getattr(torch.compiler, "is_exporting", None)
    return bool(is_exporting is not None and is_exporting())


def _window(i, n, size: int):
    """Window ``i`` of adaptive average pooling over ``n`` samples, ``[floor(i n / size),
    ceil((i + 1) n / size))``, as ``nn.AdaptiveAvgPool2d`` places it: ints, or tensors for a tensor
    ``i`` (``n`` may be a traced size either way)."""
    return (i * n) // size, ((i + 1) * n + size - 1) // size


def _windows(n, size: int):
    """The ``size`` windows (start, stop) of :func:`_window` over ``n`` samples."""
    return [_window(i, n, size) for i in range(size)]


def _span(x: torch.Tensor, dim: int, start, stop) -> torch.Tensor:
    index = [slice(None)] * x.dim()
    index[dim] = slice(start, stop)
    return x[tuple(index)]


def _window_lengths(n, size: int, like: torch.Tensor) -> torch.Tensor:
    """(size,): the length of each pooling window over ``n`` samples, as a tensor of ``like``'s dtype
    (built from ``arange`` so that a traced ``n`` stays symbolic)."""
    start, stop = _window(torch.arange(size, device=like.device), n, size)
    return (stop - start).to(like.dtype)


#: set only inside :func:`pool_tap` (the tile graph of an ONNX export, cans.onnx_model; two-pass tiles,
#: cans.tiling.GlobalPoolStats): every pooling point calls it with (its input, its pooled value) and
#: uses what it returns
POOL_TAP = None


@contextlib.contextmanager
def pool_tap(tap):
    """Route every pooling point through ``tap(feature, pooled) -> pooled`` inside the block (the
    tap set before it, if any, is back afterwards)."""
    global POOL_TAP
    previous, POOL_TAP = POOL_TAP, tap
    try:
        yield
    finally:
        POOL_TAP = previous


def adaptive_pool(x: torch.Tensor, size: int) -> torch.Tensor:
    """Adaptive average pooling of a (B, C, H, W) map to (B, C, size, size).

    While ``torch.export`` traces (ONNX export), the same windows are written as means over slices
    whose bounds come from the traced H and W, rows first: the exporter turns the operator itself
    into a pooling whose kernel is fixed by the export size, so the graph would fail at any other
    size. Both forms give the same windows; they differ by float rounding (about 1e-7)."""
    if not exporting():
        pooled = F.adaptive_avg_pool2d(x, size)
    else:
        h, w = x.shape[-2], x.shape[-1]
        rows = torch.cat([_span(x, 2, a, b).mean(dim=2, keepdim=True) for a, b in _windows(h, size)], dim=2)
        pooled = torch.cat([_span(rows, 3, a, b).mean(dim=3, keepdim=True) for a, b in _windows(w, size)], dim=3)
    return pooled if POOL_TAP is None else POOL_TAP(x, pooled)


# ---------------------------------------------------------------------------------------------
# Forms for an exported graph. While torch.export traces (ONNX export), the blocks below write the
# same arithmetic in the forms a CPU runtime runs fastest (docs/performance.md, "Where the time
# goes"); outside tracing they run the reference forms. The output agrees to float rounding (the
# export checks at least 60 dB against PyTorch; measured about 143 dB).
# ---------------------------------------------------------------------------------------------

#: a per-channel affine ``(scale, shift)``, each (1, C, 1, 1), still to be applied to an input
Affine = Tuple[torch.Tensor, torch.Tensor]


def _part_weights(conv: nn.Conv2d, part: int, parts: int,
                  affine: Optional[Affine] = None) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """The weight and bias (or None) of ``conv``'s output channels ``[part C/parts, (part+1)
    C/parts)``; with ``affine``, of that part applied to ``x * scale + shift`` instead of ``x`` (a 1x1
    ``conv`` only): the scale goes into the weights, the shift through them into the bias."""
    n = conv.out_channels // parts
    weight = conv.weight[part * n:(part + 1) * n]
    bias = None if conv.bias is None else conv.bias[part * n:(part + 1) * n]
    if affine is not None:
        if conv.kernel_size != (1, 1) or conv.groups != 1 or conv.padding != (0, 0):
            raise ValueError("_part_weights: an affine folds into an unpadded 1x1 convolution only")
        scale, shift = affine
        folded = weight[:, :, 0, 0] @ shift.reshape(-1)
        weight, bias = weight * scale.reshape(1, -1, 1, 1), folded if bias is None else bias + folded
    return weight, bias


def _conv_part(conv: nn.Conv2d, x: torch.Tensor, part: int, parts: int,
               affine: Optional[Affine] = None) -> torch.Tensor:
    """Output channels ``[part C/parts, (part+1) C/parts)`` of ``conv`` applied to ``x``. For a
    depthwise ``conv`` (groups == channels), ``x`` holds that part's input channels only.
    ``affine``: ``conv`` applied to ``x * scale + shift``, folded into a 1x1 ``conv``'s weights."""
    n = conv.out_channels // parts
    weight, bias = _part_weights(conv, part, parts, affine)
    groups = n if conv.groups == conv.out_channels else conv.groups
    if conv.groups not in (1, conv.out_channels):
        raise ValueError(f"_conv_part: a grouped convolution ({conv.groups} groups) cannot be split")
    if conv.padding_mode != "zeros":
        x = F.pad(x, conv._reversed_padding_repeated_twice, mode=conv.padding_mode)
        return F.conv2d(x, weight, bias, conv.stride, 0, conv.dilation, groups)
    return F.conv2d(x, weight, bias, conv.stride, conv.padding, conv.dilation, groups)


def conv_chunks(x: torch.Tensor, parts: int, pointwise: nn.Conv2d,
                depthwise: Optional[nn.Conv2d] = None) -> Tuple[torch.Tensor, ...]:
    """``depthwise(pointwise(x)).chunk(parts, dim=1)`` (``depthwise`` optional).

    Exported, each chunk is convolutions of its own (the weights' rows of that chunk): OpenVINO
    runs a channel Split in a reference kernel on plain layouts, which also slows the convolution
    before it; it took a quarter of a full frame's time."""
    if not exporting():
        y = pointwise(x)
        return (depthwise(y) if depthwise is not None else y).chunk(parts, dim=1)
    return tuple(conv_chunk(x, i, parts, pointwise, depthwise) for i in range(parts))


def conv_chunk(x: torch.Tensor, part: int, parts: int, pointwise: nn.Conv2d,
               depthwise: Optional[nn.Conv2d] = None, affine: Optional[Affine] = None) -> torch.Tensor:
    """Chunk ``part`` of :func:`conv_chunks`, computed alone (the convolutions' rows of that chunk);
    with ``affine``, of ``x * scale + shift``, folded into the 1x1 ``pointwise``."""
    y = _conv_part(pointwise, x, part, parts, affine)
    return y if depthwise is None else _conv_part(depthwise, y, part, parts)


def _shifted_window_sums(x: torch.Tensor, dim: int, size: int, reflect: bool) -> torch.Tensor:
    """Sums of ``x`` along ``dim`` over each pooling window shifted by -1, 0 and +1 samples
    (``3 size`` entries along ``dim``: window i at 3i + 1, its shifts beside it). Outside the map a
    sample is zero, or with ``reflect`` the mirrored one (reflect padding of one sample). Each
    shift is the window's sum with one sample taken out and one put in."""
    n = x.shape[dim]
    out = []
    for i, (a, b) in enumerate(_windows(n, size)):
        base = _span(x, dim, a, b).sum(dim=dim, keepdim=True)
        up, down = base - _span(x, dim, b - 1, b), base - _span(x, dim, a, a + 1)
        if i > 0:                       # n >= size: window i > 0 starts after sample 0
            up = up + _span(x, dim, a - 1, a)
        elif reflect:
            up = up + _span(x, dim, 1, 2)
        if i < size - 1:
            down = down + _span(x, dim, b, b + 1)
        elif reflect:
            down = down + _span(x, dim, n - 2, n - 1)
        out += [up, base, down]
    return torch.cat(out, dim=dim)


def pooled_form_applies(size: int, pointwise: Optional[nn.Conv2d], depthwise: nn.Conv2d) -> bool:
    """Whether :func:`pooled_conv` may skip the full-resolution maps: exported, no pooling tap
    (the tile graph and two-pass tiles need every pooling point's input), a 3x3 depthwise
    convolution padded by one, and windows no more than the smallest map (4 a side, so no window
    starts at sample 0 after the first)."""
    reflect = depthwise.padding_mode == "reflect"
    return (exporting() and POOL_TAP is None and size <= MIN_DEEPEST_SIZE
            and depthwise.kernel_size == (3, 3) and depthwise.padding == (1, 1)
            and depthwise.stride == (1, 1) and depthwise.dilation == (1, 1)
            and depthwise.groups == depthwise.out_channels
            and depthwise.padding_mode in ("zeros", "reflect")
            and (pointwise is None or (pointwise.kernel_size == (1, 1) and pointwise.groups == 1
                                       and (pointwise.bias is None or reflect))))


def pooled_conv(x: torch.Tensor, size: int, depthwise: nn.Conv2d, pointwise: Optional[nn.Conv2d] = None,
                part: int = 0, parts: int = 1, affine: Optional[Affine] = None) -> torch.Tensor:
    """``adaptive_pool(conv_chunks(x, parts, pointwise, depthwise)[part], size)`` (no ``pointwise``:
    of ``depthwise(x)``), (B, C/parts, size, size); with ``affine``, of ``x * scale + shift``.

    Exported, the chunk is never made at full resolution: both convolutions are linear, so the
    pooled value is the depthwise kernel applied to the pointwise map of the input's window means
    shifted by one pixel each way (:func:`_shifted_window_sums`). This skips two thirds of each
    GCP's convolutions at full resolution and the heads' query and key maps (a sixth of a frame).
    An ``affine`` is applied to the window sums (reflect padding: every shifted window holds as
    many pixels as its own), so the affine map is not made either."""
    applies, reflect = pooled_form_applies(size, pointwise, depthwise), depthwise.padding_mode == "reflect"
    if affine is not None and not (applies and reflect):
        x, affine = x * affine[0] + affine[1], None
    if not applies:
        if pointwise is None:
            return adaptive_pool(depthwise(x), size)
        return adaptive_pool(conv_chunks(x, parts, pointwise, depthwise)[part], size)
    h, w = x.shape[-2], x.shape[-1]
    # columns first: a runtime's channels-last layout sums along the width fast, along the height slowly
    sums = _shifted_window_sums(_shifted_window_sums(x, 3, size, reflect), 2, size, reflect)  # (B, C, 3s, 3s)
    if affine is not None:      # each sum is of (window height x width) pixels, shifted or not
        area = _window_lengths(h, size, x)[:, None] * _window_lengths(w, size, x)[None, :]       # (s, s)
        counts = area[:, None, :, None].expand(size, 3, size, 3).reshape(3 * size, 3 * size)
        sums = sums * affine[0] + affine[1] * counts
    if pointwise is not None:    # a 1x1 convolution commutes with the sums (its bias: reflect only, below)
        n = pointwise.out_channels // parts
        sums = torch.einsum("nc,bcyx->bnyx", pointwise.weight[part * n:(part + 1) * n, :, 0, 0], sums)
    n = sums.shape[1]
    kernel = depthwise.weight[part * n:(part + 1) * n, 0]                  # (n, 3, 3)
    pooled = torch.einsum("bnyuxv,nuv->bnyx", sums.reshape(sums.shape[0], n, size, 3, size, 3), kernel)
    pooled = pooled / (_window_lengths(h, size, x)[:, None] * _window_lengths(w, size, x)[None, :])
    if pointwise is not None and pointwise.bias is not None:   # the bias through the kernel (reflect: no zeros)
        pooled = pooled + (pointwise.bias[part * n:(part + 1) * n] * kernel.sum(dim=(1, 2))).reshape(1, n, 1, 1)
    if depthwise.bias is not None:
        pooled = pooled + depthwise.bias[part * n:(part + 1) * n].reshape(1, n, 1, 1)
    return pooled


def projected_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                        out: nn.Conv2d) -> torch.Tensor:
    """``out(channel_attention(query, key, value))``, ``out`` a 1x1 convolution.

    Exported, ``out``'s weight is multiplied into the (B, C, C) affinity first, so the full
    resolution map goes through one product instead of two; with one image (the export's batch)
    that product is a 1x1 convolution whose weights are the product: it runs in the layout of the
    convolutions around it, where a matrix product over (C, H W) needs the map reordered twice."""
    if not exporting():
        return out(channel_attention(query, key, value))
    h, w = value.shape[-2:]
    q = rearrange(query, "b c h w -> b c (h w)")
    k = rearrange(key, "b c h w -> b c (h w)")
    mix = out.weight[:, :, 0, 0] @ torch.softmax(q @ k.transpose(-2, -1), dim=-1)   # (B, C, C)
    if value.shape[0] == 1:
        return F.conv2d(value, mix[0, :, :, None, None], out.bias)
    y = mix @ rearrange(value, "b c h w -> b c (h w)")
    if out.bias is not None:
        y = y + out.bias[:, None]
    return rearrange(y, "b c (h w) -> b c h w", h=h, w=w)


def upsample(up: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """``up(x)``: ``up`` is a 1x1 convolution without bias, then ``nn.PixelShuffle(r)``; (B, r r C,
    H, W) -> (B, C, r H, r W). Exported, one transposed convolution of kernel and stride ``r`` with
    the same weights: the same sums, without the pixel shuffle's pass over the upsampled map."""
    conv, shuffle = up
    if not exporting():
        return up(x)
    if conv.bias is not None or conv.kernel_size != (1, 1) or conv.groups != 1 or conv.stride != (1, 1):
        # a bias differs between the r x r pixels of a channel, which a transposed convolution's cannot
        raise ValueError("upsample: a 1x1 convolution without bias, ungrouped, stride 1, is what folds")
    r = shuffle.upscale_factor
    # output channel (c, i, j) of the 1x1 convolution is pixel (i, j) of channel c after the shuffle
    weight = conv.weight[:, :, 0, 0].reshape(conv.out_channels // (r * r), r, r, -1).permute(3, 0, 1, 2)
    return F.conv_transpose2d(x, weight, stride=r)


class AdaptivePool2d(nn.AdaptiveAvgPool2d):
    """``nn.AdaptiveAvgPool2d`` (a square output) that stays shape-generic when exported
    (:func:`adaptive_pool`)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = self.output_size if isinstance(self.output_size, int) else self.output_size[0]
        return adaptive_pool(x, size)


class SGU(nn.Module):
    """Simple gated unit: 1x1 conv C->2C, product of the two halves, 1x1 conv C->C."""

    def __init__(self, channels: int):
        super().__init__()
        self.pconv1 = nn.Conv2d(channels, 2 * channels, 1, bias=True)
        self.pconv2 = nn.Conv2d(channels, channels, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = conv_chunks(x, 2, self.pconv1)
        return self.pconv2(x1 * x2)

    def of_layer_norm(self, x: torch.Tensor, norm: LayerNorm2d) -> torch.Tensor:
        """``self(norm(x))``. Exported, the normalised map is never made: ``pconv1`` (its halves, the
        LayerNorm's affine folded in) runs on ``x - mean``, and the LayerNorm's per-pixel scale, which
        a 1x1 convolution commutes with, is applied to its output in the gate's product, which the
        runtime fuses into one pass (a full-resolution pass less per block; docs/performance.md)."""
        if not exporting():
            return self(norm(x))
        centred, scale = norm.centred_and_scale(x)
        halves = []
        for part in (0, 1):
            weight, bias = _part_weights(self.pconv1, part, 2, (norm.g, norm.b))
            halves.append(F.conv2d(centred, weight) * scale + bias.reshape(1, -1, 1, 1))
        return self.pconv2(halves[0] * halves[1])


class RDE(nn.Module):
    """Refined detail extractor (residual): dwconv 7x7 reflect -> LayerNorm2d -> SGU."""

    def __init__(self, channels: int):
        super().__init__()
        self.dconv = nn.Conv2d(channels, channels, 7, padding=3, padding_mode="reflect",
                               groups=channels, bias=True)
        self.norm = LayerNorm2d(channels)
        self.SGU = SGU(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.SGU.of_layer_norm(self.dconv(x), self.norm) + x


class GCP(nn.Module):
    """Global chromatic perceptor (residual): channel attention from s x s pooled statistics."""

    def __init__(self, channels: int, adaptive_size: int):
        super().__init__()
        self.norm = LayerNorm2d(channels)
        self.pconv = nn.Conv2d(channels, 3 * channels, 1, bias=False)
        self.dconv = nn.Conv2d(3 * channels, 3 * channels, 3, padding=1,
                               groups=3 * channels, bias=False)
        self.pool = AdaptivePool2d(adaptive_size)
        self.out = nn.Conv2d(channels, channels, 1, bias=True)
        self.pool_size = adaptive_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_norm = self.norm(x)
        if pooled_form_applies(self.pool_size, self.pconv, self.dconv):
            # exported: c1 and c2 are only pooled, so only their pooled values are made (pooled_conv)
            q, k = (pooled_conv(x_norm, self.pool_size, self.dconv, self.pconv, i, 3) for i in (0, 1))
            c3 = conv_chunk(x_norm, 2, 3, self.pconv, self.dconv)
        else:
            c1, c2, c3 = conv_chunks(x_norm, 3, self.pconv, self.dconv)
            q, k = self.pool(c1), self.pool(c2)
        return projected_attention(q, k, c3, self.out) + x


class CNPBlock(nn.Module):
    """Chromaticity and noise perception block: optional GCP, then RDE."""

    def __init__(self, channels: int, adaptive_size: int, global_aware: bool):
        super().__init__()
        self.GCP = GCP(channels, adaptive_size) if global_aware else nn.Identity()
        self.RDE = RDE(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.RDE(self.GCP(x))
