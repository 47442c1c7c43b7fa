import pytest
import torch
import yaml
from dvclive import Live
from torch import nn

from bloodcells.models.freezing import freeze_leading_layers, layers_with_parameters
from bloodcells.config.schema import validate
from bloodcells.models.factory import build_model
from bloodcells.training.loop import seed_everything, train_model
from conftest import ROOT
from test_training import config, tiny_data


def trainable(module):
    return all(p.requires_grad for p in module.parameters(recurse=False))


@pytest.mark.parametrize("name,arch,options,total", [
    ("resnet", "resnet18", {}, 21),  # 17 convolutions, 3 shortcut convolutions, the classifier
    ("efficientnet", "efficientnet-b0", {}, 82),  # the stem, 79 in 16 blocks, the head, the classifier
    ("alexnet", "alexnet", {"batch_norm": True}, 8),
])
def test_the_leading_share_of_weight_layers_and_their_norms_stop_training(name, arch, options, total):
    model = build_model(name, arch, image_size=64, num_classes=4, **options)
    frozen, counted = freeze_leading_layers(model, 0.5)
    assert (frozen, counted) == (total // 2, total)
    weight_layers = [layer for layer in layers_with_parameters(model) if isinstance(layer, (nn.Conv2d, nn.Linear))]
    assert [trainable(layer) for layer in weight_layers] == [False] * frozen + [True] * (total - frozen)
    layers = layers_with_parameters(model)
    for before, after in zip(layers, layers[1:]):  # a norm follows its convolution
        if isinstance(after, nn.BatchNorm2d):
            assert trainable(after) == trainable(before), (before, after)
    assert freeze_leading_layers(build_model(name, arch, image_size=64, num_classes=4, **options), 0) == (0, total)


def test_the_classifier_always_trains():
    model = build_model("alexnet", "alexnet", image_size=64, num_classes=4)
    assert freeze_leading_layers(model, 0.99) == (7, 8)
    assert trainable(model.classifier[-1]) and not trainable(model.classifier[1])


def test_frozen_layers_keep_their_weights_through_training_and_the_rest_learn(tmp_path):
    seed_everything(0)
    model = build_model("resnet", "resnet18", image_size=48, num_classes=4)
    freeze_leading_layers(model, 0.5)
    start = {key: value.clone() for key, value in model.state_dict().items()}
    cfg = config(epochs=2, batch_size=8, ema=0.9)
    with Live(dir=str(tmp_path / "live"), dvcyaml=None, save_dvc_exp=False, report=None) as live:
        state, _ = train_model(model, tiny_data(16), tiny_data(8, seed=1), cfg, live, torch.device("cpu"),
                               [0.5] * 3, [0.25] * 3)
    for key in ("conv1.weight", "bn1.weight", "bn1.bias", "layer2.0.conv1.weight"):
        assert torch.equal(state[key], start[key]), key
    assert not torch.equal(state["bn1.running_mean"], start["bn1.running_mean"])  # its statistics follow the new set
    for key in ("layer4.1.conv2.weight", "fc.weight"):
        assert not torch.equal(state[key], start[key]), key


def test_only_a_model_that_starts_from_learnt_weights_freezes():
    from bloodcells.training.recipe import recipe, training_purpose
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["finetune"]["frozen_share"] = 0.5
    config = validate(params, ("train", "models", "finetune"))
    assert not recipe(config, "resnet", training_purpose(config, "resnet")).frozen_share
    params["models"]["resnet"]["weights"] = "weights/resnet/pretrain.pt"
    config = validate(params, ("train", "models", "finetune"))
    assert recipe(config, "resnet", training_purpose(config, "resnet")).frozen_share == 0.5
