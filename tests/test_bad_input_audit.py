"""Bad-input audit of the user-facing commands: each mistake a user is likely to make gives one
line naming the key, option or file and what was expected (exit status != 0, no traceback),
before any long work. The commands run in-process through their ``main(argv)``; no test trains.
"""
from __future__ import annotations

import importlib.util
import json

import pytest
import torch

from cans.config import ConfigError, load_config, validate
from cans.config_checks import check_config
from cans.models import build_model

from helpers import REPO

DEMO = str(REPO / "configs" / "demo.yaml")
TINY = {"type": "CANS_Plus", "width": 8, "middle_blk_num": 1, "enc_blk_nums": [1, 1, 1, 1],
        "dec_blk_nums": [1, 1, 1, 1]}


def _script(name):
    spec = importlib.util.spec_from_file_location("audit_" + name.replace("/", "_").replace(".", "_"), REPO / name)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _one_error_line(code, err, *names):
    """``err`` holds one ``error:`` line (notes, warnings and argparse's usage aside) that names
    every one of ``names``; the exit status is not 0; no traceback."""
    assert code not in (0, None), err
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1, err
    for name in names:
        assert name in errors[0], (name, err)
    return errors[0]


# ----------------------------------------------------------------------------- config files and --set

@pytest.mark.parametrize("override, names", [
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
def test_a_value_out_of_range_or_a_section_set_to_a_value_names_the_key(override, names):
    with pytest.raises(ConfigError) as info:
        load_config(DEMO, [override])
    text = str(info.value)
    assert "\n" not in text and all(n in text for n in names), text


@pytest.mark.parametrize("enc, dec", [([], [2, 2, 2, 2]), ([1, 1], [2, 2, 2, 2])])
def test_encoder_and_decoder_lists_of_different_lengths_are_refused_before_the_model(enc, dec):
    cfg = validate({"model": {"enc_blk_nums": enc, "dec_blk_nums": dec}})
    with pytest.raises(ConfigError) as info:
        check_config(cfg)
    text = str(info.value)
    assert "model.enc_blk_nums" in text and "model.dec_blk_nums" in text and "same length" in text, text


@pytest.mark.parametrize("content, names", [
    ("model: {width: 8\n", ["line 2", "expected ','"]),
    ("model:\n\twidth: 8\n", ["line 2", "tabs"]),
    (b"PK\x03\x04\x80\x81\xfe binary", ["not a text file"]),
])
def test_a_broken_config_file_is_one_line_with_where(tmp_path, capsys, content, names):
    path = tmp_path / "bad.yaml"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    code = _script("train.py").main(["-c", str(path), "--no-progress"])
    _one_error_line(code, capsys.readouterr().err, str(path), *names)


def test_a_config_path_that_is_a_folder_says_so(capsys):
    code = _script("test.py").main(["-c", str(REPO / "configs"), "--no-progress"])
    _one_error_line(code, capsys.readouterr().err, "is a folder", "YAML file")


# ----------------------------------------------------------------------------- output folders

def test_train_output_dir_under_a_file_fails_before_the_data_set_is_made(tmp_path, capsys):
    blocker = tmp_path / "notes.txt"
    blocker.write_text("a file, not a folder")
    data = tmp_path / "synthetic"  # auto_create would make it: the output check must come first
    code = _script("train.py").main(["-c", DEMO, "--no-progress", "--set", f"output_dir={blocker}/run",
                                     f"data.data_path={data}", "train.epochs=1"])
    _one_error_line(code, capsys.readouterr().err, "output_dir", str(blocker / "run"))
    assert not data.exists() and blocker.read_text() == "a file, not a folder"


def test_test_out_that_is_a_file_fails_before_the_model_and_the_data(tmp_path, capsys):
    out = tmp_path / "results"
    out.write_text("keep me")
    (tmp_path / "not_read.pth").write_bytes(b"")  # exists (checked first), never read
    code = _script("test.py").main(["-c", DEMO, "--checkpoint", str(tmp_path / "not_read.pth"), "--out", str(out),
                                    "--device", "cpu", "--no-progress", "--set",
                                    f"data.data_path={tmp_path / 'no_data'}"])
    _one_error_line(code, capsys.readouterr().err, "--out", str(out), "not a folder")
    assert out.read_text() == "keep me"


@pytest.fixture(scope="module")
def small_set(tmp_path_factory):
    from cans.data.synthetic import make_synthetic_sid
    out = tmp_path_factory.mktemp("audit") / "sid"
    make_synthetic_sid(str(out), scenes=3, height=200, width=200, log=lambda *_: None)
    return out


@pytest.mark.parametrize("script", ["test.py", "train.py"])
def test_a_checkpoint_path_that_is_a_folder_says_so(tmp_path, capsys, small_set, script):
    args = (["--checkpoint", str(tmp_path), "--device", "cpu"] if script == "test.py" else ["--resume", str(tmp_path)])
    code = _script(script).main(["-c", DEMO, "--no-progress", *args, "--set", f"output_dir={tmp_path / 'run'}",
                                 f"data.data_path={small_set}", "data.num_workers=0", "model.width=8"])
    _one_error_line(code, capsys.readouterr().err, str(tmp_path), "is a folder", ".pth")


def test_a_checkpoint_of_the_other_model_type_is_one_line_with_the_fix(tmp_path, capsys):
    cans_cfg = validate({"name": "tiny_cans", "model": dict(TINY, type="CANS")})
    path = tmp_path / "cans.pth"
    torch.save({"model": build_model(cans_cfg).state_dict(), "config": cans_cfg}, path)
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(f"model: {json.dumps(TINY)}\noutput_dir: {tmp_path / 'run'}\n")
    code = _script("test.py").main(["-c", str(cfg), "--checkpoint", str(path), "--device", "cpu", "--no-progress"])
    err = capsys.readouterr().err
    _one_error_line(code, err, str(path), "model.type=CANS", "--set model.type=CANS")
    assert "missing keys" not in err and "get_kv" not in err, err


# ----------------------------------------------------------------------------- scripts/infer.py

@pytest.mark.parametrize("ratio", ["0", "-2", "abc", "nan", "inf"])
def test_infer_refuses_a_ratio_that_is_not_a_positive_number(capsys, ratio):
    with pytest.raises(SystemExit) as info:
        _script("scripts/infer.py").parse_args(["photo.ARW", "-c", DEMO, "--ratio", ratio])
    _one_error_line(info.value.code, capsys.readouterr().err, "--ratio", ratio)


def test_infer_inputs_written_after_set_are_inputs_not_overrides():
    args = _script("scripts/infer.py").parse_args(["-c", DEMO, "--set", "model.width=8", "test.amp=off",
                                                   "a.ARW", "folder"])
    assert args.set == ["model.width=8", "test.amp=off"] and args.inputs == ["a.ARW", "folder"]


def test_infer_a_path_with_an_equals_sign_after_set_is_an_input():
    args = _script("scripts/infer.py").parse_args(["-c", DEMO, "--set", "test.amp=off", "night/iso=3200/",
                                                   "/photos/a=b.ARW"])
    assert args.set == ["test.amp=off"] and args.inputs == ["night/iso=3200/", "/photos/a=b.ARW"]
    args = _script("scripts/infer.py").parse_args(["-c", DEMO, "x.ARW", "--set", "test.amp=off", "trian.epochs=2"])
    assert args.set == ["test.amp=off", "trian.epochs=2"] and args.inputs == ["x.ARW"]  # a misspelt key stays an override


def test_infer_without_inputs_says_so(capsys):
    with pytest.raises(SystemExit) as info:
        _script("scripts/infer.py").parse_args(["-c", DEMO, "--set", "model.width=8"])
    _one_error_line(info.value.code, capsys.readouterr().err, "INPUT")


@pytest.mark.parametrize("case", ["missing input", "out is a file", "empty folder", "folder without RAW"])
def test_infer_checks_inputs_and_out_before_the_model(tmp_path, capsys, case):
    photo = tmp_path / "photo.ARW"
    photo.write_bytes(b"not read: the check comes first")
    (tmp_path / "not_read.pth").write_bytes(b"")  # exists (its path is checked before --out), never read
    out, inputs, names = tmp_path / "out", [str(photo)], []
    if case == "missing input":
        inputs, names = [str(tmp_path / "typo.ARW")], [str(tmp_path / "typo.ARW"), "no such file"]
    elif case == "out is a file":
        out.write_text("keep me")
        names = ["--out", str(out)]
    else:
        folder = tmp_path / "folder"
        folder.mkdir()
        if case == "folder without RAW":
            (folder / "notes.txt").write_text("x")
        inputs, names = [str(folder)], [str(folder), "no RAW files"]
    code = _script("scripts/infer.py").main([*inputs, "-c", DEMO, "--checkpoint", str(tmp_path / "not_read.pth"),
                                             "--out", str(out), "--no-progress", "--device", "cpu"])
    _one_error_line(code, capsys.readouterr().err, *names)
    assert case != "out is a file" or out.read_text() == "keep me"


# ----------------------------------------------------------------------------- data scripts

def test_make_synthetic_sid_onto_a_file_keeps_the_file(tmp_path, capsys):
    out = tmp_path / "synthetic"
    out.write_text("keep me")
    code = _script("scripts/make_synthetic_sid.py").main(["--out", str(out), "--scenes", "3"])
    _one_error_line(code, capsys.readouterr().err, str(out), "not a folder")
    assert out.read_text() == "keep me" and sorted(p.name for p in tmp_path.iterdir()) == ["synthetic"]


@pytest.mark.parametrize("script, args", [
    ("scripts/make_synthetic_sid.py", ["--out", "{tmp}/x"]),
    ("scripts/prepare_pairs.py", ["--data-path", "{tmp}", "--lists", "l.txt"]),
    ("scripts/prepare_sid.py", ["--data-path", "{tmp}", "--camera", "Sony"]),
])
def test_negative_workers_are_refused(tmp_path, capsys, script, args):
    with pytest.raises(SystemExit) as info:
        _script(script).main([a.replace("{tmp}", str(tmp_path)) for a in args] + ["--workers", "-1"])
    _one_error_line(info.value.code, capsys.readouterr().err, "--workers", "-1")
    assert not list(tmp_path.iterdir())


def test_prepare_sid_checks_the_summary_path_before_preparing(tmp_path, capsys):
    code = _script("scripts/prepare_sid.py").main(["--data-path", str(tmp_path / "SID"), "--camera", "Sony",
                                                   "--summary-json", str(tmp_path)])
    _one_error_line(code, capsys.readouterr().err, "--summary-json", str(tmp_path), "is a folder")


@pytest.mark.parametrize("script, args, names", [
    ("scripts/prepare_sid.py", ["--data-path", "{tmp}/SID", "--camera", "Sony"], ["{tmp}/SID", "not found"]),
    ("scripts/prepare_sid.py", ["--data-path", "{tmp}", "--camera", "Sony", "--lists-dir", "{tmp}/lists"],
     ["{tmp}/lists", "Sony_*_list.txt"]),
    ("scripts/prepare_pairs.py", ["--data-path", "{tmp}/mine", "--lists", "l.txt"], ["{tmp}/mine", "not found"]),
    ("scripts/prepare_pairs.py", ["--data-path", "{tmp}", "--lists", "none.txt"], ["{tmp}/none.txt", "not found"]),
])
def test_data_scripts_name_a_missing_folder_or_list(tmp_path, capsys, script, args, names):
    fill = lambda s: s.replace("{tmp}", str(tmp_path))
    code = _script(script).main([fill(a) for a in args])
    _one_error_line(code, capsys.readouterr().err, *[fill(n) for n in names])


# ----------------------------------------------------------------------------- argparse-level mistakes

@pytest.mark.parametrize("script, args, names", [
    ("test.py", ["--size", "64"], ["--size", "expected 2 arguments"]),
    ("test.py", ["--tile", "-1"], ["--tile", "-1"]),
    ("scripts/benchmark.py", ["--modes", "nonsense"], ["--modes", "nonsense"]),
    ("scripts/benchmark.py", ["--full", "10"], ["--full", "expected 2 arguments"]),
])
def test_argument_mistakes_name_the_option(capsys, script, args, names):
    with pytest.raises(SystemExit) as info:
        _script(script).parse_args(args)
    _one_error_line(info.value.code, capsys.readouterr().err, *names)


@pytest.mark.parametrize("args, names", [
    (["--device", "gpu"], ["--device gpu", "cpu, cuda"]),
    (["--out", "{tmp}"], ["--out", "{tmp}", "is a folder"]),
    (["--patch", "3"], ["--patch 3"]),
])
def test_benchmark_checks_its_arguments_before_measuring(tmp_path, capsys, args, names):
    fill = lambda s: s.replace("{tmp}", str(tmp_path))
    with pytest.raises(SystemExit) as info:
        _script("scripts/benchmark.py").main(["-c", DEMO, "--device", "cpu", "--modes", "plain",
                                              *[fill(a) for a in args]])
    message = str(info.value.code)  # sys.exit("error: ...") prints the message on stderr
    assert message.startswith("error: ") and "\n" not in message and all(fill(n) in message for n in names), message
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("throughput", [False, True], ids=["test", "throughput"])
def test_a_missing_checkpoint_leaves_no_result_folder(tmp_path, throughput):
    """test.py with a checkpoint that does not exist stops before it makes the result folder."""
    from cans.config import load_config
    from cans.evaluate.tester import TestSetupError, run_test, run_throughput

    cfg = load_config("configs/demo.yaml", [f"output_dir={tmp_path / 'run'}"])
    out = tmp_path / "results"
    run = run_throughput if throughput else run_test
    with pytest.raises(TestSetupError, match="checkpoint not found"):
        run(cfg, str(tmp_path / "missing.pth"), device="cpu", out_dir=str(out))
    assert not out.exists() and not (tmp_path / "run").exists()


def test_infer_with_a_missing_checkpoint_leaves_no_result_folder(tmp_path, capsys):
    photo = tmp_path / "photo.ARW"
    photo.write_bytes(b"never read")
    out = tmp_path / "results"
    code = _script("scripts/infer.py").main([str(photo), "-c", DEMO, "--checkpoint", str(tmp_path / "missing.pth"),
                                             "--out", str(out), "--device", "cpu", "--no-progress"])
    _one_error_line(code, capsys.readouterr().err, "checkpoint not found", "missing.pth")
    assert not out.exists()
