"""cans.data.start_workers: DataLoader workers started by it outlive a stop sent to the whole
process group (Ctrl-C, ``timeout``, SLURM), even one that lands while they are still starting."""
import subprocess
import sys

import pytest
from helpers import REPO

SCRIPT = '''
import os, signal, subprocess, sys, time
sys.path.insert(0, sys.argv[3])
from torch.utils.data import DataLoader, Dataset
from cans.data import _worker_init, start_workers

class Slow(Dataset):
    def __len__(self):
        return 4
    def __getitem__(self, i):
        time.sleep(0.2)
        return i

if __name__ == "__main__":
    got = []
    signal.signal(signal.SIGTERM, lambda *a: got.append("TERM"))
    loader = DataLoader(Slow(), num_workers=2, worker_init_fn=_worker_init, multiprocessing_context=sys.argv[1])
    batches = start_workers(loader) if sys.argv[2] == "start_workers" else iter(loader)
    # from another process, as timeout, SLURM or kill send it: the workers are still starting
    subprocess.run([sys.executable, "-c", "import os, signal, sys; os.killpg(int(sys.argv[1]), signal.SIGTERM)",
                    str(os.getpgid(0))])
    try:
        print([int(b) for b in batches], got, flush=True)
    except RuntimeError as exc:
        print("failed:", str(exc).splitlines()[0], got, flush=True)
    os._exit(0)
'''


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_workers_started_by_start_workers_survive_a_stop_sent_to_the_group(tmp_path, context):
    script = tmp_path / "stop_group.py"
    script.write_text(SCRIPT)
    proc = subprocess.run([sys.executable, str(script), context, "start_workers", str(REPO)], capture_output=True,
                          text=True, timeout=120, start_new_session=True)
    # every batch arrives, and the stop reaches this process's handler (to be acted on by the caller)
    assert proc.stdout.strip() == "[0, 1, 2, 3] ['TERM']", proc.stdout + proc.stderr[-2000:]


def test_a_worker_still_ends_when_its_parent_terminates_it():
    """The parent's own SIGTERM (a DataLoader's or multiprocessing's shutdown at exit) still ends a
    worker: only a stop from elsewhere is left to the parent."""
    import os
    import signal

    from torch.utils.data import DataLoader

    from cans.data import _worker_init, start_workers

    batches = start_workers(DataLoader(list(range(8)), num_workers=1, persistent_workers=True,
                                       worker_init_fn=_worker_init))
    assert [int(b) for b in batches] == list(range(8))
    worker = batches._workers[0]
    os.kill(worker.pid, signal.SIGTERM)  # sent by this process: the parent
    worker.join(timeout=20)
    assert not worker.is_alive()
