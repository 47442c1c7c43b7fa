"""The declared schema of params.yaml: every section, key, type and range in one place (pydantic).

Each stage validates the sections it reads before doing anything and reports every problem at once, in
one line: an unknown key (a typo such as `epoch:`), a wrong type ("ten", 3.5 for an integer, true for a
number), a value out of range or not one of the choices, a missing key or section.
"""
import difflib
import typing
from typing import Annotated, Any, Literal, Optional

from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StrictFloat, StrictInt,
                      ValidationError, ValidationInfo, create_model, model_validator)

from bloodcells.data import classes
from bloodcells.core.errors import UserError
from bloodcells.config.archs import ARCHS
from bloodcells.data.sources import KNOWN_SOURCES
from bloodcells.data.layouts.class_folders import NAME as CLASS_FOLDERS



def a_number(value):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError("must be a number")
    return value


def not_a_bool(value):
    if isinstance(value, bool):  # True == 1 in Python
        raise ValueError("must be a number, not true/false")
    return value


def oversample_rule(value):
    if isinstance(value, dict):
        if not all(a_number_at_least_one(factor) for factor in value.values()):
            raise ValueError("factors must be numbers >= 1")
    elif value not in ("balance", "none"):
        raise ValueError("must be balance, none or per-class factors such as {EOSINOPHIL: 2}")
    return value


def a_number_at_least_one(value):
    return not isinstance(value, bool) and isinstance(value, (int, float)) and value >= 1


Number = Annotated[StrictInt | StrictFloat, BeforeValidator(a_number)]  # an int stays an int: crop.json's bytes
PositiveInt = Annotated[int, Field(strict=True, gt=0)]
Count = Annotated[int, Field(strict=True, ge=0)]
Share = Annotated[float, Field(strict=True, gt=0, lt=1)]
Bool = Annotated[bool, Field(strict=True)]
Text = Annotated[str, Field(strict=True, min_length=1)]


def at_least(low, high=None, below=None):
    """A number >= low (and <= high, or < below)."""
    return Annotated[Number, Field(ge=low, le=high, lt=below)]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class Synthetic(Section):
    per_class: Annotated[int, Field(strict=True, ge=3)]
    size: Annotated[list[Annotated[int, Field(strict=True, ge=64)]], Field(min_length=2, max_length=2)]
    seed: Count


class Data(Section):
    source: Text
    seed: Count
    folds: Count
    fold: Count
    synthetic: Synthetic

    @model_validator(mode="after")
    def fold_of_folds(self):
        if self.folds == 1:
            raise ValueError("folds: must be 0 (one random split) or at least 2, got 1")
        if self.folds and self.fold >= self.folds:
            raise ValueError(f"fold: must be from 0 to data.folds - 1 = {self.folds - 1}, got {self.fold}")
        return self


class Urls(Section):
    images: Text
    annotations: Text
    labels: Text


class Fetch(Section):
    manifest: Text
    timeout: Annotated[Number, Field(gt=0)]
    retries: Annotated[int, Field(strict=True, ge=1, le=20)]
    urls: Urls


