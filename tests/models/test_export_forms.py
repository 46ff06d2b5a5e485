"""The forms the model takes while torch.export traces it (the ONNX export): adaptive pooling over
slices gives nn.AdaptiveAvgPool2d's windows at any size, overlapping ones included; the chunked
convolutions, the pooled convolutions, the projected attention, the RDE's gate on its LayerNorm and
the upsampling compute what the reference forms compute; the whole network in its exported forms
equals the network; outside tracing the forward is the plain one."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from cans.models import blocks, build_model


@pytest.mark.parametrize("size", [2, 3])
@pytest.mark.parametrize("hw", [(4, 4), (7, 10), (16, 9), (5, 33)])
def test_sliced_pooling_has_the_adaptive_windows(monkeypatch, size, hw):
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


def _conv(cin, cout, k=1, groups=1, bias=True, mode="zeros"):
    torch.manual_seed(cin * 7 + cout + k + groups)
    conv = nn.Conv2d(cin, cout, k, padding=k // 2, groups=groups, bias=bias, padding_mode=mode).double()
    with torch.no_grad():
        for p in conv.parameters():
            p.normal_()
    return conv


@pytest.mark.parametrize("parts", [1, 2, 3])
@pytest.mark.parametrize("mode", ["zeros", "reflect"])
def test_conv_chunks_exported_equal_the_chunked_convolutions(monkeypatch, parts, mode):
    x = torch.randn(2, 4, 9, 11, dtype=torch.float64)
    pw, dw = _conv(4, 3 * parts), _conv(3 * parts, 3 * parts, 3, groups=3 * parts, mode=mode)
    expected = dw(pw(x)).chunk(parts, dim=1)
    monkeypatch.setattr(blocks, "exporting", lambda: True)
    got = blocks.conv_chunks(x, parts, pw, dw)
    assert len(got) == parts
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e, rtol=0, atol=1e-12)
    torch.testing.assert_close(blocks.conv_chunk(x, parts - 1, parts, pw, dw), expected[-1], rtol=0, atol=1e-12)


@pytest.mark.parametrize("size", [1, 2, 3, 4])
@pytest.mark.parametrize("hw", [(4, 4), (5, 7), (16, 9), (13, 33)])
@pytest.mark.parametrize("mode,bias", [("zeros", False), ("reflect", False), ("reflect", True)])
def test_pooled_convolution_equals_pooling_the_full_map(monkeypatch, size, hw, mode, bias):
    """Window means shifted by a pixel each way, through the 1x1 and the 3x3 depthwise kernels,
    give the pooled map: at the borders (zeros or reflect), with overlapping windows and biases."""
    x = torch.randn(2, 6, *hw, dtype=torch.float64)
    pw, dw = _conv(6, 8, bias=bias), _conv(8, 8, 3, groups=8, bias=bias, mode=mode)
    expected = [F.adaptive_avg_pool2d(c, size) for c in dw(pw(x)).chunk(2, dim=1)]
    alone = F.adaptive_avg_pool2d(_conv(6, 6, 3, groups=6, bias=bias, mode=mode)(x), size)
    monkeypatch.setattr(blocks, "exporting", lambda: True)
    assert blocks.pooled_form_applies(size, pw, dw)
    for part in (0, 1):
        torch.testing.assert_close(blocks.pooled_conv(x, size, dw, pw, part, 2), expected[part], rtol=0, atol=1e-10)
    torch.testing.assert_close(blocks.pooled_conv(x, size, _conv(6, 6, 3, groups=6, bias=bias, mode=mode)),
                               alone, rtol=0, atol=1e-10)


@pytest.mark.parametrize("mode", ["zeros", "reflect"])
@pytest.mark.parametrize("size", [1, 2, 4])
def test_an_affine_folded_into_the_pooled_sums_and_the_1x1_is_the_affine_map_convolved(monkeypatch, mode, size):
    """``affine=(scale, shift)``: what the convolutions and the pooling give for ``x * scale + shift``;
    in the window sums under reflect padding, applied to the map first under zero padding (where
    a shifted window at the border holds one pixel less)."""
    x = torch.randn(2, 6, 13, 17, dtype=torch.float64)
    scale, shift = torch.randn(1, 6, 1, 1, dtype=torch.float64), torch.randn(1, 6, 1, 1, dtype=torch.float64)
    pw, dw = _conv(6, 12, bias=mode == "reflect"), _conv(12, 12, 3, groups=12, mode=mode)
    alone = _conv(6, 6, 3, groups=6, mode=mode)
    affine_map = x * scale + shift
    monkeypatch.setattr(blocks, "exporting", lambda: True)
    for part in (0, 1):
        torch.testing.assert_close(blocks.pooled_conv(x, size, dw, pw, part, 2, (scale, shift)),
                                   blocks.pooled_conv(affine_map, size, dw, pw, part, 2), rtol=0, atol=1e-10)
        torch.testing.assert_close(blocks.conv_chunk(x, part, 2, pw, dw, (scale, shift)),
                                   blocks.conv_chunk(affine_map, part, 2, pw, dw), rtol=0, atol=1e-10)
    torch.testing.assert_close(blocks.pooled_conv(x, size, alone, affine=(scale, shift)),
                               F.adaptive_avg_pool2d(alone(affine_map), size), rtol=0, atol=1e-10)
    with pytest.raises(ValueError, match="1x1"):
        blocks.conv_chunk(x, 0, 1, _conv(6, 6, 3), None, (scale, shift))


def test_pooled_form_leaves_the_pooling_points_to_a_tap(monkeypatch):
    """With a pooling tap (two-pass tiles, the tile graph) every pooling point's input is made."""
    monkeypatch.setattr(blocks, "exporting", lambda: True)
    pw, dw = _conv(4, 4, bias=False), _conv(4, 4, 3, groups=4, bias=False)
    assert blocks.pooled_form_applies(2, pw, dw)
    seen = []
    with blocks.pool_tap(lambda feat, pooled: seen.append(feat.shape) or pooled):
        assert not blocks.pooled_form_applies(2, pw, dw)
        blocks.pooled_conv(torch.randn(1, 4, 8, 8, dtype=torch.float64), 2, dw, pw)
    assert seen == [(1, 4, 8, 8)]
    assert not blocks.pooled_form_applies(5, pw, dw)          # windows larger than the smallest map
    assert not blocks.pooled_form_applies(2, _conv(4, 4, bias=True), dw)   # a bias under zero padding


