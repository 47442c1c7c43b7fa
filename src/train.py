"""Stage train_<model>: train one model on data/clean and save models/<model>.pt.

Usage: python src/train.py resnet|efficientnet|alexnet
Parameters: the `train` section of params.yaml, overridden by `models.<model>`, and by `finetune` when the model
starts from learnt weights.
"""
import argparse
from pathlib import Path

import torch
from dvclive import Live

from bloodcells.data import classes as class_list, dataset as data
from bloodcells.training import machine
from bloodcells.core.atomic import discard_on_failure, write_json
from bloodcells.core.errors import UserError, stage_main
from bloodcells.models.freezing import freeze_leading_layers
from bloodcells.models.inference import fit_temperatures, save_checkpoint
from bloodcells.config.archs import ARCHS
from bloodcells.models.factory import alexnet_options, build_model, learns_its_own_normalisation
from bloodcells.config.params import load_params
from bloodcells.training import distributed, resume
from bloodcells.training.loop import resolve_device, seed_everything, train_model
from bloodcells.training.recipe import check_family, recipe, training_purpose

MODEL_DIR = Path("models")


@stage_main
def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help=" | ".join(ARCHS))
    name = parser.parse_args().model
    check_family(name)
    config = load_params(("train", f"models.{name}", "finetune"))
    purpose = training_purpose(config, name)
    cfg = recipe(config, name, purpose)
    if purpose == "finetune":
        print(f"{name}: fine-tuning the learnt weights for {cfg.epochs} epochs at lr {cfg.lr:g}, ema {cfg.ema:g} "
              "(the model's recipe with params.yaml's finetune)")
    if cfg.processes > 1 and distributed.world()[1] == 1:  # the stage launches torchrun, which runs this script again
        raise SystemExit(distributed.relaunch(cfg.processes))
    device = distributed.start(resolve_device(cfg.device))
    rank, processes = distributed.world()
    torch.set_num_threads(cfg.threads)  # a sum split over more threads rounds differently: part of the recipe
    classes = class_list.read()
    seed_everything(cfg.seed)
    model = build_model(name, cfg.arch, cfg.image_size, cfg.pretrained, cfg.weights,
                        num_classes=len(classes), classes=classes, norm=cfg.norm, **alexnet_options(cfg))
    if cfg.frozen_share:
        frozen, total = freeze_leading_layers(model, cfg.frozen_share)
        print(f"{name}: the first {frozen} of its {total} weight layers keep their learnt weights "
              f"(finetune.frozen_share {cfg.frozen_share:g})")
    crop = data.read_crop_settings()
    if cfg.image_size > crop["image_size"]:
        raise UserError(f"models.{name}.image_size {cfg.image_size} is larger than the prepared crops "
                        f"({crop['image_size']} px); raise clean.image_size or lower the model's image_size")
    train_set = data.CropDataset("train", cfg.image_size)
    val_set = data.CropDataset("val", cfg.image_size, require_all_classes=False)
    if cfg.pretrained or (cfg.weights and not learns_its_own_normalisation(cfg.weights, name)):
        mean, std = data.IMAGENET_MEAN, data.IMAGENET_STD
    else:
        mean, std = data.channel_stats(train_set.images)
    fingerprint = resume.fingerprint(cfg, model, train_set, val_set, mean, std, device)
    saved_run = resume.SavedRun(f"train_{name}", fingerprint)  # the state of a run that stopped, kept till this one completes
    if rank != 0:  # another process of a torchrun: it trains its share of each batch, process 0 writes
        train_model(model, train_set, val_set, cfg, None, device, mean, std, saved_run)
        return distributed.finish()
    discard_on_failure(f"metrics/train/{name}")  # DVCLive writes it epoch by epoch: all or nothing
    with Live(dir=f"metrics/train/{name}", dvcyaml=None, save_dvc_exp=False, report=None) as live:
        state, summary = train_model(model, train_set, val_set, cfg, live, device, mean, std, saved_run)
        distributed.finish()
        model.load_state_dict(state)
        temperature = fit_temperatures(model, val_set.images, val_set.labels, mean, std, device=device)
        summary |= {f"temperature_{mode}": value for mode, value in temperature.items()}
        summary["parameters"] = sum(p.numel() for p in model.parameters())
        made_on = machine.record(device, cfg.threads, summary.pop("precision"))
        if processes > 1:  # the global batch is the recipe's, split over the processes, at the recipe's lr
            made_on["distributed"] = {"processes": processes, "global_batch": cfg.batch_size, "lr": cfg.lr}
        for key, value in summary.items():
            live.log_metric(key, value, plot=False)
    write_json(Path(f"metrics/train/{name}/machine.json"), made_on)
    save_checkpoint(MODEL_DIR / f"{name}.pt", model.cpu(), cfg, classes, mean, std, crop, made_on,
                    temperature=temperature)
    saved_run.remove()
    print(f"{name}: kept epoch {summary['selected_epoch']} (val accuracy {summary['selected_val_accuracy']:.3f}; "
          f"best {summary['best_val_accuracy']:.3f} at epoch {summary['best_epoch']}), "
          f"{summary['seconds_per_epoch']} s/epoch, {summary['images_per_second']} img/s in {made_on['precision']} "
          f"; temperature {temperature['tta']:g} fitted on the validation split -> {MODEL_DIR / name}.pt")


if __name__ == "__main__":
    main()
