"""Config loading: inheritance, overrides, schema errors (an unknown key named with the file and
line or the --set it came from, and the likeliest keys meant), round trip."""
from pathlib import Path

import pytest
import yaml
from helpers import REPO, load_script, one_error_line, write

from cans.config import ConfigError, dump_config, load_config, split_options


def test_inheritance_chain_and_merge(tmp_path):
    write(tmp_path / "a.yaml", "model: {width: 16, enc_blk_nums: [1, 1]}\ntrain: {base_lr: 1.0e-3, epochs: 5}\n")
    write(tmp_path / "b.yaml", "base: a.yaml\ntrain: {epochs: 7}\n")
    sub = tmp_path / "sub"
    sub.mkdir()
    cfg = load_config(write(sub / "c.yaml", "base: ../b.yaml\nmodel: {type: CANS}\n"))
    assert cfg["model"]["width"] == 16 and cfg["model"]["enc_blk_nums"] == [1, 1]
    assert cfg["model"]["type"] == "CANS"
    assert cfg["train"]["epochs"] == 7 and cfg["train"]["base_lr"] == 1e-3
    assert cfg["train"]["min_lr"] == 2e-5  # schema default
    assert "base" not in cfg
    assert cfg["name"] == "CANS_c" and cfg["output_dir"] == str(Path("runs") / "CANS_c")


def test_paper_configs_inherit_camera_bases():
    sony = load_config(str(REPO / "configs/CANS_Plus/Sony.yaml"))
    fuji = load_config(str(REPO / "configs/CANS/Fuji.yaml"))
    mcr = load_config(str(REPO / "configs/CANS_Plus/MCR.yaml"))
    assert (sony["model"]["in_channel"], sony["model"]["block_size"], sony["model"]["adaptive_size"]) == (4, 2, 2)
    assert (fuji["model"]["in_channel"], fuji["model"]["block_size"], fuji["model"]["adaptive_size"]) == (9, 3, 3)
    assert sony["train"]["base_lr"] == 2e-4 and sony["train"]["min_lr"] == 2e-5
    assert fuji["train"]["base_lr"] == 1e-4 and fuji["train"]["min_lr"] == 1e-6
    assert fuji["data"]["train"]["patch_size"] == 1536 and sony["data"]["train"]["patch_size"] == 1024
    assert sony["train"]["clip_grad"] == 0.1 and sony["train"]["manual_seed"] == 3407
    assert sony["train"]["epochs"] == 1000 and sony["train"]["warmup_epochs"] == 0
    assert mcr["data"]["type"] == "MCRDictSet" and fuji["data"]["type"] == "FujiDictSet"
    assert split_options(sony, "train")["h_flip"] is True
    assert split_options(sony, "test")["h_flip"] is False


def test_overrides_are_parsed_as_yaml(tmp_path):
    path = write(tmp_path / "c.yaml", "model: {type: CANS}\n")
    cfg = load_config(path, ["train.base_lr=1e-4", "data.train.patch_size=512",
                             "model.enc_blk_nums=[1,2,3]", "train.amp=bf16", "data.load_npy=false"])
    assert cfg["train"]["base_lr"] == 1e-4 and isinstance(cfg["train"]["base_lr"], float)
    assert cfg["data"]["train"]["patch_size"] == 512
    assert cfg["model"]["enc_blk_nums"] == [1, 2, 3]
    assert cfg["train"]["amp"] == "bf16" and cfg["data"]["load_npy"] is False
    with pytest.raises(ConfigError, match="dotted.key=value"):
        load_config(path, ["train.base_lr"])