class Clean(Section):
    drop_empty: Bool
    drop_multiple: Bool
    drop_classes: list[Text]
    min_images: PositiveInt
    rename: Optional[dict[Text, Text]]
    classes: Optional[Annotated[list[Text], Field(min_length=2)]]
    drop_missing_images: Bool
    skip_corrupt: Bool
    test_size: Annotated[float, Field(strict=True, gt=0, lt=0.5)]
    val_size: Annotated[float, Field(strict=True, gt=0, lt=0.5)]
    undersample: Optional[dict[Text, at_least(0, below=1)]]
    oversample: Annotated[Any, AfterValidator(oversample_rule)]
    locator: Literal["voc", "stain"]
    crop: Literal["wbc", "centre", "none"]
    margin: at_least(0)
    crop_side: Optional[Annotated[int, Field(strict=True, ge=16)]]
    edge_cells: Literal["pad", "shift"]
    fallback_box_size: PositiveInt
    image_size: Annotated[int, Field(strict=True, ge=32, le=1024)]
    leave_out_of_training: Optional[Annotated[str, Field(strict=True, pattern=r"^[A-Za-z0-9._-]+$")]]

    @model_validator(mode="after")
    def a_recipe_for_the_layout(self, info: ValidationInfo):
        """VOC boxes exist only in BCCD's layout: with class folders, a crop around the annotated box means BCCD's
        recipe was kept, and its class rules would follow (when the stage knows the layout: clean, before it reads any
        image)."""
        if (info.context or {}).get("layout") == CLASS_FOLDERS and (self.crop, self.locator) == ("wbc", "voc"):
            raise ValueError("locator: voc with crop: wbc (BCCD's recipe: the annotated box in each photograph), but "
                             "data.source is one folder per class, with no boxes; run with -S dataset=folders (one "
                             "centred cell per image, no class rules), or -S clean.locator=stain for whole smear "
                             "photographs")
        return self

    @model_validator(mode="after")
    def class_names_of_the_data(self, info: ValidationInfo):
        """Every key that names a class names one of the data's (when the stage knows them: clean)."""
        known = (info.context or {}).get("classes")
        if not known:
            return self
        problems = classes.unknown_names(self.drop_classes, known, "drop_classes")
        problems += classes.unknown_names(self.rename or {}, known, "rename")
        renamed = [(self.rename or {}).get(name, name) for name in known if name not in self.drop_classes]
        problems += classes.unknown_names(self.classes or [], renamed, "classes")
        learnt = [name for name in (self.classes or renamed) if name in renamed]
        problems += classes.unknown_names(self.undersample or {}, learnt, "undersample")
        problems += classes.unknown_names(self.oversample if isinstance(self.oversample, dict) else {}, learnt,
                                          "oversample")
        if problems:
            raise ValueError(" | clean.".join(problems))
        return self


class Explore(Section):
    max_images_per_class: PositiveInt


TRAIN_KEYS = {
    "seed": Count,
    "device": Literal["auto", "cpu", "cuda"],
    "threads": Annotated[int, Field(strict=True, ge=1, le=256)],
    "processes": Annotated[int, Field(strict=True, ge=1, le=256)],
    "precision": Literal["auto", "fp32", "bf16"],
    "epochs": PositiveInt,
    "batch_size": PositiveInt,
    "optimizer": Literal["adamw", "adam", "sgd"],
    "lr": Annotated[Number, Field(gt=0)],
    "weight_decay": at_least(0),
    "warmup_epochs": Count,
    "label_smoothing": at_least(0, below=1),
    "mixup": at_least(0),
    "ema": at_least(0, below=1),
    "select": Literal["last", "best"],
    "image_size": Annotated[int, Field(strict=True, ge=32)],
    "colour_jitter": at_least(0, high=1),
    "max_shift": at_least(0, below=1),
    "max_scale": at_least(0, below=1),
    "max_rotation": at_least(0, high=180),
    "stain_jitter": at_least(0, high=1),
    "blur": at_least(0, high=5),
    "norm": Literal["batch", "group"],
    "pretrained": Bool,
    "weights": Optional[Text],
}
ALEXNET_KEYS = {"stem_stride": Annotated[Literal[4, 2], BeforeValidator(not_a_bool)],
                "feature_pool": Annotated[Literal[6, 1], BeforeValidator(not_a_bool)], "batch_norm": Bool}

Train = create_model("Train", __base__=Section, **{key: (kind, ...) for key, kind in TRAIN_KEYS.items()})
def one_of(choices):
    """A string among `choices`, kept as the object given: a Literal would return its own constant, the very object
    Checkpoint.model holds for AlexNet ("alexnet"), and the checkpoint's pickle would then store the two once, which
    changes the file's bytes."""
    def check(value):
        if value not in choices:
            raise ValueError("must be " + " or ".join([", ".join(map(repr, choices[:-1])), repr(choices[-1])]
                                                       if len(choices) > 1 else [repr(choices[0])]))
        return value
    return Annotated[Text, AfterValidator(check)]


MODELS = {  # a model's section: its arch, and any train key to override
    name: create_model(f"Model_{name}", __base__=Section, arch=(one_of(archs), ...),
                       **{key: (kind, None) for key, kind in TRAIN_KEYS.items()},  # null only where train allows it
                       **({key: (kind, None) for key, kind in ALEXNET_KEYS.items()}
                          if name == "alexnet" else {}))
    for name, archs in ARCHS.items()
}


