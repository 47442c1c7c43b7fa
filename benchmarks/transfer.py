"""Trained checkpoints scored on another laboratory's labelled images, each way of cutting and standardising them.

Usage: python benchmarks/transfer.py --set PATH [--rename their=OURS ...] [--cut CUT ...] [--stain-reference PATH]
       [--among-set-classes] CHECKPOINT ...
e.g.   python benchmarks/transfer.py --set <pbc copy> models/*.pt                  # BCCD's models on PBC
       python benchmarks/transfer.py --set <bccd copy> weights/*/pretrain.pt       # PBC-trained models on BCCD

The set is read as the external@<name> stage reads it (bloodcells.data.external_sets: its layout, its cleaning rules,
classes matched by name in any letter case or by --rename). Each checkpoint is scored with the set cut as its
layout is cut and as a stain-located crop (crop: wbc, locator: stain), each standardised by the model's training
statistics and by the set's own (external.sets.<name>.statistics: own), with test-time augmentation as evaluate
does. With --stain-reference (the models' training data, either layout), also Macenko stain normalisation
(torchstain, `pip install torchstain==1.4.1`): each crop's two stains mapped onto those of 32 training crops cut
the same way, then the model's statistics. Prints accuracy and macro sensitivity on the images of the model's
classes, and the 95 % interval. A model of classes the set lacks (PBC's 8 on BCCD's 4) answers in all of them, and
an answer the set lacks counts as wrong; --among-set-classes restricts its answer to the set's classes.
"""
import argparse
import sys

import numpy as np
import torch

from bloodcells.data import external_sets as external
from bloodcells.core.errors import stage_main
from bloodcells.models.inference import load_checkpoint, model_inputs, predict_probabilities

CUTS = {"its layout's": {}, "stain-located": {"crop": "wbc", "locator": "stain"}}
REFERENCE_CROPS = 32


def macenko_normaliser(reference_crops, seed=0):
    """A Macenko normaliser fitted on a mosaic of REFERENCE_CROPS crops drawn from the reference set."""
    import torchstain  # its normalisers are attributes of the package, not importable modules
    chosen = np.random.default_rng(seed).choice(len(reference_crops), min(REFERENCE_CROPS, len(reference_crops)),
                                                replace=False)
    mosaic = np.concatenate([reference_crops[i].permute(1, 2, 0).numpy() for i in sorted(chosen)], axis=0)
    normaliser = torchstain.normalizers.MacenkoNormalizer(backend="numpy")
    normaliser.fit(mosaic)
    return normaliser


def stain_normalised(crops, normaliser):
    """Every crop with its stains mapped onto the reference's; a crop the method cannot decompose (too little
    stain) is kept as it is and counted."""
    kept_as_is, out = 0, []
    for crop in crops:
        image = crop.permute(1, 2, 0).numpy()
        try:
            image = normaliser.normalize(image, stains=False)[0]
        except (np.linalg.LinAlgError, ValueError, IndexError):
            kept_as_is += 1
        out.append(torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1))
    return torch.stack(out), kept_as_is


def among_classes(probabilities, model_classes, present):
    """The probabilities with the model's classes outside `present` removed and the rest renormalised: the answer
    a model of 8 classes gives when it is told the images are of the set's classes only."""
    keep = np.array([name in present for name in model_classes])
    kept = np.where(keep, probabilities, 0.0)
    return kept / kept.sum(axis=1, keepdims=True)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", required=True, help="a local folder or zip in either layout")
    # one value per option, repeated: a list-valued option would swallow the checkpoints that follow it
    parser.add_argument("--rename", action="append", default=[], help="their_class=OUR_CLASS, repeatable")
    parser.add_argument("--cut", choices=sorted(CUTS), action="append", help="one cut, repeatable (all)")
    parser.add_argument("--stain-reference", help="the models' training data, for Macenko stain normalisation")
    parser.add_argument("--among-set-classes", action="store_true",
                        help="answer only in the classes the set has (a model of more classes than the set's)")
    parser.add_argument("checkpoints", nargs="+")
    args = parser.parse_args(argv)
    args.cut = args.cut or sorted(CUTS)
    return args


@stage_main
def main():
    args = parse_args()
    torch.set_num_threads(2)
    loaded = [(path, *load_checkpoint(path)) for path in args.checkpoints]
    classes = list(loaded[0][2].classes)
    rename = dict(item.split("=", 1) for item in args.rename)
    print("| model | cut | statistics | images scored | accuracy (95 % CI) | macro sensitivity |")
    print("|---|---|---|---|---|---|")
    crops = [checkpoint.crop for _, _, checkpoint in loaded]
    located = CUTS["stain-located"]  # the reference is cut as the models' training crops were: around the cell
    reference = (external.read_set("reference", {"source": args.stain_reference, **located}, crops, classes,
                                   key="--stain-reference") if args.stain_reference else None)
    for cut, overrides in ((cut, CUTS[cut]) for cut in args.cut):
        settings = {"source": args.set, "rename": rename, **overrides}
        found = external.read_set("transfer", settings, crops, classes, key="--set")
        for path, model, checkpoint in loaded:
            model_classes = list(checkpoint.classes)
            cut_crops = external.images_for(found, checkpoint.crop, settings)
            variants = {"model": cut_crops, "own": cut_crops}
            if reference is not None:
                normaliser = macenko_normaliser(external.images_for(reference, checkpoint.crop, located))
                variants["Macenko"], kept_as_is = stain_normalised(cut_crops, normaliser)
                print(f"Macenko: {kept_as_is} of {len(cut_crops)} crops kept as they were", file=sys.stderr)
            for standardisation, prepared in variants.items():
                inputs = model_inputs(prepared, checkpoint)
                mean, std = external.statistics(inputs, checkpoint, {"statistics": standardisation})
                probabilities = predict_probabilities(model, inputs, mean, std, tta=True).numpy()
                if args.among_set_classes:
                    probabilities = among_classes(probabilities, model_classes, set(found.labels))
                metrics = external.score(found.labels, probabilities, model_classes)
                low, high = metrics["accuracy_ci95"]
                print(f"| {path} | {cut} | {standardisation} | {metrics['scored']} | {metrics['accuracy']:.3f} "
                      f"({low:.3f}-{high:.3f}) | {metrics['macro_sensitivity']:.3f} |", flush=True)


if __name__ == "__main__":
    main()
