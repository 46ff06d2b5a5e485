"""The machine this process runs on, as far as it may use it: CPUs, available memory, and the
job's processes on it (for the checks that keep worker counts within what it can run)."""
from __future__ import annotations

import ctypes
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


def _status_bytes(key: str) -> Optional[int]:
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def resident_memory() -> Optional[int]:
    """Bytes of memory this process holds now (``VmRSS``); None where /proc is not there."""
    return _status_bytes("VmRSS")


def reset_peak_memory() -> bool:
    """Start a new peak of this process's resident memory (Linux: ``/proc/self/clear_refs``);
    False where that cannot be done (then :func:`peak_memory` keeps the process's old peak)."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def peak_memory() -> Optional[int]:
    """The most memory this process held (``VmHWM``) since it started or since :func:`reset_peak_memory`."""
    return _status_bytes("VmHWM")


def trim_memory() -> None:
    """Hand the C library's free memory back to the system (glibc's ``malloc_trim``; nothing
    elsewhere), so that :func:`resident_memory` counts what is held, not what was freed."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def local_processes() -> int:
    """Training processes on this machine: ``LOCAL_WORLD_SIZE`` under torchrun (one per GPU), else 1."""
    try:
        return max(int(os.environ.get("LOCAL_WORLD_SIZE", "1")), 1)
    except ValueError:
        return 1


__all__ = ["available_memory", "local_processes", "peak_memory", "reset_peak_memory", "resident_memory",
           "trim_memory", "usable_cpus"]
