"""A model's recipe for one purpose, the one place that merges params.yaml's sections for a model: the `train`
section overridden by `models.<name>`, then
- train: as it is, from scratch;
- finetune: with `finetune`'s changes, for a model that starts from learnt weights (models.<name>.weights or
  pretrained): its epochs, its learning rate scaled, its ema, its frozen layers;
- pretrain: from scratch on another labelled set for pretrain.epochs (pretrain.colour_jitter where set): the weights
  must fit the model that starts from them, so the architecture and its input side are the target's."""
from pathlib import Path

from bloodcells.config.params import Params
from bloodcells.core.errors import UserError

PURPOSES = ("train", "finetune", "pretrain")
WEIGHTS_DIR = Path("weights")


def training_purpose(params, name):
    """What train_<name> does with the model: fine-tunes learnt weights, or trains it from scratch."""
    model = _model_section(params, name)
    return "finetune" if model.get("weights") or model.get("pretrained", params["train"].get("pretrained")) else "train"


def recipe(params, name, purpose):
    """The settings of model `name` for `purpose` (one of PURPOSES), as a Params whose missing key names both
    sections it could come from."""
    if purpose not in PURPOSES:
        raise ValueError(f"purpose {purpose!r} is not one of {PURPOSES}")
    values = {**params["train"], **_model_section(params, name), "name": name}
    if purpose == "pretrain":
        values |= {"pretrained": False, "weights": None, "epochs": params["pretrain"]["epochs"]}
        if params["pretrain"].get("colour_jitter") is not None:  # colours as noise, for a target stained otherwise
            values["colour_jitter"] = params["pretrain"]["colour_jitter"]
        return Params(values, f"models.{name}.", fallback="train.")
    weights_dir = (WEIGHTS_DIR / name).resolve()
    if values.get("weights") and weights_dir not in Path(values["weights"]).expanduser().resolve().parents:
        raise UserError(f"models.{name}.weights must be a file under {WEIGHTS_DIR / name}/ (a declared dependency "
                        f"of train_{name}); copy {values['weights']} there")
    if purpose == "finetune":
        finetune = params["finetune"]
        values |= {"lr": values["lr"] * finetune["lr_scale"], "frozen_share": finetune["frozen_share"]}
        values |= {key: finetune[key] for key in ("epochs", "ema") if finetune[key] is not None}
    return Params(values, f"models.{name}.", fallback="train.")


def _model_section(params, name):
    if name not in params.get("models", {}):
        raise UserError(f"unknown model {name!r}; params.yaml models: has {', '.join(params.get('models', {}))}")
    return params["models"][name]
