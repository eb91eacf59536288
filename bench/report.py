"""The end every benchmark shares: its runtime, then the goals it missed (exit 1) or its success line (exit 0)."""

from __future__ import annotations

import time


def finish(started: float, failures: list[str], success: str) -> int:
    print(f"bench runtime {time.perf_counter() - started:.1f} s")
    if failures:
        print("FAILED:")
        for failure in failures:
            print(f"  - {failure}")
        return 1
    print(success)
    return 0
