"""The README's numbers are the committed records' numbers, and no committed file names a path of one machine."""
import json
import re
import subprocess

import pytest
import yaml

from bloodcells.experiments.report import readme_tables
from conftest import ROOT

README = (ROOT / "README.md").read_text()
RECORD = json.loads((ROOT / "records/defaults.json").read_text())


def test_the_readme_results_are_the_record_of_todays_defaults():
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    archs = {name: model["arch"] for name, model in params["models"].items()}
    for table in readme_tables(RECORD, archs).split("\n\n"):
        assert table.strip() in README, "README Results differ from records/defaults.json: " \
                                        "paste `python src/sweep.py readme defaults`"
    missed = len(RECORD["missed_by_every_model"])
    images = RECORD["models"]["resnet"]["n_images"]
    assert f"{missed} images ({round(100 * missed / images)} %) are missed by" in README
    minutes = RECORD["made"]["minutes"]
    assert f"sweep took {minutes} min" in README


def test_the_committed_baseline_is_fold_0_of_the_record():
    split = json.loads((ROOT / "metrics/data.json").read_text())["split"]
    assert split == {"folds": 5, "fold": 0, "seed": 0}
    for name, row in RECORD["models"].items():
        baseline = json.loads((ROOT / f"metrics/evaluate/{name}.json").read_text())["accuracy"]
        assert baseline == pytest.approx(row["per_fold_accuracy"]["values"][0], abs=1e-12), name


def test_no_committed_file_names_a_path_of_one_machine():
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    machine_path = re.compile(r"(?<![\w.])/(work|home|root|Users|tmp/pytest)/\w")
    found = []
    for rel in files:
        path = ROOT / rel
        if rel.startswith("tests/") or not path.is_file() or path.suffix in (".png", ".pt", ".jpg"):
            continue
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        found += [f"{rel}:{n}" for n, line in enumerate(text.splitlines(), 1) if machine_path.search(line)]
    assert not found, f"absolute paths of one machine in committed files: {found}"


def test_the_committed_params_yaml_is_the_composition_of_conf(tmp_path):
    from dvc.utils.hydra import compose_and_dump
    composed = tmp_path / "params.yaml"
    compose_and_dump(composed, str(ROOT / "conf"), None, "config", "", [])
    assert (ROOT / "params.yaml").read_text() == composed.read_text(), \
        "params.yaml differs from conf/: run dvc exp run (it composes params.yaml), or commit its composition"


def test_every_dataset_recipe_gives_every_key_the_defaults_leave_open(tmp_path):
    from dvc.utils.hydra import compose_and_dump
    from bloodcells.config.schema import unset_keys
    for recipe in sorted((ROOT / "conf/dataset").glob("*.yaml")):
        composed = tmp_path / f"{recipe.stem}.yaml"
        compose_and_dump(composed, str(ROOT / "conf"), None, "config", "", [f"dataset={recipe.stem}"])
        params = yaml.safe_load(composed.read_text())
        assert params["pretrain"]["models"] == []  # so nothing reads pretrain.source, which stays open
        left_open = [key for key in unset_keys(params) if key != "pretrain.source"]
        assert left_open == ([] if recipe.stem == "bccd" else ["data.source"]), recipe.name
    compose_and_dump(tmp_path / "start.yaml", str(ROOT / "conf"), None, "config", "", ["start=pbc"])
    params = yaml.safe_load((tmp_path / "start.yaml").read_text())
    assert unset_keys(params) == ["pretrain.source"] and params["pretrain"]["models"]  # the user gives the copy


FAMILY = {"resnet": "ResNet18", "efficientnet": "EfficientNet-b0", "alexnet": "AlexNet"}


