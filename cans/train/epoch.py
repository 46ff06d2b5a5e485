"""One pass over the training data (torchvision's ``train_one_epoch``): the batches, the timing and
the log lines, over a ``Trainer``'s parts. What a step does after its backward is the trainer's
step policy (``cans.train.steps``); this loop reads the device only when a log line is due."""
from __future__ import annotations

import time
from typing import Dict, Optional

import torch
from tqdm import tqdm

from ..data import start_workers


def train_one_epoch(trainer, epoch: int) -> Optional[Dict[str, float]]:
    """Train epoch ``epoch`` (0-based) from batch ``trainer.batches_done`` on; returns the mean of
    the logged values (with ``lr``, ``steps`` taken and ``batches`` seen), or None when a stop was
    requested (``trainer.batches_done`` and ``trainer.epoch_sums`` then say where the epoch stands)."""
    tr, steps = trainer, trainer.steps
    tr.train_model.train()
    tr.train_loading.set_epoch(epoch, tr.batches_done)
    if tr.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(tr.device)  # gpu_mem_gb: this epoch's peak
    lr = tr.optimizer.param_groups[0]["lr"]
    epochs = int(tr.tcfg["epochs"])
    log_every = max(1, int(tr.tcfg.get("log_every") or 50))
    tb_every = max(1, log_every // 10)
    sums: Dict[str, float] = dict(tr.epoch_sums.get("sums") or {})
    tr.epoch_sums = {"sums": sums, "count": int(tr.epoch_sums.get("count") or 0)}
    bar = tqdm(start_workers(tr.train_loader), desc=f"epoch {epoch + 1}/{epochs}", leave=False,
               dynamic_ncols=True, initial=tr.batches_done, total=tr.batches_done + len(tr.train_loader),
               disable=not (tr.progress and tr.is_main))
    t_data = time.perf_counter()
    tr.stop_agreed = False
    for batch in bar:
        t_start = time.perf_counter()
        values = tr.train_step(batch)
        t_end = time.perf_counter()
        tr.batches_done += 1
        if values is not None:
            values["data_time"] = t_start - t_data
            values["step_time"] = t_end - t_start
            values["lr"] = lr
            if tr.device.type == "cuda":
                values["gpu_mem_gb"] = torch.cuda.max_memory_allocated(tr.device) / 2 ** 30
            steps.add(sums, values)  # tensors stay on the device: no sync here
            due = steps.due()
            if due % tb_every == 0 or due % log_every == 0:  # read the values now
                values = steps.read(values)
                if values is not None:  # None: this unread step was skipped
                    bar.set_postfix(loss=f"{values['total']:.4f}", lr=f"{lr:.2e}")
                    tr.logger.scalars(values, tr.step, prefix="train")
                    if due % log_every == 0:
                        tr.logger.info(f"epoch {epoch + 1} step {tr.step} " +
                                       " ".join(f"{k} {v:.4g}" for k, v in values.items()))
        if tr.stop_agreed:
            bar.close()
            steps.settle()
            return None
        t_data = time.perf_counter()
    bar.close()
    steps.settle()
    count = tr.epoch_sums["count"]
    means = {k: float(v) / max(count, 1) for k, v in sums.items()}
    means["lr"] = lr
    means["steps"], means["batches"] = count, tr.batches_done  # steps taken of the epoch's batches
    tr.batches_done, tr.epoch_sums = 0, {}
    return means


__all__ = ["train_one_epoch"]
