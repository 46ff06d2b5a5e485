"""Depthwise 7x7 convolution with reflect padding 3, as one Triton kernel per pass.

The RDE block computes ``conv2d(pad(x, 3, 'reflect'), weight, bias, groups=C)`` with
``weight`` (C, 1, 7, 7) and ``bias`` (C,). In eager PyTorch that is two kernels (the pad
writes a padded copy of ``x``; cuDNN's depthwise convolution reads it), and the backward
adds a third pass that folds the padded gradient back. Here the reflection is done on the
indices inside the kernels, so no padded copy of ``x`` is ever written:

* forward: ``y[n, c, h, w] = bias[c] + sum_ij weight[c, i, j] * x[n, c, r(h + i - 3), r(w + j - 3)]``
  with ``r(k) = -k`` for ``k < 0``, ``2H - 2 - k`` for ``k >= H`` (PyTorch's 'reflect');
* grad input: the transposed convolution of ``dy`` on the padded grid (H + 6, W + 6), then
  the three reflected border rows / columns are added onto the rows / columns they mirror;
* grad weight and bias: per-tile partial sums of ``dy * x(shifted, reflected)`` (49 taps)
  and of ``dy``, reduced over tiles and batch in float32.

Shapes: ``x`` (N, C, H, W) with H, W >= 4 (reflect padding 3 needs 4 pixels), float32,
bfloat16 or float16; ``weight`` (C, 1, 7, 7); ``bias`` (C,) or None. Accumulation is float32;
the output has ``x``'s dtype; weight and bias gradients have their parameters' dtype.
"""
from __future__ import annotations

import os
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

try:  # Triton is optional: the CUDA wheels of torch bring it; CPU installs may not
    import triton
    import triton.language as tl
except Exception:  # pragma: no cover - depends on the install
    triton = None
    tl = None

K = 7
PAD = 3


def triton_available() -> bool:
    """True when Triton imported (it still needs a CUDA tensor, or the interpreter)."""
    return triton is not None


def interpreted() -> bool:
    """True when the kernels below were built for Triton's CPU interpreter (TRITON_INTERPRET=1
    was set before this module was imported)."""
    return triton is not None and _INTERPRETED


