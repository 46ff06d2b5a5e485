"""Values a key's type allows but a run cannot use: refused when the config is loaded or checked,
with one line naming the key (or the file / override) and what was expected."""
from __future__ import annotations

import pytest
from helpers import REPO, load_script

from cans.config import SCHEMA, ConfigError, Field, load_config, validate
from cans.config_checks import check_config

DEMO = str(REPO / "configs" / "demo.yaml")


def _float_keys(schema, prefix=""):
    """Dotted paths of every float leaf of the schema (and list[float] leaves), split sections included."""
    for key, spec in schema.items():
        if isinstance(spec, Field):
            if spec.kind in ("float", "list[float]"):
                yield prefix + key, spec.kind
        else:
            yield from _float_keys(spec, f"{prefix}{key}.")


FLOAT_KEYS = sorted(_float_keys(SCHEMA))


def _refused(overrides, *names, check=False):
    """The ConfigError of loading the demo config with ``overrides`` (and checking it with
    ``check``): one short line naming every one of ``names``."""
    with pytest.raises(ConfigError) as info:
        cfg = load_config(DEMO, overrides)
        if check:
            check_config(cfg)
    text = str(info.value)
    assert "\n" not in text and len(text) < 400, text
    for name in names:
        assert name in text, (name, text)
    return text


def test_the_schema_has_float_keys_in_every_part():
    keys = [k for k, _ in FLOAT_KEYS]
    for key in ("train.base_lr", "data.process.max_clip", "data.train.max_clip", "loss.rgb.weight",
                "train.optimizer.betas", "data.max_ratio", "train.clip_grad"):
        assert key in keys


@pytest.mark.parametrize("key, kind", FLOAT_KEYS)
@pytest.mark.parametrize("value", [".inf", "-.inf", ".nan", "inf", "nan"])
def test_every_float_key_refuses_inf_and_nan(key, kind, value):
    text = value if kind == "float" else f"[{value}, 0.5]"
    where = key if kind == "float" else key + "[0]"
    _refused([f"{key}={text}"], where, "expected a finite float")


@pytest.mark.parametrize("override", ["data.process.max_clip=null", "data.process.min_clip=null",
                                      "train.clip_grad=null", "data.max_ratio=null", "train.manual_seed=null"])
def test_null_stays_allowed_where_it_was(override):
    key = override.split("=")[0].split(".")
    cfg = load_config(DEMO, [override])
    node = cfg
    for part in key:
        node = node[part]
    assert node is None


@pytest.mark.parametrize("override, names", [
    ("train.base_lr=0", ["train.base_lr", "expected float > 0", "got 0.0"]),
    ("train.base_lr=-1e-4", ["train.base_lr", "expected float > 0"]),
    ("train.optimizer.betas=[2, 3]", ["train.optimizer.betas[0]", "expected float >= 0 and < 1", "2.0"]),
    ("train.optimizer.betas=[0.9, 1]", ["train.optimizer.betas[1]", "< 1", "1.0"]),
    ("train.optimizer.betas=[-0.1, 0.9]", ["train.optimizer.betas[0]", ">= 0"]),
    ("train.optimizer.betas=[0.9]", ["train.optimizer.betas", "list[float] of 2 items", "got 1 item"]),
    ("train.optimizer.betas=[0.9, 0.99, 0.999]", ["train.optimizer.betas", "of 2 items", "got 3 items"]),
    ("train.optimizer.betas=0.9", ["train.optimizer.betas", "expected list[float] of 2 items"]),
    ("train.manual_seed=99999999999999999999999", ["train.manual_seed", "int >= 0 and <= 4294967295 or null",
                                                   "99999999999999999999999"]),
    ("train.manual_seed=4294967296", ["train.manual_seed", "<= 4294967295"]),
    ("train.manual_seed=-1", ["train.manual_seed", ">= 0"]),
    ("data.synthetic.seed=-1", ["data.synthetic.seed", ">= 0"]),
    ("train.base_lr=1e999", ["train.base_lr", "finite"]),
    ("train.base_lr=" + "9" * 400, ["train.base_lr", "expected float > 0, got int"]),
    ("train.dist_timeout=0", ["train.dist_timeout", "int >= 1"]),
    ("train.epochs=-3", ["train.epochs", ">= 0", "-3"]),
    ("data.train.batch_size=0", ["data.train.batch_size", ">= 1"]),
    ("data.num_workers=-1", ["data.num_workers", ">= 0"]),
    ("train.base_lr=-1", ["train.base_lr", "> 0"]),
    ("train.base_lr=.nan", ["train.base_lr", "nan"]),
    ("model.width=0", ["model.width", ">= 1"]),
    ("model.enc_blk_nums=[2,-1,2,2]", ["model.enc_blk_nums[1]", ">= 0"]),
    ("model=CANS", ["model: expected a mapping"]),
    ("data.train=5", ["data.train: expected a mapping"]),
])
def test_out_of_range_values_name_the_key_and_the_range(override, names):
    _refused([override], *names)


