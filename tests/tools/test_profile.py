"""python -m cans.cli.profile (cans.tools.profile): parameters and FLOPs from torch.utils.flop_counter."""

from helpers import REPO

from cans.cli.profile import main
from cans.config import load_config
from cans.tools.profile import profile


def test_cans_plus_sony_cost_matches_design():
    cfg = load_config(str(REPO / "configs/CANS_Plus/Sony.yaml"))
    # docs/models.md: about 41.5 GMAC for a 512x512 packed input. The cost is linear in the
    # pixel count (the pooled attention is s x s), so a 128x128 input costs 1/16 of it.
    result = profile(cfg, 128, 128)
    assert result["parameters"] == 4_929_072
    assert abs(result["gmacs"] * 16 - 41.5) < 0.05 * 41.5
    assert set(result["per_module_gflops"]) >= {"CANS_Plus.backbone", "CANS_Plus.rgb_head"}


def test_cli_prints_report(capsys):
    assert main(["-c", str(REPO / "configs/CANS/Fuji.yaml"), "--size", "96", "96"]) == 0
    out = capsys.readouterr().out
    assert "4,927,204" in out and "GMAC" in out


def test_cli_bad_config_key_is_a_clear_error(capsys):
    assert main(["-c", str(REPO / "configs/CANS/Sony.yaml"), "--set", "model.widht=8"]) == 2
    assert "model.widht" in capsys.readouterr().err
