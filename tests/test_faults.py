"""Faults as users meet them (issue 28): a full disk, a read-only mount, a damaged
model.json, hostile file names. Each case runs a fresh `countnet` process against the real
fault (small tmpfs mounts: root only, skipped elsewhere) and checks what the user sees:
the exit status, one line on stderr without a traceback, nothing under the final name, no
staging or temp file left, and every file that was there before byte-identical."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from countnet.errors import CountnetError
from tests.conftest import COUNTNET, assert_one_line_error, run_countnet

pytestmark = pytest.mark.faults

GEN = ("gen", "--range", "1-5", "--per-class", "300", "--size", "32", "--radius", "3", "-q")
TRAIN = ("--no-pretrained", "--arch", "lenet", "--lr", "0.01", "--lr-find-iters", "0",
         "--size", "32")  # fmt: skip


@pytest.fixture
def mount(tmp_path):
    """``mount(size, inodes=None, read_only=False)``: a fresh tmpfs folder, unmounted after
    the test; a file ``keep.txt`` is put there first, to check it survives byte for byte."""
    mounted = []

    def make(size: str = "2m", inodes: int | None = None, read_only: bool = False) -> Path:
        where = tmp_path / f"mnt{len(mounted)}"
        where.mkdir()
        opts = f"size={size}" + (f",nr_inodes={inodes}" if inodes else "")
        proc = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(where)],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (needs root): {proc.stderr.strip()}")
        mounted.append(where)
        (where / "keep.txt").write_bytes(b"a user's file\n")
        if read_only:
            subprocess.run(["mount", "-o", "remount,ro", str(where)], check=True)
        return where

    yield make
    for where in reversed(mounted):
        subprocess.run(["umount", "-l", str(where)], check=False)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in folder.rglob("*")
        if p.is_file() and not p.is_symlink()
    }


def assert_unchanged(folder: Path, before: dict[str, bytes]) -> None:
    """Every file of ``before`` byte-identical, and nothing new but lock files."""
    after = snapshot(folder)
    assert {k: after.get(k) for k in before} == before
    assert [k for k in after if k not in before and not k.endswith(".lock")] == []


def fill(path: Path) -> None:
    """Write ``path`` until its file system has no byte left."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        while os.write(fd, b"\0" * 4096):
            pass
    except OSError:
        pass
    finally:
        os.close(fd)


def leftovers(folder: Path) -> list[str]:
    """Staging folders and temp files under ``folder`` (lock files are kept on purpose)."""
    return sorted(
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if ".partial-" in p.name or p.name.endswith(".tmp")
    )


# --- disk full and read-only mounts ----------------------------------------------------


@pytest.mark.parametrize("workers", ["2", "1"])
def test_gen_disk_full(mount, workers):
    """2 MB cannot hold 1500 images: one line saying so, nothing left but the user's file."""
    disk = mount("2m")
    before = snapshot(disk)
    proc = run_countnet(*GEN, "--workers", workers, "--out", disk / "ds")
    assert_one_line_error(proc, "disk full writing", str(disk / "ds"), "free space and rerun")
    assert proc.returncode == 2
    assert not (disk / "ds").exists()
    assert leftovers(disk) == []
    assert_unchanged(disk, before)


def test_gen_force_disk_full_keeps_the_old_dataset(mount):
    """--force onto a dataset when the new one does not fit: the old one stays, byte for
    byte, and so does everything else."""
    disk = mount("2m")
    small = ("gen", "--range", "1-2", "--per-class", "4", "--size", "32", "--radius", "3", "-q")
    run_countnet(*small, "--workers", "1", "--out", disk / "ds", check=True)
    before = snapshot(disk)
    proc = run_countnet(*GEN, "--workers", "1", "--force", "--out", disk / "ds")
    assert_one_line_error(proc, "disk full writing", str(disk / "ds"))
    assert leftovers(disk) == []
    assert_unchanged(disk, before)


def test_gen_inodes_exhausted(mount):
    """Space to spare but no inode left: the same line as for a full disk."""
    disk = mount("20m", inodes=40)
    before = snapshot(disk)
    proc = run_countnet(*GEN, "--workers", "1", "--out", disk / "ds")
    assert_one_line_error(proc, "disk full writing", str(disk / "ds"))
    assert not (disk / "ds").exists()
    assert leftovers(disk) == []
    assert_unchanged(disk, before)


@pytest.mark.parametrize("out", ["ds", "sub/ds"])
def test_gen_read_only(mount, out):
    """A read-only mount is named as such, not as a permission problem."""
    disk = mount(read_only=True)
    before = snapshot(disk)
    proc = run_countnet(*GEN, "--out", disk / out)
    assert_one_line_error(proc, "read-only file system")
    assert "permission denied" not in proc.stderr.lower()
    assert_unchanged(disk, before)
    assert not (disk / out).exists()