_INTERPRETED = os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def dwconv7_reference(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
    """The same operation in torch: ``conv2d(pad(x, 3, 'reflect'), weight, bias, groups=C)``."""
    return F.conv2d(F.pad(x, (PAD, PAD, PAD, PAD), mode="reflect"), weight, bias, groups=x.shape[1])


if triton is not None:

    @triton.jit
    def _reflect(k, n):
        # lanes beyond the tile's image part get any index: their loads and stores are masked
        k = tl.abs(k)
        return tl.where(k >= n, 2 * n - 2 - k, k)

    @triton.jit
    def _fwd_kernel(x_ptr, w_ptr, b_ptr, y_ptr, C, H, W,
                    HAS_BIAS: tl.constexpr, BH: tl.constexpr, BW: tl.constexpr):
        plane = tl.program_id(0)
        c = plane % C
        rows = tl.program_id(1) * BH + tl.arange(0, BH)
        cols = tl.program_id(2) * BW + tl.arange(0, BW)
        mask = (rows[:, None] < H) & (cols[None, :] < W)
        base = plane.to(tl.int64) * H * W
        acc = tl.zeros((BH, BW), dtype=tl.float32)
        for i in tl.static_range(7):
            r = _reflect(rows + (i - 3), H)
            for j in tl.static_range(7):
                q = _reflect(cols + (j - 3), W)
                wv = tl.load(w_ptr + c * 49 + i * 7 + j).to(tl.float32)
                xv = tl.load(x_ptr + base + r[:, None] * W + q[None, :], mask=mask, other=0.0)
                acc += xv.to(tl.float32) * wv
        if HAS_BIAS:
            acc += tl.load(b_ptr + c).to(tl.float32)
        tl.store(y_ptr + base + rows[:, None] * W + cols[None, :], acc.to(y_ptr.dtype.element_ty), mask=mask)

    @triton.jit
    def _grad_padded_kernel(dy_ptr, w_ptr, dxp_ptr, C, H, W, BH: tl.constexpr, BW: tl.constexpr):
        # dxp[u, v] = sum_ij w[i, j] * dy[u - i, v - j] on the padded grid (H + 6, W + 6)
        plane = tl.program_id(0)
        c = plane % C
        HP = H + 6
        WP = W + 6
        u = tl.program_id(1) * BH + tl.arange(0, BH)
        v = tl.program_id(2) * BW + tl.arange(0, BW)
        base = plane.to(tl.int64) * H * W
        acc = tl.zeros((BH, BW), dtype=tl.float32)
        for i in tl.static_range(7):
            h = u - i
            hm = (h >= 0) & (h < H)
            for j in tl.static_range(7):
                w = v - j
                m = hm[:, None] & ((w >= 0) & (w < W))[None, :]
                wv = tl.load(w_ptr + c * 49 + i * 7 + j).to(tl.float32)
                g = tl.load(dy_ptr + base + h[:, None] * W + w[None, :], mask=m, other=0.0)
                acc += g.to(tl.float32) * wv
        out = plane.to(tl.int64) * HP * WP + u[:, None] * WP + v[None, :]
        tl.store(dxp_ptr + out, acc, mask=(u[:, None] < HP) & (v[None, :] < WP))

    @triton.jit
    def _grad_weight_kernel(x_ptr, dy_ptr, part_ptr, C, H, W, TILES_W,
                            BH: tl.constexpr, BW: tl.constexpr):
        # part[plane, tile, i * 7 + j] = sum_tile dy * x(reflected shift); part[..., 49] = sum_tile dy
        plane = tl.program_id(0)
        th = tl.program_id(1)
        tw = tl.program_id(2)
        tiles = tl.num_programs(1) * TILES_W
        rows = th * BH + tl.arange(0, BH)
        cols = tw * BW + tl.arange(0, BW)
        mask = (rows[:, None] < H) & (cols[None, :] < W)
        base = plane.to(tl.int64) * H * W
        g = tl.load(dy_ptr + base + rows[:, None] * W + cols[None, :], mask=mask, other=0.0).to(tl.float32)
        out = part_ptr + (plane.to(tl.int64) * tiles + th * TILES_W + tw) * 50
        for i in tl.static_range(7):
            r = _reflect(rows + (i - 3), H)
            for j in tl.static_range(7):
                q = _reflect(cols + (j - 3), W)
                xv = tl.load(x_ptr + base + r[:, None] * W + q[None, :], mask=mask, other=0.0)
                tl.store(out + i * 7 + j, tl.sum(tl.sum(g * xv.to(tl.float32), axis=1), axis=0))
        tl.store(out + 49, tl.sum(tl.sum(g, axis=1), axis=0))


def _blocks(h: int, w: int, block: Optional[tuple]) -> tuple:
    if block is not None:
        return block
    return (16, 64) if w >= 64 else (32, 32)


def _check(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> None:
    if x.dim() != 4:
        raise ValueError(f"dwconv7: expected x of shape (N, C, H, W), got {tuple(x.shape)}")
    c = x.shape[1]
    if tuple(weight.shape) != (c, 1, K, K):
        raise ValueError(f"dwconv7: expected weight of shape ({c}, 1, 7, 7), got {tuple(weight.shape)}")
    if bias is not None and tuple(bias.shape) != (c,):
        raise ValueError(f"dwconv7: expected bias of shape ({c},), got {tuple(bias.shape)}")
    if min(x.shape[-2:]) <= PAD:
        raise ValueError(f"dwconv7: reflect padding 3 needs H and W >= 4, got {tuple(x.shape[-2:])}")


def _forward(x, weight, bias, block):
    n, c, h, w = x.shape
    bh, bw = _blocks(h, w, block)
    y = torch.empty_like(x, memory_format=torch.contiguous_format)
    grid = (n * c, triton.cdiv(h, bh), triton.cdiv(w, bw))
    _fwd_kernel[grid](x, weight, bias if bias is not None else weight, y, c, h, w,
                      HAS_BIAS=bias is not None, BH=bh, BW=bw)
    return y


def _fold_reflect(dxp: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(N, C, H + 6, W + 6) gradient on the padded grid -> (N, C, H, W), in place on ``dxp``:
    each padded border row / column is added to the row / column it reflects (padded row u < 3
    is image row 3 - u, padded row u >= H + 3 is image row 2H + 1 - u; image row r is padded row
    r + 3). Rows first over the whole width, then columns over the image rows."""
    dxp[:, :, PAD + 1:2 * PAD + 1, :] += dxp[:, :, 0:PAD, :].flip(2)
    dxp[:, :, h - 1:h + PAD - 1, :] += dxp[:, :, h + PAD:h + 2 * PAD, :].flip(2)
    rows = dxp[:, :, PAD:PAD + h, :]
    rows[:, :, :, PAD + 1:2 * PAD + 1] += rows[:, :, :, 0:PAD].flip(3)
    rows[:, :, :, w - 1:w + PAD - 1] += rows[:, :, :, w + PAD:w + 2 * PAD].flip(3)
    return rows[:, :, :, PAD:PAD + w]


def _grad_input(dy, weight, block):
    n, c, h, w = dy.shape
    hp, wp = h + 2 * PAD, w + 2 * PAD
    bh, bw = _blocks(hp, wp, block)
    dxp = torch.empty((n, c, hp, wp), device=dy.device, dtype=torch.float32)
    grid = (n * c, triton.cdiv(hp, bh), triton.cdiv(wp, bw))
    _grad_padded_kernel[grid](dy, weight, dxp, c, h, w, BH=bh, BW=bw)
    return _fold_reflect(dxp, h, w).to(dtype=dy.dtype, memory_format=torch.contiguous_format)


def _grad_weight(x, dy, block):
    n, c, h, w = x.shape
    bh, bw = _blocks(h, w, block)
    th, tw = triton.cdiv(h, bh), triton.cdiv(w, bw)
    part = torch.empty((n * c, th * tw, 50), device=x.device, dtype=torch.float32)
    _grad_weight_kernel[(n * c, th, tw)](x, dy, part, c, h, w, tw, BH=bh, BW=bw)
    total = part.view(n, c, th * tw, 50).sum(dim=(0, 2))
    return total[:, :49].reshape(c, 1, K, K), total[:, 49]


class _DWConv7Function(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, block):
        x = x.contiguous()
        weight = weight.contiguous()
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        ctx.block = block
        return _forward(x, weight, bias.contiguous() if bias is not None else None, block)

    @staticmethod
    def backward(ctx, dy):
        x, weight = ctx.saved_tensors
        dy = dy.contiguous()
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:
            gx = _grad_input(dy, weight, ctx.block)
        if ctx.needs_input_grad[1] or (ctx.has_bias and ctx.needs_input_grad[2]):
            w_sum, b_sum = _grad_weight(x, dy, ctx.block)
            gw = w_sum.to(weight.dtype) if ctx.needs_input_grad[1] else None
            gb = b_sum.to(weight.dtype) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return gx, gw, gb, None


def dwconv7_reflect(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None,
                    block: Optional[tuple] = None) -> torch.Tensor:
    """Depthwise 7x7 convolution with reflect padding 3 (see the module doc), differentiable.

    Runs the Triton kernels for CUDA tensors (and for CPU tensors under ``TRITON_INTERPRET=1``);
    anything else takes :func:`dwconv7_reference`. ``block`` = (rows, cols) of a program's tile
    (powers of two; default chosen from the width).
    """
    _check(x, weight, bias)
    if triton is None or not (x.is_cuda or (interpreted() and x.device.type == "cpu")):
        return dwconv7_reference(x, weight, bias)
    return _DWConv7Function.apply(x, weight, bias, block)


class TritonDWConv7(nn.Module):
    """Drop-in replacement for ``nn.Conv2d(C, C, 7, padding=3, padding_mode='reflect', groups=C)``.

    Holds the *same* ``weight`` (C, 1, 7, 7) and ``bias`` (C,) parameters as the convolution it
    replaces, so ``state_dict`` names and optimiser state are unchanged.
    """

    def __init__(self, weight: nn.Parameter, bias: Optional[nn.Parameter]):
        super().__init__()
        self.weight = weight
        self.bias = bias
        self.channels = weight.shape[0]

    @classmethod
    def from_conv(cls, conv: nn.Conv2d) -> "TritonDWConv7":
        c = conv.in_channels
        if (conv.kernel_size != (K, K) or conv.padding != (PAD, PAD) or conv.padding_mode != "reflect"
                or conv.groups != c or conv.out_channels != c or conv.stride != (1, 1) or conv.dilation != (1, 1)):
            raise ValueError(f"TritonDWConv7: {conv} is not a depthwise 7x7 convolution with reflect padding 3")
        return cls(conv.weight, conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight, bias = self.weight, self.bias
        if weight.dtype != x.dtype:  # autocast: run in the activations' precision
            weight = weight.to(x.dtype)
            bias = bias.to(x.dtype) if bias is not None else None
        return dwconv7_reflect(x, weight, bias)

    def extra_repr(self) -> str:
        return f"{self.channels}, kernel 7x7, reflect padding 3, depthwise (Triton)"


def swap_rde_dwconv(model: nn.Module) -> int:
    """Replace the depthwise 7x7 convolution (``dconv``) of every RDE block of ``model`` by
    :class:`TritonDWConv7`, in place; returns how many were replaced. Parameter names, values
    and the optimiser's view of them are unchanged (the same Parameter objects move over)."""
    from ..models.blocks import RDE

    count = 0
    for module in model.modules():
        if isinstance(module, RDE) and isinstance(module.dconv, nn.Conv2d):
            module.dconv = TritonDWConv7.from_conv(module.dconv)
            count += 1
    return count
