"""How many CPUs this process may really use."""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP = Path("/sys/fs/cgroup")


def usable_cpus() -> int:
    """CPUs this process may run on: its affinity mask (taskset, cgroup cpusets, SLURM's
    allocation), further capped by a cgroup CPU quota (``docker --cpus``, Kubernetes
    limits), rather than the machine's core count, which os.cpu_count() reports."""
    if hasattr(os, "process_cpu_count"):  # Python 3.13+
        n = os.process_cpu_count() or 1
    elif hasattr(os, "sched_getaffinity"):
        n = len(os.sched_getaffinity(0))
    else:
        n = os.cpu_count() or 1
    quota = cgroup_cpu_quota()
    return max(1, min(n, quota) if quota else n)


def cgroup_cpu_quota(root: Path = CGROUP) -> int | None:
    """CPUs' worth of time the cgroup quota allows (rounded up), or None without a quota.
    Reads cgroup v2's ``cpu.max`` ("max 100000" or "150000 100000"), else v1's
    ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``."""
    try:
        v2 = root / "cpu.max"
        if v2.is_file():
            quota, period = v2.read_text().split()[:2]
            return None if quota == "max" else math.ceil(int(quota) / int(period))
        q, p = root / "cpu" / "cpu.cfs_quota_us", root / "cpu" / "cpu.cfs_period_us"
        if q.is_file() and p.is_file():
            quota_us = int(q.read_text())
            return None if quota_us <= 0 else math.ceil(quota_us / int(p.read_text()))
    except (OSError, ValueError):
        return None
    return None