def test_unknown_key_names_path_and_suggestions(tmp_path):
    path = write(tmp_path / "c.yaml", "train:\n  base_rl: 1.0e-4\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    msg = str(err.value)
    assert "train.base_rl" in msg and "train.base_lr" in msg and str(path) in msg
    with pytest.raises(ConfigError, match=r"data\.train\.patch_sise.*data\.train\.patch_size"):
        load_config(write(tmp_path / "d.yaml", "{}\n"), ["data.train.patch_sise=4"])
    with pytest.raises(ConfigError, match="unknown config key modle"):
        load_config(write(tmp_path / "e.yaml", "modle: {}\n"))


def test_wrong_type_names_expected_type(tmp_path):
    cases = {
        "train: {epochs: ten}\n": ("train.epochs", "expected int"),
        "train: {epochs: 2.5}\n": ("train.epochs", "expected int"),
        "model: {enc_blk_nums: 2}\n": ("model.enc_blk_nums", "expected list[int]"),
        "model: {enc_blk_nums: [1, x]}\n": ("model.enc_blk_nums[1]", "expected int"),
        "data: {load_npy: 1}\n": ("data.load_npy", "expected bool"),
        "train: {base_lr: fast}\n": ("train.base_lr", "expected float"),
        "model: {type: CANS_Pls}\n": ("model.type", "CANS_Plus"),
        "train: {amp: fp8}\n": ("train.amp", "one of"),
        "train: 3\n": ("train", "expected a mapping"),
    }
    for text, (key, expected) in cases.items():
        with pytest.raises(ConfigError) as err:
            load_config(write(tmp_path / "c.yaml", text))
        assert key in str(err.value) and expected in str(err.value), (text, str(err.value))


def test_yaml_quirks_are_accepted(tmp_path):
    # PyYAML reads 1e-4 (no dot) as a string and a bare `off` as False.
    cfg = load_config(write(tmp_path / "c.yaml", "train: {base_lr: 1e-4, amp: off}\n"))
    assert cfg["train"]["base_lr"] == 1e-4 and cfg["train"]["amp"] == "off"


def test_base_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(write(tmp_path / "c.yaml", "base: missing.yaml\n"))
    write(tmp_path / "x.yaml", "base: y.yaml\n")
    with pytest.raises(ConfigError, match="circular"):
        load_config(write(tmp_path / "y.yaml", "base: x.yaml\n"))
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path / "z.yaml", "model: [unclosed\n"))


def test_resolved_config_round_trips(tmp_path):
    for path in sorted((REPO / "configs").rglob("*.yaml")):
        cfg = load_config(str(path), ["train.base_lr=3e-4"])
        out = tmp_path / (path.stem + "_resolved.yaml")
        dump_config(cfg, str(out))
        again = load_config(str(out))
        assert again == cfg, path
        assert yaml.safe_load(out.read_text()) == cfg


# ------------------------------------------ unknown keys: where they came from, likeliest suggestions first

def config_error(path, overrides=()):
    with pytest.raises(ConfigError) as err:
        load_config(path, list(overrides))
    return str(err.value)


def test_set_key_error_names_the_override_and_ranks_suffix_matches(tmp_path):
    path = write(tmp_path / "c.yaml", "train:\n  epochs: 1\n")
    msg = config_error(path, ["train.lr=1e-3"])
    assert msg.startswith("--set train.lr=1e-3: unknown config key train.lr; did you mean "
                          "train.base_lr, train.min_lr"), msg
    assert str(path) not in msg
    # a value out of range from --set: the override is named too, not the file
    msg = config_error(path, ["train.epochs=-1"])
    assert msg.startswith("--set train.epochs=-1: train.epochs: expected int >= 0"), msg
    # a whole section set by --set
    assert config_error(path, ["train={lr: 2}"]).startswith("--set train={lr: 2}: unknown config key train.lr")


def test_file_key_error_names_file_and_line_or_the_base(tmp_path):
    write(tmp_path / "base" / "b.yaml", "model:\n  width: 8\ntrain:\n  epochs: 1\n  lr: 3\n")
    path = write(tmp_path / "c.yaml", "base: base/b.yaml\nname: x\ntrain:\n  epochs: -2\n")
    msg = config_error(path)
    assert msg.startswith(f"{path}, line 4: train.epochs: expected int >= 0, got -2"), msg
    # the override fixes epochs; the unknown key then comes from the base file, line 5
    msg = config_error(path, ["train.epochs=2"])
    base = str(tmp_path / "base" / "b.yaml")
    assert msg.startswith(f"{base}, line 5 (a base of {path}): unknown config key train.lr; "
                          f"did you mean train.base_lr, train.min_lr"), msg


def test_key_suggestions_find_the_same_name_in_another_section(tmp_path):
    path = write(tmp_path / "c.yaml", "{}\n")
    msg = config_error(path, ["train.batch_size=4"])
    assert "did you mean data.train.batch_size," in msg, msg
    assert "did you mean train.epochs?" in config_error(path, ["epochs=3"])
    # a close spelling still wins where nothing begins or ends the same
    assert "did you mean train.base_lr" in config_error(path, ["train.base_rl=1e-4"])