def test_train_runs_dir_fills_mid_run(mount, tiny):
    """The runs dir fills at epoch 2's checkpoint (torch's writer says only "unexpected
    pos"): one line says the disk is full and how to continue; epoch 1's checkpoint stays."""
    disk = mount("7m")
    before = snapshot(disk)
    proc = run_countnet("train", tiny, *TRAIN, "--epochs", "3", "--name", "t", cwd=disk)
    assert_one_line_error(proc, "disk full writing", "checkpoint.pt", "--resume", alone=False)
    assert "enforce fail" not in proc.stderr
    assert not (disk / "runs" / "t").exists()
    assert (disk / "runs" / ".t.partial" / "checkpoint.pt").stat().st_size > 0
    assert leftovers(disk) == []
    assert {k: v for k, v in snapshot(disk).items() if k in before} == before


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A finished run's model.json and weights, as countnet writes them (lenet, 3 classes)."""
    from countnet_classify.model import build_model
    from countnet_classify.run_folder import export_weights

    folder = tmp_path_factory.mktemp("run") / "r"
    folder.mkdir()
    meta = {"arch": "lenet", "head": None, "head_dropout": None, "task": "classification",
            "classes": ["1", "2", "3"], "size": 32, "resize": "squish", "normalize": None,
            "n_in": 3}  # fmt: skip
    export_weights(folder, build_model("lenet", 3), meta)
    return folder


def test_predict_out_read_only(mount, run_dir, tiny):
    disk = mount(read_only=True)
    images = sorted((tiny / "valid").rglob("*.png"))[:2]
    proc = run_countnet("predict", run_dir, *images, "--out", disk / "p.csv")
    assert_one_line_error(proc, "read-only file system", str(disk / "p.csv"))
    assert not (disk / "p.csv").exists() and leftovers(disk) == []


def test_predict_out_disk_full(mount, run_dir, tiny):
    disk = mount("2m")
    fill(disk / "filler")
    before = snapshot(disk)
    images = sorted((tiny / "valid").rglob("*.png"))
    proc = run_countnet("predict", run_dir, *images, "--out", disk / "p.csv")
    assert_one_line_error(proc, "disk full writing", str(disk / "p.csv"), alone=False)
    assert not (disk / "p.csv").exists() and leftovers(disk) == []
    assert_unchanged(disk, before)


# --- a damaged model.json ----------------------------------------------------------------

DAMAGE = [
    ("size", 0, "'size'"),
    ("size", 100000, "'size'"),
    ("size", "32", "'size'"),
    ("size", True, "'size'"),
    ("size", 8, "'size' must be at least 16 for lenet"),  # the network could not take it
    ("arch", "resnet999", "'arch'"),
    ("arch", None, "'arch'"),
    ("classes", [], "'classes'"),
    ("classes", "123", "'classes'"),
    ("classes", ["1", "1", "2"], "'classes'"),
    ("head", "mlp", "'head'"),
    ("head_dropout", 2, "'head_dropout'"),
    ("task", "detection", "'task'"),
    ("normalize", {"mean": [0, 0], "std": [1, 1, 1]}, "'normalize'"),
    ("normalize", {"mean": [0, 0, 0], "std": [0, 1, 1]}, "'normalize'"),
    ("n_in", 1, "'n_in'"),
    ("arch", ..., "'arch' is missing"),
    ("classes", ..., "'classes' is missing"),
    ("size", ..., "'size' is missing"),
]


def damaged_copy(run_dir: Path, where: Path, key: str, value) -> Path:
    run = where / "run"
    shutil.copytree(run_dir, run)
    meta = json.loads((run / "model.json").read_text())
    if value is ...:
        del meta[key]
    else:
        meta[key] = value
    (run / "model.json").write_text(json.dumps(meta))
    return run


@pytest.mark.parametrize(("key", "value", "says"), DAMAGE, ids=lambda v: repr(v)[:20])
def test_damaged_model_json_in_process(cli, run_dir, tiny, tmp_path, key, value, says):
    """Every damage, through the same main() in this process (a fresh process each costs
    seconds of imports; the cases below run the console script)."""
    run = damaged_copy(run_dir, tmp_path, key, value)
    before = snapshot(tmp_path)
    images = sorted((tiny / "valid").rglob("*.png"))[:1]
    for args in (("predict", run, *images, "--out", tmp_path / "p.csv"), ("export", run)):
        assert_one_line_error(cli(*args), "model.json is damaged", says)
    assert_unchanged(tmp_path, before)


@pytest.mark.parametrize(("key", "value", "says"), DAMAGE[:2] + DAMAGE[4:5] + DAMAGE[-1:])
def test_predict_damaged_model_json(run_dir, tiny, tmp_path, key, value, says):
    run = damaged_copy(run_dir, tmp_path, key, value)
    before = snapshot(tmp_path)
    images = sorted((tiny / "valid").rglob("*.png"))[:1]
    proc = run_countnet("predict", run, *images, "--out", tmp_path / "p.csv")
    assert_one_line_error(proc, "model.json is damaged", says)
    assert_unchanged(tmp_path, before)


