"""A model's recipe for one purpose, the one place that merges params.yaml's sections for a model: the `train`
section overridden by `models.<name>`, then
- train: as it is, from scratch;
- finetune: with `finetune`'s changes, for a model that starts from learnt weights (models.<name>.weights or
  pretrained): its epochs, its learning rate scaled, its ema, its frozen layers;
- pretrain: from scratch on another labelled set for pretrain.epochs (pretrain.colour_jitter where set): the weights
  must fit the model that starts from them, so the architecture and its input side are the target's."""
from pathlib import Path

from bloodcells.config.archs import ARCHS
from bloodcells.config.schema import Recipe
from bloodcells.core.errors import UserError

PURPOSES = ("train", "finetune", "pretrain")
WEIGHTS_DIR = Path("weights")


def check_family(name):
    """A model name the pipeline knows (before its params.yaml section is looked for)."""
    if name not in ARCHS:
        raise UserError(f"unknown model {name!r}; the pipeline trains {', '.join(ARCHS)}")


def training_purpose(config, name):
    """What train_<name> does with the model: fine-tunes learnt weights, or trains it from scratch."""
    own = merged_settings(config, name)
    return "finetune" if own["weights"] or own["pretrained"] else "train"


def recipe(config, name, purpose):
    """The Recipe of model `name` for `purpose` (one of PURPOSES), from the validated config (schema.Config)."""
    if purpose not in PURPOSES:
        raise ValueError(f"purpose {purpose!r} is not one of {PURPOSES}")
    values = merged_settings(config, name)
    if purpose == "pretrain":
        values |= {"pretrained": False, "weights": None, "epochs": config.pretrain.epochs}
        if config.pretrain.colour_jitter is not None:  # colours as noise, for a target stained otherwise
            values["colour_jitter"] = config.pretrain.colour_jitter
        return Recipe(**values)
    weights_dir = (WEIGHTS_DIR / name).resolve()
    if values["weights"] and weights_dir not in Path(values["weights"]).expanduser().resolve().parents:
        raise UserError(f"models.{name}.weights must be a file under {WEIGHTS_DIR / name}/ (a declared dependency "
                        f"of train_{name}); copy {values['weights']} there")
    if purpose == "finetune":
        finetune = config.finetune
        values |= {"lr": values["lr"] * finetune.lr_scale, "frozen_share": finetune.frozen_share}
        values |= {key: getattr(finetune, key) for key in ("epochs", "ema") if getattr(finetune, key) is not None}
    return Recipe(**values)


def merged_settings(config, name):
    """The `train` section overridden by every key `models.<name>` gives (a null it gives too)."""
    check_family(name)
    if name not in config.models:
        raise UserError(f"unknown model {name!r}; params.yaml models: has {', '.join(config.models)}")
    own = config.models[name]
    return {**config.train.model_dump(), **own.model_dump(exclude_unset=True), "name": name}
