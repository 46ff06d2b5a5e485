"""cans.train.rundir: one writer per run folder, across processes."""
import pytest
from helpers import REPO

from cans.config import ConfigError


def test_a_run_in_another_process_holds_the_folder(tmp_path):
    """Two concurrent runs: the second process is refused while the first lives, and takes the
    folder over once the first is gone (however it ended)."""
    import subprocess
    import sys

    from cans.train.rundir import RunLock
    code = ("import sys, time; sys.path.insert(0, sys.argv[1]); from cans.train.rundir import RunLock; "
            "lock = RunLock(sys.argv[2]).acquire(); print('locked', flush=True); time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", code, str(REPO), str(tmp_path)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(ConfigError, match=rf"in use by process {holder.pid} "):
            RunLock(str(tmp_path)).acquire()
    finally:
        holder.kill()
        holder.wait()
    lock = RunLock(str(tmp_path)).acquire()
    assert lock.notice and f"process {holder.pid}" in lock.notice
    lock.release()
