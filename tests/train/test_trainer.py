"""Training loop on tiny in-memory data: loss goes down, exact resume, lr schedule, non-finite rule."""
from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch
from helpers import TINY_CANS, IdentityPairs, TinyPairs, make_cfg, tiny_trainer, weights

from cans.config import validate
from cans.engine.checkpoint import load_checkpoint
from cans.train.trainer import NonFiniteLossError, Trainer, cosine_lr


def trained_once(folder, n: int):
    """Train one epoch on ``n`` tiny pairs in ``folder``; return the trainer and its last.pth."""
    tr = tiny_trainer(make_cfg(folder, epochs=1, save_per_epoch=0), n=n, size=16)
    tr.fit()
    tr.close()
    return tr, folder / "run" / "checkpoints" / "last.pth"


def test_a_few_steps_lower_the_loss(tmp_path):
    cfg = make_cfg(tmp_path, epochs=25, base_lr=3e-3, min_lr=3e-3, save_per_epoch=0, log_every=1000)
    data = TinyPairs(n=2, size=16, patch=16)
    tr = Trainer(cfg, train_set=data, valid_set=False, progress=False, device=torch.device("cpu"))
    batch = {k: torch.stack([data[i][k] for i in range(2)]) for k in ("noisy_raw", "clean_raw", "clean_rgb")}

    def loss_now():
        with torch.no_grad():
            terms = tr.criterion(tr.model(batch["noisy_raw"]), batch)
        return sum(terms.values()).item()

    before = loss_now()
    summary = tr.fit()
    after = loss_now()
    tr.close()
    assert summary["steps"] == 25
    assert after < 0.5 * before, (before, after)


def test_resume_is_exact(tmp_path):
    data_kw = dict(n=5, size=24, patch=16)
    straight = tiny_trainer(make_cfg(tmp_path / "a"), **data_kw)
    straight.fit()
    w_straight = weights(straight)
    straight.close()

    first = tiny_trainer(make_cfg(tmp_path / "b"), **data_kw)
    first.fit(max_epochs=1)
    w_half = weights(first)
    first.close()
    last = tmp_path / "b" / "run" / "checkpoints" / "last.pth"
    assert last.is_file()
    # touch every RNG in between: the resumed run must not depend on it
    torch.rand(100), np.random.rand(10)
    second = tiny_trainer(make_cfg(tmp_path / "b"), resume=str(last), **data_kw)
    assert second.epoch == 1 and second.step == first.step
    second.fit()
    w_resumed = weights(second)
    second.close()
    assert any(not torch.equal(w_half[k], w_straight[k]) for k in w_straight)
    for k in w_straight:
        assert torch.equal(w_straight[k], w_resumed[k]), k
    ckpt = load_checkpoint(str(last))
    assert ckpt["epoch"] == 2 and {"python", "numpy", "torch"} <= set(ckpt["rng"])
    assert (tmp_path / "b" / "run" / "checkpoints" / "epoch_0001.pth").is_file()


# the entries of a training checkpoint as the trainer wrote them before its resumable state moved to
# cans/train/state.py: checkpoints of earlier runs hold exactly these, so the format must stay
PRE_SPLIT_CHECKPOINT_KEYS = {"model", "optimizer", "param_names", "scheduler", "scaler", "epoch", "step",
                             "best_metric", "best_epoch", "bad_validations", "rng", "rng_ranks", "world_size",
                             "config", "prior", "nonfinite", "history"}
# added with exact mid-epoch resumes: where a stopped epoch stands, and an epoch end still to do
MID_EPOCH_KEYS = {"batches_done", "epoch_sums", "end_pending"}


def test_checkpoint_entries_are_those_written_before_the_trainer_split(tmp_path):
    """A checkpoint holds the entries of earlier versions plus the mid-epoch ones, no more, and one
    with only the earlier entries resumes (the resume needs no entry an older file lacks)."""
    first = tiny_trainer(make_cfg(tmp_path), n=3, size=24, patch=16)
    first.fit(max_epochs=1)
    first.close()
    last = tmp_path / "run" / "checkpoints" / "last.pth"
    ckpt = load_checkpoint(str(last))
    assert set(ckpt) == PRE_SPLIT_CHECKPOINT_KEYS | MID_EPOCH_KEYS
    old = tmp_path / "old.pth"
    torch.save({k: ckpt[k] for k in PRE_SPLIT_CHECKPOINT_KEYS}, old)
    resumed = tiny_trainer(make_cfg(tmp_path / "b"), resume=str(old), n=3, size=24, patch=16)
    assert (resumed.epoch, resumed.step) == (1, first.step)
    resumed.close()


