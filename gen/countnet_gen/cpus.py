"""How many CPUs this process may really use."""

from __future__ import annotations

import os


def usable_cpus() -> int:
    """CPUs this process may run on: its affinity mask (taskset, cgroup cpusets, SLURM's
    allocation) rather than the machine's core count, which os.cpu_count() reports."""
    if hasattr(os, "process_cpu_count"):  # Python 3.13+
        return max(1, os.process_cpu_count() or 1)
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)