class Finetune(Section):
    """Changes to a model's own recipe when it starts from learnt weights (src/train.py)."""
    epochs: Optional[PositiveInt]
    lr_scale: Annotated[Number, Field(gt=0)]
    ema: Optional[at_least(0, below=1)]
    frozen_share: at_least(0, below=1)


class Evaluate(Section):
    tta: Bool
    batch_size: PositiveInt


LOCAL_COPY_HINT = "a local folder or zip (a download such as bccd is data.source's: fetch it, then name the copy)"


def a_local_copy(value):
    if value in KNOWN_SOURCES:
        raise ValueError(f"must be {LOCAL_COPY_HINT}")
    return value


class LabelledCopy(Section):
    """Another lab's labelled images; a key left out is null: the set's layout decides the cut, names match in any
    case."""
    source: Annotated[Text, AfterValidator(a_local_copy)]
    rename: Optional[dict[Text, Text]] = None     # {the set's class: the model's}
    crop: Optional[Literal["wbc", "centre", "none"]] = None
    locator: Optional[Literal["voc", "stain"]] = None
    margin: Optional[at_least(0)] = None
    crop_side: Optional[Annotated[int, Field(strict=True, ge=16)]] = None


class ExternalSetParams(LabelledCopy):
    """One external test set."""
    statistics: Optional[Literal["model", "own"]] = None  # standardise by the model's training statistics or the set's
    adapt: Optional[Literal["none", "batch_norm"]] = None  # batch_norm: AdaBN, the norms' statistics the set's own
    folds: Optional[Annotated[list[Count], Field(min_length=1)]] = None  # only these folds of the set's own partition
    fold_count: Annotated[int, Field(strict=True, ge=2)] = 5
    fold_seed: Count = 0

    @model_validator(mode="after")
    def folds_of_the_partition(self):
        if self.folds and max(self.folds) >= self.fold_count:
            raise ValueError(f"folds: each must be from 0 to fold_count - 1 = {self.fold_count - 1}, got {self.folds}")
        return self


class External(Section):
    sets: dict[Annotated[str, Field(strict=True, pattern=r"^[A-Za-z0-9_-]+$")], ExternalSetParams]


class Pretrain(LabelledCopy):
    """Another labelled set to learn starting weights from (src/pretrain.py); read and cut as an external set is."""
    source: Optional[Annotated[Text, AfterValidator(a_local_copy)]] = None
    models: list[Literal[tuple(ARCHS)]]             # one stage pretrain@<model> each; [] (the default): none
    classes: Literal["shared", "all"]
    epochs: PositiveInt
    val_size: Share
    colour_jitter: Optional[TRAIN_KEYS["colour_jitter"]] = None  # null: the model's own

    @model_validator(mode="after")
    def a_source_for_any_model(self):
        if self.models and not self.source:
            raise ValueError("source: not set, and models names " + ", ".join(self.models)
                             + "; give the copy to learn from (-S pretrain.source=/abs/path) or set models: []")
        return self


SECTIONS = {"data": Data, "fetch": Fetch, "clean": Clean, "explore": Explore, "train": Train,
            "finetune": Finetune, "evaluate": Evaluate, "external": External, "pretrain": Pretrain, **{f"models.{name}": model for name, model in MODELS.items()}}

Recipe = create_model(  # one model's settings for one purpose: training/recipe.py makes it from the sections
    "Recipe", __base__=Section, name=(Text, ...), arch=(Text, ...),
    **{key: (kind, ...) for key, kind in TRAIN_KEYS.items()},
    **{key: (Optional[kind], None) for key, kind in ALEXNET_KEYS.items()},
    frozen_share=(at_least(0, below=1), 0))


class Config(BaseModel):
    """params.yaml as the stages read it: each section a stage asked for, validated (the rest None); `models` holds
    the validated model sections by name, in params.yaml's order."""
    model_config = ConfigDict(frozen=True)
    data: Optional[Data] = None
    fetch: Optional[Fetch] = None
    clean: Optional[Clean] = None
    explore: Optional[Explore] = None
    train: Optional[Train] = None
    finetune: Optional[Finetune] = None
    evaluate: Optional[Evaluate] = None
    external: Optional[External] = None
    pretrain: Optional[Pretrain] = None
    models: dict[str, Section] = {}