def test_auto_resume_continues_from_last(tmp_path):
    cfg = make_cfg(tmp_path, epochs=3, auto_resume=True)
    tr = tiny_trainer(cfg, n=2)
    tr.fit(max_epochs=2)
    steps = tr.step
    tr.close()
    tr2 = tiny_trainer(cfg, n=2)
    assert tr2.epoch == 2 and tr2.step == steps
    s = tr2.fit()
    tr2.close()
    assert s["epochs_done"] == 3


@pytest.mark.parametrize("warmup", [0, 2])
def test_lr_follows_the_cosine_formula(tmp_path, warmup):
    base, low, epochs = 2e-4, 2e-5, 6
    cfg = make_cfg(tmp_path, epochs=epochs, base_lr=base, min_lr=low, warmup_epochs=warmup,
                   save_per_epoch=0, deterministic=False)
    tr = tiny_trainer(cfg, n=1, size=16)
    seen = []
    orig = tr.train_epoch

    def spy(epoch):
        seen.append((epoch, tr.optimizer.param_groups[0]["lr"]))
        return orig(epoch)

    tr.train_epoch = spy
    tr.fit()
    tr.close()
    assert [e for e, _ in seen] == list(range(epochs))
    for e, lr in seen:
        if e < warmup:
            expected = base * (e + 1) / warmup
        else:
            t, span = e - warmup, epochs - warmup
            expected = low + 0.5 * (base - low) * (1 + math.cos(math.pi * t / span))
        assert lr == pytest.approx(expected, rel=1e-12, abs=1e-15), (e, lr, expected)
    assert seen[0][1] == pytest.approx(base if warmup == 0 else base / warmup)
    assert cosine_lr(epochs, epochs, base, low) == pytest.approx(low)


def test_nonfinite_losses_are_skipped_and_counted(tmp_path):
    cfg = make_cfg(tmp_path, epochs=2, save_per_epoch=0, deterministic=False)
    cfg["data"]["train"]["batch_size"] = 1
    data = TinyPairs(n=6, size=16, nan_every=3)  # samples 0 and 3 are NaN
    tr = Trainer(cfg, train_set=data, valid_set=False, progress=False, device=torch.device("cpu"))
    s = tr.fit()
    tr.close()
    assert s["nonfinite_steps"] == 4 and s["steps"] == 8
    assert all(torch.isfinite(v).all() for v in tr.model.state_dict().values())


def test_nonfinite_losses_in_a_row_stop_the_run(tmp_path):
    cfg = make_cfg(tmp_path, epochs=3, save_per_epoch=0, deterministic=False, max_nonfinite=4)
    cfg["data"]["train"]["batch_size"] = 1
    good = tiny_trainer(cfg, n=3, size=16)
    good.fit(max_epochs=1)
    good.close()
    last = tmp_path / "run" / "checkpoints" / "last.pth"
    before = last.read_bytes()
    bad = tiny_trainer(cfg, resume=str(last), n=6, size=16, all_nan=True)
    with pytest.raises(NonFiniteLossError, match=r"4 non-finite losses in a row, the last at step 3"):
        bad.fit()
    bad.close()
    assert last.read_bytes() == before
    assert load_checkpoint(str(last))["epoch"] == 1


def test_bf16_autocast_and_channels_last_train_on_cpu(tmp_path):
    cfg = make_cfg(tmp_path, epochs=1, amp="bf16", channels_last=True, save_per_epoch=0, deterministic=False)
    tr = tiny_trainer(cfg, n=2, size=16)
    w0 = weights(tr)
    s = tr.fit()
    tr.close()
    assert s["steps"] == 1
    w1 = weights(tr)
    assert any(not torch.equal(w0[k], w1[k]) for k in w0)
    assert all(torch.isfinite(v).all() for v in w1.values())


