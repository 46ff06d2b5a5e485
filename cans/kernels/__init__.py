"""Triton kernels for the CUDA fast path (optional: everything works without Triton).

* :mod:`cans.kernels.dwconv7`: the RDE's depthwise 7x7 convolution with its reflect padding
  folded into the kernel (forward, gradient of the input, gradients of weight and bias), and
  :func:`swap_rde_dwconv`, which puts it into a built model from outside without changing the
  model's parameter names. The kernels are the custom operators
  ``torch.ops.cans.dwconv7_reflect`` (+ its two backward operators), which ``torch.compile``
  keeps in its graph as single nodes (no graph break).

On a machine without a GPU the kernels run under Triton's interpreter when the environment
variable ``TRITON_INTERPRET=1`` is set *before* this package is first imported (the tests do
this in a subprocess); otherwise CPU tensors take the equivalent torch operations.
"""
from .dwconv7 import TritonDWConv7, dwconv7_reference, dwconv7_reflect, interpreted, swap_rde_dwconv, triton_available

__all__ = ["TritonDWConv7", "dwconv7_reflect", "dwconv7_reference", "interpreted", "swap_rde_dwconv",
           "triton_available"]
