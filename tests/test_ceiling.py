import importlib.util

import pandas as pd
import pytest

from bloodcells.core.errors import UserError
from conftest import ROOT


def ceiling_benchmark():
    """benchmarks/ceiling.py as a module (benchmarks/ is not a package)."""
    spec = importlib.util.spec_from_file_location("ceiling", ROOT / "benchmarks" / "ceiling.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def keep(record, rows):
    """A record's kept predictions: rows (model, image, actual, predicted)."""
    frame = pd.DataFrame(rows, columns=["model", "image", "actual", "predicted"]).assign(data_seed=0, fold=0,
                                                                                       train_seed=-1)
    frame.to_csv(f"records/{record}_predictions.csv", index=False)


def test_images_no_record_got_right_and_the_oracle_over_records(tmp_path, monkeypatch):
    ceiling = ceiling_benchmark()
    monkeypatch.chdir(tmp_path)
    (tmp_path / "records").mkdir()
    keep("a", [("resnet", "i1", "N", "N"), ("resnet", "i2", "E", "N"), ("resnet", "i3", "L", "M"),
               ("alexnet", "i1", "N", "E"), ("alexnet", "i2", "E", "N"), ("alexnet", "i3", "L", "L")])
    keep("b", [("resnet", "i1", "N", "E"), ("resnet", "i2", "E", "E"), ("resnet", "i3", "L", "M"),
               ("alexnet", "i1", "N", "E"), ("alexnet", "i2", "E", "N"), ("alexnet", "i3", "L", "M")])
    rows = {row["model"]: row for row in ceiling.ceiling(ceiling.read_records(["a", "b"]), suspects={"i3", "i9"})}
    assert (rows["resnet"]["never_right"], rows["resnet"]["oracle_accuracy"], rows["resnet"]["suspected"]) == (1, 2 / 3, 1)
    assert (rows["alexnet"]["never_right"], rows["alexnet"]["suspected"]) == (2, 0)  # i1, i2
    assert (rows["all models"]["never_right"], rows["all models"]["oracle_accuracy"]) == (0, 1.0)
    keep("c", [("resnet", "i1", "N", "N"), ("resnet", "i2", "E", "E"), ("alexnet", "i1", "N", "N")])
    with pytest.raises(UserError, match="not tested on the same images"):
        ceiling.read_records(["a", "c"])
    with pytest.raises(UserError, match="record d kept no predictions"):
        ceiling.read_records(["a", "d"])