@pytest.mark.parametrize(("key", "value", "says"), DAMAGE[1:2] + DAMAGE[4:5])
def test_export_damaged_model_json(run_dir, tmp_path, key, value, says):
    run = damaged_copy(run_dir, tmp_path, key, value)
    before = snapshot(tmp_path)
    proc = run_countnet("export", run, "--out", tmp_path / "m.onnx")
    assert_one_line_error(proc, "model.json is damaged", says)
    assert_unchanged(tmp_path, before)


@pytest.mark.parametrize("text", ["[1, 2]", "\xff\xfe", "9" * 5000])  # more digits than int()
def test_predict_model_json_not_json(run_dir, tiny, tmp_path, text):
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    (run / "model.json").write_bytes(text.encode("latin-1"))
    images = sorted((tiny / "valid").rglob("*.png"))[:1]
    assert_one_line_error(run_countnet("predict", run, *images), "is not a countnet model.json")


def test_a_model_json_that_is_no_regular_file_or_too_big_is_one_line(run_dir, tiny, tmp_path):
    """model.json as a FIFO (reading it would wait forever), a folder, or a sparse file over
    the size cap (reading it would fill memory): one line each, at once."""
    images = sorted((tiny / "valid").rglob("*.png"))[:1]
    for kind in ("fifo", "dir", "big"):
        run = tmp_path / kind
        shutil.copytree(run_dir, run)
        (run / "model.json").unlink()
        if kind == "fifo":
            os.mkfifo(run / "model.json")
        elif kind == "dir":
            (run / "model.json").mkdir()
        else:
            with open(run / "model.json", "wb") as f:
                f.truncate(65 << 20)
        says = "not a regular file" if kind != "big" else "not a countnet model.json (over 64 MB)"
        assert_one_line_error(run_countnet("predict", run, *images, timeout=60), says)


# --- messages that mislead ---------------------------------------------------------------


def test_size_too_large_is_not_too_small(tiny, tmp_path):
    proc = run_countnet("train", tiny, *TRAIN[:-2], "--size", "100000", cwd=tmp_path)
    assert_one_line_error(proc, "--size 100000 is too large")
    assert "too small" not in proc.stderr
    assert not (tmp_path / "runs").exists() or leftovers(tmp_path) == []


# --- hostile names -------------------------------------------------------------------------


def test_non_utf8_names_and_symlink_loops(tiny, tmp_path):
    """A non-UTF-8 image name is trained on; a non-UTF-8 file that is no image, symlink
    loops, a FIFO and a link to a device are listed in skipped.txt (names escaped), and
    nothing crashes or hangs."""
    data = tmp_path / "data"
    shutil.copytree(tiny, data)
    cls = data / "train" / "1"
    good = next(cls.iterdir())
    shutil.copy(good, os.fsdecode(bytes(cls) + b"/bad\xff\xfe.png"))
    Path(os.fsdecode(bytes(cls) + b"/junk\xff.png")).write_bytes(b"not a png")
    os.symlink("../1", cls / "up")  # a folder link back to its own folder
    os.symlink("loopb", cls / "loopa")
    os.symlink("loopa", cls / "loopb")
    os.mkfifo(cls / "pipe.png")  # opened, it would wait for a writer forever
    os.symlink("/dev/zero", cls / "zero.png")
    before = snapshot(data)
    proc = run_countnet("train", data, *TRAIN, "--epochs", "1", "--name", "r", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    skipped = (tmp_path / "runs" / "r" / "skipped.txt").read_text(encoding="utf-8")
    lines = dict(ln.split("\t", 1) for ln in skipped.splitlines())
    assert set(lines) == {"train/1/junk\\xff.png", "train/1/loopa", "train/1/loopb", "train/1/up",
                          "train/1/pipe.png", "train/1/zero.png"}  # fmt: skip
    assert (
        lines["train/1/pipe.png"]
        == lines["train/1/zero.png"]
        == ("not a regular file (a FIFO, socket or device)")
    )
    assert lines["train/1/loopa"] == lines["train/1/loopb"] == "symlink loop"
    assert lines["train/1/up"].startswith("symlink loop")
    n_files = sum(1 for p in tiny.rglob("*.png") if "test" not in p.parts)
    config = (tmp_path / "runs" / "r" / "config.yaml").read_text()
    assert f"n_images: {n_files + 1}\n" in config, config
    assert_unchanged(data, before)


# --- power loss: what reaches the disk before a rename ------------------------------------


@pytest.fixture
def disk_calls(monkeypatch):
    """Every fsync, syncfs and rename, in order, as (call, path)."""
    import countnet.atomic as atomic

    calls: list[tuple[str, str]] = []
    fsync, replace = os.fsync, os.replace

    def name(fd: int) -> str:
        return os.readlink(f"/proc/self/fd/{fd}")

    class Libc:
        def syncfs(self, fd: int) -> int:
            calls.append(("syncfs", name(fd)))
            return 0

    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append(("fsync", name(fd))), fsync(fd)))
    monkeypatch.setattr(
        os, "replace", lambda a, b: (calls.append(("rename", str(b))), replace(a, b))
    )
    monkeypatch.setattr(atomic, "_libc", Libc)
    return calls