@pytest.mark.parametrize("batch", [1, 2])   # one image: a 1x1 convolution; more: matrix products
def test_projected_attention_exported_equals_attention_then_projection(monkeypatch, batch):
    q, k = torch.randn(batch, 5, 2, 2, dtype=torch.float64), torch.randn(batch, 5, 2, 2, dtype=torch.float64)
    v = torch.randn(batch, 5, 7, 9, dtype=torch.float64)
    out = _conv(5, 5)
    expected = out(blocks.channel_attention(q, k, v))
    monkeypatch.setattr(blocks, "exporting", lambda: True)
    torch.testing.assert_close(blocks.projected_attention(q, k, v, out), expected, rtol=0, atol=1e-10)


def test_layernorm_exported_equals_the_reference_form(monkeypatch):
    """The variance from the channels' L2 norm equals the mean of the squared deviations."""
    norm = blocks.LayerNorm2d(6).double()
    with torch.no_grad():
        norm.g.normal_(), norm.b.normal_()
    x = torch.randn(2, 6, 5, 7, dtype=torch.float64) * 3 + 1
    x[0, :, 0, 0] = 0.25        # a pixel with equal channels: the variance is 0, eps alone remains
    expected = norm(x)
    monkeypatch.setattr(blocks, "exporting", lambda: True)
    torch.testing.assert_close(norm(x), expected, rtol=0, atol=1e-10)


def test_the_gate_of_a_layer_norm_exported_equals_the_gate_of_the_normalised_map(monkeypatch):
    """The RDE's SGU on a LayerNorm: the per-pixel scale applied after the 1x1 convolution and the
    affine folded into it give the same gate, a pixel of zero variance included."""
    norm, sgu = blocks.LayerNorm2d(6).double(), blocks.SGU(6).double()
    with torch.no_grad():
        for p in (*norm.parameters(), *sgu.parameters()):
            p.normal_()
    x = torch.randn(2, 6, 5, 7, dtype=torch.float64) * 3 + 1
    x[1, :, 2, 3] = -0.5
    expected = sgu(norm(x))
    monkeypatch.setattr(blocks, "exporting", lambda: True)
    torch.testing.assert_close(sgu.of_layer_norm(x, norm), expected, rtol=0, atol=1e-10)


@pytest.mark.parametrize("factor", [2, 3])
def test_upsampling_exported_equals_the_convolution_then_the_pixel_shuffle(monkeypatch, factor):
    up = nn.Sequential(_conv(5, 4 * factor * factor, bias=False), nn.PixelShuffle(factor))
    x = torch.randn(2, 5, 6, 9, dtype=torch.float64)
    expected = up(x)
    monkeypatch.setattr(blocks, "exporting", lambda: True)
    got = blocks.upsample(up, x)
    assert got.shape == expected.shape == (2, 4, 6 * factor, 9 * factor)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)
    # a bias differs between the pixels a channel's r x r outputs go to: not a transposed convolution's
    with pytest.raises(ValueError, match="without bias"):
        blocks.upsample(nn.Sequential(_conv(5, 4 * factor * factor), nn.PixelShuffle(factor)), x)


@pytest.mark.parametrize("kind", ["CANS", "CANS_Plus"])
@pytest.mark.parametrize("trained", [False, True])
def test_the_network_in_its_exported_forms_equals_the_network(monkeypatch, kind, trained):
    """Seeded (every LayerNorm's affine the identity, so the CANS++ heads' three LayerNorms of the
    same features are one) and with LayerNorm affines of their own, as trained weights have them."""
    torch.manual_seed(0)
    net = build_model({"type": kind, "width": 8, "enc_blk_nums": [1, 1], "dec_blk_nums": [1, 1],
                       "middle_blk_num": 1}).double().eval()
    if trained:
        with torch.no_grad():
            for norm in (m for m in net.modules() if isinstance(m, blocks.LayerNorm2d)):
                norm.g.add_(0.3 * torch.randn_like(norm.g)), norm.b.add_(0.3 * torch.randn_like(norm.b))
    x = torch.rand(1, 4, 27, 38, dtype=torch.float64)
    with torch.no_grad():
        expected = net(x)
        monkeypatch.setattr(blocks, "exporting", lambda: True)
        got = net(x)
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e, rtol=0, atol=1e-10)
