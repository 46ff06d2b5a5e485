"""The machine this process runs on, as far as it may use it: CPUs, available memory, and the
job's processes on it (for the checks that keep worker counts within what it can run)."""
from __future__ import annotations

import os
from typing import Optional


def usable_cpus() -> int:
    """The CPUs this process may run on: its affinity mask (a container's or ``taskset``'s share),
    else ``os.cpu_count()``."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def available_memory() -> Optional[int]:
    """Bytes the machine can give new processes without swapping: ``MemAvailable`` of
    /proc/meminfo, lowered to what a cgroup (v2) memory limit leaves; the free pages where there is
    no /proc; None where neither is known."""
    found = None
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    found = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        pass
    if found is None:
        try:
            found = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (AttributeError, ValueError, OSError):
            return None
    try:
        with open("/sys/fs/cgroup/memory.max", encoding="ascii") as fh:
            limit = fh.read().strip()
        with open("/sys/fs/cgroup/memory.current", encoding="ascii") as fh:
            used = int(fh.read().strip())
        if limit != "max":
            found = min(found, max(int(limit) - used, 0))
    except (OSError, ValueError):
        pass
    return found


def local_processes() -> int:
    """Training processes on this machine: ``LOCAL_WORLD_SIZE`` under torchrun (one per GPU), else 1."""
    try:
        return max(int(os.environ.get("LOCAL_WORLD_SIZE", "1")), 1)
    except ValueError:
        return 1


__all__ = ["available_memory", "local_processes", "usable_cpus"]