def test_atomic_write_reaches_disk_before_rename(tmp_path, disk_calls):
    """The file's data, then the rename, then the folder's entry: a power loss at any
    point leaves the old file or the whole new one."""
    from countnet.atomic import write_text_atomic

    write_text_atomic(tmp_path / "config.yaml", "a: 1\n")
    assert [c for c, _ in disk_calls] == ["fsync", "rename", "fsync"]
    assert disk_calls[0][1].startswith(str(tmp_path / ".config.yaml."))
    assert disk_calls[1:] == [("rename", str(tmp_path / "config.yaml")), ("fsync", str(tmp_path))]


def test_staged_folder_flushed_before_rename(tmp_path, disk_calls):
    """A dataset's staged folder: one syncfs for all its files, then the rename, then the
    parent folder's entry."""
    from countnet.atomic import staging_dir

    with staging_dir(tmp_path / "ds", force=False) as tmp:
        (tmp / "x.png").write_bytes(b"png")
    assert disk_calls == [
        ("syncfs", str(tmp)),
        ("rename", str(tmp_path / "ds")),
        ("fsync", str(tmp_path)),
    ]


# --- the decoded cache ---------------------------------------------------------------------


def cache_entry(cache: Path) -> Path:
    (entry,) = [d for d in (cache / "decoded").iterdir() if not d.name.startswith(".")]
    return entry


@pytest.fixture(scope="module")
def cached_run(tiny, tmp_path_factory) -> tuple[Path, Path]:
    """One finished run on ``tiny`` and the cache it decoded: (run folder, cache dir)."""
    where = tmp_path_factory.mktemp("cached")
    env = {"COUNTNET_CACHE_DIR": str(where / "cache")}
    run_countnet("train", tiny, *TRAIN, "--epochs", "1", "--name", "a", cwd=where, env=env,
                 check=True)  # fmt: skip
    return where / "runs" / "a", where / "cache"


DAMAGED_ENTRIES = [("train_x.npy", "half"), ("meta.json", "junk")]


