"""First contact with real image sets (#27): countnet's old and new defaults against a plain
fastai baseline, on the same folders, side by side in one run.

    uv run python bench/first_contact.py [--epochs 5] [--size 32] [--sets digits,lfw,own]
                                         [--seeds 1]
    uv run python bench/first_contact.py --seeds 3 | tee bench/results/first_contact_$(date +%F).txt

The sets, written as class folders (offline: they ship inside installed packages):
  digits  scikit-learn's load_digits: 1,797 handwritten digits, 10 classes; the 8x8 images
          (values 0-16) scaled to 0-255 and upscaled bicubically to 32 px grayscale PNGs
  lfw     scikit-image's lfw_subset: 100 faces, 100 non-faces, 25x25 grayscale PNGs
  own     JPEGs made here: discs vs triangles on noise, 40 a class at 64 px, plus one
          truncated JPEG and one grayscale JPEG (countnet skips the first with a warning)

For each set and seed (0..N-1: the split, the initialisation), three fresh processes,
timed from start to exit:
  old     countnet train DIR --no-pretrained --size S --epochs E --seed K --transforms
          dihedral --lr slide   (the defaults before #27: dihedral, the LR finder's slide)
  new     countnet train DIR --no-pretrained --size S --epochs E --seed K   (today's)
  fastai  vision_learner(dls, resnet34, pretrained=False, metrics=error_rate)
          .fit_one_cycle(E, 3e-3) on ImageDataLoaders.from_folder(DIR, valid_pct=0.2,
          seed=K, item_tfms=Resize(S)), after set_seed(K): plain fastai, no augmentation;
          files PIL cannot load are left out (fastai stops on them)
Printed: final error_rate, wall seconds and the ratio to the same seed's fastai wall; then
per set and run the mean error over the seeds and the ratio of summed walls.
"""

from __future__ import annotations

import argparse
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
COUNTNET = [str(Path(sys.executable).with_name("countnet"))]
SETS = ("digits", "lfw", "own")
OLD_DEFAULTS = ["--transforms", "dihedral", "--lr", "slide"]  # countnet train before #27


def write_digits(folder: Path, limit: int | None = None) -> None:
    from sklearn.datasets import load_digits

    d = load_digits()
    for i, (img, label) in enumerate(zip(d.images[:limit], d.target[:limit], strict=True)):
        out = folder / str(label)
        out.mkdir(parents=True, exist_ok=True)
        px = Image.fromarray((img * (255 / 16)).round().astype(np.uint8), "L")
        px.resize((32, 32), Image.Resampling.BICUBIC).save(out / f"{i:04d}.png")


def write_lfw(folder: Path, limit: int | None = None) -> None:
    from skimage.data import lfw_subset

    faces = lfw_subset()  # 100 faces, then 100 non-faces, floats in [0, 1]
    for i, img in enumerate(faces):
        if limit and i % 100 >= limit:
            continue
        out = folder / ("face" if i < 100 else "nonface")
        out.mkdir(parents=True, exist_ok=True)
        Image.fromarray((img * 255).round().astype(np.uint8), "L").save(out / f"{i:03d}.png")


