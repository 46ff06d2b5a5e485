"""cans.config_checks: the keys that must fit together (data type, packing, block size, patch
size, the synthetic stand-in) are checked before any work, each mismatch one line naming the keys
to change; every shipped config passes."""
from __future__ import annotations

import pytest
import torch
from helpers import REPO, TINY_CANS

from cans.config import ConfigError, load_config, validate
from cans.config_checks import check_config, smallest_input
from cans.models import build_model


def test_every_shipped_config_passes_the_cross_checks():
    for path in sorted((REPO / "configs").rglob("*.yaml")):
        check_config(load_config(str(path)))


def test_switching_the_demo_to_fuji_by_hand_names_the_keys_to_change():
    cfg = load_config(str(REPO / "configs" / "demo.yaml"), ["data.type=FujiDictSet"])
    with pytest.raises(ConfigError) as info:
        check_config(cfg)
    msg = str(info.value)
    assert msg == ("data.type FujiDictSet gives packed Fuji RAW (X-Trans, 9 channels, block 3), but "
                   "model.in_channel is 4, model.block_size is 2, model.adaptive_size is 2; set "
                   "model.in_channel=9 model.block_size=3 model.adaptive_size=3 (as configs/base/Fuji.yaml does), "
                   "or change data.type"), msg
    fuji = load_config(str(REPO / "configs" / "demo_fuji.yaml"), ["model.adaptive_size=2"])
    with pytest.raises(ConfigError, match=r"but model.adaptive_size is 2; set model.adaptive_size=3 "):
        check_config(fuji)


def test_synthetic_camera_must_fit_the_data_type():
    cfg = load_config(str(REPO / "configs" / "demo_fuji.yaml"), ["data.synthetic.camera=Sony"])
    with pytest.raises(ConfigError, match=r"^data.synthetic.camera is Sony but data.type is FujiDictSet \(Fuji\); "
                                          r"set data.synthetic.camera=Fuji"):
        check_config(cfg)
    mcr = load_config(str(REPO / "configs" / "CANS" / "MCR.yaml"), ["data.synthetic.auto_create=true"])
    with pytest.raises(ConfigError, match="no synthetic set stands in for data.type MCRDictSet"):
        check_config(mcr)


@pytest.mark.parametrize("config, patch, block, suggest", [("demo.yaml", 64, 2, 98), ("demo_fuji.yaml", 128, 3, 147),
                                                           ("demo_fuji.yaml", 200, 3, 201)])
def test_patch_size_against_the_smallest_input(config, patch, block, suggest):
    cfg = load_config(str(REPO / "configs" / config), [f"data.train.patch_size={patch}"])
    with pytest.raises(ConfigError) as info:
        check_config(cfg)
    msg = str(info.value)
    assert msg.startswith(f"data.train.patch_size: {patch} does not fit this model: a patch must be a multiple of "
                          f"{block}") and msg.endswith(f"set data.train.patch_size={suggest}"), msg
    # the smallest valid patch is accepted, and it is what the model takes
    ok = load_config(str(REPO / "configs" / config), [f"data.train.patch_size={block * smallest_input(cfg)}"])
    check_config(ok)
    model = build_model(ok)
    assert smallest_input(ok) == model.min_input_size
    side = smallest_input(ok)
    rgb, raw = model(torch.zeros(1, ok["model"]["in_channel"], side, side))
    assert rgb.shape[-1] == side * block


def test_smallest_input_follows_the_depth():
    for depth in (2, 3, 4):
        cfg = validate({"model": dict(TINY_CANS, enc_blk_nums=[1] * depth, dec_blk_nums=[1] * depth)})
        assert smallest_input(cfg) == build_model(cfg).min_input_size


@pytest.mark.parametrize("enc, dec", [([], [2, 2, 2, 2]), ([1, 1], [2, 2, 2, 2])])
def test_encoder_and_decoder_lists_of_different_lengths_are_refused_before_the_model(enc, dec):
    cfg = validate({"model": {"enc_blk_nums": enc, "dec_blk_nums": dec}})
    with pytest.raises(ConfigError) as info:
        check_config(cfg)
    text = str(info.value)
    assert "model.enc_blk_nums" in text and "model.dec_blk_nums" in text and "same length" in text, text


# ------------------------------------------------------------------ worker processes against the machine

def _machine(monkeypatch, cpus: int, gib: float, local_ranks: int = 1):
    """A machine of ``cpus`` CPUs (its affinity mask) and ``gib`` GiB of available memory."""
    import os

    import cans.config_checks as checks

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cpus)), raising=False)
    monkeypatch.setattr(checks, "available_memory", lambda: int(gib * 2 ** 30), raising=False)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", str(local_ranks))


def test_absurd_num_workers_is_refused_naming_the_machine(monkeypatch):
    """data.num_workers: 100000 forked workers for minutes and ran the machine out of memory; now one
    line before any worker starts, naming the key, the CPUs, the memory and the largest value taken."""
    _machine(monkeypatch, cpus=2, gib=64)
    with pytest.raises(ConfigError) as info:
        check_config(load_config(str(REPO / "configs" / "demo.yaml"), ["data.num_workers=100000"]))
    assert str(info.value) == ("data.num_workers: 100000 worker processes are more than this machine can run: it has "
                               "2 CPU(s) (at most 4 workers per CPU are useful) and 64.0 GiB of memory available (a "
                               "worker holds 0.25 GiB at least); set data.num_workers to at most 8")
    check_config(load_config(str(REPO / "configs" / "demo.yaml"), ["data.num_workers=8"]))
    check_config(load_config(str(REPO / "configs" / "demo.yaml"), ["data.num_workers=0"]))


def test_num_workers_counts_every_rank_of_the_machine_and_its_memory(monkeypatch):
    """A 64-core machine with 8 GPUs (torchrun: LOCAL_WORLD_SIZE 8) runs 16 workers a rank; 40 a
    rank (320 processes) is refused; little memory lowers the limit below the CPUs' one."""
    demo = str(REPO / "configs" / "demo.yaml")
    _machine(monkeypatch, cpus=64, gib=512, local_ranks=8)
    check_config(load_config(demo, ["data.num_workers=16"]))
    with pytest.raises(ConfigError, match=r"^data.num_workers: 40 worker processes for each of the 8 training "
                                          r"processes on this machine \(LOCAL_WORLD_SIZE\) .* it has 64 CPU\(s\) .*"
                                          r"set data.num_workers to at most 32$"):
        check_config(load_config(demo, ["data.num_workers=40"]))
    _machine(monkeypatch, cpus=16, gib=4)
    check_config(load_config(demo, ["data.num_workers=16"]))
    with pytest.raises(ConfigError, match=r"and 4.0 GiB of memory available .*set data.num_workers to at most 16$"):
        check_config(load_config(demo, ["data.num_workers=32"]))
    with pytest.raises(ConfigError, match=r"^data.synthetic.workers: 1000 worker processes .* at most 16$"):
        check_config(load_config(demo, ["data.synthetic.workers=1000"]))


def test_the_machine_figures_are_read():
    import os

    from cans.config_checks import available_memory, usable_cpus

    assert 1 <= usable_cpus() <= (os.cpu_count() or 1)
    memory = available_memory()
    assert memory is None or memory > 0