def test_fp16_on_cpu_is_refused_clearly(tmp_path):
    cfg = make_cfg(tmp_path, amp="fp16")
    with pytest.raises(ValueError, match="train.amp"):
        tiny_trainer(cfg, n=1, size=16)


def test_gradient_agreement_prior_trains_and_logs_gamma(tmp_path):
    cfg = make_cfg(tmp_path, epochs=2, save_per_epoch=0, deterministic=False)
    cfg["loss"]["prior"] = {"weighting": "gradient_agreement", "every": 1}
    tr = tiny_trainer(cfg, n=2, size=16)
    tr.fit()
    tr.close()
    assert 0.0 <= tr.prior.gamma <= 1.0 and tr.prior.gamma != 0.5
    ckpt = load_checkpoint(str(tmp_path / "run" / "checkpoints" / "last.pth"))
    assert ckpt["prior"]["gamma"] == tr.prior.gamma
    log = (tmp_path / "run" / "train.log").read_text()
    assert "gamma" in log


def test_pretrained_loads_weights_only(tmp_path):
    tr, path = trained_once(tmp_path / "a", n=2)
    cfg2 = make_cfg(tmp_path / "b", epochs=1, pretrained=str(path), manual_seed=99)
    tr2 = tiny_trainer(cfg2, n=2, size=16)
    assert tr2.epoch == 0 and tr2.step == 0
    for k, v in weights(tr).items():
        assert torch.equal(v, tr2.model.state_dict()[k])
    tr2.close()


def test_resume_with_more_epochs_follows_the_new_schedule(tmp_path):
    # train 2 epochs of a 2-epoch cosine, then extend the run to 4: epoch 3 must train at the
    # 4-epoch cosine's value, not at the min_lr the optimiser state was left with
    base, low = 2e-3, 2e-4
    cfg = make_cfg(tmp_path, epochs=2, base_lr=base, min_lr=low, save_per_epoch=0, deterministic=False)
    tr = tiny_trainer(cfg, n=1, size=16)
    tr.fit()
    tr.close()
    assert tr.optimizer.param_groups[0]["lr"] == pytest.approx(low)
    cfg4 = make_cfg(tmp_path, epochs=4, base_lr=base, min_lr=low, save_per_epoch=0, deterministic=False,
                    auto_resume=True, optimizer={"weight_decay": 0.05})
    tr4 = tiny_trainer(cfg4, n=1, size=16)
    assert tr4.step == tr.step and tr4.optimizer.param_groups[0]["weight_decay"] == 0.05
    assert tr4.optimizer.state_dict()["state"], "the Adam moments come from the checkpoint"
    seen = []
    orig = tr4.train_epoch
    tr4.train_epoch = lambda e: (seen.append((e, tr4.optimizer.param_groups[0]["lr"])), orig(e))[1]
    tr4.fit()
    tr4.close()
    assert [e for e, _ in seen] == [2, 3]
    for e, lr in seen:
        assert lr == pytest.approx(low + 0.5 * (base - low) * (1 + math.cos(math.pi * e / 4)), rel=1e-12), (e, lr)


def test_bad_checkpoints_give_a_checkpoint_error_with_the_fix(tmp_path):
    from cans.engine.checkpoint import CheckpointError
    _, last = trained_once(tmp_path / "a", n=1)
    loose = tmp_path / "copy.pth"  # a copy kept outside a run folder may start a new folder
    loose.write_bytes(last.read_bytes())
    last = loose
    wide = make_cfg(tmp_path / "b", epochs=1)
    wide["model"]["middle_blk_num"] = 2  # one more block: unexpected keys (a KeyError inside)
    for kw in ({"resume": str(last)}, {}):
        c = dict(wide, train=dict(wide["train"], pretrained=None if kw else str(last)))
        with pytest.raises(CheckpointError) as info:
            tiny_trainer(c, n=1, size=16, **kw)
        text = str(info.value)
        assert "does not match" in text and "\\n" not in text and "--set model.middle_blk_num=1" in text, text
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(last.read_bytes()[:2000])
    with pytest.raises(CheckpointError, match="corrupt.pth"):
        tiny_trainer(make_cfg(tmp_path / "c"), resume=str(corrupt), n=1, size=16)


