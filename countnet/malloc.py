"""Keep freed heap memory for reuse instead of handing it back to the OS at every free."""

from __future__ import annotations

import ctypes
import platform

# glibc's mallopt parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3


def retain_freed_memory(trim_mb: int = 64, mmap_mb: int = 16) -> bool:
    """Ask glibc to serve blocks below ``mmap_mb`` from its heap and to give the heap's free
    top back to the OS only beyond ``trim_mb``; returns whether it took (glibc only; a
    no-op elsewhere).

    Why: the generator allocates and frees about a megabyte of NumPy temporaries an image,
    which glibc's defaults hand back to the OS at once and fault in again for the next
    image (BENCHMARKS.md, "Generation throughput": bench/gen_malloc.py).

    Process-wide, and it fixes glibc's otherwise adaptive mmap threshold, so freed blocks
    below ``mmap_mb`` stay in the heap (up to ``trim_mb`` at its top, per arena, and
    whatever fragmentation pins): call it only in a process of one's own. generate()'s
    pool workers and the `countnet gen` command do (so does whatever runs that command's
    main() in-process, such as the test suite's ``cli`` fixture); callers of generate()
    itself are left alone.
    """
    if not (0 < trim_mb < 2048 and 0 < mmap_mb <= 32):  # mallopt takes an int; glibc caps mmap
        raise ValueError(f"trim_mb {trim_mb} / mmap_mb {mmap_mb} out of mallopt's range")
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(
        mallopt(M_MMAP_THRESHOLD, mmap_mb << 20) and mallopt(M_TRIM_THRESHOLD, trim_mb << 20)
    )


def retain_freed_memory_for_training() -> bool:
    """``retain_freed_memory`` for a training process, whose steps allocate and free hundreds
    of megabytes of activations and gradients: a 1 GB trim threshold keeps one step's worth
    (the generator's 64 MB is trimmed and regrown every step), and glibc's largest mmap
    threshold, 32 MB, keeps a ResNet's large early activations in the heap too (BENCHMARKS.md,
    "Training throughput": bench/train_malloc.py). Same rule: only in a process of one's own
    (`countnet train`, `sweep`, `select-transforms`, a data-parallel worker, the workflow's
    training jobs)."""
    return retain_freed_memory(trim_mb=1024, mmap_mb=32)
