"""The paper's test protocol: which SID frames the paper configs score, and the warnings when a run differs."""

import pytest
from helpers import REPO

from cans.config import load_config
from cans.data.lists import keep_first_capture, parse_sid_list
from cans.evaluate.protocol import describe_protocol, paper_differences
from cans.evaluate.scores import ratio_group


@pytest.mark.parametrize("config, expected", [
    ("configs/CANS_Plus/Sony.yaml", {"x100": 27, "x250": 27, "x300": 34}),
    ("configs/CANS/Sony.yaml", {"x100": 27, "x250": 27, "x300": 34}),
    ("configs/CANS_Plus/Fuji.yaml", {"x100": 41, "x250": 27, "x300": 26}),
    ("configs/CANS/Fuji.yaml", {"x100": 41, "x250": 27, "x300": 26}),
])
def test_paper_configs_score_the_authors_frames(config, expected):
    """The paper configs' test split, applied to the official lists: 88 Sony / 94 Fuji images."""
    cfg = load_config(str(REPO / config))
    test = cfg["data"]["test"]
    entries = parse_sid_list(str(REPO / "datasets" / "lists" / test["image_list_file"]))
    if test.get("only_00"):
        entries = keep_first_capture(entries)
    groups = {}
    for e in entries:
        groups[ratio_group(e.ratio)] = groups.get(ratio_group(e.ratio), 0) + 1
    assert groups == expected


def test_all_frames_is_the_larger_set():
    cfg = load_config(str(REPO / "configs/CANS_Plus/Sony.yaml"), ["data.test.only_00=false"])
    assert not cfg["data"]["test"]["only_00"]
    assert len(parse_sid_list(str(REPO / "datasets/lists/Sony_new_test_list.txt"))) == 562


def test_mcr_keeps_every_image():
    cfg = load_config(str(REPO / "configs/CANS_Plus/MCR.yaml"))
    assert cfg["data"]["test"]["only_00"] is False and cfg["data"]["valid"]["only_00"] is False


def test_paper_differences(tmp_path):
    cfg = load_config(str(REPO / "configs/CANS_Plus/Sony.yaml"), [f"data.data_path={tmp_path}"])
    proto = describe_protocol(cfg, "Sony", 88)
    assert proto["only_00"] and proto["dataset"] == "SID Sony"
    assert paper_differences(proto, "Sony") == []
    assert any("86 test images" in n for n in paper_differences(describe_protocol(cfg, "Sony", 86), "Sony"))
    assert any("--max-images" in n for n in paper_differences(proto, "Sony", max_images=5))
    every = describe_protocol(load_config(str(REPO / "configs/CANS_Plus/Sony.yaml"),
                                          [f"data.data_path={tmp_path}", "data.test.only_00=false"]), "Sony", 562)
    assert any("every frame" in n for n in paper_differences(every, "Sony"))
    old_list = describe_protocol(load_config(str(REPO / "configs/CANS_Plus/Sony.yaml"),
                                             [f"data.data_path={tmp_path}",
                                              "data.test.image_list_file=Sony_test_list.txt"]), "Sony", 88)
    assert any("Sony_new_test_list.txt" in n for n in paper_differences(old_list, "Sony"))
    fuji = load_config(str(REPO / "configs/CANS_Plus/Fuji.yaml"), [f"data.data_path={tmp_path}"])
    assert any("SID Sony" in n for n in paper_differences(describe_protocol(fuji, "Fuji", 94), "Fuji"))
    (tmp_path / "synthetic_sid.json").write_text("{}")
    assert any("synthetic" in n for n in paper_differences(describe_protocol(cfg, "Sony", 88), "Sony"))


def test_a_data_set_of_ones_own_is_reported_without_the_default_folder(monkeypatch):
    """A class that reads no data.data_path (docs/extending.md) is not reported as reading the
    schema's default datasets/SID, nor with a list file it does not have; one that says it reads
    data.data_path (reads_data_path = True) is."""
    import helpers

    from cans.evaluate.protocol import data_source

    monkeypatch.setattr(helpers.IdentityPairs, "packed_channels", 4, raising=False)
    monkeypatch.setattr(helpers.IdentityPairs, "block_size", 2, raising=False)
    cfg = load_config(str(REPO / "configs" / "demo.yaml"), ["data.type=helpers:IdentityPairs"])
    assert data_source(cfg) == "helpers:IdentityPairs (reads no data.data_path)"
    protocol = describe_protocol(cfg, None, 4)
    assert protocol["name"] == "helpers:IdentityPairs, 4 images" and protocol["list"] is None
    monkeypatch.setattr(helpers.IdentityPairs, "reads_data_path", True, raising=False)
    assert data_source(cfg).endswith("synthetic_sid (helpers:IdentityPairs)")
    assert describe_protocol(cfg, None)["name"].startswith("helpers:IdentityPairs, ")
    demo = load_config(str(REPO / "configs" / "demo.yaml"))
    assert data_source(demo).endswith("synthetic_sid (SonyDictSet)")
