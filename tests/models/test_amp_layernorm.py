"""LayerNorm2d under autocast: float32 statistics (model.amp_layernorm: float32, the default) or
the reference's rule (eps 1e-3 in the half precision); nothing changes without autocast."""
import pytest
import torch

from cans.config import load_config
from cans.models import build_model
from cans.models.blocks import LayerNorm2d
from cans.tools.benchmark import rgb_psnr


def _by_hand(x, ln, eps):
    mean = x.mean(dim=1, keepdim=True)
    var = (x - mean).pow(2).mean(dim=1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * ln.g + ln.b


def test_layernorm_rules():
    torch.manual_seed(0)
    ln = LayerNorm2d(6)
    with torch.no_grad():
        ln.g.uniform_(0.5, 1.5)
        ln.b.uniform_(-0.5, 0.5)
    x = torch.randn(2, 6, 5, 7) * 1e-2  # small variance: eps matters
    xb = x.bfloat16()
    with torch.no_grad():
        # no autocast: the reference's rule, whatever the switch (float32 1e-5, any other dtype 1e-3)
        assert torch.allclose(ln(x), _by_hand(x, ln, 1e-5), atol=1e-5)
        assert torch.allclose(ln(x.double()), _by_hand(x.double(), ln, 1e-3), atol=1e-9)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            default = ln(xb)
            ln.amp_float32 = False
            reference = ln(xb)
    # float32 results both (the reference's by type promotion with the float32 g and b)
    assert default.dtype == reference.dtype == torch.float32
    exact = _by_hand(xb.float(), ln, 1e-5)
    assert torch.allclose(default, exact, atol=1e-6)                       # float32 statistics, eps 1e-5
    assert torch.allclose(reference, _by_hand(xb, ln, 1e-3).float(), atol=1e-2)  # the reference's rule
    assert (reference - exact).abs().max() > 10 * (default - exact).abs().max()


@pytest.mark.parametrize("width", [8, 16])
def test_bf16_model_stays_closer_to_float32_with_float32_layernorm(width):
    tiny = {"type": "CANS_Plus", "width": width, "middle_blk_num": 1, "enc_blk_nums": [1, 1, 1],
            "dec_blk_nums": [1, 1, 1]}
    x = torch.rand(1, 4, 48, 64, generator=torch.Generator().manual_seed(1)) * 0.3
    psnr = {}
    for mode in ("float32", "reference"):
        torch.manual_seed(3407)
        model = build_model(dict(tiny, amp_layernorm=mode)).eval()
        with torch.no_grad():
            ref = model(x)[0]
            with torch.autocast("cpu", dtype=torch.bfloat16):
                out = model(x)[0]
        psnr[mode] = rgb_psnr(out.float(), ref)
    assert psnr["float32"] > 55 and psnr["float32"] > psnr["reference"] + 8, psnr


def test_the_switch_is_a_config_key_and_bad_values_are_named():
    cfg = load_config("configs/CANS_Plus/Sony.yaml")
    assert cfg["model"]["amp_layernorm"] == "float32"
    model = build_model(load_config("configs/CANS_Plus/Sony.yaml", ["model.amp_layernorm=reference"]))
    assert not any(m.amp_float32 for m in model.modules() if isinstance(m, LayerNorm2d))
    assert all(m.amp_float32 for m in build_model(cfg).modules() if isinstance(m, LayerNorm2d))
    with pytest.raises(Exception, match="amp_layernorm"):
        load_config("configs/CANS_Plus/Sony.yaml", ["model.amp_layernorm=fp64"])