def test_output_dir_that_is_a_file_is_refused(tmp_path):
    from cans.config import ConfigError
    cfg = make_cfg(tmp_path)
    open(cfg["output_dir"], "w").close()
    with pytest.raises(ConfigError, match="output_dir"):
        tiny_trainer(cfg, n=1, size=16)


def test_ctrl_c_during_validation_resumes_at_that_validation(tmp_path):
    """An interrupt during an epoch's validation saves the trained epoch with its end still to do:
    the resume validates it (and writes best.pth) without training it again."""
    cfg = make_cfg(tmp_path, epochs=1, save_per_epoch=0, deterministic=False)
    tr = Trainer(cfg, train_set=TinyPairs(n=2, size=16), valid_set=TinyPairs(n=1, size=64, seed=3),
                 progress=False, device=torch.device("cpu"))

    def interrupted(epoch):
        raise KeyboardInterrupt

    tr.validate = interrupted
    with pytest.raises(KeyboardInterrupt):
        tr.fit()
    tr.close()
    last = tmp_path / "run" / "checkpoints" / "last.pth"
    ckpt = load_checkpoint(str(last))
    assert ckpt["epoch"] == 1 and ckpt["end_pending"] and ckpt["interrupted"] and ckpt["best_epoch"] is None
    assert not (tmp_path / "run" / "checkpoints" / "best.pth").exists()
    again = Trainer(cfg, train_set=TinyPairs(n=2, size=16), valid_set=TinyPairs(n=1, size=64, seed=3),
                    resume=str(last), progress=False, device=torch.device("cpu"))
    s = again.fit()
    again.close()
    assert s["epochs_done"] == 1 and s["steps"] == ckpt["step"] and s["best_epoch"] == 1 and s["final"]["epoch"] == 1
    assert (tmp_path / "run" / "checkpoints" / "best.pth").is_file()
    assert not load_checkpoint(str(last))["end_pending"]


def test_sigterm_stops_after_the_step_and_cannot_break_that_save(tmp_path, monkeypatch):
    import signal

    from cans.engine import checkpoint as checkpoint_mod

    cfg = make_cfg(tmp_path, epochs=1, save_per_epoch=0, deterministic=False)
    cfg["data"]["train"]["batch_size"] = 1
    tr = tiny_trainer(cfg, n=4, size=16)
    real_step, real_write = tr.train_step, checkpoint_mod.atomic_write_bytes

    def step_then_sigterm(batch):
        if tr.step == 2:
            os.kill(os.getpid(), signal.SIGTERM)  # torchrun stopping the workers / a pre-emption
        return real_step(batch)

    def save_under_fire(data, path, what=""):
        os.kill(os.getpid(), signal.SIGTERM)  # torchrun's SIGTERM arriving while rank 0 saves
        real_write(data, path, what)

    tr.train_step = step_then_sigterm
    monkeypatch.setattr(checkpoint_mod, "atomic_write_bytes", save_under_fire)
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt):
        tr.fit()
    tr.close()
    assert signal.getsignal(signal.SIGTERM) == before  # fit's own handlers are gone again
    last = load_checkpoint(str(tmp_path / "run" / "checkpoints" / "last.pth"))
    # the step under way when the signal came was finished, then the state saved mid-epoch
    assert last["interrupted"] and last["step"] == 3 and last["epoch"] == 0 and last["batches_done"] == 3


def test_resume_refuses_an_optimizer_state_of_another_parameter_order(tmp_path):
    """AdamW's moments are stored by parameter position: a checkpoint saved with another creation
    order (e.g. by an earlier version) must not hand them to the wrong tensors."""
    from cans.engine.checkpoint import CheckpointError
    _, last = trained_once(tmp_path, 2)
    ckpt = torch.load(last, map_location="cpu", weights_only=False)
    assert ckpt["param_names"][0] and len(ckpt["param_names"]) == len(ckpt["optimizer"]["state"])
    ckpt["param_names"] = list(reversed(ckpt["param_names"]))
    torch.save(ckpt, last)
    with pytest.raises(CheckpointError, match="another parameter order.*train.pretrained="):
        tiny_trainer(make_cfg(tmp_path, epochs=2, save_per_epoch=0), resume=str(last), n=2, size=16)
    del ckpt["param_names"]   # written before the names were stored
    torch.save(ckpt, last)
    with pytest.raises(CheckpointError, match="another parameter order"):
        tiny_trainer(make_cfg(tmp_path, epochs=2, save_per_epoch=0), resume=str(last), n=2, size=16)