def write_own(folder: Path, per_class: int = 40, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for cls in ("disc", "triangle"):
        (folder / cls).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            noise = rng.integers(0, 90, (64, 64, 3), dtype=np.uint8)
            img = Image.fromarray(noise, "RGB")
            draw = ImageDraw.Draw(img)
            x, y, r = *rng.integers(18, 46, 2), int(rng.integers(8, 16))
            colour = tuple(int(c) for c in rng.integers(120, 256, 3))
            if cls == "disc":
                draw.ellipse((x - r, y - r, x + r, y + r), fill=colour)
            else:
                draw.polygon([(x, y - r), (x - r, y + r), (x + r, y + r)], fill=colour)
            if i == 0 and cls == "triangle":
                img = img.convert("L")  # a grayscale JPEG among RGB ones
            img.save(folder / cls / f"{i:03d}.jpg", quality=90)
    whole = (folder / "disc" / "000.jpg").read_bytes()
    (folder / "disc" / "truncated.jpg").write_bytes(whole[: len(whole) // 2])


WRITERS = {"digits": write_digits, "lfw": write_lfw, "own": write_own}


def timed(cmd: list[str]) -> tuple[float, subprocess.CompletedProcess]:
    t0 = time.perf_counter()
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    return time.perf_counter() - t0, r


def run_countnet(data: Path, runs: Path, name: str, extra: list[str], seed: int, args) -> dict:
    import yaml

    cmd = [*COUNTNET, "train", str(data), "--no-pretrained", "--size", str(args.size),
           "--epochs", str(args.epochs), "--seed", str(seed), "--runs-dir", str(runs),
           "--name", name, *extra, *shlex.split(args.countnet_args)]  # fmt: skip
    wall, r = timed(cmd)
    if r.returncode:
        return {"error": None, "wall": wall, "note": r.stderr.strip().splitlines()[-1]}
    cfg = yaml.safe_load((runs / name / "config.yaml").read_text())
    res = cfg["resolved"]
    note = f"{res['transforms']}; lr {cfg['lr']['used']:.2e}"
    return {"error": cfg["summary"]["final_error_rate"], "wall": wall, "note": note}


def run_fastai(data: Path, seed: int, args) -> dict:
    cmd = [sys.executable, __file__, "--fastai-baseline", str(data), "--epochs",
           str(args.epochs), "--size", str(args.size), "--seed", str(seed)]  # fmt: skip
    wall, r = timed(cmd)
    if r.returncode:
        return {"error": None, "wall": wall, "note": r.stderr.strip().splitlines()[-1]}
    error, note = r.stdout.strip().splitlines()[-1].split(" ", 1)
    return {"error": float(error), "wall": wall, "note": note}


def fastai_baseline(data: Path, epochs: int, size: int, seed: int) -> None:
    """The plain fastai run, in this (fresh) process; prints 'error note'."""
    from fastai.vision.all import (
        ImageDataLoaders,
        Resize,
        error_rate,
        get_image_files,
        resnet34,
        set_seed,
        vision_learner,
    )

    set_seed(seed)

    def readable(f: Path) -> bool:
        try:
            with Image.open(f) as im:
                im.load()
            return True
        except OSError:
            return False

    files = get_image_files(data)
    kept = [f for f in files if readable(f)]
    dls = ImageDataLoaders.from_path_func(
        data, kept, lambda f: f.parent.name, valid_pct=0.2, seed=seed, item_tfms=Resize(size)
    )
    learn = vision_learner(dls, resnet34, pretrained=False, metrics=error_rate)
    with learn.no_bar(), learn.no_logging():
        learn.fit_one_cycle(epochs, 3e-3)
    err = float(learn.recorder.values[-1][-1])
    print(f"{err} {len(files) - len(kept)} unreadable file(s) left out")


def fmt(r: dict, base: float | None) -> str:
    err = "failed" if r["error"] is None else f"{r['error']:.4f}"
    ratio = f"{r['wall'] / base:.2f}x" if base else "-"
    return f"{err:>8} {r['wall']:8.1f} {ratio:>7}  {r['note']}"


def summary(name: str, results: dict[str, list[dict]]) -> None:
    """Per run: the mean error over the seeds, the summed wall and its ratio to fastai's."""
    base = sum(r["wall"] for r in results["fastai"])
    for label, rows in results.items():
        errors = [r["error"] for r in rows if r["error"] is not None]
        mean = f"{sum(errors) / len(errors):.4f}" if errors else "failed"
        wall = sum(r["wall"] for r in rows)
        print(f"{name:7} {label:7} {'mean':>4} {mean:>8} {wall:8.1f} {wall / base:6.2f}x  "
              f"{len(errors)} of {len(rows)} seed(s)")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--seeds", type=int, default=1, help="seeds 0..N-1 per set and run")
    ap.add_argument("--sets", default=",".join(SETS), help="comma-separated: digits,lfw,own")
    ap.add_argument("--limit", type=int, default=None, help="images a class (tests)")
    ap.add_argument("--countnet-args", default="", help="more countnet train options (tests)")
    ap.add_argument("--fastai-baseline", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.fastai_baseline:
        fastai_baseline(args.fastai_baseline, args.epochs, args.size, args.seed)
        return
    sets = [s for s in args.sets.split(",") if s]
    if unknown := sorted(set(sets) - set(SETS)):
        ap.error(f"unknown set(s) {', '.join(unknown)}; known: {', '.join(SETS)}")
    print(f"# first_contact: {args.epochs} epochs at {args.size} px, {args.seeds} seed(s), "
          f"{platform.machine()}, python {platform.python_version()}; "
          f"{time.strftime('%Y-%m-%d %H:%M')}")  # fmt: skip
    print(f"{'set':7} {'run':7} {'seed':>4} {'error':>8} {'wall s':>8} {'ratio':>7}  note")
    with tempfile.TemporaryDirectory() as tmp:
        for name in sets:
            data, runs = Path(tmp) / name, Path(tmp) / "runs"
            if name == "own":
                write_own(data, per_class=args.limit or 40)
            else:
                WRITERS[name](data, args.limit)
            results = {"fastai": [], "old": [], "new": []}
            for seed in range(args.seeds):
                base = run_fastai(data, seed, args)  # first: the others' ratios are to its time
                results["fastai"].append(base)
                print(f"{name:7} {'fastai':7} {seed:4} {fmt(base, base['wall'])}", flush=True)
                for label, extra in (("old", OLD_DEFAULTS), ("new", [])):
                    r = run_countnet(data, runs, f"{name}-{label}-{seed}", extra, seed, args)
                    results[label].append(r)
                    print(f"{name:7} {label:7} {seed:4} {fmt(r, base['wall'])}", flush=True)
            summary(name, results)


if __name__ == "__main__":
    main()
