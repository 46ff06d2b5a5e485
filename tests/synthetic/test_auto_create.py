"""data.synthetic.auto_create (cans/synthetic/auto.py): what it makes for each data.type, and that
building a data set never makes anything."""
import pytest
from helpers import REPO

from cans.config import load_config
from cans.config_checks import check_config
from cans.data import DataError, build_dataset
from cans.synthetic import ensure_synthetic

QUIET = dict(log=lambda *_: None)

#: a data set class of the user's own, without a synthetic stand-in (docs/extending.md)
LAB = '''
import torch
from torch.utils.data import Dataset


class Gradients(Dataset):
    packed_channels = 4
    block_size = 2

    def __init__(self, cfg, split):
        self.count = 2

    def __len__(self):
        return self.count

    def __getitem__(self, index):
        return {"noisy_raw": torch.zeros(4, 8, 8)}
'''


def test_a_class_of_your_own_ignores_an_inherited_auto_create(tmp_path, monkeypatch):
    """demo.yaml sets auto_create: true; a config on it naming an out-of-tree class with no
    synthetic stand-in gets one note and nothing made, not a DataError."""
    (tmp_path / "lab_auto_create.py").write_text(LAB)
    monkeypatch.syspath_prepend(str(tmp_path))
    path = tmp_path / "lab_data"
    cfg = load_config(str(REPO / "configs" / "demo.yaml"),
                      ["data.type=lab_auto_create:Gradients", f"data.data_path={path}"])
    assert cfg["data"]["synthetic"]["auto_create"] is True
    check_config(cfg)   # train.py's start-up checks pass it too (the demo's camera: Sony is inherited)
    messages = []
    assert ensure_synthetic(cfg, log=messages.append) is False
    assert len(messages) == 1 and "data.synthetic.auto_create is ignored" in messages[0] \
        and "lab_auto_create:Gradients" in messages[0], messages
    assert not path.exists()
    assert len(build_dataset(cfg, "train", **QUIET)) == 2


def test_a_built_in_class_without_a_stand_in_still_refuses(tmp_path):
    mcr = load_config(str(REPO / "configs" / "CANS" / "MCR.yaml"),
                      [f"data.data_path={tmp_path / 'mcr'}", "data.synthetic.auto_create=true"])
    with pytest.raises(DataError, match="^data.synthetic.auto_create: no synthetic set stands in for data.type "
                                        "MCRDictSet"):
        ensure_synthetic(mcr, **QUIET)


def test_clean_frames_get_their_set_and_profile_here_not_from_the_data_set(tmp_path):
    """CleanFrameDataset's example: the own-camera set and the calibrated profile come from
    ensure_synthetic; build_dataset alone only reads (a missing profile is its one-line error)."""
    path = tmp_path / "calibrated"
    cfg = load_config(str(REPO / "configs" / "example_calibrated_noise.yaml"),
                      [f"data.data_path={path}", f"data.noise.profile={path / 'profile.yaml'}",
                       "data.synthetic.scenes=3", "data.synthetic.height=128", "data.synthetic.width=128",
                       "data.train.patch_size=64"])
    path.mkdir()
    with pytest.raises(DataError, match="^data.noise.profile: noise profile .*profile.yaml not found"):
        build_dataset(cfg, "train", **QUIET)
    assert not (path / "calibration").exists()
    path.rmdir()
    messages = []
    assert ensure_synthetic(cfg, log=messages.append) is True
    assert (path / "profile.yaml").is_file() and (path / "calibration" / "dark").is_dir()
    assert any("creating the synthetic own-camera set" in m for m in messages)
    assert any("noise profile written to" in m for m in messages)
    assert ensure_synthetic(cfg, **QUIET) is False  # both there: nothing made again
    assert build_dataset(cfg, "train", **QUIET)[0]["noisy_raw"].shape[0] == 4
