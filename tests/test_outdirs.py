"""A start that fails leaves no new empty result folder (train.py, test.py, infer.py); a folder that
existed before, or one with anything in it, is never removed."""
from pathlib import Path

import pytest
import torch

from cans.config import ConfigError, load_config
from cans.errors import TestSetupError

REPO = Path(__file__).resolve().parents[1]
DEMO = str(REPO / "configs" / "demo.yaml")
TINY = ["model.width=4", "model.enc_blk_nums=[1,1,1,1]", "model.dec_blk_nums=[1,1,1,1]", "model.middle_blk_num=1"]


def _listing(root: Path):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_provisional_output_dir_removes_only_what_it_made_and_left_empty(tmp_path):
    from cans.outdirs import missing_folders, provisional_output_dir

    (tmp_path / "keep").mkdir()
    out = tmp_path / "keep" / "a" / "b"
    assert missing_folders(out) == [str(out), str(out.parent)]
    with pytest.raises(RuntimeError):
        with provisional_output_dir(str(out), "--out"):
            assert out.is_dir()
            raise RuntimeError("the run fails")
    assert _listing(tmp_path) == ["keep"]             # a/ and a/b/ gone, keep/ (there before) stays
    with provisional_output_dir(str(out), "--out"):   # a run that wrote something keeps its folders
        (out / "result.png").write_bytes(b"x")
    assert (out / "result.png").exists()
    with provisional_output_dir(str(out), "--out"):   # existed before: kept even when left empty
        (out / "result.png").unlink()
    assert out.is_dir()


def test_test_py_failed_start_leaves_no_new_folder(tmp_path):
    from cans.evaluate.tester import run_test, run_throughput

    cfg = load_config(DEMO, [f"output_dir={tmp_path / 'run'}", *TINY])
    wrong = tmp_path / "wrong.pth"
    torch.save({"model": {"a": torch.zeros(1)}}, wrong)
    with pytest.raises(TestSetupError, match="weights of another network"):
        run_test(cfg, str(wrong), device="cpu", out_dir=str(tmp_path / "results" / "test"), print_fn=lambda s: None)
    with pytest.raises(TestSetupError, match="weights of another network"):   # the default <output_dir>/test
        run_test(cfg, str(wrong), device="cpu", print_fn=lambda s: None)
    with pytest.raises(TestSetupError, match="at least"):   # an input too small, found after the folder is made
        run_throughput(cfg, size=(8, 8), random_weights=True, device="cpu", out_dir=str(tmp_path / "tp"),
                       print_fn=lambda s: None)
    assert _listing(tmp_path) == ["wrong.pth"]
    (tmp_path / "mine").mkdir()                             # an existing (empty) folder is never removed
    with pytest.raises(TestSetupError):
        run_test(cfg, str(wrong), device="cpu", out_dir=str(tmp_path / "mine"), print_fn=lambda s: None)
    assert (tmp_path / "mine").is_dir()


def test_train_py_failed_start_leaves_no_run_folder(tmp_path):
    from cans.train.main import train_main

    run = tmp_path / "runs" / "CANS_Plus_Sony"
    cfg = load_config(str(REPO / "configs" / "CANS_Plus" / "Sony.yaml"),
                      [f"output_dir={run}", f"data.data_path={tmp_path / 'no_SID'}", *TINY])
    with pytest.raises(ConfigError, match="data.data_path"):
        train_main(cfg, progress=False)
    assert _listing(tmp_path) == []          # before: runs/CANS_Plus_Sony/train.log with the error line
    run.mkdir(parents=True)                  # a folder that was there: kept (with the failure in its train.log)
    with pytest.raises(ConfigError, match="data.data_path"):
        train_main(cfg, progress=False)
    assert run.is_dir()


def _infer_args(tmp_path, checkpoint, out):
    from cans.cli import infer

    photo = tmp_path / "photo.ARW"
    photo.write_bytes(b"not a RAW file")
    return infer.parse_args([str(photo), "-c", DEMO, "--set", *TINY, "--checkpoint", str(checkpoint), "--out", str(out),
                             "--device", "cpu", "--no-progress"])


def test_infer_py_failed_start_or_nothing_written_leaves_no_out_folder(tmp_path, capsys):
    from cans.cli.infer import run as cli_main
    from cans.models import build_model

    wrong = tmp_path / "wrong.pth"
    torch.save({"model": {"a": torch.zeros(1)}}, wrong)
    with pytest.raises(TestSetupError, match="weights of another network"):
        cli_main(_infer_args(tmp_path, wrong, tmp_path / "out" / "infer"))
    assert not (tmp_path / "out").exists()
    good = tmp_path / "tiny.pth"                    # weights that load; the only input fails to read
    torch.save({"model": build_model(load_config(DEMO, TINY)).state_dict()}, good)
    assert cli_main(_infer_args(tmp_path, good, tmp_path / "out" / "infer")) == 1
    assert "1 file(s) failed" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
