"""Training under faults: interrupts resumed bit for bit, one writer per run folder, non-finite
numbers never saved, a full disk, fine-tuning's best.pth (docs/training.md, "What survives what")."""
from __future__ import annotations

import errno
import json
import os
import signal

import pytest
import torch
from helpers import TinyPairs, make_cfg, tiny_trainer, weights

from cans.config import ConfigError
from cans.engine.checkpoint import DiskFullError, load_checkpoint
from cans.train.trainer import NonFiniteLossError, Trainer


def worker_cfg(folder, **train):
    """The default data path of a real run: a DataLoader worker kept alive across epochs, no
    ``deterministic`` (the crops must not depend on the worker's generator state)."""
    cfg = make_cfg(folder, epochs=2, save_per_epoch=0, deterministic=False, **train)
    cfg["data"].update(num_workers=1, persistent_workers=True)
    cfg["data"]["train"]["batch_size"] = 1
    return cfg


def losses_of(trainer):
    """Record every step's loss of ``trainer`` (its train_step wrapped)."""
    seen, real = [], trainer.train_step

    def step(batch):
        values = real(batch)
        seen.append(None if values is None else float(values["total"]))
        return values

    trainer.train_step = step
    return seen


@pytest.mark.parametrize("sig,at", [(signal.SIGINT, 3), (signal.SIGTERM, 8)])
def test_a_signal_mid_epoch_resumes_bit_for_bit(tmp_path, sig, at):
    data = dict(n=6, size=24, patch=16)
    straight = tiny_trainer(worker_cfg(tmp_path / "a"), **data)
    straight_losses = losses_of(straight)
    straight.fit()
    straight.close()

    first = tiny_trainer(worker_cfg(tmp_path / "b"), **data)
    first_losses, real = losses_of(first), first.train_step

    def step_with_signal(batch):
        if first.step == at:
            os.kill(os.getpid(), sig)  # arrives during the step: the step finishes, then the run stops
        return real(batch)

    first.train_step = step_with_signal
    with pytest.raises(KeyboardInterrupt):
        first.fit()
    first.close()
    last = str(tmp_path / "b" / "run" / "checkpoints" / "last.pth")
    ckpt = load_checkpoint(last)
    assert ckpt["step"] == at + 1 and ckpt["batches_done"] == (at + 1) % 6 and ckpt["interrupted"]

    torch.rand(5)  # the resumed run must not depend on the generators' state in between
    second = tiny_trainer(worker_cfg(tmp_path / "b"), resume=last, **data)
    second_losses = losses_of(second)
    summary = second.fit()
    second.close()
    assert summary["steps"] == 12
    assert first_losses + second_losses == straight_losses
    for k, v in weights(straight).items():
        assert torch.equal(v, weights(second)[k]), k


def test_a_second_signal_stops_at_once_and_keeps_the_last_checkpoint(tmp_path):
    cfg = worker_cfg(tmp_path)
    cfg["data"]["num_workers"] = 0
    tr = tiny_trainer(cfg, n=4, size=16)
    tr.fit(max_epochs=1)
    saved = load_checkpoint(str(tmp_path / "run" / "checkpoints" / "last.pth"))
    real = tr.train_step

    def step_twice_interrupted(batch):
        if tr.step == 5:
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)  # the second one lands inside the step
        return real(batch)

    tr.train_step = step_twice_interrupted
    with pytest.raises(KeyboardInterrupt):
        tr.fit()
    tr.close()
    after = load_checkpoint(str(tmp_path / "run" / "checkpoints" / "last.pth"))
    assert (after["epoch"], after["step"], after["batches_done"]) == (saved["epoch"], saved["step"], 0)
    assert "nothing saved" in (tmp_path / "run" / "train.log").read_text()


def test_a_second_writer_is_refused_and_a_dead_ones_lock_is_taken_over(tmp_path):
    first = tiny_trainer(make_cfg(tmp_path, epochs=1), n=2, size=16)
    with pytest.raises(ConfigError, match=r"in use by process \d+ on .*one run writes a folder at a time"):
        tiny_trainer(make_cfg(tmp_path, epochs=1), n=2, size=16)
    first.close()
    # a holder killed with -9 leaves its line in the lock file but holds no lock
    (tmp_path / "run" / ".lock").write_text("process 999999 on elsewhere (started 2026-01-01 00:00:00)")
    second = tiny_trainer(make_cfg(tmp_path, epochs=1), n=2, size=16)
    second.close()
    assert "took over the run folder's lock from process 999999" in (tmp_path / "run" / "train.log").read_text()


