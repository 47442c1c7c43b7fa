"""Stage fetch: put the raw dataset in data/raw, in its own layout (bloodcells.data.layouts).

`data.source` picks where it comes from: bccd (pinned public downloads, checked against
data/bccd.sha256), kaggle, synthetic, or a local folder/zip laid out like Kaggle's dataset-master or in one
folder per class (PBC); the layout is recognised and said.
Run `python src/fetch.py --write-manifest DIR` to regenerate the manifest from a trusted copy.
"""
import argparse
from pathlib import Path

from bloodcells.data import sources, synthetic
from bloodcells.core.atomic import atomic_dir
from bloodcells.data.layouts import dataset_master
from bloodcells.data.layouts.class_folders import IMAGE_SUFFIXES
from bloodcells.core.errors import UserError, stage_main
from bloodcells.config.params import load_params

RAW_DIR = Path("data/raw")


def fetch_bccd(data_params, fetch_params, dest):
    sources.fetch_bccd(dest, fetch_params.urls.model_dump(), fetch_params.manifest, timeout=fetch_params.timeout,
                       retries=fetch_params.retries)
    return dataset_master.NAME


def fetch_kaggle(data_params, fetch_params, dest):
    return sources.fetch_kaggle(dest)


def fetch_synthetic(data_params, fetch_params, dest):
    spec = data_params.synthetic
    synthetic.generate(dest, spec.per_class, spec.size, seed=spec.seed)
    return dataset_master.NAME


SOURCES = {"bccd": fetch_bccd, "kaggle": fetch_kaggle, "synthetic": fetch_synthetic}


def fetch(data_params, fetch_params, dest):
    """Put data.source's dataset into `dest`; returns the name of its layout."""
    source = data_params.source
    if source in SOURCES:
        return SOURCES[source](data_params, fetch_params, dest)
    if Path(source).expanduser().exists() or any(c in source for c in "/\\~."):
        return sources.import_local(source, dest)
    raise UserError(f"data.source: unknown source {source!r}; use {', '.join(SOURCES)} "
                    "or a path to a local copy (a folder or zip, e.g. ~/Downloads/archive.zip)")


@stage_main
def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write-manifest", metavar="DIR", help="hash DIR's files into the manifest and exit")
    args = parser.parse_args()
    config = load_params(("data", "fetch"))
    if args.write_manifest:
        count = sources.write_manifest(args.write_manifest, config.fetch.manifest)
        print(f"wrote {count} entries to {config.fetch.manifest}")
        return
    with atomic_dir(RAW_DIR) as tmp:
        layout = fetch(config.data, config.fetch, tmp)
    files = sum(1 for p in RAW_DIR.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    print(f"fetched {files} images from {config.data.source} into {RAW_DIR} (layout: {layout})")


if __name__ == "__main__":
    main()
