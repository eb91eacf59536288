"""The end every benchmark shares: the goals it missed (exit 1) or its success line (exit 0)."""

from __future__ import annotations

import time


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
