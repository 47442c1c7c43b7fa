"""Stage fetch: put the raw dataset in data/raw (JPEGImages/, Annotations/, labels.csv).

`data.source` picks where it comes from: bccd (pinned public downloads, checked against
data/bccd.sha256), kaggle, synthetic, or a local folder/zip laid out like Kaggle's dataset-master.
Run `python src/fetch.py --write-manifest DIR` to regenerate the manifest from a trusted copy.
"""
import argparse
from pathlib import Path

from bloodcells import sources, synthetic
from bloodcells.atomic import atomic_dir
from bloodcells.errors import UserError, stage_main
from bloodcells.params import load_params

RAW_DIR = Path("data/raw")


def fetch(data_params, fetch_params, dest):
    source = str(data_params["source"])
    if source == "bccd":
        sources.fetch_bccd(dest, fetch_params["urls"], fetch_params["manifest"],
                           timeout=fetch_params["timeout"], retries=fetch_params["retries"])
    elif source == "kaggle":
        sources.fetch_kaggle(dest)
    elif source == "synthetic":
        spec = data_params["synthetic"]
        synthetic.generate(dest, spec["per_class"], spec["size"], seed=spec["seed"])
    elif Path(source).expanduser().exists() or any(c in source for c in "/\\~."):
        sources.import_local(source, dest)
    else:
        raise UserError(f"data.source: unknown source {source!r}; use bccd, kaggle, synthetic "
                        "or a path to a local copy (a folder or zip, e.g. ~/Downloads/archive.zip)")


@stage_main
def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write-manifest", metavar="DIR", help="hash DIR's files into the manifest and exit")
    args = parser.parse_args()
    params = load_params(("data", "fetch"))
    if args.write_manifest:
        count = sources.write_manifest(args.write_manifest, params["fetch"]["manifest"])
        print(f"wrote {count} entries to {params['fetch']['manifest']}")
        return
    with atomic_dir(RAW_DIR) as tmp:
        fetch(params["data"], params["fetch"], tmp)
    images = len(list((RAW_DIR / "JPEGImages").glob("*.jpg")))
    print(f"fetched {images} images from {params['data']['source']} into {RAW_DIR}")


if __name__ == "__main__":
    main()
