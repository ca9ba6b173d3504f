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

    Why: the generator allocates and frees about a megabyte of NumPy temporaries an image.
    With glibc's defaults the heap top is trimmed, or large blocks unmapped, as soon as
    they are freed, so each image page-faulted its temporaries back in: 31% of the time of
    placing and drawing an image at 224 px with radii 4-12 (10% at a fixed 6), 4-18% of a
    worker's whole image with its PNG write (BENCHMARKS.md, bench/gen_malloc.py).

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
    """``retain_freed_memory`` for a training process: a step allocates and frees hundreds
    of megabytes of activations and gradients, which with glibc's defaults were unmapped or
    trimmed and faulted back in at every step (14,000-17,000 minor faults a step for
    ResNet-34 at 64 px, bs 64, against a few hundred with this). The generator's 64 MB top
    was too small for that (a step trims and regrows it: slower than the defaults); 1 GB
    keeps one step's worth. The mmap threshold is glibc's largest, 32 MB: fixing it turns
    off glibc's own adaptive one, and blocks of 16-32 MB (e.g. a ResNet's first activation
    at 112 px in fp32) were still unmapped at every step with 16 MB. Same rule: only in a
    process of one's own (`countnet train`, `sweep`, `select-transforms`, a data-parallel
    worker, the workflow's training jobs)."""
    return retain_freed_memory(trim_mb=1024, mmap_mb=32)