def test_a_folder_holding_a_run_is_never_overwritten(tmp_path):
    tr = tiny_trainer(make_cfg(tmp_path, epochs=1), n=2, size=16)
    tr.fit()
    tr.close()
    last = tmp_path / "run" / "checkpoints" / "last.pth"
    before = last.read_bytes()
    with pytest.raises(ConfigError, match=r"already holds a run .*--resume .*last\.pth.*output_dir"):
        tiny_trainer(make_cfg(tmp_path, epochs=1), n=2, size=16)
    assert last.read_bytes() == before
    # leftovers of interrupted writes are removed by the next run in the folder
    (tmp_path / "run" / "checkpoints" / "last.pth.123.abcd.tmp").write_bytes(b"partial")
    again = tiny_trainer(make_cfg(tmp_path, epochs=2), resume=str(last), n=2, size=16)
    again.close()
    assert not list((tmp_path / "run" / "checkpoints").glob("*.tmp"))


def test_nonfinite_weights_and_validation_are_never_saved(tmp_path):
    cfg = make_cfg(tmp_path, epochs=3, save_per_epoch=0)
    tr = Trainer(cfg, train_set=TinyPairs(n=2, size=16), valid_set=TinyPairs(n=1, size=64, seed=3),
                 progress=False, device=torch.device("cpu"))
    tr.fit(max_epochs=1)
    last = tmp_path / "run" / "checkpoints" / "last.pth"
    before = last.read_bytes()
    with torch.no_grad():
        next(tr.model.parameters()).mul_(1e38).mul_(1e38)  # inf
    with pytest.raises(NonFiniteLossError, match=r"not finite.*last good checkpoint is .*last\.pth.*train\.base_lr"):
        tr.fit()
    assert last.read_bytes() == before
    with pytest.raises(NonFiniteLossError, match="non-finite values"):
        tr.save("last.pth")
    tr.close()
    assert last.read_bytes() == before


def test_a_full_disk_is_one_line_and_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    tr = tiny_trainer(make_cfg(tmp_path, epochs=2, save_per_epoch=0), n=2, size=16)
    tr.fit(max_epochs=1)
    last = tmp_path / "run" / "checkpoints" / "last.pth"
    before = last.read_bytes()
    real_open = open

    def full_disk_open(path, mode="r", *a, **k):
        fh = real_open(path, mode, *a, **k)
        if str(path).endswith(".tmp") and "w" in mode:
            def write(data):
                raise OSError(errno.ENOSPC, "No space left on device")
            fh.write = write
        return fh

    monkeypatch.setattr("builtins.open", full_disk_open)
    with pytest.raises(DiskFullError) as info:
        tr.fit()
    monkeypatch.undo()
    tr.close()
    message = str(info.value)
    assert "\n" not in message and "no space left in" in message and "last.pth" in message
    assert "1 complete epoch(s)" in message  # the checkpoint that is still good
    assert last.read_bytes() == before and not list(last.parent.glob("*.tmp"))


def test_too_little_free_space_is_refused_before_training(tmp_path, monkeypatch):
    import shutil
    from collections import namedtuple
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10 ** 9, 10 ** 9 - 1000, 1000))
    with pytest.raises(DiskFullError, match="no space left in .*checkpoints"):
        tiny_trainer(make_cfg(tmp_path, epochs=1), n=2, size=16)


