"""A model card (Mitchell et al. 2019, "Model cards for model reporting") per trained model, drawn from the run's
records: what the model is for, what it was trained on, how it scores per class, how calibrated it is, how it fares
in another laboratory, and which machine made it. Written by the export stage, never by hand."""
from pathlib import Path

from bloodcells.core.digests import file_digest
from bloodcells.data.sources import KNOWN_SOURCES
from bloodcells.training.machine import summary_line

CROSS_LAB_FAMILY = {"resnet": "ResNet18", "efficientnet": "EfficientNet-b0", "alexnet": "AlexNet"}


def source_label(source):
    """The data source without this machine's paths: a named source as it is, a local copy by its folder name."""
    return source if source in KNOWN_SOURCES else f"a local copy (`{Path(str(source)).name}`)"


def split_table(data, classes):
    splits = [split for split in ("train", "val", "test") if split in data]
    lines = ["| class | " + " | ".join(splits) + " |", "|---|" + "---|" * len(splits)]
    for label in [*classes, "total"]:
        lines.append(f"| {label} | " + " | ".join(str(data[split].get(label, 0)) for split in splits) + " |")
    return lines


def per_class_table(evaluation):
    lines = ["| class | sensitivity | specificity | precision | test images |", "|---|---|---|---|---|"]
    for label, row in evaluation["per_class"].items():
        lines.append(f"| {label} | {row['sensitivity']:.3f} | {row['specificity']:.3f} | {row['precision']:.3f} | "
                     f"{row['support']} |")
    return lines


def cross_lab_lines(name, cross_lab):
    """This family's rows of the cross-laboratory record (docs/cross_laboratory.json), said plainly: the range of
    each direction first, then the table."""
    family = CROSS_LAB_FAMILY.get(name)
    rows = [row for row in cross_lab.get("rows", []) if family in row.get("accuracy", {})]
    if not rows:
        return ["No cross-laboratory figure is recorded for this family."]
    directions = {}
    for row in rows:
        key = (row["trained_on"].split(" ")[0].rstrip("',s"), row["tested_on"].split(",")[0])
        directions.setdefault(key, []).append(row["accuracy"][family])
    said = [f"trained on {source}, {family} scores {span(values)} on {target}'s images"
            for (source, target), values in directions.items()]
    baseline = "; ".join(f"{what}: {value:.3f}" for what, value in cross_lab.get("baseline", {}).items())
    lines = ["In plain words: " + "; ".join(said) + (f" (for comparison, {baseline})." if baseline else "."), "",
             f"| trained on | tested on | {family} | all three families | how |", "|---|---|---|---|---|"]
    for row in rows:
        every = " / ".join(f"{value:.3f}" for value in row["accuracy"].values())
        lines.append(f"| {row['trained_on']} | {row['tested_on']} | **{row['accuracy'][family]:.3f}** | {every} | "
                     f"{row['how']} |")
    return lines


