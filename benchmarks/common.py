"""Shared benchmark helpers: timing, peak memory of this process tree, and printing."""

from __future__ import annotations

import os
import threading
import time
from contextlib import contextmanager
from pathlib import Path


def _tree_rss_bytes(root_pid: int) -> int:
    """Resident memory of a process and all its descendants (JVM and Python workers included)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            parent, resident_pages = int(stat[1]), int(stat[21])
        except (OSError, IndexError, ValueError):
            continue
        pid = int(entry.name)
        children.setdefault(parent, []).append(pid)
        rss[pid] = resident_pages * os.sysconf("SC_PAGE_SIZE")
    total, stack = 0, [root_pid]
    while stack:
        pid = stack.pop()
        total += rss.get(pid, 0)
        stack += children.get(pid, [])
    return total


class PeakMemory:
    """Samples the resident memory of this process tree every 0.2 s while active."""

    def __init__(self):
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, _tree_rss_bytes(os.getpid()))
            self._stop.wait(0.2)

    def __enter__(self):
        self.peak = 0
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._stop.clear()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    @property
    def gib(self) -> float:
        return self.peak / 2**30


@contextmanager
def timed(label: str, results: dict):
    started = time.monotonic()
    with PeakMemory() as memory:
        yield
    results[label] = {"seconds": time.monotonic() - started, "peak_gib": memory.gib}
    print(f"  {label:<40} {results[label]['seconds']:8.1f} s   peak {memory.gib:5.2f} GiB", flush=True)
