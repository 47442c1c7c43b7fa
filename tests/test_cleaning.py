import pandas as pd
import pytest

from bloodcells.data.cleaning import BCCD_CLASSES as CLASSES
from bloodcells.data.cleaning import apply_rules, fold_assignment, read_labels, resample_train, split, split_fold, \
    split_stratified
from bloodcells.core.errors import UserError
from bloodcells.data.layouts import dataset_master


def index_of(folder):
    return dataset_master.read_index(folder, [])[0]


def write_labels(tmp_path, rows, header=",Image,Category"):
    path = tmp_path / "labels.csv"
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    return path


def make_images(tmp_path, numbers):
    folder = tmp_path / "JPEGImages"
    folder.mkdir(exist_ok=True)
    for n in numbers:
        (folder / f"BloodImage_{n:05d}.jpg").write_bytes(b"x")
    return folder


def test_rules_drop_empty_multiple_basophil_and_missing(tmp_path):
    write_labels(tmp_path, [
        ",0,NEUTROPHIL", ",1,EOSINOPHIL", ",2,", ',3,"NEUTROPHIL, EOSINOPHIL"', ",4,BASOPHIL",
        ",5,LYMPHOCYTE", ",6,MONOCYTE", ",7,NEUTROPHIL",  # 7 has no image
    ])
    make_images(tmp_path, range(7))
    kept, dropped = apply_rules(index_of(tmp_path), tmp_path, CLASSES)
    assert list(kept["image"]) == ["BloodImage_00000", "BloodImage_00001", "BloodImage_00005", "BloodImage_00006"]
    assert list(kept["label"]) == ["NEUTROPHIL", "EOSINOPHIL", "LYMPHOCYTE", "MONOCYTE"]
    assert dropped == {"empty": 1, "multiple": 1, "class": 1, "missing_image": 1}


def test_unknown_label_is_a_clear_error(tmp_path):
    write_labels(tmp_path, [",0,NEUTROPHIL", ",1,PLATELET"])
    make_images(tmp_path, range(2))
    with pytest.raises(UserError, match="PLATELET.*not one of"):
        apply_rules(index_of(tmp_path), tmp_path, CLASSES)


def test_missing_image_is_an_error_when_not_dropped(tmp_path):
    write_labels(tmp_path, [",0,NEUTROPHIL", ",1,MONOCYTE"])
    make_images(tmp_path, [0])
    with pytest.raises(UserError, match="BloodImage_00001.jpg is missing"):
        apply_rules(index_of(tmp_path), tmp_path, CLASSES, drop_missing_images=False)


@pytest.mark.parametrize("header,message", [(",Image,Label", "missing column.*Category"),
                                            (",Picture,Category", "missing column.*Image")])
def test_missing_columns(tmp_path, header, message):
    path = write_labels(tmp_path, [",0,NEUTROPHIL"], header=header)
    with pytest.raises(UserError, match=message):
        read_labels(path)


def test_non_numeric_image_is_an_error(tmp_path):
    path = write_labels(tmp_path, [",0,NEUTROPHIL", ",abc,NEUTROPHIL"])
    with pytest.raises(UserError, match="'abc' in row 3"):
        read_labels(path)


def frame(counts):
    rows, number = [], 0
    for label, n in counts.items():
        for _ in range(n):
            rows.append((f"BloodImage_{number:05d}", label))
            number += 1
    return pd.DataFrame(rows, columns=["image", "label"])


REAL_COUNTS = {"NEUTROPHIL": 206, "EOSINOPHIL": 88, "LYMPHOCYTE": 33, "MONOCYTE": 20}


def test_split_is_stratified_disjoint_and_seeded():
    data = frame(REAL_COUNTS)
    train, val, test = split_stratified(data, 0.1, 0.1, seed=0, classes=CLASSES)
    assert len(test) == 35 and len(val) == 32 and len(train) == 280
    assert test["label"].value_counts().to_dict() == {"NEUTROPHIL": 21, "EOSINOPHIL": 9, "LYMPHOCYTE": 3, "MONOCYTE": 2}
    assert not set(train["image"]) & set(test["image"]) and not set(val["image"]) & set(test["image"])
    again = split_stratified(data, 0.1, 0.1, seed=0, classes=CLASSES)[2]
    other = split_stratified(data, 0.1, 0.1, seed=1, classes=CLASSES)[2]
    assert list(again["image"]) == list(test["image"])
    assert list(other["image"]) != list(test["image"])


def test_every_image_is_tested_in_exactly_one_fold_with_classes_stratified():
    data = frame(REAL_COUNTS)
    tested = []
    for k in range(5):
        train, val, test = split_fold(data, 5, k, 0.1, seed=0, classes=CLASSES)
        assert not set(train["image"]) & set(test["image"]) and not set(val["image"]) & set(test["image"])
        assert len(train) + len(val) + len(test) == len(data)
        counts = test["label"].value_counts()
        for label, total in REAL_COUNTS.items():  # every class in every fold, as evenly as 5 folds allow
            assert total // 5 <= counts[label] <= -(-total // 5)
        tested += list(test["image"])
    assert sorted(tested) == sorted(data["image"])


def test_folds_are_deterministic_per_seed_and_ignore_row_order():
    data = frame(REAL_COUNTS)
    first = fold_assignment(data, 5, seed=0, classes=CLASSES)
    shuffled = data.sample(frac=1, random_state=3)
    again = pd.Series(fold_assignment(shuffled, 5, seed=0, classes=CLASSES), index=shuffled.index).sort_index()
    assert list(again) == list(first)
    assert list(fold_assignment(data, 5, seed=1, classes=CLASSES)) != list(first)
    assert sorted(pd.Series(first).value_counts()) == [69, 69, 69, 70, 70]


def test_folds_zero_is_the_random_split_and_too_many_folds_for_the_data_is_one_line():
    data = frame(REAL_COUNTS)
    random_test = split(data, 0, 0, 0, 0.1, 0.1, CLASSES)[2]
    assert list(random_test["image"]) == list(split_stratified(data, 0.1, 0.1, seed=0, classes=CLASSES)[2]["image"])
    assert len(split(data, 5, 4, 0, 0.1, 0.1, CLASSES)[2]) in (69, 70)
    with pytest.raises(UserError, match="needs at least 22 images of every class"):
        split(data, 20, 0, 0, 0.1, 0.1, CLASSES)


def test_resample_drops_neutrophils_then_balances():
    train = frame({"NEUTROPHIL": 100, "EOSINOPHIL": 40, "LYMPHOCYTE": 15, "MONOCYTE": 10})
    balanced = resample_train(train, {"NEUTROPHIL": 0.1}, "balance", seed=0, classes=CLASSES)
    assert balanced["label"].value_counts().to_dict() == {label: 90 for label in CLASSES}
    # every original non-neutrophil image is still there
    assert set(train.loc[train["label"] != "NEUTROPHIL", "image"]) <= set(balanced["image"])


def test_resample_with_factors_and_none():
    train = frame({"NEUTROPHIL": 20, "EOSINOPHIL": 10, "LYMPHOCYTE": 4, "MONOCYTE": 2})
    factors = resample_train(train, {}, {"LYMPHOCYTE": 3, "MONOCYTE": 2.5}, seed=0, classes=CLASSES)
    assert factors["label"].value_counts().to_dict() == {"NEUTROPHIL": 20, "EOSINOPHIL": 10, "LYMPHOCYTE": 12,
                                                         "MONOCYTE": 5}
    assert len(resample_train(train, {}, "none", seed=0, classes=CLASSES)) == len(train)
