"""channel_attention written with einops' rearrange (as the authors' code) computes exactly what
the plain flatten / view formula computes: the same operations, bit for bit."""
import pytest
import torch

from cans.models.blocks import channel_attention


def _plain(query, key, value):
    b, c, h, w = value.shape
    attn = torch.softmax(query.flatten(2) @ key.flatten(2).transpose(-2, -1), dim=-1)
    return (attn @ value.flatten(2)).view(b, c, h, w)


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_channel_attention_equals_the_plain_formula_bit_for_bit(layout, dtype):
    g = torch.Generator().manual_seed(0)
    q, k = (torch.randn(2, 8, 3, 3, generator=g, dtype=dtype) for _ in range(2))
    v = torch.randn(2, 8, 13, 22, generator=g, dtype=dtype)
    if layout == "channels_last":
        q, k, v = (t.contiguous(memory_format=torch.channels_last) for t in (q, k, v))
    out = channel_attention(q, k, v)
    assert out.shape == (2, 8, 13, 22) and out.dtype == dtype
    assert torch.equal(out, _plain(q, k, v))


def test_channel_attention_mixes_channels_not_pixels():
    """Each output pixel is a softmax-weighted sum of the value's channels at that same pixel."""
    q = torch.zeros(1, 2, 2, 2)
    k = torch.zeros(1, 2, 2, 2)   # equal scores: each output channel is the mean of the value's channels
    v = torch.arange(2 * 3 * 4, dtype=torch.float32).reshape(1, 2, 3, 4)
    out = channel_attention(q, k, v)
    assert torch.equal(out, v.mean(dim=1, keepdim=True).expand_as(v))
