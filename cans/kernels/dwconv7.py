"""Depthwise 7x7 convolution with reflect padding 3, as one Triton kernel per pass (docs/performance.md).

The RDE block computes ``conv2d(pad(x, 3, 'reflect'), weight, bias, groups=C)``; eager PyTorch writes
a padded copy of ``x`` and, in the backward, folds the padded gradient back. Here the reflection is
done on the indices inside the kernels (forward, grad input, grad weight + bias), so no padded copy
is ever written. Shapes: ``x`` (N, C, H, W), H, W >= 4, float32 / bfloat16 / float16; ``weight``
(C, 1, 7, 7); ``bias`` (C,) or None; accumulation in float32, the output in ``x``'s dtype. The passes
are custom operators (``cans::dwconv7_reflect`` and its ``_grad_input`` / ``_grad_params``) with CUDA,
CPU (Triton under ``TRITON_INTERPRET=1``, else :func:`dwconv7_reference`), default and fake kernels,
so ``torch.compile`` keeps each as one opaque node (no graph break, ``fullgraph=True`` works).
"""
# No ``from __future__ import annotations`` here: the interpreter of Triton 3.0 and 3.1 (PyTorch
# 2.4, 2.5) knows a ``tl.constexpr`` parameter by its annotation object; as the string that import
# makes of it, the tile sizes become runtime values and ``tl.arange`` refuses them.
import contextlib
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
    """The same operation in torch: ``conv2d(pad(x, 3, 'reflect'), weight, bias, groups=C)``.

    What the kernels compute: ``y[n, c, h, w] = bias[c] + sum_ij weight[c, i, j] * x[n, c, r(h + i - 3),
    r(w + j - 3)]`` with ``r(k) = -k`` for ``k < 0`` and ``2H - 2 - k`` for ``k >= H``; grad input sums
    the transposed convolution of ``dy`` over the padded positions that reflect onto each pixel; grad
    weight and bias are per-tile partial sums reduced over tiles and batch in float32, returned in
    the parameters' dtype.
    """
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
    def _transposed_tap(dy_ptr, w_ptr, c, base, u, v, m, H, W, i, j):
        # w[c, i, j] * dy[u - i, v - j] (zero where dy's index leaves the image or m is false)
        h = u - i
        w = v - j
        mm = m & ((h >= 0) & (h < H))[:, None] & ((w >= 0) & (w < W))[None, :]
        wv = tl.load(w_ptr + c * 49 + i * 7 + j).to(tl.float32)
        g = tl.load(dy_ptr + base + h[:, None] * W + w[None, :], mask=mm, other=0.0)
        return g.to(tl.float32) * wv

    @triton.jit
    def _transposed_taps(dy_ptr, w_ptr, c, base, u, v, m, H, W,
                         BH: tl.constexpr, BW: tl.constexpr, UNROLL: tl.constexpr):
        # sum_ij w[c, i, j] * dy[u - i, v - j] at the padded-grid positions (u, v) where m holds;
        # UNROLL: the 49 taps unrolled (the pass every tile makes), else a loop (the mirrored
        # border terms: few tiles, and unrolling all nine would make a kernel ptxas needs a
        # minute to build)
        acc = tl.zeros((BH, BW), dtype=tl.float32)
        if UNROLL:
            for i in tl.static_range(7):
                for j in tl.static_range(7):
                    acc += _transposed_tap(dy_ptr, w_ptr, c, base, u, v, m, H, W, i, j)
        else:
            for t in range(49):
                acc += _transposed_tap(dy_ptr, w_ptr, c, base, u, v, m, H, W, t // 7, t % 7)
        return acc

    @triton.jit
    def _grad_input_kernel(dy_ptr, w_ptr, dx_ptr, C, H, W, BH: tl.constexpr, BW: tl.constexpr):
        # dx[r, q] = sum of the padded-grid gradient P[u, v] = sum_ij w[i, j] dy[u - i, v - j] over
        # the padded positions that reflect onto (r, q): row u = r + 3 always, u = 3 - r for
        # 1 <= r <= 3 (the top border) and u = 2H + 1 - r for H - 4 <= r <= H - 2 (the bottom
        # one); the same for columns. Only tiles that touch a border compute the mirrored terms.
        plane = tl.program_id(0)
        c = plane % C
        r0 = tl.program_id(1) * BH
        q0 = tl.program_id(2) * BW
        rows = r0 + tl.arange(0, BH)
        cols = q0 + tl.arange(0, BW)
        inside = (rows[:, None] < H) & (cols[None, :] < W)
        base = plane.to(tl.int64) * H * W
        u0, v0 = rows + 3, cols + 3
        u1, v1 = 3 - rows, 3 - cols
        u2, v2 = 2 * H + 1 - rows, 2 * W + 1 - cols
        top = ((rows >= 1) & (rows <= 3))[:, None]
        bottom = ((rows >= H - 4) & (rows <= H - 2))[:, None]
        left = ((cols >= 1) & (cols <= 3))[None, :]
        right = ((cols >= W - 4) & (cols <= W - 2))[None, :]
        at_top = r0 <= 3
        at_bottom = r0 + BH - 1 >= H - 4
        at_left = q0 <= 3
        at_right = q0 + BW - 1 >= W - 4
        acc = _transposed_taps(dy_ptr, w_ptr, c, base, u0, v0, inside, H, W, BH, BW, True)
        if at_left:
            acc += _transposed_taps(dy_ptr, w_ptr, c, base, u0, v1, inside & left, H, W, BH, BW, False)
        if at_right:
            acc += _transposed_taps(dy_ptr, w_ptr, c, base, u0, v2, inside & right, H, W, BH, BW, False)
        if at_top:
            acc += _transposed_taps(dy_ptr, w_ptr, c, base, u1, v0, inside & top, H, W, BH, BW, False)
            if at_left:
                acc += _transposed_taps(dy_ptr, w_ptr, c, base, u1, v1, inside & top & left, H, W, BH, BW, False)
            if at_right:
                acc += _transposed_taps(dy_ptr, w_ptr, c, base, u1, v2, inside & top & right, H, W, BH, BW, False)
        if at_bottom:
            acc += _transposed_taps(dy_ptr, w_ptr, c, base, u2, v0, inside & bottom, H, W, BH, BW, False)
            if at_left:
                acc += _transposed_taps(dy_ptr, w_ptr, c, base, u2, v1, inside & bottom & left, H, W, BH, BW, False)
            if at_right:
                acc += _transposed_taps(dy_ptr, w_ptr, c, base, u2, v2, inside & bottom & right, H, W, BH, BW, False)
        tl.store(dx_ptr + base + rows[:, None] * W + cols[None, :], acc.to(dx_ptr.dtype.element_ty), mask=inside)

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


def launch_config(h: int, w: int, block: Optional[tuple] = None) -> tuple:
    """``(rows, cols, num_warps)`` of the programs that cover an (h, w) plane: ``block`` when
    given (tests use small tiles), else 16 x 64 tiles (32 x 32 for planes narrower than 64).
    Tiles of 1024 pixels or more run with 8 warps: with 4, ptxas gives the three kernels about 255
    registers per thread for a 16 x 64 tile (spilling in the forward), so only 8 warps fit on an
    SM; with 8 warps each thread holds half the pixels and about 105 registers (sm_90; float32
    and bfloat16, no spills; ``tests/kernels/test_dwconv7.py`` checks this without a GPU)."""
    bh, bw = block if block is not None else ((16, 64) if w >= 64 else (32, 32))
    return bh, bw, 8 if bh * bw >= 1024 else 4


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


def _on_device_of(t: torch.Tensor):
    """Make ``t``'s CUDA device the current one for a launch: Triton launches on the current
    device, not the tensors' (``--device cuda:1`` would run GPU 1's pointers on GPU 0). Nothing
    to do for a CPU tensor (the interpreter)."""
    return torch.cuda.device(t.device) if t.device.type == "cuda" else contextlib.nullcontext()


def _forward(x, weight, bias, block):
    n, c, h, w = x.shape
    bh, bw, warps = launch_config(h, w, block)
    y = torch.empty_like(x, memory_format=torch.contiguous_format)
    grid = (n * c, triton.cdiv(h, bh), triton.cdiv(w, bw))
    with _on_device_of(x):
        _fwd_kernel[grid](x, weight, bias if bias is not None else weight, y, c, h, w,
                          HAS_BIAS=bias is not None, BH=bh, BW=bw, num_warps=warps)
    return y


def _grad_input(dy, weight, block):
    n, c, h, w = dy.shape
    bh, bw, warps = launch_config(h, w, block)
    dx = torch.empty_like(dy, memory_format=torch.contiguous_format)
    grid = (n * c, triton.cdiv(h, bh), triton.cdiv(w, bw))
    with _on_device_of(dy):
        _grad_input_kernel[grid](dy, weight, dx, c, h, w, BH=bh, BW=bw, num_warps=warps)
    return dx


def _grad_weight(x, dy, block):
    n, c, h, w = x.shape
    bh, bw, warps = launch_config(h, w, block)
    th, tw = triton.cdiv(h, bh), triton.cdiv(w, bw)
    part = torch.empty((n * c, th * tw, 50), device=x.device, dtype=torch.float32)
    with _on_device_of(x):
        _grad_weight_kernel[(n * c, th, tw)](x, dy, part, c, h, w, tw, BH=bh, BW=bw, num_warps=warps)
    total = part.view(n, c, th * tw, 50).sum(dim=(0, 2))
    return total[:, :49].reshape(c, 1, K, K), total[:, 49]


def _use_triton(device: torch.device) -> bool:
    """The Triton kernels run for CUDA tensors, and for CPU tensors under the interpreter."""
    return triton is not None and (device.type == "cuda" or (device.type == "cpu" and interpreted()))


def _block_of(block_h: int, block_w: int) -> Optional[tuple]:
    return (block_h, block_w) if block_h > 0 and block_w > 0 else None


# --- the torch equivalents (CPU without the interpreter, CUDA without Triton, other devices) ---

def _reference_forward(x, weight, bias):
    return dwconv7_reference(x, weight, bias).contiguous()


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


def _reference_grad_input(dy, weight):
    n, c, h, w = dy.shape
    dxp = F.conv_transpose2d(dy, weight, groups=c)  # (N, C, H + 6, W + 6): the gradient of the padded input
    return _fold_reflect(dxp, h, w).contiguous()


def _reference_grad_params(x, dy, weight):
    c = x.shape[1]
    xp = F.pad(x, (PAD, PAD, PAD, PAD), mode="reflect")
    _, gw, gb = torch.ops.aten.convolution_backward(dy, xp, weight, [c], [1, 1], [0, 0], [1, 1], False, [0, 0], c,
                                                    [False, True, True])
    return gw.to(weight.dtype).contiguous(), gb.to(weight.dtype).contiguous()


# --- the Triton passes with the layouts the operator promises (contiguous, fresh outputs) ---

def _triton_forward(x, weight, bias, block):
    return _forward(x.contiguous(), weight.contiguous(), bias.contiguous() if bias is not None else None, block)


def _triton_grad_input(dy, weight, block):
    return _grad_input(dy.contiguous(), weight.contiguous(), block)


def _triton_grad_params(x, dy, weight, block):
    w_sum, b_sum = _grad_weight(x.contiguous(), dy.contiguous(), block)
    gw = torch.empty(weight.shape, device=weight.device, dtype=weight.dtype)
    gb = torch.empty((weight.shape[0],), device=weight.device, dtype=weight.dtype)
    gw.copy_(w_sum)
    gb.copy_(b_sum)
    return gw, gb


# --- the custom operators ---
#
# ``cans::dwconv7_reflect`` (forward), ``cans::dwconv7_reflect_grad_input`` and
# ``cans::dwconv7_reflect_grad_params`` (backward). Each has a CUDA kernel (Triton), a CPU kernel
# (Triton under the interpreter, else torch), a default for other devices (torch) and a fake
# implementation (shapes and dtypes only), so torch.compile keeps each as one opaque node of its
# graph: no graph break, and inductor calls it as it is. The forward's autograd formula calls the
# two backward operators, so the compiled backward graph holds them as opaque nodes too. The bias
# stays optional (``Tensor?``, as in F.conv2d): a model without bias passes nothing and gets no
# gradient for it; with a bias, its gradient comes from the same pass as the weight's at no extra cost.


def _device_kernels(op, reference, triton_impl):
    """The CUDA and CPU kernels of ``op``, whose arguments are tensors then ``block_h, block_w``:
    the Triton passes where they run (:func:`_use_triton`), else the torch ``reference``."""
    def kernel(*args):
        *tensors, block_h, block_w = args
        if _use_triton(tensors[0].device):
            return triton_impl(*tensors, _block_of(block_h, block_w))
        with torch.autocast(tensors[0].device.type, enabled=False):  # in the inputs' dtype, as the fake says
            return reference(*tensors)

    op.register_kernel("cuda")(kernel)
    op.register_kernel("cpu")(kernel)


@torch.library.custom_op("cans::dwconv7_reflect", mutates_args=(),
                         schema="(Tensor x, Tensor weight, Tensor? bias, int block_h, int block_w) -> Tensor")
def _op_forward(x, weight, bias, block_h, block_w):
    return _reference_forward(x, weight, bias)


@_op_forward.register_fake
def _op_forward_fake(x, weight, bias, block_h, block_w):
    return torch.empty_like(x, memory_format=torch.contiguous_format)


@torch.library.custom_op("cans::dwconv7_reflect_grad_input", mutates_args=(),
                         schema="(Tensor dy, Tensor weight, int block_h, int block_w) -> Tensor")
def _op_grad_input(dy, weight, block_h, block_w):
    return _reference_grad_input(dy, weight)


@_op_grad_input.register_fake
def _op_grad_input_fake(dy, weight, block_h, block_w):
    return torch.empty_like(dy, memory_format=torch.contiguous_format)


@torch.library.custom_op("cans::dwconv7_reflect_grad_params", mutates_args=(),
                         schema="(Tensor x, Tensor dy, Tensor weight, int block_h, int block_w) -> (Tensor, Tensor)")
def _op_grad_params(x, dy, weight, block_h, block_w):
    return _reference_grad_params(x, dy, weight)


@_op_grad_params.register_fake
def _op_grad_params_fake(x, dy, weight, block_h, block_w):
    return (weight.new_empty(weight.shape), weight.new_empty((weight.shape[0],)))


_device_kernels(_op_forward, _reference_forward, _triton_forward)
_device_kernels(_op_grad_input, _reference_grad_input, _triton_grad_input)
_device_kernels(_op_grad_params, _reference_grad_params, _triton_grad_params)


def _op_setup_context(ctx, inputs, output):
    x, weight, bias, block_h, block_w = inputs
    ctx.save_for_backward(x, weight)
    ctx.bias_dtype = bias.dtype if bias is not None else None
    ctx.block = (block_h, block_w)


def _op_backward(ctx, dy):
    x, weight = ctx.saved_tensors
    need_x, need_w, need_b = ctx.needs_input_grad[:3]
    need_b = need_b and ctx.bias_dtype is not None
    gx = gw = gb = None
    if need_x:
        gx = torch.ops.cans.dwconv7_reflect_grad_input.default(dy, weight, *ctx.block)
    if need_w or need_b:
        w_sum, b_sum = torch.ops.cans.dwconv7_reflect_grad_params.default(x, dy, weight, *ctx.block)
        gw = w_sum if need_w else None
        gb = b_sum.to(ctx.bias_dtype) if need_b else None
    return gx, gw, gb, None, None


_op_forward.register_autograd(_op_backward, setup_context=_op_setup_context)


def dwconv7_reflect(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None,
                    block: Optional[tuple] = None) -> torch.Tensor:
    """Depthwise 7x7 convolution with reflect padding 3 (see the module doc), differentiable.

    Runs the Triton kernels for CUDA tensors (and for CPU tensors under ``TRITON_INTERPRET=1``);
    anything else takes the equivalent torch operations. ``block`` = (rows, cols) of a program's
    tile (powers of two; default chosen from the width).

    This is the custom operator ``torch.ops.cans.dwconv7_reflect`` (autograd through
    ``cans::dwconv7_reflect_grad_input`` / ``_grad_params``), which ``torch.compile`` keeps as one
    node: no graph break.
    """
    _check(x, weight, bias)
    block_h, block_w = block if block is not None else (0, 0)
    return torch.ops.cans.dwconv7_reflect.default(x, weight, bias, int(block_h), int(block_w))


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
        device = x.device.type
        if x.is_floating_point() and torch.is_autocast_enabled(device):
            # as autocast runs the convolution this replaces (a custom operator is not autocast):
            # in autocast's dtype, also for a float32 input
            x = x.to(torch.get_autocast_dtype(device))
        weight, bias = self.weight, self.bias
        if weight.dtype != x.dtype:  # run in the activations' precision
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