def render(name, checkpoint, evaluation, data, training, source, model_path, cross_lab):
    """The card's Markdown."""
    classes = list(checkpoint.classes)
    split = data.get("split", {})
    how_split = (f"fold {split['fold']} of {split['folds']} stratified folds (shuffled by seed {split['seed']}) is "
                 "the test split; the rest is split into training and validation" if split.get("folds")
                 else "a random test split")
    low, high = evaluation["accuracy_ci95"]
    abstention = evaluation.get("abstention", {})
    temperature = checkpoint.temperature or {}
    machine = checkpoint.machine or {}
    md5 = file_digest(model_path, "md5")
    lines = [
        f"# Model card: {name} ({checkpoint.arch})", "",
        "Written by the export stage (`src/export.py`) from this run's records; regenerate it with `dvc repro export`.",
        "",
        "## Intended use",
        f"Research and teaching: it names the white blood cell in a crop of a stained peripheral blood smear as one of "
        f"{', '.join(classes)}. **It is not a medical device and not for diagnosis**: a person qualified to read "
        "smears decides. It knows only these classes and answers one of them for any image, a cell of another kind, "
        "a red cell or an empty field too; `predict --min-confidence` lets it answer `uncertain` instead.", "",
        "## Training data",
        f"Source: {source_label(source)}; {data.get('clean', {}).get('total', '?')} images after cleaning, "
        f"{how_split}. Crops: {checkpoint.crop.get('crop')} crop, {checkpoint.crop.get('image_size')} px "
        f"stored, {checkpoint.image_size} px seen by the model.", "",
        *split_table(data, classes), "",
        f"Training took {training.get('seconds_per_epoch', '?')} s an epoch; kept epoch {training.get('selected_epoch', '?')} "
        f"(validation accuracy {training.get('selected_val_accuracy', float('nan')):.3f}).", "",
        "## How it scores (test split, images no choice of its recipe saw)",
        f"Accuracy **{evaluation['accuracy']:.3f}** ({evaluation['n_correct']}/{evaluation['n_total']}, 95 % interval "
        f"{low:.3f}-{high:.3f}); macro sensitivity {evaluation['macro_sensitivity']:.3f}, macro specificity "
        f"{evaluation['macro_specificity']:.3f}.", "",
        *per_class_table(evaluation), "",
        "Most often confused: " + ("; ".join(f"{p['pair'][0]} and {p['pair'][1]} ({p['errors']} errors)"
                                             for p in evaluation.get("hardest_pairs", [])) or "none") + ".", "",
        "## Calibration and abstaining",
        f"Temperature scaling fitted on the validation split: T = {temperature.get('tta', 1.0):g} with test-time "
        f"augmentation, {temperature.get('single_view', 1.0):g} without. Expected calibration error (ECE: how far "
        f"the stated probability is from the share right) on the test split "
        f"{evaluation.get('expected_calibration_error_before', float('nan')):.3f} before, "
        f"**{evaluation['expected_calibration_error']:.3f}** after; the answers themselves do not change.", "",
        f"Answering only its most confident images: accuracy {fmt(abstention.get('accuracy_at_coverage_0.95'))} on "
        f"95 % of them, {fmt(abstention.get('accuracy_at_coverage_0.90'))} on 90 %. To reach 0.99 accuracy it answers "
        f"{fmt(abstention.get('coverage_at_accuracy_0.99'))} of the images "
        + (f"(`predict --min-confidence {abstention['threshold_for_accuracy_0.99']:.3f}`) and leaves the rest to a "
           "person." if abstention.get("threshold_for_accuracy_0.99") is not None else "(it never gets there)."),
        "(Figures of one test split: a few hundred images or fewer give wide intervals.)", "",
        "## In another laboratory",
        "Another microscope, camera or stain lowers the accuracy, often by far. Measured by this project:", "",
        *cross_lab_lines(name, cross_lab), "",
        "Before you rely on it, score it on a hundred or more labelled cells of your own "
        "(`dvc exp run -S '+external.sets.mine.source=/path/to/your/cells'`).", "",
        "## Machine and reproduction",
        f"Trained on: {summary_line(machine)}, {machine.get('precision', '?')}. The same code, data, parameters, CPU kind and thread count give the "
        "same file byte for byte.", "",
        f"- `{model_path.name}` (PyTorch; loads without running code), MD5 `{md5}`: "
        f"`git log -S {md5} dvc.lock` finds the commit that made it; there `dvc repro train_{name}` "
        "makes it again.",
        f"- `{model_path.with_suffix('.onnx').name}` (ONNX Runtime, no PyTorch needed): "
        f"`python src/predict.py PHOTOS --model {model_path.with_suffix('.onnx').as_posix()}`.",
        ""]
    return "\n".join(lines)


def span(values):
    low, high = min(values), max(values)
    return f"{low:.2f}" if f"{low:.2f}" == f"{high:.2f}" else f"{low:.2f}-{high:.2f}"


def fmt(value):
    return "n/a" if value is None else f"{value:.3f}"
