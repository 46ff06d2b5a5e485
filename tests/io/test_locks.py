"""cans.io.locks: one exclusive lock across processes, kept from this process's own second try, and
gone with its holder even when a child forked from it (a DataLoader worker) lives on."""
import os
import signal
import subprocess
import sys
import time

import pytest
from helpers import REPO

from cans.io.locks import FileLock, held_by_someone

needs_fcntl = pytest.mark.skipif(not FileLock.supported, reason="no fcntl on this system")

HOLDER = """
import os, sys, time
sys.path.insert(0, sys.argv[1])
from cans.io.locks import FileLock
lock = FileLock(sys.argv[2])
assert lock.acquire()
child = os.fork()
if child == 0:          # a forked worker: it inherits the open file, not the lock
    time.sleep(60)
    os._exit(0)
print(child, flush=True)
time.sleep(60)
"""


@needs_fcntl
def test_a_lock_excludes_other_processes_and_dies_with_its_holder_not_its_forked_child(tmp_path):
    path = str(tmp_path / ".lock")
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(REPO), path], stdout=subprocess.PIPE, text=True)
    child = int(holder.stdout.readline())
    try:
        assert held_by_someone(path)
        assert not FileLock(path).acquire()
        holder.kill()             # kill -9: no clean-up runs
        holder.wait()
        os.kill(child, 0)         # the forked child still lives ...
        deadline = time.time() + 5
        while held_by_someone(path) and time.time() < deadline:
            time.sleep(0.05)
        assert not held_by_someone(path)   # ... and holds nothing
        lock = FileLock(path)
        assert lock.acquire()
        lock.release()
    finally:
        try:
            os.kill(child, signal.SIGKILL)
        except ProcessLookupError:
            pass


@needs_fcntl
def test_this_process_cannot_lock_twice_and_a_probe_does_not_drop_its_lock(tmp_path):
    """POSIX record locks do not exclude their own process, and closing any descriptor of the file
    drops them: the table of held locks answers instead of opening the file again."""
    path = str(tmp_path / ".lock")
    lock = FileLock(path)
    assert lock.acquire()
    assert not FileLock(path).acquire()
    assert held_by_someone(path)
    code = f"import sys; sys.path.insert(0, {str(REPO)!r}); from cans.io.locks import FileLock; " \
           f"print(FileLock({path!r}).acquire())"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"
    lock.release()
    assert not held_by_someone(path) and FileLock(path).acquire()


@needs_fcntl
def test_a_new_lock_file_is_locked_before_it_has_its_name(tmp_path):
    path = str(tmp_path / "stage.lock")
    lock = FileLock(path)
    lock.acquire_new()
    assert os.path.isfile(path) and not os.path.exists(path + ".new")
    assert held_by_someone(path)
    lock.release()
    assert not held_by_someone(path)



def test_without_fcntl_a_new_lock_file_is_still_made(tmp_path, monkeypatch):
    """Where nothing can be locked (no fcntl), a stage still gets its lock file."""
    monkeypatch.setattr(FileLock, "supported", False)
    path = str(tmp_path / "stage.lock")
    lock = FileLock(path)
    lock.acquire_new()
    assert os.path.isfile(path) and not os.path.exists(path + ".new") and not lock.held
