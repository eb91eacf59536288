"""What the benchmarks share: the verdict at the end (the goals missed: exit 1, or the success
line: exit 0), and a process's CPU time for those that run a controller."""

from __future__ import annotations

import os
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far, from /proc."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def child_pids(pid: int) -> list[int]:
    """A process's children now (each of its threads' /proc/<pid>/task/<tid>/children)."""
    found: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as fh:
                found += [int(c) for c in fh.read().split()]
    except OSError:
        pass
    return found


def cpu_by_pid(pids: list[int]) -> dict[int, float]:
    """proc_cpu_s of each process still there."""
    out = {}
    for pid in pids:
        try:
            out[pid] = proc_cpu_s(pid)
        except OSError:
            pass
    return out


def proc_rss_mib(pid: int, key: str = "VmRSS") -> float:
    """A process's resident memory (or another /proc/<pid>/status figure in kB, VmHWM say) in MiB."""
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def verdict(failures: list[str], success: str) -> int:
    if failures:
        print("FAILED:")
        for failure in failures:
            print(f"  - {failure}")
        return 1
    print(success)
    return 0


def finish(started: float, failures: list[str], success: str) -> int:
    """The runtime since `started` (time.perf_counter()), then the verdict."""
    print(f"bench runtime {time.perf_counter() - started:.1f} s")
    return verdict(failures, success)
