"""DistributedDataParallel on the CPU: 2 gloo processes under torchrun, a few steps."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import torch
from helpers import REPO, TESTS

SCRIPT = textwrap.dedent("""
    import json, os, sys
    sys.path.insert(0, sys.argv[2])
    import torch
    from pathlib import Path
    from helpers import TinyPairs, make_cfg
    from cans.train.trainer import Trainer
    from cans.engine import distributed as du

    out = Path(sys.argv[1])
    cfg = make_cfg(out, epochs=2, save_per_epoch=1, deterministic=False, log_every=1)
    cfg["data"]["train"]["batch_size"] = 1
    cfg["loss"]["prior"] = {"weighting": "gradient_agreement", "every": 1}
    tr = Trainer(cfg, train_set=TinyPairs(n=4, size=16), valid_set=TinyPairs(n=3, size=16, seed=5),
                 progress=False, device=torch.device("cpu"))
    assert du.get_world_size() == 2, du.get_world_size()
    s = tr.fit()
    rank = du.get_rank()
    torch.save({"weights": tr.model.state_dict(), "gamma": tr.prior.gamma, "summary": s,
                "valid_images": len(tr.valid_loader.sampler)}, out / f"rank{rank}.pt")
    tr.close()
    du.cleanup_distributed()
""")


def torchrun_two(tmp_path, source: str) -> subprocess.CompletedProcess:
    """Run the script ``source`` as 2 gloo processes under torchrun (arguments: the run folder, tests/)."""
    script = tmp_path / "ddp_script.py"
    script.write_text(source)
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(script), str(tmp_path), str(TESTS)]
    return subprocess.run(cmd, env=env, cwd=str(tmp_path), capture_output=True, text=True, timeout=110)


def test_two_gloo_processes_train_in_step(tmp_path):
    proc = torchrun_two(tmp_path, SCRIPT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1))
    # same weights and the same gamma on both ranks
    for k, v in r0["weights"].items():
        assert torch.equal(v, r1["weights"][k]), k
    assert r0["gamma"] == r1["gamma"] and 0.0 <= r0["gamma"] <= 1.0
    # each rank saw half of the 4 training samples: 2 steps per epoch, 2 epochs
    assert r0["summary"]["steps"] == r1["summary"]["steps"] == 4
    # validation: 3 images split 2 + 1, averaged over all of them, the same on both ranks
    assert (r0["valid_images"], r1["valid_images"]) == (2, 1)
    assert r0["summary"]["final"]["psnr"] == r1["summary"]["final"]["psnr"]
    # rank 0 alone writes the run folder
    run = tmp_path / "run"
    ck = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert ck == ["best.pth", "epoch_0001.pth", "epoch_0002.pth", "last.pth"], ck
    assert len(list((run / "tensorboard").iterdir())) == 1
    log = (run / "train.log").read_text()
    assert log.count("epoch 2/2") == 1


HANG_SCRIPT = textwrap.dedent("""
    import os, sys, time
    sys.path.insert(0, sys.argv[2])
    import torch
    from pathlib import Path
    from helpers import TinyPairs, make_cfg
    from cans.train.main import record_failure
    from cans.train.trainer import Trainer
    from cans.engine import distributed as du

    out = Path(sys.argv[1])
    cfg = make_cfg(out, epochs=2, save_per_epoch=0, deterministic=False, log_every=1, dist_timeout=4)
    cfg["data"]["train"]["batch_size"] = 1
    tr = Trainer(cfg, train_set=TinyPairs(n=8, size=16), valid_set=False, progress=False,
                 device=torch.device("cpu"))
    real = tr.train_step
    def step(batch):
        if du.get_rank() == 1 and tr.step == 2:
            time.sleep(6)  # a rank that stops responding (hung, stopped, swapping) for longer than dist_timeout
        return real(batch)
    tr.train_step = step
    try:
        tr.fit()
    except BaseException as exc:
        record_failure(cfg, exc)
        raise
""")


def test_a_silent_rank_stops_the_others_within_dist_timeout_and_the_log_says_why(tmp_path):
    import time
    t0 = time.time()
    proc = torchrun_two(tmp_path, HANG_SCRIPT)
    assert proc.returncode != 0 and time.time() - t0 < 100
    log = (tmp_path / "run" / "train.log").read_text()
    assert "waited more than train.dist_timeout=4 s for the other processes" in log, log[-2000:]
