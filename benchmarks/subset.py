"""A stratified sample of a class-folder dataset, to measure a recipe on fewer images (docs/experiments.md).

Usage: python benchmarks/subset.py SOURCE DEST --images N [--seed S]
e.g.   python benchmarks/subset.py <pbc copy>/PBC_dataset_normal_DIB /tmp/pbc_1000 --images 1000

Each class keeps its share of the images (largest remainders decide the rounding), drawn with the seed; hidden files
and files without an image suffix are not drawn. The files are hard-linked where DEST is on the same filesystem,
else copied; DEST must not exist.
"""
import argparse
import os
import shutil
from pathlib import Path

import numpy as np

from bloodcells.core.errors import UserError, stage_main
from bloodcells.data.layouts.class_folders import IMAGE_SUFFIXES, hidden


def class_images(source):
    images = {}
    for path in sorted(source.rglob("*")):
        rel = path.relative_to(source)
        if path.is_file() and len(rel.parts) >= 2 and not hidden(rel.as_posix()) \
                and path.suffix.lower() in IMAGE_SUFFIXES:
            images.setdefault(rel.parts[0], []).append(path)
    return images


def shares(counts, total):
    """Images per class, proportional to `counts`, summing to `total` (largest remainders)."""
    exact = {name: total * count / sum(counts.values()) for name, count in counts.items()}
    kept = {name: int(value) for name, value in exact.items()}
    for name in sorted(exact, key=lambda name: kept[name] - exact[name])[:total - sum(kept.values())]:
        kept[name] += 1
    return kept


@stage_main
def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("dest", type=Path)
    parser.add_argument("--images", type=int, required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    images = class_images(args.source)
    available = sum(len(paths) for paths in images.values())
    if len(images) < 2:
        raise UserError(f"{args.source}: fewer than two class folders with images; give the folder that holds them")
    if not 0 < args.images <= available:
        raise UserError(f"--images: {args.images} is not between 1 and the {available} images of {args.source}")
    if args.dest.exists():
        raise UserError(f"{args.dest} exists; give a new folder")
    rng = np.random.default_rng(args.seed)
    kept = shares({name: len(paths) for name, paths in images.items()}, args.images)
    tmp = args.dest.with_name(args.dest.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    for name, paths in images.items():
        (tmp / name).mkdir(parents=True)
        for index in sorted(rng.choice(len(paths), kept[name], replace=False)):
            try:
                os.link(paths[index], tmp / name / paths[index].name)
            except OSError:
                shutil.copy2(paths[index], tmp / name / paths[index].name)
    tmp.rename(args.dest)
    print(f"{args.dest}: {args.images} of {available} images, " + ", ".join(f"{n} {k}" for n, k in kept.items()))


if __name__ == "__main__":
    main()