def validate(params, sections, source="params.yaml", data_classes=None, layout=None):
    """The Config of `sections` of params (names of SECTIONS; "models" means every model in it), or one UserError
    listing every problem. With `data_classes`, keys that name classes are checked against them; with `layout` (the
    name of the data's layout), the recipe against the layout."""
    problems, checked = [], {}
    for section in sections:
        if section == "models":
            models = params.get("models")
            if not isinstance(models, dict) or not models:
                problems.append("models: missing section (copy it from the project's params.yaml)")
                continue
            problems += [f"models.{name}: unknown model (use {', '.join(MODELS)})" for name in models
                         if name not in MODELS]
            problems += check_sections(params, [f"models.{name}" for name in models if name in MODELS], checked)
        else:
            problems += check_sections(params, [section], checked, data_classes, layout)
    if problems:
        count = f"{len(problems)} problems: " if len(problems) > 1 else ""
        raise UserError(f"{source}: {count}{' | '.join(problems)}")
    model_order = list(params.get("models") or {})
    models = {name.split(".")[1]: checked.pop(name) for name in list(checked) if name.startswith("models.")}
    return Config(**checked, models=dict(sorted(models.items(), key=lambda item: model_order.index(item[0]))))


def check_sections(params, sections, checked, data_classes=None, layout=None):
    """Problems of `sections`; each valid one goes into `checked` as its model."""
    problems = []
    for section in sections:
        value = params
        for part in section.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if value is None:
            problems.append(f"{section}: missing section (copy it from the project's params.yaml, which lists every key)")
            continue
        unset = [f"{section}.{key}" for key in unset_keys(value)]
        if unset:
            problems += [f"{key}: not set (??? in the dataset's recipe); give it: dvc exp run -S {key}=..." for key in unset]
            continue
        try:
            checked[section] = SECTIONS[section].model_validate(value, context={"classes": data_classes,
                                                                                "layout": layout})
        except ValidationError as error:
            problems += [problem_line(section, detail) for detail in error.errors()]
    return problems


def unset_keys(section, prefix=""):
    """Keys left at Hydra's mandatory value ??? (conf/config.yaml's keys that a dataset recipe or -S must give)."""
    unset = []
    for key, value in section.items():
        if isinstance(value, dict):
            unset += unset_keys(value, f"{prefix}{key}.")
        elif value == "???":
            unset.append(f"{prefix}{key}")
    return unset


def problem_line(section, detail):
    """One pydantic error as `section.key: what is wrong, got <value>`."""
    keys = [str(part) for part in detail["loc"] if not _is_union_branch(part) and part != "[key]"]
    where = ".".join([section] + keys)
    kind = detail["type"]
    if "[key]" in detail["loc"]:  # a name (a dict key), such as the name of an external set
        return f"{where}: not a usable name (letters, digits, _ and - only: it names a stage and its folders)"
    if kind == "extra_forbidden":
        known = list(model_at(SECTIONS[section], keys[:-1]).model_fields)
        close = difflib.get_close_matches(keys[-1], known, n=1)
        hint = f"did you mean {close[0]}?" if close else f"known keys: {', '.join(known)}"
        return f"{where}: unknown key ({hint})"
    if kind == "missing":
        return f"{where}: missing (add it; the project's params.yaml lists every key with its default)"
    message = detail["msg"].replace("Input should be", "must be").replace("Value error, ", "")
    if not keys:  # a check across keys of the section names its key itself
        return f"{section}.{message}"
    return f"{where}: {message[0].lower() + message[1:]}, got {detail['input']!r}"


def model_at(model, keys):
    """The section model that holds the key at path `keys` below `model` (through nested sections and the values
    of a dict of sections, such as external.sets.<name>)."""
    annotation = model
    for key in keys:
        if isinstance(annotation, type) and issubclass(annotation, BaseModel) and key in annotation.model_fields:
            annotation = annotation.model_fields[key].annotation
        annotation = nested_model(annotation) or annotation
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else model


def nested_model(annotation):
    """The section model inside an annotation such as Optional[...] or dict[str, ...], if there is one."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for argument in typing.get_args(annotation):
        found = nested_model(argument)
        if found is not None:
            return found
    return None


def _is_union_branch(part):
    """pydantic names the branch of a union it tried (int, float, literal[...]); the user wants the key."""
    return isinstance(part, str) and (part in ("int", "float", "str", "bool", "dict", "list", "none")
                                      or part.startswith(("literal[", "dict[", "list[", "function-")))