@pytest.mark.parametrize(("name", "damage"), DAMAGED_ENTRIES)
def test_cache_damaged_entry_is_rebuilt(cached_run, tiny, tmp_path, name, damage):
    """A truncated, emptied or garbled file of a cache entry: one line says so, the entry is
    rebuilt, and the run's metrics equal the first run's."""
    from tests.test_interrupt import assert_same_metrics

    run, cache = cached_run
    shutil.copytree(cache, tmp_path / "cache")
    path = cache_entry(tmp_path / "cache") / name
    data = path.read_bytes()
    path.write_bytes({"half": data[: len(data) // 2], "empty": b"", "junk": b"{"}[damage])
    env = {"COUNTNET_CACHE_DIR": str(tmp_path / "cache")}
    proc = run_countnet("train", tiny, *TRAIN, "--epochs", "1", "--name", "b", cwd=tmp_path,
                        env=env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    said = [ln for ln in proc.stderr.splitlines() if " is damaged " in ln]
    assert len(said) == 1 and name in said[0] and "rebuilding" in said[0], proc.stderr
    assert_same_metrics(tmp_path / "runs" / "b", run)
    assert len(list(cache_entry(tmp_path / "cache").iterdir())) == 5  # whole again


@pytest.mark.parametrize("meta", [b"{", b"[]", b'{"root": 1}', b"\xff", b"[" * 100000])
def test_cache_info_lists_around_a_damaged_entry(cached_run, tmp_path, meta):
    """Another entry's damaged meta.json: `countnet cache info` lists the whole entries,
    without a traceback."""
    shutil.copytree(cached_run[1], tmp_path / "cache")
    (tmp_path / "cache" / "decoded" / ("0" * 32)).mkdir()
    (tmp_path / "cache" / "decoded" / ("0" * 32) / "meta.json").write_bytes(meta)
    proc = run_countnet("cache", "info", env={"COUNTNET_CACHE_DIR": str(tmp_path / "cache")})
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert ": 1 entry," in proc.stdout


def test_cache_pixels_changed_with_mtime_restored(tiny, tmp_path):
    """An image rewritten at the same size with its mtime set back (``touch -r``) is
    decoded again, not served from the cache."""
    from PIL import Image

    data = tmp_path / "data"
    shutil.copytree(tiny, data)
    run_countnet("train", data, *TRAIN, "--epochs", "1", "--name", "a", cwd=tmp_path, check=True)
    target = max((data / "train" / "3").iterdir(), key=lambda p: p.stat().st_size)
    other = min((data / "train" / "1").iterdir(), key=lambda p: p.stat().st_size)
    size = target.stat().st_size
    assert other.stat().st_size <= size
    shutil.copy2(target, tmp_path / "ref")  # keeps the mtime
    # PNG readers stop at IEND: the bytes after it keep the size the same
    target.write_bytes(other.read_bytes().ljust(size, b"\0"))
    subprocess.run(["touch", "-r", str(tmp_path / "ref"), str(target)], check=True)
    assert target.stat().st_size == size
    assert target.stat().st_mtime_ns == (tmp_path / "ref").stat().st_mtime_ns
    assert (np.asarray(Image.open(target)) == np.asarray(Image.open(other))).all()
    proc = run_countnet("train", data, *TRAIN, "--epochs", "1", "--name", "b", cwd=tmp_path,
                        check=True)  # fmt: skip
    assert "decoding 36 images" in proc.stderr, proc.stderr  # rebuilt, not reused


def test_cache_dir_full_is_one_line(mount, tiny, tmp_path):
    """A cache folder without room for the decoded arrays: one line before any pixel is
    written (not SIGBUS, exit 135), nothing left in it but the user's file."""
    disk = mount("64k")
    before = snapshot(disk)
    env = {"COUNTNET_CACHE_DIR": str(disk / "cache")}
    proc = run_countnet("train", tiny, *TRAIN, "--epochs", "1", "--name", "r", cwd=tmp_path,
                        env=env)  # fmt: skip
    assert_one_line_error(proc, "disk full", str(disk / "cache"), "--loader files", alone=False)
    assert proc.returncode not in (-7, 135)
    assert leftovers(disk) == []
    assert_unchanged(disk, before)
    assert not (tmp_path / "runs" / "r").exists()


def test_cache_writes_where_the_fs_cannot_allocate_ahead(tmp_path, monkeypatch):
    """A file system without fallocate (EOPNOTSUPP) still gets its cache, written as
    before; only a full one is an error."""
    import errno

    from countnet_classify.cache import allocate

    def unsupported(fd: int, offset: int, length: int) -> None:
        raise OSError(errno.EOPNOTSUPP, os.strerror(errno.EOPNOTSUPP))

    monkeypatch.setattr(os, "posix_fallocate", unsupported)
    arr = allocate(tmp_path / "x.npy", (2, 4, 4, 3))
    arr[:] = 7
    arr.flush()
    assert (np.load(tmp_path / "x.npy") == 7).all()


# --- where `countnet gen --out` writes -----------------------------------------------------

SMALL = ("gen", "--range", "1-2", "--per-class", "4", "--size", "32", "--radius", "3", "-q",
         "--workers", "1")  # fmt: skip


def everything(folder: Path) -> dict[str, str | bytes]:
    """Every entry under ``folder``: a file's bytes, a symlink's target (not followed)."""
    out: dict[str, str | bytes] = {}
    for top, dirs, files in os.walk(folder):
        for name in dirs + files:
            p = Path(top) / name
            key = p.relative_to(folder).as_posix()
            out[key] = ("->" + os.readlink(p)) if p.is_symlink() else (
                p.read_bytes() if p.is_file() else "dir")  # fmt: skip
    return out


@pytest.mark.parametrize("force", [True, False])
def test_gen_out_through_a_symlink(tmp_path, force):
    """--out a symlink: the dataset is written at its target and the link stays (with
    --force onto an old dataset there; without, onto a link to nothing yet)."""
    (tmp_path / "real").mkdir()
    os.symlink("real/ds", tmp_path / "link")
    if force:
        run_countnet(*SMALL, "--out", tmp_path / "real" / "ds", check=True)
    proc = run_countnet(*SMALL, "--seed", "7", "--out", tmp_path / "link",
                        *(["--force"] if force else []))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert os.readlink(tmp_path / "link") == "real/ds"
    assert json.loads((tmp_path / "real/ds/dataset.json").read_text())["spec"]["seed"] == 7
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix != ".lock") == ["link", "real"]
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("out", ["train/9", "train/1", "valid", "x/y"])
@pytest.mark.parametrize("force", [False, True])
def test_gen_out_inside_a_dataset(tmp_path, out, force):
    """--out inside a countnet dataset would add a class to it or replace one of its
    folders: refused in one line, the dataset untouched."""
    run_countnet(*SMALL, "--out", tmp_path / "ds", check=True)
    before = everything(tmp_path)
    proc = run_countnet(*SMALL, "--out", tmp_path / "ds" / out, *(["--force"] if force else []))
    assert_one_line_error(proc, "inside the countnet dataset", str(tmp_path / "ds"))
    assert everything(tmp_path) == before


FOREIGN = {
    "note": (["NOTES.txt"], "NOTES.txt"),
    "extra-image": (["train/1/extra.png"], "train/1/extra.png"),
    "folder": (["mine/a.txt", "mine/b.txt"], "1 file(s) or folder(s) it did not write: mine/;"),
    "many": ([f"n{i}.txt" for i in range(7)], "n0.txt, n1.txt, n2.txt, n3.txt, n4.txt and 2 more"),
}


@pytest.mark.parametrize(("foreign", "shown"), FOREIGN.values(), ids=FOREIGN.keys())
def test_gen_force_keeps_a_users_files(tmp_path, foreign, shown):
    """--force onto a countnet dataset that also holds a user's files: refused in one line
    naming them, nothing changed."""
    ds = tmp_path / "ds"
    run_countnet(*SMALL, "--out", ds, check=True)
    for name in foreign:
        (ds / name).parent.mkdir(parents=True, exist_ok=True)
        (ds / name).write_text("a user's file\n")
    before = everything(tmp_path)
    proc = run_countnet(*SMALL, "--seed", "7", "--force", "--out", ds)
    assert_one_line_error(proc, "--force replaces only what countnet wrote", shown)
    assert everything(tmp_path) == before
    assert leftovers(tmp_path) == []


def test_gen_force_replaces_what_countnet_wrote(tmp_path):
    """The same --force onto a dataset holding only countnet's files (and the workflow's
    Snakemake mark) replaces it."""
    ds = tmp_path / "ds"
    run_countnet(*SMALL, "--out", ds, check=True)
    (ds / ".snakemake_timestamp").touch()
    run_countnet(*SMALL, "--seed", "7", "--force", "--out", ds, check=True)
    assert json.loads((ds / "dataset.json").read_text())["spec"]["seed"] == 7
    assert leftovers(tmp_path) == []


def test_gen_out_a_symlink_loop(tmp_path):
    """--out a link to itself: refused in one line, the link left as it was."""
    os.symlink("loop", tmp_path / "loop")
    for force in ([], ["--force"]):
        proc = run_countnet(*SMALL, "--out", tmp_path / "loop", *force)
        assert_one_line_error(proc, "symlink loop")
        assert os.readlink(tmp_path / "loop") == "loop"
        assert [p.name for p in tmp_path.iterdir()] == ["loop"]


# --- memory: 16-bit images ------------------------------------------------------------------

PEAK_RSS = (
    "import resource, subprocess, sys\n"
    "p = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
    "sys.stderr.write(p.stderr)\n"
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    "sys.exit(p.returncode)\n"
)


def peak_rss(*args, cwd: Path) -> int:
    """Peak resident bytes of a fresh `countnet` process (run by a process of its own, so
    no other child of this one counts)."""
    proc = subprocess.run([sys.executable, "-c", PEAK_RSS, COUNTNET, *map(str, args)],
                          cwd=cwd, capture_output=True, text=True, timeout=900)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return int(proc.stdout.split()[-1]) * 1024


@pytest.fixture(scope="module")
def wide_png(tmp_path_factory) -> Path:
    """A 9000 x 9000 16-bit grayscale PNG of a few hundred KB, under Pillow's bomb limit."""
    from PIL import Image

    rows = (np.arange(9000, dtype=np.uint32) * 7 % 65536).astype(np.uint16)
    path = tmp_path_factory.mktemp("wide") / "wide.png"
    Image.fromarray(np.repeat(rows[:, None], 9000, axis=1)).save(path)
    return path


def test_16bit_images_decode_within_the_budget(tiny, wide_png, tmp_path):
    """Two 9000 x 9000 16-bit PNGs in a set raise training's peak memory by what one
    decode within the budget costs (about 5 bytes a pixel), not by gigabytes of float64
    temporaries on eight threads at once."""
    from countnet_classify.images import DECODE_BUDGET_PIXELS

    data = tmp_path / "data"
    shutil.copytree(tiny, data)
    args = (*TRAIN, "--epochs", "1", "--workers", "0")
    base = peak_rss("train", data, *args, "--name", "a", cwd=tmp_path)
    for cls in ("1", "2"):
        shutil.copy(wide_png, data / "train" / cls / "wide.png")
    peak = peak_rss("train", data, *args, "--name", "b", cwd=tmp_path)
    budget = 8 * max(DECODE_BUDGET_PIXELS, 9000 * 9000)  # 5 at the peak, 3 for the heap
    assert peak - base < budget, (base / 2**20, peak / 2**20)
    assert "n_images: 38\n" in (tmp_path / "runs" / "b" / "config.yaml").read_text()


def test_wide_images_keep_their_pixels(tmp_path):
    """16-bit, 32-bit and float grayscale scale to 8 bits as before (floor(v * 255 / 65535)
    for 16-bit; min..max stretched for float), across several strips of rows."""
    from PIL import Image

    from countnet_classify.images import open_rgb

    rng = np.random.default_rng(0)
    sixteen = (np.arange(600 * 256) % 65536).astype(np.uint16).reshape(600, 256)
    wide = rng.integers(-5000, 200000, (600, 256)).astype(np.int32)
    narrow = rng.integers(0, 256, (600, 256)).astype(np.int32)
    floats = rng.normal(size=(600, 256)).astype(np.float32)
    f64 = floats.astype(np.float64)
    cases = {
        "16.png": (Image.fromarray(sixteen), np.floor(sixteen * 255.0 / 65535.0)),
        "wide.tif": (Image.fromarray(wide, "I"), np.clip(wide * 255.0 / 65535.0, 0, 255)),
        "narrow.tif": (Image.fromarray(narrow, "I"), narrow),
        "f.tif": (Image.fromarray(floats, "F"),
                  (f64 - f64.min()) / (f64.max() - f64.min()) * 255.0),
    }  # fmt: skip
    for name, (im, want) in cases.items():
        im.save(tmp_path / name)
        got = np.asarray(open_rgb(tmp_path / name))
        assert (got == np.asarray(want).astype(np.uint8)[..., None]).all(), name


# --- damaged files a report, --transforms or weights import reads (the attack's finds) ------


def _no_summary(path: Path) -> None:
    import yaml

    config = yaml.safe_load(path.read_text())
    del config["summary"]
    path.write_text(yaml.safe_dump(config))


REPORT_DAMAGE = {
    "metrics.csv": lambda p: p.write_bytes(b"\xff\xfe\x00epoch"),
    "skipped.txt": lambda p: p.write_bytes(b"\xff\xfe"),
    "transforms.json": lambda p: p.write_text('{"chosen":'),
    "cost.json": lambda p: p.write_text("[" * 100000),
    "config.yaml": _no_summary,
}


@pytest.mark.parametrize("name", REPORT_DAMAGE)
def test_report_damaged_run_file(cli, cached_run, tmp_path, name):
    """A finished run with one file damaged (not UTF-8, not JSON, nested too deep, a field
    missing): one line naming the run or the file; no report written."""
    run = tmp_path / "run"
    shutil.copytree(cached_run[0], run)
    REPORT_DAMAGE[name](run / name)
    r = cli("report", run, "--out", tmp_path / "out")
    assert_one_line_error(r, str(run))
    assert not (tmp_path / "out" / "report.md").exists()


def test_report_disk_full_writes_neither_file(mount, cached_run):
    """Room for report.md but not report.html: neither appears (an old pair would stay)."""
    disk = mount("40k")
    before = snapshot(disk)
    proc = run_countnet("report", cached_run[0], "--out", disk / "rep")
    assert_one_line_error(proc, "disk full writing", str(disk / "rep"))
    assert not (disk / "rep" / "report.md").exists() and leftovers(disk) == []
    assert {k: v for k, v in snapshot(disk).items() if k in before} == before


@pytest.mark.parametrize("text", [b"\xff\xfe", b'{"chosen": ["none"]}', b"[" * 100000])
def test_train_transforms_file_damaged(cli, tiny, tmp_path, text):
    """--transforms FILE.json not UTF-8, choosing a list, nested too deep: one line."""
    (tmp_path / "sel.json").write_bytes(text)
    r = cli("train", tiny, "--transforms", tmp_path / "sel.json", *TRAIN, "--epochs", "1",
            "--runs-dir", tmp_path / "runs")  # fmt: skip
    assert_one_line_error(r, "--transforms file", str(tmp_path / "sel.json"))
    assert list((tmp_path / "runs").glob("*")) == []


def test_weights_import_of_a_pickle_is_one_line(tmp_path):
    """A pickle (protocol 4, as pickle.dump writes it) named .pth: torch's warning about the
    protocol never reaches stderr, and the line says why the file is refused."""
    import pickle

    bad = tmp_path / "evil.pth"
    bad.write_bytes(pickle.dumps({"conv1.weight": [1, 2]}, protocol=4))
    proc = run_countnet("weights", "import", bad, "--arch", "resnet18")
    assert_one_line_error(proc, str(bad), "pickled Python objects")


DEEP = "[" * 100000  # JSON nested past Python's recursion limit: json.loads raises RecursionError


def test_gen_force_over_a_deeply_nested_dataset_json(tmp_path):
    """Not countnet's dataset.json: refused as any foreign folder is, in one line."""
    ds = tmp_path / "ds"
    ds.mkdir()
    (ds / "dataset.json").write_text(DEEP)
    before = snapshot(ds)
    proc = run_countnet(*GEN, "--out", ds, "--force")
    assert_one_line_error(proc, "--force replaces only", str(ds))
    assert_unchanged(ds, before)


@pytest.mark.parametrize(
    ("name", "text"),
    [("manifest.csv", "path,count,circles\ntrain/1/a.png,x,[]\n"),
     ("manifest.csv", "path,count,circles\ntrain/1/a.png,1,[[1,2]]\n"),
     ("dataset.json", DEEP), ("dataset.json", "\udcff")],
    ids=["count", "circles", "deep", "not-utf8"],
)  # fmt: skip
def test_train_on_a_set_with_damaged_metadata(cli, tiny, tmp_path, name, text):
    """--transforms aug reads a counting set's manifest and dataset.json (label safety): a
    damaged one is one line naming it, before any run folder is made."""
    data = tmp_path / "data"
    shutil.copytree(tiny, data)
    (data / name).write_bytes(text.encode("utf-8", "surrogateescape"))
    r = cli("train", data, "--transforms", "aug", *TRAIN, "--epochs", "1",
            "--runs-dir", tmp_path / "runs")  # fmt: skip
    assert_one_line_error(r, str(data / name), "is damaged")
    assert list((tmp_path / "runs").glob("*")) == []


def test_run_record_goes_without_a_damaged_dataset_json(tmp_path):
    """The record's dataset parameters come from dataset.json; one not UTF-8 or nested too
    deep is left out instead of failing the run before its first epoch."""
    from countnet_classify.record import dataset_params

    for text in (b"\xff\xfe", DEEP.encode()):
        (tmp_path / "dataset.json").write_bytes(text)
        assert dataset_params(tmp_path) is None


def test_report_a_sweep_with_a_deeply_nested_sweep_json(cli, tmp_path):
    (tmp_path / "sw").mkdir()
    (tmp_path / "sw" / "sweep.json").write_text(DEEP)
    r = cli("report", tmp_path / "sw", "--out", tmp_path / "out")
    assert_one_line_error(r, "is not a countnet sweep.json")


@pytest.mark.parametrize("verb", ["gen", "predict"])
def test_an_output_name_too_long_is_one_line(run_dir, tiny, tmp_path, verb):
    """A name past the file system's 255 bytes: the OS's ENAMETOOLONG, in one line."""
    long = tmp_path / ("a" * 300)
    images = sorted((tiny / "valid").rglob("*.png"))[:1]
    args = (*GEN, "--out", long) if verb == "gen" else ("predict", run_dir, *images, "--out", long)
    proc = run_countnet(*args)
    assert_one_line_error(proc, "File name too long")
    assert list(tmp_path.iterdir()) == []


def test_predict_weights_of_the_wrong_kind_of_number(run_dir, tiny, tmp_path):
    """A model.safetensors whose float tensors were saved as integers loads, truncated, and
    predicts nonsense: refused in one line naming a tensor and its dtype."""
    import torch
    from safetensors.torch import load_file, save_file

    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    sd = load_file(run / "model.safetensors")
    save_file({k: v.to(torch.int64) for k, v in sd.items()}, run / "model.safetensors")
    images = sorted((tiny / "valid").rglob("*.png"))[:1]
    proc = run_countnet("predict", run, *images)
    assert_one_line_error(proc, "not floating point", "torch.int64")
    assert proc.stdout == ""


@pytest.mark.parametrize("where", ["countnet_classify.train.build_learner",
                                   "countnet_classify.prepare.loaders"])  # fmt: skip
def test_a_call_failing_before_its_first_record_leaves_no_staging(cli, tiny, tmp_path,
                                                                  monkeypatch, where):  # fmt: skip
    """An error after the run's staging folder is made but before config.yaml is written
    (building the network, the DataLoaders): one line, and no .NAME.partial left."""

    def fail(*args, **kwargs):
        raise CountnetError("injected failure")

    monkeypatch.setattr(where, fail)
    r = cli("train", tiny, *TRAIN, "--epochs", "1", "--runs-dir", tmp_path / "runs",
            "--name", "r", "--quiet")  # fmt: skip
    assert_one_line_error(r, "injected failure", alone=False)  # after the progress lines
    assert list((tmp_path / "runs").glob("*")) == list((tmp_path / "runs").glob(".*")) == []


def test_a_run_in_a_folder_named_in_no_utf8_loads(run_dir, tmp_path):
    """A run copied under a name that is not UTF-8 (bytes from another system) loads: the
    safetensors library takes only a str path, which such a name is not."""
    from countnet_classify.artifact import load_predictor

    run = tmp_path / os.fsdecode(b"run-\xff")
    shutil.copytree(run_dir, run)
    model, meta = load_predictor(run)
    assert meta["classes"] == ["1", "2", "3"] and not model.training


def test_a_damaged_run_is_refused_before_torch_is_imported(run_dir, tiny, tmp_path):
    """predict and export check model.json before their imports: the error comes from a
    process that never loaded torch (the seconds a damaged run would otherwise cost)."""
    import subprocess
    import sys

    run = damaged_copy(run_dir, tmp_path, "size", 0)
    image = next(tiny.rglob("*.png"))
    code = (
        "import sys\nfrom countnet.cli import main\nsys.argv = ['countnet', *sys.argv[1:]]\n"
        "try:\n    main()\nexcept SystemExit as e:\n"
        "    print('exit', e.code, 'torch' in sys.modules, file=sys.stderr)\n"
    )
    for args in (("predict", run, image), ("export", run)):
        proc = subprocess.run([sys.executable, "-c", code, *map(str, args)],
                              capture_output=True, text=True, timeout=120)  # fmt: skip
        assert "model.json is damaged" in proc.stderr, proc.stderr
        assert proc.stderr.splitlines()[-1] == "exit 2 False", proc.stderr
