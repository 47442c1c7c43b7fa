"""Where a sweep's records lie: one configuration's report (.json, .md) and its kept test predictions (.csv)."""
from pathlib import Path

RECORDS_DIR = Path("metrics")


def record_paths(record):
    """(report .json, report .md, kept predictions .csv) of one configuration's record."""
    stem = RECORDS_DIR / f"sweep_{record}"
    return stem.with_suffix(".json"), stem.with_suffix(".md"), stem.with_name(f"{stem.name}_predictions.csv")