@pytest.mark.cuda_path
def test_a_training_step_reads_the_device_once(tmp_path, monkeypatch):
    """Host synchronisations idle a GPU: a step reads one flag (finite loss and gradient), and the
    logged values are read only on the steps that log them. Counted: tensor reads inside
    ``train_step`` apart from the optimizer's own (its CPU ``step`` counters) and data loading."""
    cfg = make_cfg(tmp_path, epochs=1, save_per_epoch=0, log_every=1000, deterministic=False)
    cfg["data"]["train"]["batch_size"] = 1
    tr = tiny_trainer(cfg, n=6, size=16)
    reads, inside = [], [False]
    real_step, real_opt_step = tr.train_step, tr.optimizer.step

    def step(batch):
        inside[0] = True
        try:
            return real_step(batch)
        finally:
            inside[0] = False

    def opt_step(*a, **k):
        inside[0] = False
        try:
            return real_opt_step(*a, **k)
        finally:
            inside[0] = True

    for name in ("item", "tolist", "__bool__", "__float__"):
        real = getattr(torch.Tensor, name)

        def counted(self, *a, _real=real, _name=name, **k):
            if inside[0]:
                reads.append(_name)
            return _real(self, *a, **k)
        monkeypatch.setattr(torch.Tensor, name, counted)
    tr.train_step, tr.optimizer.step = step, opt_step
    tr.fit()
    monkeypatch.undo()
    tr.close()
    assert tr.step == 6
    assert len(reads) == 6, reads


# --------------------------------------------- what the trainer prints: the validation bar, resume messages

def test_validation_bar_is_labelled_valid(tmp_path, capsys):
    from cans.train.trainer import Trainer
    cfg = validate({"name": "tiny", "output_dir": str(tmp_path / "run"), "model": dict(TINY_CANS),
                    "data": {"num_workers": 0}, "train": {"epochs": 1, "save_per_epoch": 0}})
    tr = Trainer(cfg, train_set=IdentityPairs(), valid_set=IdentityPairs(), progress=True, device=torch.device("cpu"))
    tr.validate(0)
    tr.close()
    err = capsys.readouterr().err
    assert "valid:" in err and "test:" not in err, err


def test_resume_messages_give_the_real_values(tmp_path, capsys):
    from cans.train.trainer import Trainer
    base = {"name": "tiny", "output_dir": str(tmp_path / "run"), "model": dict(TINY_CANS), "data": {"num_workers": 0}}
    cfg = validate(dict(base, train={"epochs": 4, "base_lr": 1e-3, "min_lr": 1e-5, "save_per_epoch": 0}))
    tr = Trainer(cfg, train_set=IdentityPairs(), valid_set=False, progress=False, device=torch.device("cpu"))
    tr.fit(max_epochs=3)
    tr.close()
    capsys.readouterr()
    longer = validate(dict(base, train={"epochs": 8, "base_lr": 1e-3, "min_lr": 1e-5, "save_per_epoch": 0}))
    again = Trainer(longer, train_set=IdentityPairs(), valid_set=False, progress=False, device=torch.device("cpu"),
                    resume=str(tmp_path / "run" / "checkpoints" / "last.pth"))
    again.close()
    out = capsys.readouterr().out
    assert "-inf" not in out and "no validation yet" in out, out
    lr = lambda e, n: 1e-5 + 0.5 * (1e-3 - 1e-5) * (1 + math.cos(math.pi * e / n))
    # epoch 4 of the 4-epoch run trains at lr(3, 4); the longer schedule gives lr(3, 8)
    assert f"learning rate of epoch 4: {lr(3, 8):.4g} from this config's schedule " \
           f"(the checkpoint's schedule gave {lr(3, 4):.4g})" in out, out