@pytest.mark.parametrize("overrides", [
    ["train.manual_seed=0"], ["train.manual_seed=4294967295"], ["train.optimizer.betas=[0, 0.999999]"],
    ["train.base_lr=1e-12", "train.min_lr=0"], ["train.min_lr=1.0e-3"],  # min_lr == base_lr: a constant cosine
    ["train.min_lr=1", "train.lr_scheduler.type=constant"],  # the constant schedule does not read min_lr
])
def test_values_at_the_edges_are_accepted(overrides):
    check_config(load_config(DEMO, overrides))


def test_min_lr_above_base_lr_names_the_key_to_change():
    text = _refused(["train.base_lr=1e-4", "train.min_lr=2e-4"], "train.min_lr 0.0002", "train.base_lr 0.0001",
                    "set train.min_lr to at most 0.0001", check=True)
    assert "cosine" in text


def test_the_new_train_keys_have_their_defaults():
    cfg = validate({})
    assert cfg["train"]["dist_timeout"] == 1800
    cfg = load_config(DEMO, ["train.dist_timeout=60"])
    assert cfg["train"]["dist_timeout"] == 60


# ----------------------------------------------------------------------------- nesting

def _nested(depth):
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("depth", [40, 20000])  # below / beyond where the YAML parser hits the recursion limit
def test_a_deeply_nested_file_is_one_line_naming_the_file(tmp_path, depth):
    path = tmp_path / "deep.yaml"
    path.write_text(f"model: {{width: {_nested(depth)}}}\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    text = str(info.value)
    assert text.startswith(f"{path}: ") and "nested more than 32 levels deep" in text and len(text) < 300, text


@pytest.mark.parametrize("depth", [40, 20000])
def test_a_deeply_nested_override_is_one_line_naming_the_override(depth):
    text = _refused([f"model.width={_nested(depth)}"], "override model.width=...", "nested more than 32 levels")
    assert "[[[[" not in text


def test_a_list_that_contains_itself_is_refused(tmp_path):
    path = tmp_path / "alias.yaml"
    path.write_text("model: {enc_blk_nums: &l [1, *l]}\n")
    with pytest.raises(ConfigError, match="nested more than 32 levels"):
        load_config(str(path))


@pytest.mark.parametrize("value, says", [("9" * 5000, "5000 digits"), ("2020-13-45", "month must be in 1..12")])
def test_a_value_yaml_cannot_build_is_one_line_naming_the_file_or_override(tmp_path, value, says):
    path = tmp_path / "c.yaml"
    path.write_text(f"train: {{manual_seed: {value}}}\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    assert str(info.value).startswith(f"{path}: not valid YAML: ") and says in str(info.value), str(info.value)
    _refused([f"train.manual_seed={value}"], "override 'train.manual_seed=", "not valid YAML", says)


def test_a_value_shown_in_an_error_is_abridged():
    text = _refused(["model.width=[" + ", ".join(["123456789"] * 5000) + "]"], "model.width", "expected int")
    assert len(text) < 200, text


# ----------------------------------------------------------------------------- the command line

def _train_main():
    return load_script("train.py").main


@pytest.mark.parametrize("override, name", [
    ("train.base_lr=.inf", "train.base_lr"),
    ("train.min_lr=1", "train.min_lr"),
    ("train.manual_seed=99999999999999999999999", "train.manual_seed"),
    (f"train.base_lr={_nested(20000)}", "override train.base_lr=..."),
])
def test_train_py_prints_one_error_line_and_exits_2_before_any_work(tmp_path, capsys, override, name):
    out = tmp_path / "run"
    code = _train_main()(["-c", DEMO, "--no-progress", "--set", f"output_dir={out}",
                          f"data.data_path={tmp_path / 'data'}", override])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and name in lines[0], err
    assert not out.exists() and not (tmp_path / "data").exists()