# ---------------------------------------------- a broken config file, or a folder, is one line saying where

@pytest.mark.parametrize("content, names", [
    ("model: {width: 8\n", ["line 2", "expected ','"]),
    ("model:\n\twidth: 8\n", ["line 2", "tabs"]),
    (b"PK\x03\x04\x80\x81\xfe binary", ["not a text file"]),
])
def test_a_broken_config_file_is_one_line_with_where(tmp_path, capsys, content, names):
    path = tmp_path / "bad.yaml"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    code = load_script("train.py").main(["-c", str(path), "--no-progress"])
    one_error_line(code, capsys.readouterr().err, str(path), *names)


def test_a_config_path_that_is_a_folder_says_so(capsys):
    code = load_script("test.py").main(["-c", str(REPO / "configs"), "--no-progress"])
    one_error_line(code, capsys.readouterr().err, "is a folder", "YAML file")


# ---------------------------------------------- a key given twice, a retired key

@pytest.mark.parametrize("content, key, lines", [
    ("train:\n  epochs: 1\n  base_lr: 1.0e-3\n  epochs: 999\n", "train.epochs", "lines 2 and 4"),
    ("name: a\nmodel: {width: 8}\nname: b\n", "name", "lines 1 and 3"),
    ("data:\n  train:\n    patch_size: 64\n  valid: {}\n  train:\n    batch_size: 2\n", "data.train", "lines 2 and 5"),
])
def test_a_key_given_twice_in_a_file_names_the_file_the_key_and_both_lines(tmp_path, capsys, content, key, lines):
    """PyYAML keeps the last of two equal keys silently (epochs: 1, then epochs: 999 trains 999 epochs)."""
    path = write(tmp_path / "twice.yaml", content)
    msg = config_error(path)
    assert msg.startswith(f"{path}: {key} is given twice, on {lines}"), msg
    code = load_script("train.py").main(["-c", path, "--no-progress"])
    one_error_line(code, capsys.readouterr().err, path, key, lines)


def test_a_key_given_twice_in_a_base_file_names_the_base(tmp_path):
    base = write(tmp_path / "base.yaml", "train:\n  epochs: 1\n  epochs: 2\n")
    path = write(tmp_path / "c.yaml", "base: base.yaml\n")
    assert config_error(path).startswith(f"{base}: train.epochs is given twice, on lines 2 and 3"), config_error(path)


def test_a_key_repeated_in_separate_mappings_or_through_a_merge_is_fine(tmp_path):
    path = write(tmp_path / "ok.yaml", "data:\n  train: &split {batch_size: 2}\n  valid:\n    <<: *split\n"
                                       "    batch_size: 1\n  test: {batch_size: 3}\n")
    cfg = load_config(path)
    assert [cfg["data"][s]["batch_size"] for s in ("train", "valid", "test")] == [2, 1, 3]


@pytest.mark.parametrize("where", ["file", "--set"])
def test_trust_checkpoint_in_a_config_says_trust_comes_from_the_command_line(tmp_path, where):
    """Trust to unpickle a file is never granted by a (possibly downloaded) config."""
    if where == "file":
        path, overrides = write(tmp_path / "c.yaml", "train:\n  epochs: 1\n  trust_checkpoint: true\n"), []
    else:
        path, overrides = write(tmp_path / "c.yaml", "{}\n"), ["train.trust_checkpoint=true"]
    msg = config_error(path, overrides)
    origin = f"{path}, line 3" if where == "file" else "--set train.trust_checkpoint=true"
    assert msg.startswith(f"{origin}: train.trust_checkpoint: trust to load a checkpoint"), msg
    assert "only by --trust-checkpoint on the command line" in msg and "did you mean" not in msg, msg


def test_a_saved_config_with_trust_checkpoint_false_still_loads(tmp_path):
    """Run folders' config.yaml and exports' stored configs carry the old default, false: harmless."""
    path = write(tmp_path / "config.yaml", "train:\n  epochs: 1\n  trust_checkpoint: false\n")
    cfg = load_config(path)
    assert cfg["train"]["epochs"] == 1 and "trust_checkpoint" not in cfg["train"]
