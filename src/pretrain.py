"""Stage pretrain@<model>: train a model of the target's recipe on another labelled dataset (pretrain.source), so
that train_<model> can start from it (models.<model>.weights: weights/<model>/pretrain.pt).

Usage: python src/pretrain.py resnet|efficientnet|alexnet
Parameters: `pretrain`, and the model's own recipe (`train`, `models.<model>`) from scratch, for pretrain.epochs
(and pretrain.colour_jitter where set).
Outputs: weights/<model>/pretrain.pt (a checkpoint like models/<model>.pt: its classes, its channel statistics,
how its crops were cut), metrics/pretrain/<model>/ (DVCLive's metrics and training curves, data.json).
"""
import argparse
from pathlib import Path

import torch
from dvclive import Live

from bloodcells.data import classes as class_list, dataset as data
from bloodcells.training import machine, pretraining
from bloodcells.core.atomic import discard_on_failure, write_json
from bloodcells.core.errors import stage_main
from bloodcells.models.inference import save_checkpoint
from bloodcells.config.archs import ARCHS
from bloodcells.models.factory import alexnet_options, build_model
from bloodcells.config.params import load_params
from bloodcells.training import resume
from bloodcells.training.loop import resolve_device, seed_everything, train_model
from bloodcells.training.recipe import check_family, recipe

WEIGHTS_DIR = Path("weights")
METRICS_DIR = Path("metrics/pretrain")


@stage_main
def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help=" | ".join(ARCHS))
    name = parser.parse_args().model
    check_family(name)
    config = load_params(("pretrain", "train", f"models.{name}"))
    settings = config.pretrain
    cfg = recipe(config, name, "pretrain")
    device = resolve_device(cfg.device)
    torch.set_num_threads(cfg.threads)
    target_classes, target_crop = class_list.read(), data.read_crop_settings()
    seed_everything(cfg.seed)
    images, labels, names, classes, crop, found = pretraining.read_source(settings, target_crop, target_classes)
    train, val = pretraining.validation_split(labels, settings.val_size, cfg.seed)
    train_set = data.CropDataset.from_tensors(images[train], labels[train], [names[i] for i in train], classes,
                                              cfg.image_size)
    val_set = data.CropDataset.from_tensors(images[val], labels[val], [names[i] for i in val], classes,
                                            cfg.image_size)
    del images
    model = build_model(name, cfg.arch, cfg.image_size, num_classes=len(classes), norm=cfg.norm,
                        **alexnet_options(cfg))
    mean, std = data.channel_stats(train_set.images)
    out_dir = METRICS_DIR / name
    fingerprint = resume.fingerprint(cfg, model, train_set, val_set, mean, std, device)
    saved_run = resume.SavedRun(f"pretrain_{name}", fingerprint)  # the state of a run that stopped, kept till this one completes
    discard_on_failure(str(out_dir))
    with Live(dir=str(out_dir), dvcyaml=None, save_dvc_exp=False, report=None) as live:
        state, summary = train_model(model, train_set, val_set, cfg, live, device, mean, std, saved_run)
        model.load_state_dict(state)
        made_on = machine.record(device, cfg.threads, summary.pop("precision"))
        for key, value in summary.items():
            live.log_metric(key, value, plot=False)
    described = pretraining.data_summary(found, classes, len(labels), len(train), len(val))
    write_json(out_dir / "data.json", described)
    save_checkpoint(WEIGHTS_DIR / name / "pretrain.pt", model.cpu(), cfg, classes, mean, std, crop, made_on,
                    pretrained_on=described)
    saved_run.remove()
    print(f"{name}: pretrained on {len(train)} images of {', '.join(classes)} ({found.layout}) for {cfg.epochs} "
          f"epochs, validation accuracy {summary['selected_val_accuracy']:.3f} ({len(val)} images), "
          f"{summary['seconds_per_epoch']} s/epoch -> {WEIGHTS_DIR / name / 'pretrain.pt'}")


if __name__ == "__main__":
    main()
