"""The models against the reference implementation's test vectors and key lists."""
import re

import pytest
import torch
from conftest import REFERENCE
from helpers import REPO

from cans.config import load_config
from cans.engine.checkpoint import load_model_weights as load_weights
from cans.models import build_model

PARITY_FILES = sorted((REFERENCE / "parity").glob("*.pt")) if REFERENCE.is_dir() else []
PAPER_CONFIGS = [(t, c) for t in ("CANS", "CANS_Plus") for c in ("Sony", "Fuji", "MCR")]
# docs/models.md (parameter counts of the paper configurations)
PAPER_PARAMS = {("CANS", 4): 4_921_264, ("CANS", 9): 4_927_204,
                ("CANS_Plus", 4): 4_929_072, ("CANS_Plus", 9): 4_935_012}


@pytest.mark.skipif(not PARITY_FILES, reason=f"no parity vectors at {REFERENCE / 'parity'} (see tests/conftest.py)")
@pytest.mark.parametrize("path", PARITY_FILES, ids=[p.stem for p in PARITY_FILES])
def test_parity_with_reference(path):
    case = torch.load(path, map_location="cpu", weights_only=False)
    model = build_model(case["model"])
    model.load_state_dict(case["state_dict"], strict=True)
    model = model.double().eval()
    assert len(case["inputs"]) == len(case["outputs"]) > 0
    s = case.get("output_step", 1)  # the compact fixtures keep every s-th output row and column
    with torch.no_grad():
        for x, expected in zip(case["inputs"], case["outputs"]):
            rgb, raw = (t[..., ::s, ::s] for t in model(x.double()))
            assert rgb.shape == expected["rgb"].shape and raw.shape == expected["raw"].shape
            assert (rgb - expected["rgb"]).abs().max().item() < 1e-8
            assert (raw - expected["raw"]).abs().max().item() < 1e-8


def _read_keys(path):
    keys = {}
    for line in path.read_text().splitlines():
        m = re.match(r"^(\S+) \(([\d, ]*)\)$", line.strip())
        assert m, f"{path}: cannot parse line {line!r}"
        keys[m.group(1)] = tuple(int(v) for v in m.group(2).replace(" ", "").split(",") if v)
    return keys


@pytest.mark.parametrize("mtype,camera", PAPER_CONFIGS)
def test_paper_config_keys_and_parameter_count(mtype, camera, reference_dir):
    cfg = load_config(str(REPO / "configs" / mtype / f"{camera}.yaml"))
    assert cfg["model"]["type"] == mtype
    model = build_model(cfg)
    expected = _read_keys(reference_dir / "state_dict_keys" / f"{mtype}_{camera}.keys.txt")
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert got == expected
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params == PAPER_PARAMS[(mtype, cfg["model"]["in_channel"])]


def test_load_weights_wrappers_and_prefixes(tmp_path):
    cfg = dict(type="CANS_Plus", in_channel=4, width=8, middle_blk_num=1, enc_blk_nums=[1, 1],
               dec_blk_nums=[1, 1], adaptive_size=2, block_size=2)
    src = build_model(cfg)
    state = src.state_dict()
    variants = {
        "bare": state,
        "model": {"model": state, "epoch": 3},
        "state_dict": {"state_dict": state},
        "params": {"params": state},
        "ddp": {"module." + k: v for k, v in state.items()},
        "ddp_wrapped": {"model": {"module." + k: v for k, v in state.items()}},
    }
    for name, obj in variants.items():
        path = tmp_path / f"{name}.pth"
        torch.save(obj, path)
        dst = build_model(cfg)
        load_weights(dst, str(path))
        for k, v in dst.state_dict().items():
            assert torch.equal(v, state[k]), (name, k)


def test_load_weights_reports_missing_and_unexpected(tmp_path):
    cfg = dict(type="CANS", in_channel=4, width=8, middle_blk_num=1, enc_blk_nums=[1, 1],
               dec_blk_nums=[1, 1], adaptive_size=2, block_size=2)
    state = dict(build_model(cfg).state_dict())
    state.pop("raw_head.final.bias")
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(ValueError) as err:
        load_weights(build_model(cfg), str(tmp_path / "bad.pth"))
    assert "raw_head.final.bias" in str(err.value) and "extra.weight" in str(err.value)
    with pytest.raises(FileNotFoundError):
        load_weights(build_model(cfg), str(tmp_path / "nowhere.pth"))


def test_build_model_rejects_unknown_type_and_argument():
    with pytest.raises(ValueError, match="CANS_Plus"):
        build_model({"type": "CANS_Pls"})
    with pytest.raises(ValueError, match="widht"):
        build_model({"type": "CANS", "widht": 8})


def test_load_weights_junk_file_is_a_clear_error(tmp_path):
    cfg = dict(type="CANS", in_channel=4, width=8, middle_blk_num=1, enc_blk_nums=[1, 1],
               dec_blk_nums=[1, 1], adaptive_size=2, block_size=2)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"this is not a checkpoint" * 10)
    with pytest.raises(ValueError, match=r"junk\.pth: not a PyTorch checkpoint"):
        load_weights(build_model(cfg), str(junk))