def test_the_readmes_pbc_table_is_the_frontier_record(tmp_path):
    from dvc.utils.hydra import compose_and_dump
    record = json.loads((ROOT / "records/frontier_pbc.json").read_text())
    compose_and_dump(tmp_path / "pbc.yaml", str(ROOT / "conf"), None, "config", "", ["dataset=pbc"])
    params = yaml.safe_load((tmp_path / "pbc.yaml").read_text())
    defaults = [r for r in record["rows"] if r["recipe"] == "default"]
    assert {r["model"] for r in defaults} == set(FAMILY)
    for row in defaults:  # the default recipe's rows are -S dataset=pbc's recipe (conf/dataset/folders.yaml's)
        assert (row["image_size"], row["epochs"]) == (params["models"][row["model"]]["image_size"],
                                                      params["models"][row["model"]]["epochs"])
    quick = yaml.safe_load((ROOT / "conf/dataset/pbc_quick.yaml").read_text())
    for row in (r for r in record["rows"] if r["recipe"] == "quick"):  # -S dataset=pbc_quick is what was measured
        assert row["epochs"] == quick["models"][row["model"]]["epochs"]
        assert f"train.ema={quick['train']['ema']}" in row["settings"]
    for row in record["rows"]:
        if row["recipe"] in ("default", "long"):
            low, high = row["test_ci95"]
            line = (f"| {FAMILY[row['model']]} | {row['image_size']} px x {row['epochs']} | "
                    f"**{row['test_accuracy']:.3f}** ({low:.3f}-{high:.3f}) | {row['macro_sensitivity']:.3f} | "
                    f"{row['train_minutes']:.1f} |")
            assert line in README, f"README's PBC table differs from records/frontier_pbc.json: {line}"


def test_the_readmes_five_fold_pbc_figures_are_the_sweep_record():
    record = json.loads((ROOT / "records/pbc.json").read_text())
    assert record["configuration"]["only_folds"] is None  # all five folds, not a merge of some of them
    models = record["models"]
    images = models["resnet"]["n_images"]
    figures = " / ".join(f"{models[name]['accuracy']['value']:.3f}" for name in FAMILY)
    sensitivity = " / ".join(f"{models[name]['macro_sensitivity']['value']:.3f}" for name in FAMILY)
    p_value = next(pair for pair in record["pairs"] if {pair["a"], pair["b"]} == {"resnet", "efficientnet"})
    prose = " ".join(README.split())
    assert f"**All five folds** ({images:,} test images" in prose
    assert f"record `pbc`): {figures}, macro sensitivity {sensitivity}" in prose, \
        "README's five-fold PBC figures differ from records/pbc.json"
    assert f"EfficientNet-b0 vs ResNet18 p = {p_value['mcnemar'][0]['p_value']:.2f}" in prose


def test_the_readmes_cross_laboratory_figures_are_the_model_cards_record():
    """The model cards quote docs/cross_laboratory.json; the README's "Across datasets" table shows the same
    figures, so neither can change alone."""
    record = json.loads((ROOT / "docs/cross_laboratory.json").read_text())
    section = README.split("## Across datasets", 1)[1].split("\n## ", 1)[0]
    for row in record["rows"]:
        figures = " / ".join(f"{value:.3f}" for value in row["accuracy"].values())
        assert figures in section.replace("**", ""), f"{figures} ({row['trained_on']}) is not in the README's table"
    for value in record["baseline"].values():
        assert f"({value:.3f})" in section


def test_every_readme_table_ends_where_its_rows_end():
    """A table line followed by a paragraph with no blank line between renders the paragraph as more rows."""
    from markdown_it import MarkdownIt
    for path in (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))):
        lines = path.read_text().splitlines()
        tables = [token.map for token in MarkdownIt("commonmark").enable("table").parse("\n".join(lines))
                  if token.type == "table_open"]
        assert tables or path.name != "README.md"
        for start, end in tables:
            strays = [f"{path.name}:{i + 1}: {lines[i][:60]}" for i in range(start, end)
                      if not lines[i].lstrip().startswith("|")]
            assert not strays, "a table runs into the next paragraph:\n" + "\n".join(strays)


def test_every_committed_sweep_record_is_data_its_markdown_and_description_are_drawn_from():
    from bloodcells.experiments import records
    from bloodcells.experiments.report import markdown
    sweep_records = [path for path in sorted((ROOT / "records").glob("*.json"))
                     if not path.stem.startswith(("frontier_", "label_issues_"))]
    assert len(sweep_records) >= 20
    for path in sweep_records:
        record = json.loads(path.read_text())
        assert record["record"] == path.stem and set(record["configuration"]) >= {"folds", "data_seeds", "settings"}
        assert record["description"] == records.description(record), path.name
        assert path.with_suffix(".md").read_text() == markdown(record, record["description"]), path.name
