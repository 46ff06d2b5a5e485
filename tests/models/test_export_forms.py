"""The forms the model takes while torch.export traces it (the ONNX export): adaptive pooling as
products with pooling matrices gives nn.AdaptiveAvgPool2d's windows at any size, overlapping ones
included; outside tracing the forward is the plain one."""
import pytest
import torch
import torch.nn.functional as F

from cans.models import blocks


@pytest.mark.parametrize("size", [2, 3])
@pytest.mark.parametrize("hw", [(4, 4), (7, 10), (16, 9), (5, 33)])
def test_matrix_pooling_has_the_adaptive_windows(monkeypatch, size, hw):
    x = torch.randn(2, 5, *hw, dtype=torch.float64)
    expected = F.adaptive_avg_pool2d(x, size)
    monkeypatch.setattr(blocks, "exporting", lambda: True)
    got = blocks.adaptive_pool(x, size)
    assert got.shape == expected.shape == (2, 5, size, size)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(blocks.AdaptivePool2d(size)(x), expected, rtol=0, atol=1e-12)


def test_outside_tracing_the_plain_operator_runs(monkeypatch):
    calls = []
    monkeypatch.setattr(blocks.F, "adaptive_avg_pool2d", lambda x, s: calls.append(s) or x[..., :s, :s])
    assert not blocks.exporting()
    blocks.adaptive_pool(torch.zeros(1, 1, 6, 6), 2)
    assert calls == [2]
