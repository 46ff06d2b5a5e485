"""The sync-free training step (issue 23 item 4): with fused AdamW (the CUDA fast path, built here on
the CPU), no fp16 scaler, no adaptive prior and one process, a non-finite step is skipped on the
device (the optimiser's ``found_inf``) and the host reads the device only on logging steps, at a stop
and at the epoch end; the run equals the one that reads every step's flag, bit for bit."""
from __future__ import annotations

import pytest
import torch
from helpers import TinyPairs, make_cfg, weights

import cans.train.trainer as trainer_mod
from cans.engine.checkpoint import load_checkpoint
from cans.train.trainer import NonFiniteLossError, Trainer

pytestmark = pytest.mark.cuda_path


@pytest.fixture
def fused(monkeypatch):
    """Trainers built while it is active get fused AdamW, as on CUDA with ``train.fast``."""
    real = trainer_mod.build_optimizer
    monkeypatch.setattr(trainer_mod, "build_optimizer",
                        lambda params, tcfg, fused=False: real(params, tcfg, fused=True))
    torch.set_num_threads(1)


def fused_trainer(folder, sync_free=True, data=None, resume=None, **train):
    cfg = make_cfg(folder, **dict(dict(epochs=2, save_per_epoch=0, deterministic=False, log_every=1000), **train))
    cfg["data"]["train"]["batch_size"] = 1
    tr = Trainer(cfg, train_set=TinyPairs(**(data or dict(n=6, size=16, nan_every=3))), valid_set=False,
                 resume=resume, progress=False, device=torch.device("cpu"))
    assert tr.sync_free and tr.optimizer.param_groups[0]["fused"]
    tr.sync_free = sync_free  # False: the per-step read, as before
    return tr


@pytest.mark.parametrize("sync_free", [True, False])
def test_a_sync_free_step_reads_the_device_only_at_logging_steps(tmp_path, fused, monkeypatch, sync_free):
    """Tensor reads (the optimizer's and data loading's own aside) made by each step and the
    bookkeeping after it, until the next step: none before the epoch's last batch (log_every
    1000), NaN samples included; the per-step read reads in every step."""
    tr = fused_trainer(tmp_path, sync_free, data=dict(n=6, size=16, nan_every=4), epochs=1)
    reads, batch_no, counting = [], [-1], [True]
    real_step, real_opt_step = tr.train_step, tr.optimizer.step

    def step(batch):
        batch_no[0] += 1
        return real_step(batch)

    def opt_step(*a, **k):
        counting[0] = False
        try:
            return real_opt_step(*a, **k)
        finally:
            counting[0] = True

    for name in ("item", "tolist", "__bool__", "__float__", "__int__"):
        real = getattr(torch.Tensor, name)

        def counted(self, *a, _real=real, **k):
            if counting[0] and batch_no[0] >= 0:
                reads.append(batch_no[0])
            return _real(self, *a, **k)
        monkeypatch.setattr(torch.Tensor, name, counted)
    real_item = TinyPairs.__getitem__

    def load(self, i):  # data loading reads its own random crops
        counting[0] = False
        try:
            return real_item(self, i)
        finally:
            counting[0] = True

    monkeypatch.setattr(TinyPairs, "__getitem__", load)
    tr.train_step, tr.optimizer.step = step, opt_step
    summary = tr.fit()
    monkeypatch.undo()
    tr.close()
    assert (summary["steps"], summary["nonfinite_steps"]) == (4, 2)
    before_last = [b for b in reads if b < 5]
    if sync_free:
        assert before_last == [], reads
    else:  # one flag a step (a skipped one also reads its terms for the warning)
        assert sorted(set(before_last)) == [0, 1, 2, 3, 4], reads


