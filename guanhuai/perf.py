"""Helpers for long bulk work: memory readings and garbage-collector settings."""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from shared.events.collector import service_gc

_STATUS = Path("/proc/self/status")


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark for this process (Linux); False where unsupported."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MB (since start or the last reset)."""
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time a live process has used so far (Linux ``/proc``); None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def bulk_gc() -> Iterator[None]:
    """Bulk decoding creates millions of short-lived, acyclic objects; the default generation-0
    threshold makes the cycle collector run every 700 of them and rescan survivors. Raise it for
    the duration (memory stays bounded: batches are dropped as we go) and restore afterwards."""
    old = gc.get_threshold()
    service_gc(50_000)  # the same settings a service keeps for good
    try:
        yield
    finally:
        gc.set_threshold(*old)
        gc.unfreeze()
