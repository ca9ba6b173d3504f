"""countnet.malloc.retain_freed_memory: freed temporaries are reused, not faulted back in
(counted in page faults, not timed; the speed is in bench/gen_malloc.py)."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

# A generator worker making images as it does, RENDER_BATCH at a time, with their PNG bytes
# (224 px, 45-50 circles of radius 4-12): the page faults of images 256-1,535 (the first 256
# grow the heap to its working size).
CHILD = """
import resource, sys
from countnet_gen import writer
from countnet_gen.spec import DatasetSpec
spec = DatasetSpec(counts=(45, 50), size=224, radius=(4, 12), no_overlap=True)
if sys.argv[1] == "1":  # a generator worker's set-up, as countnet gen runs it
    writer._init_pool_worker(spec.to_dict(), ".")
else:  # a library caller's process, e.g. generate(..., workers=1): left alone
    writer._init_worker(spec.to_dict(), ".")
pal = bytes(768)
def images(start, n):  # as _write_chunk: each batch encoded as it is made
    jobs = [writer.ImageJob(45, i, "train") for i in range(start, start + n)]
    for image in writer.make_images(spec, jobs):
        writer.encode_png(image.index, pal)
images(0, 256)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
images(256, 1280)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(tuned: bool, child: str = CHILD) -> int:
    out = subprocess.run(
        [sys.executable, "-c", child, "1" if tuned else "0"],
        capture_output=True, text=True, check=True, timeout=300,
    )  # fmt: skip
    return int(out.stdout.split()[-1])


@pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc's mallopt"
)
def test_generator_workers_reuse_freed_memory_instead_of_faulting_it_back():
    from countnet.malloc import retain_freed_memory

    default, tuned = _faults(False), _faults(True)
    # 1,280 images: glibc's defaults trim the heap top and fault it back in, several times an
    # image (12,900-14,800 in all, measured); with the setting ~300 in all
    assert default > 2000, default
    assert tuned < default / 10, (tuned, default)
    assert retain_freed_memory() is True


# Training steps of a ResNet-18 (64 px, bs 32, fp32), counting the page faults of steps 3-6.
TRAIN_CHILD = """
import resource, sys, torch
from countnet.malloc import retain_freed_memory_for_training
from torchvision.models import resnet18
if sys.argv[1] == "1":  # as `countnet train` and the workflow's training jobs set it up
    assert retain_freed_memory_for_training()
torch.set_num_threads(1)
torch.manual_seed(0)
model = resnet18(num_classes=6)
opt = torch.optim.AdamW(model.parameters())
x, y = torch.randn(32, 3, 64, 64), torch.randint(0, 6, (32,))
def step():
    torch.nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
    opt.zero_grad()
for _ in range(2):
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(4):
    step()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc's mallopt"
)
def test_training_processes_reuse_freed_memory_instead_of_faulting_it_back():
    default, tuned = _faults(False, TRAIN_CHILD), _faults(True, TRAIN_CHILD)
    assert default > 4000, default  # glibc's defaults: activations fault in at every step
    assert tuned < default / 10, (tuned, default)


@pytest.mark.parametrize(
    "args",
    [
        ("train", "{missing}"),
        ("sweep", "{missing}", "--param", "lr=0.01,0.03"),
        ("select-transforms", "{missing}"),
    ],
)
def test_training_commands_set_it_up_in_their_own_process(cli, monkeypatch, tmp_path, args):
    import countnet.cli

    calls = []
    monkeypatch.setattr(countnet.cli, "retain_freed_memory_for_training", lambda: calls.append(1))
    res = cli(*(a.format(missing=tmp_path / "missing") for a in args))
    assert res.returncode != 0 and "error:" in res.stderr  # a missing folder, found after it
    assert calls == [1]