def test_finetuning_keeps_the_start_as_best_when_training_makes_it_worse(tmp_path):
    """With train.pretrained the starting weights are validated and are best.pth until beaten."""
    valid = TinyPairs(n=1, size=32, seed=3)
    start = tiny_trainer(make_cfg(tmp_path / "a", epochs=1), n=2, size=16)
    start.close()
    pretrained = str(tmp_path / "start.pth")
    torch.save(start.model.state_dict(), pretrained)
    # a learning rate that can only make things worse
    cfg = make_cfg(tmp_path / "b", epochs=1, base_lr=0.5, min_lr=0.5, save_per_epoch=0, pretrained=pretrained)
    tr = Trainer(cfg, train_set=TinyPairs(n=2, size=16), valid_set=valid, progress=False, device=torch.device("cpu"))
    summary = tr.fit()
    tr.close()
    assert summary["initial"]["psnr"] > summary["final"]["psnr"]
    assert summary["best_epoch"] == 0 and summary["best_psnr"] == summary["initial"]["psnr"]
    best = load_checkpoint(str(tmp_path / "b" / "run" / "checkpoints" / "best.pth"))
    assert best["epoch"] == 0 and best["best_epoch"] == 0
    assert "starting model: validation PSNR" in (tmp_path / "b" / "run" / "train.log").read_text()
    assert json.loads((tmp_path / "b" / "run" / "train_summary.json").read_text())["started_from"] == pretrained


def test_weights_that_give_nan_images_are_never_saved_as_good(tmp_path):
    """A learning rate of 1e30: the first step takes the weights to ~1e30 (finite), every image the
    model then makes is NaN and the later steps are skipped. No checkpoint is written, the epoch
    line says how many steps were skipped, and the error names no checkpoint as good."""
    cfg = make_cfg(tmp_path, epochs=3, base_lr=1e30, min_lr=1e30, save_per_epoch=1)
    cfg["data"]["train"]["batch_size"] = 1
    tr = tiny_trainer(cfg, n=3, size=16)
    with pytest.raises(NonFiniteLossError, match=r"outputs are not finite \(its weights reach .*\); last\.pth not "
                                                 r"written; no good checkpoint of this run was written yet"):
        tr.fit()
    tr.close()
    assert all(torch.isfinite(v).all() for v in weights(tr).values())  # finite weights, NaN images
    assert not list((tmp_path / "run" / "checkpoints").glob("*.pth"))
    assert "over 1 steps (2 of 3 skipped as non-finite)" in (tmp_path / "run" / "train.log").read_text()


def test_an_interrupt_does_not_save_weights_that_give_nan_images(tmp_path):
    tr = tiny_trainer(make_cfg(tmp_path, epochs=2, save_per_epoch=0), n=2, size=16)
    tr.fit(max_epochs=1)
    last = tmp_path / "run" / "checkpoints" / "last.pth"
    before = last.read_bytes()
    with torch.no_grad():
        for p in tr.model.parameters():
            p.mul_(1e30)
    assert tr.weights_finite() and not tr.outputs_finite()
    tr._after_hard_stop(KeyboardInterrupt("SIGTERM"))  # during validation: the state is whole, but not good
    tr.close()
    assert last.read_bytes() == before
    assert "outputs are not finite" in (tmp_path / "run" / "train.log").read_text()


def test_an_epoch_whose_steps_were_all_skipped_says_so(tmp_path):
    tr = tiny_trainer(make_cfg(tmp_path, epochs=1, max_nonfinite=100), n=4, size=16, all_nan=True)
    tr.fit()
    tr.close()
    assert "no step taken: all 2 steps skipped as non-finite" in (tmp_path / "run" / "train.log").read_text()


def test_a_repeated_sigterm_is_one_stop(tmp_path):
    """SLURM sends SIGTERM to every process of a job step and torchrun forwards its own copy: a rank
    gets it twice, and must still finish its step and save, not stop at once with nothing saved."""
    cfg = worker_cfg(tmp_path)
    cfg["data"]["num_workers"] = 0
    tr = tiny_trainer(cfg, n=4, size=16)
    real = tr.train_step

    def step_twice_terminated(batch):
        if tr.step == 2:
            os.kill(os.getpid(), signal.SIGTERM)
            os.kill(os.getpid(), signal.SIGTERM)
        return real(batch)

    tr.train_step = step_twice_terminated
    with pytest.raises(KeyboardInterrupt):
        tr.fit()
    tr.close()
    after = load_checkpoint(str(tmp_path / "run" / "checkpoints" / "last.pth"))
    assert after["interrupted"] and after["step"] == 3 and after["batches_done"] == 3