def run_both(folder, **train):
    """The same run sync-free and with the per-step read: (weights, summary, epoch means, last.pth) each."""
    out = []
    for sync_free in (True, False):
        tr = fused_trainer(folder / str(sync_free), sync_free, **train)
        means, end = [], tr._end_epoch
        tr._end_epoch = lambda m, t0: (means.append(dict(m)), end(m, t0))[1]
        summary = tr.fit()
        tr.close()
        last = load_checkpoint(str(folder / str(sync_free) / "run" / "checkpoints" / "last.pth"))
        out.append((weights(tr), summary, means, last))
    return out


@pytest.mark.parametrize("log_every", [1000, 20])
def test_sync_free_run_equals_the_per_step_read_bit_for_bit(tmp_path, fused, log_every):
    """NaN samples 0 and 3 of 6, two epochs: the final weights, the step and non-finite counts (in
    the summary and in last.pth) and the logged epoch means are those of the per-step read."""
    (w_free, s_free, m_free, ck_free), (w_read, s_read, m_read, ck_read) = run_both(tmp_path, log_every=log_every)
    assert (s_read["steps"], s_read["nonfinite_steps"]) == (8, 4)
    assert (s_free["steps"], s_free["nonfinite_steps"]) == (8, 4)
    assert (ck_free["step"], ck_free["nonfinite"]) == (ck_read["step"], ck_read["nonfinite"]) == (8, 4)
    for k in w_read:
        assert torch.equal(w_free[k], w_read[k]), k
    assert len(m_free) == len(m_read) == 2
    for a, b in zip(m_free, m_read):
        assert sorted(a) == sorted(b)
        for k in set(a) - {"data_time", "step_time"}:  # timings differ between any two runs
            assert a[k] == b[k], (k, a[k], b[k])


def test_sync_free_stop_saves_exact_counts_and_resumes_bit_for_bit(tmp_path, fused):
    """A stop requested at batch 5 of epoch 1 (NaN samples in it): last.pth holds the exact step,
    non-finite count and epoch sums, and the resumed run ends with the uninterrupted run's weights."""
    straight = fused_trainer(tmp_path / "a")
    straight.fit()
    straight.close()

    first = fused_trainer(tmp_path / "b")
    real_step, calls = first.train_step, [0]

    def step_then_stop(batch):
        calls[0] += 1
        if calls[0] == 5:
            first.stop.requested = "SIGTERM"
        return real_step(batch)

    first.train_step = step_then_stop
    with pytest.raises(KeyboardInterrupt):
        first.fit()
    first.close()
    last = tmp_path / "b" / "run" / "checkpoints" / "last.pth"
    ckpt = load_checkpoint(str(last))
    assert ckpt["interrupted"] and ckpt["batches_done"] == 5
    assert (ckpt["step"], ckpt["nonfinite"], ckpt["epoch_sums"]["count"]) == (3, 2, 3)
    resumed = fused_trainer(tmp_path / "b", resume=str(last))
    summary = resumed.fit()
    resumed.close()
    assert (summary["steps"], summary["nonfinite_steps"]) == (straight.step, straight.nonfinite_total) == (8, 4)
    w_straight, w_resumed = weights(straight), weights(resumed)
    for k in w_straight:
        assert torch.equal(w_straight[k], w_resumed[k]), k


def test_sync_free_max_nonfinite_stops_the_run_and_says_how_many(tmp_path, fused):
    """Every sample NaN, train.max_nonfinite 3: the stop is noticed at the epoch end (no logging step
    before it), with the number skipped; no checkpoint is written."""
    tr = fused_trainer(tmp_path, data=dict(n=6, size=16, all_nan=True), max_nonfinite=3)
    with pytest.raises(NonFiniteLossError, match=r"6 non-finite losses in a row \(train.max_nonfinite 3\), noticed "
                                                 r"at step 0 .*6 of the last 6 step\(s\) skipped, 6 in total"):
        tr.fit()
    tr.close()
    assert tr.step == 0 and tr.nonfinite_total == 6
    assert not (tmp_path / "run" / "checkpoints" / "last.pth").exists()
