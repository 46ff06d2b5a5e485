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


def test_a_refused_second_run_lock_in_this_process_keeps_the_first(tmp_path):
    """RunLock's refusal reads the holder's line; that read must not drop the lock it reports."""
    import os
    import subprocess
    import sys

    from cans.train.rundir import RunLock

    first = RunLock(str(tmp_path)).acquire()
    with pytest.raises(ConfigError, match=f"in use by process {os.getpid()} "):
        RunLock(str(tmp_path)).acquire()
    code = f"import sys; sys.path.insert(0, {str(REPO)!r}); from cans.io.locks import FileLock; " \
           f"print(FileLock({str(tmp_path / '.lock')!r}).acquire())"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"
    first.release()


# ------------------------------------------------------------------ where a resume writes

def _run_folder(root, name, last=True):
    """A folder that holds a run: checkpoints/last.pth (a stand-in file) and train_summary.json."""
    folder = root / name
    (folder / "checkpoints").mkdir(parents=True)
    if last:
        (folder / "checkpoints" / "last.pth").write_bytes(b"checkpoint")
    (folder / "train_summary.json").write_text("{}")
    return folder


def test_a_resume_writes_the_folder_its_checkpoint_belongs_to(tmp_path):
    from cans.train.rundir import checkpoint_run_folder, resume_folder
    finished, stopped = _run_folder(tmp_path, "finished"), _run_folder(tmp_path, "stopped")
    ckpt = str(stopped / "checkpoints" / "last.pth")
    assert checkpoint_run_folder(ckpt) == str(stopped)
    # the config's default folder holds another (finished) run: the resume goes to the checkpoint's own folder
    assert resume_folder(ckpt, str(finished), default_dir=str(finished)) == str(stopped)
    assert resume_folder(ckpt, str(stopped)) == str(stopped)
    # a config that names another folder is refused, whether that folder holds a run or not
    for other in (finished, tmp_path / "new"):
        with pytest.raises(ConfigError, match=rf"belongs to the run folder {stopped}, but output_dir is {other}.*"
                                              rf"--set output_dir={stopped}"):
            resume_folder(ckpt, str(other), default_dir=str(tmp_path / "default"))


def test_a_checkpoint_kept_elsewhere_never_writes_into_a_run_folder(tmp_path):
    from cans.train.rundir import resume_folder, resume_point
    finished = _run_folder(tmp_path, "finished")
    loose = tmp_path / "downloaded.pth"
    loose.write_bytes(b"checkpoint")
    with pytest.raises(ConfigError, match=r"not one of the checkpoints of output_dir .*finished.*another run"):
        resume_folder(str(loose), str(finished), default_dir=str(finished))
    with pytest.raises(ConfigError, match="another run"):  # the Trainer's own check says the same
        resume_point(str(finished), str(loose), auto_resume=False)
    assert resume_folder(str(loose), str(tmp_path / "new")) == str(tmp_path / "new")
