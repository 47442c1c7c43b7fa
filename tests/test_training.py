import re
import urllib.error
import warnings

import numpy as np
import pytest
import torch
import yaml
from dvclive import Live

from bloodcells.models import checkpoints
from bloodcells.data.dataset import (CropDataset, affine, augment, dihedral, dihedral_index, gather_pixels,
                                     gaussian_blur, roll_index, stain_amounts, stain_jittered, training_batches)
from bloodcells.core.errors import UserError
from bloodcells.config.archs import ARCHS
from bloodcells.config.schema import Recipe, validate
from bloodcells.models.factory import build_model
from bloodcells.training import machine, loop as training
from bloodcells.training.loop import autocast_dtype, resolve_precision, seed_everything, train_model
from conftest import ROOT, set_params, stage

DEFAULTS = yaml.safe_load((ROOT / "params.yaml").read_text())


def config(**changes):
    return Recipe(**{**DEFAULTS["train"], "name": "resnet", "arch": "resnet18", **changes})


@pytest.mark.parametrize("name,arch", [(n, a) for n, archs in ARCHS.items() for a in archs])
def test_every_arch_gives_four_logits(name, arch):
    model = build_model(name, arch, image_size=64, num_classes=4).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 64, 64)).shape == (2, 4)


@pytest.mark.parametrize("name,arch", [("resnet", "resnet18"), ("efficientnet", "efficientnet-b0"),
                                       ("alexnet", "alexnet")])
def test_one_step_lowers_the_loss_on_a_fixed_batch(name, arch):
    torch.manual_seed(0)
    model = build_model(name, arch, image_size=64, num_classes=4).train()
    images, labels = torch.randn(8, 3, 64, 64), torch.arange(8) % 4
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)

    def loss():
        torch.manual_seed(1)  # the same dropout masks both times
        return torch.nn.functional.cross_entropy(model(images), labels)

    before = loss()
    optimizer.zero_grad()
    before.backward()
    optimizer.step()
    assert loss().item() < before.item()


def tiny_data(n, size=48, seed=0):
    """A stand-in for data.CropDataset: items (uint8 image, label), and .images / .labels."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=generator)
    dataset = torch.utils.data.TensorDataset(images, torch.arange(n) % 4)
    dataset.images, dataset.labels = dataset.tensors
    return dataset


def test_training_batches_cover_the_split_once_per_epoch_in_a_seeded_order_and_leave_torch_rng_alone():
    dataset = tiny_data(10, size=4)
    loader = training_batches(dataset, 4, torch.Generator().manual_seed(3))
    global_state = torch.get_rng_state()
    first = [labels.tolist() for _, labels in loader]
    second = [labels.tolist() for _, labels in loader]
    assert torch.equal(torch.get_rng_state(), global_state)  # dropout masks draw from it
    assert [len(b) for b in first] == [4, 4, 2] and len(loader) == 3
    assert sorted(sum(first, [])) == sorted(dataset.labels.tolist())
    assert first != second  # a new order each epoch
    again = training_batches(dataset, 4, torch.Generator().manual_seed(3))
    assert [labels.tolist() for _, labels in again] == first
    images, _ = next(iter(training_batches(dataset, 10, torch.Generator().manual_seed(3))))
    assert images.dtype == torch.uint8  # augmented as floats only where used


def train_once(tmp_path, tag, **changes):
    seed_everything(0)
    model = build_model("resnet", "resnet18", image_size=48, num_classes=4)
    cfg = config(**{"epochs": 2, "batch_size": 8, "ema": 0.9, **changes})
    with Live(dir=str(tmp_path / tag), dvcyaml=None, save_dvc_exp=False, report=None) as live:
        state, summary = train_model(model, tiny_data(16), tiny_data(8, seed=1), cfg, live,
                                     torch.device("cpu"), [0.5] * 3, [0.25] * 3)
    return state, summary


def test_same_seed_gives_bit_identical_weights(tmp_path):
    first, summary = train_once(tmp_path, "a")
    second, again = train_once(tmp_path, "b")
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert summary["selected_val_accuracy"] == again["selected_val_accuracy"]
    assert (tmp_path / "a/plots/metrics/val/accuracy.tsv").read_text().count("\n") == 3  # header + 2 epochs


def test_mixup_blends_each_image_with_a_partner_of_the_batch():
    batch = torch.arange(4.0).view(4, 1, 1, 1).expand(4, 3, 2, 2)
    mixed, partner, weight = training.mixup(batch, 0.2, torch.Generator().manual_seed(0), np.random.default_rng(0))
    assert 0 < weight < 1 and sorted(partner.tolist()) == [0, 1, 2, 3]
    assert torch.allclose(mixed, weight * batch + (1 - weight) * batch[partner])


def test_mixup_training_repeats_exactly_and_differs_from_plain(tmp_path):
    first, _ = train_once(tmp_path, "a", mixup=0.2)
    second, _ = train_once(tmp_path, "b", mixup=0.2)
    plain, _ = train_once(tmp_path, "c")
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert not all(torch.equal(first[k], plain[k]) for k in first)


def test_efficientnet_uses_native_silu_with_the_same_outputs():
    torch.manual_seed(0)
    model = build_model("efficientnet", "efficientnet-b0", image_size=64, num_classes=4).eval()
    swishes = [m._swish for m in model.modules() if hasattr(m, "_swish")]
    assert swishes and all(isinstance(s, torch.nn.SiLU) for s in swishes)
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        native = model(images)
        model.set_swish(memory_efficient=False)  # the library's own x * sigmoid(x)
        assert torch.allclose(native, model(images), atol=1e-5)


@pytest.mark.parametrize("native", [True, False])
def test_auto_precision_follows_the_cpu_and_the_family(monkeypatch, native):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    monkeypatch.setattr(training, "cpu_has_native_bf16", lambda: native)
    for family, faster in training.CPU_BF16_FASTER.items():
        assert resolve_precision("auto", cpu, family) == ("bf16" if native and faster else "fp32")
        assert resolve_precision("auto", cuda, family) == "bf16"
        assert resolve_precision("fp32", cuda, family) == "fp32"
    assert autocast_dtype("bf16") == torch.bfloat16 and autocast_dtype("fp32") is None


def test_a_run_under_an_imitated_smaller_cpu_says_so(monkeypatch):
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    plain = machine.record(torch.device("cpu"), 2, "fp32")
    assert "onednn_max_cpu_isa" not in plain and "oneDNN" not in machine.summary_line(plain)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    held = machine.record(torch.device("cpu"), 2, "fp32")
    assert held["onednn_max_cpu_isa"] == "AVX2"
    assert "kernels, oneDNN held to AVX2), 2 threads" in machine.summary_line(held)


def test_explicit_bf16_on_a_cpu_without_it_warns_once(monkeypatch):
    monkeypatch.setattr(training, "cpu_has_native_bf16", lambda: False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert resolve_precision("bf16", torch.device("cpu"), "resnet") == "bf16"
        assert resolve_precision("auto", torch.device("cpu"), "resnet") == "fp32"
    assert [str(w.message) for w in caught if "no native bfloat16" in str(w.message)] != []
    assert len(caught) == 1
    monkeypatch.setattr(training, "cpu_has_native_bf16", lambda: True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        resolve_precision("bf16", torch.device("cpu"), "resnet")


def test_bf16_training_runs_and_keeps_fp32_weights(tmp_path):
    seed_everything(0)
    model = build_model("resnet", "resnet18", image_size=48, num_classes=4)
    with Live(dir=str(tmp_path), dvcyaml=None, save_dvc_exp=False, report=None) as live:
        state, summary = train_model(model, tiny_data(16), tiny_data(8, seed=1), config(epochs=1, batch_size=8,
                                     precision="bf16"), live, torch.device("cpu"), [0.5] * 3, [0.25] * 3)
    assert all(v.dtype == torch.float32 for v in state.values() if v.is_floating_point())
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())
    assert summary["images_per_second"] > 0


def test_dihedral_views_are_the_eight_symmetries():
    image = torch.arange(16.0).view(1, 1, 4, 4)
    views = [dihedral(image, v) for v in range(8)]
    assert len({tuple(v.flatten().tolist()) for v in views}) == 8


def test_the_gathered_views_and_shifts_are_rot90_flip_and_roll():
    batch = torch.rand(8, 3, 5, 5)
    views = gather_pixels(batch, dihedral_index(5)[torch.arange(8)])
    assert all(torch.equal(views[v], dihedral(batch[v:v + 1], v)[0]) for v in range(8))
    shifts = torch.tensor([[0, 0], [1, -2], [-3, 4], [7, -6], [2, 2], [-1, 0], [0, 3], [5, 5]])
    rolled = gather_pixels(batch, roll_index(5, shifts))
    assert all(torch.equal(rolled[i], torch.roll(batch[i], (int(dy), int(dx)), dims=(-2, -1)))
               for i, (dy, dx) in enumerate(shifts))


def test_augment_leaves_its_input_alone():
    batch = torch.rand(6, 3, 16, 16)
    kept = batch.clone()
    augment(batch, torch.Generator().manual_seed(5), colour_jitter=0.2, max_shift=0.1)
    augment(batch, torch.Generator().manual_seed(5), colour_jitter=0, max_shift=0)
    assert torch.equal(batch, kept)


def test_augment_is_reproducible_and_keeps_range():
    batch = torch.rand(6, 3, 16, 16)
    first = augment(batch, torch.Generator().manual_seed(5), colour_jitter=0.2, max_shift=0.1)
    second = augment(batch, torch.Generator().manual_seed(5), colour_jitter=0.2, max_shift=0.1)
    assert torch.equal(first, second) and first.min() >= 0 and first.max() <= 1
    assert not torch.equal(first, augment(batch, torch.Generator().manual_seed(6), 0.2, 0.1))


def test_the_data_path_runs_on_the_training_device_with_the_cpus_random_draws():
    """The meta device stands in for a GPU: an operation that mixed a CPU tensor into its batch would fail there."""
    crops = torch.randint(0, 256, (10, 3, 24, 24), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    held = CropDataset.from_tensors(crops, torch.arange(10) % 4, [], list(range(4)), 16).to("meta")
    images, labels = next(iter(training_batches(held, 4, torch.Generator().manual_seed(1))))
    assert images.device.type == labels.device.type == "meta" and images.shape == (4, 3, 16, 16)
    cfg = config(colour_jitter=0.2, max_shift=0.1, max_scale=0.2, max_rotation=30, mixup=0.4)
    draws = {}
    for device in ("cpu", "meta"):
        generator = torch.Generator().manual_seed(5)
        setup = training.TrainingSetup(torch.nn.Linear(1, 1), cfg, 1, torch.device(device), (0.5,) * 3, (0.2,) * 3,
                                       None, generator)
        batch = setup.prepare(crops[:4, :, :16, :16].to(device))
        mixed, partner, _ = training.mixup(batch, cfg.mixup, generator, setup.mixup_rng)
        assert mixed.device.type == partner.device.type == device
        assert batch.is_contiguous(memory_format=torch.channels_last)
        draws[device] = generator.get_state()
    assert torch.equal(draws["cpu"], draws["meta"])  # a GPU run draws what a CPU run draws


def test_stain_jitter_moves_scikit_images_stain_amounts_linearly_and_none_is_the_image():
    from skimage.color import rgb2hed
    batch = torch.rand(4, 3, 12, 12) * 0.9 + 0.05
    theirs = rgb2hed(batch[0].permute(1, 2, 0).double().numpy())  # optical density / -ln(1e-6), clipped at 0
    ours = (stain_amounts(batch[:1])[0].permute(1, 2, 0) / -np.log(1e-6)).clamp_min(0).double().numpy()
    assert np.allclose(ours, theirs, atol=1e-5)
    assert torch.allclose(stain_jittered(batch, torch.Generator().manual_seed(0), 0.0), batch, atol=1e-5)
    generator = torch.Generator().manual_seed(3)
    jittered = stain_jittered(batch, generator, 0.05)
    change, shift = (torch.rand((2, 4, 3, 1, 1), generator=torch.Generator().manual_seed(3)) * 2 - 1) * 0.05
    inside = (jittered > 1e-4) & (jittered < 1)  # where the exponential did not leave the 0-1 range
    expected = stain_amounts(batch) * (1 + change) + shift
    assert torch.allclose(stain_amounts(jittered)[inside.all(1, keepdim=True).expand(-1, 3, -1, -1)],
                          expected[inside.all(1, keepdim=True).expand(-1, 3, -1, -1)], atol=1e-3)
    assert not torch.allclose(jittered, batch, atol=1e-3)


def test_blur_is_torchvisions_gaussian_blur_per_image():
    from torchvision.transforms.functional import gaussian_blur as theirs
    batch, sigmas = torch.rand(3, 3, 20, 20), torch.tensor([0.0, 0.5, 1.0])
    blurred = gaussian_blur(batch, sigmas, radius=3)
    assert torch.allclose(blurred[0], batch[0], atol=1e-6)
    for i in (1, 2):
        assert torch.allclose(blurred[i], theirs(batch[i:i + 1], [7, 7], [float(sigmas[i])])[0], atol=1e-5)


def test_stain_jitter_and_blur_draw_only_when_asked():
    batch = torch.rand(6, 3, 16, 16)
    plain = augment(batch, torch.Generator().manual_seed(5), 0.1, 0.05)
    assert torch.equal(plain, augment(batch, torch.Generator().manual_seed(5), 0.1, 0.05, stain_jitter=0, blur=0))
    for changes in ({"stain_jitter": 0.05}, {"blur": 1.0}):
        first = augment(batch, torch.Generator().manual_seed(5), 0.1, 0.05, **changes)
        assert torch.equal(first, augment(batch, torch.Generator().manual_seed(5), 0.1, 0.05, **changes))
        assert not torch.allclose(first, plain, atol=1e-3) and first.min() >= 0 and first.max() <= 1


def test_affine_turns_like_rot90_and_zooms_about_the_centre():
    batch = torch.rand(2, 3, 8, 8)
    assert torch.allclose(affine(batch, torch.ones(2), torch.full((2,), 90.0)), dihedral(batch, 1), atol=1e-5)
    assert torch.allclose(affine(batch, torch.ones(2), torch.zeros(2)), batch, atol=1e-5)
    zoomed = affine(batch, torch.full((2,), 2.0), torch.zeros(2))
    upsampled = torch.nn.functional.interpolate(batch, scale_factor=2, mode="bilinear", align_corners=False)
    assert torch.allclose(zoomed, upsampled[..., 4:12, 4:12], atol=1e-5)


def test_augment_with_zoom_and_turn_is_reproducible():
    batch = torch.rand(6, 3, 16, 16)
    first = augment(batch, torch.Generator().manual_seed(5), 0.1, 0.05, max_scale=0.2, max_rotation=45)
    second = augment(batch, torch.Generator().manual_seed(5), 0.1, 0.05, max_scale=0.2, max_rotation=45)
    plain = augment(batch, torch.Generator().manual_seed(5), 0.1, 0.05)
    assert torch.equal(first, second) and first.min() >= 0 and first.max() <= 1
    assert not torch.allclose(first, plain, atol=1e-3)


def test_pretrained_offline_is_a_clear_error(monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(UserError, match="cannot download the ImageNet weights of resnet18.*weights: path"):
        build_model("resnet", "resnet18", 64, pretrained=True, num_classes=4)


def test_pretrained_efficientnet_goes_through_its_own_api(monkeypatch):
    import efficientnet_pytorch.utils as utils

    calls = []

    def offline(url, *args, **kwargs):
        calls.append(url)
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(utils.model_zoo, "load_url", offline)
    with pytest.raises(UserError, match="efficientnet-b0"):
        build_model("efficientnet", "efficientnet-b0", 64, pretrained=True, num_classes=4)
    assert calls and "efficientnet-b0" in calls[0]


def test_local_imagenet_state_dict_keeps_backbone_and_new_head(tmp_path):
    imagenet = build_model("resnet", "resnet18", 64, num_classes=1000)
    path = tmp_path / "resnet18.pth"
    torch.save(imagenet.state_dict(), path)
    model = build_model("resnet", "resnet18", 64, weights=path, num_classes=4)
    assert torch.equal(model.conv1.weight, imagenet.conv1.weight)
    assert model.fc.out_features == 4
    torch.save(build_model("resnet", "resnet50", 64, num_classes=4).state_dict(), path)
    with pytest.raises(UserError, match="does not fit this arch"):
        build_model("resnet", "resnet18", 64, weights=path, num_classes=4)


def test_alexnet_1x1_pool_is_the_same_function_with_fewer_weights():
    torch.manual_seed(0)
    stock = build_model("alexnet", "alexnet", 80, num_classes=4).eval()
    torch.manual_seed(0)
    pooled = build_model("alexnet", "alexnet", 80, feature_pool=1, num_classes=4).eval()
    images = torch.randn(3, 3, 80, 80)
    with torch.no_grad():
        assert torch.allclose(pooled(images), stock(images), atol=1e-5)
    assert pooled.classifier[1].in_features == 256
    assert sum(p.numel() for p in stock.parameters()) - sum(p.numel() for p in pooled.parameters()) > 35_000_000


def test_alexnet_1x1_pool_folds_a_stock_state_dict(tmp_path):
    stock = build_model("alexnet", "alexnet", 80, num_classes=1000).eval()
    path = tmp_path / "alexnet.pth"
    torch.save(stock.state_dict(), path)
    pooled = build_model("alexnet", "alexnet", 80, weights=path, feature_pool=1, num_classes=4).eval()
    stock.classifier[-1], pooled.classifier[-1] = torch.nn.Identity(), torch.nn.Identity()
    images = torch.randn(2, 3, 80, 80)
    with torch.no_grad():
        assert torch.allclose(pooled(images), stock(images), atol=1e-4)


@pytest.mark.parametrize("name,pool,message", [("alexnet", 3, "must be 6 (torchvision) or 1"),
                                               ("resnet", 1, "applies to alexnet only")])
def test_bad_feature_pool(name, pool, message):
    with pytest.raises(UserError, match=re.escape(message)):
        checkpoint_of(name, feature_pool=pool)


def test_alexnet_stem_stride_2_keeps_a_3x3_map_of_an_80px_crop():
    stock = build_model("alexnet", "alexnet", 80, num_classes=4)
    small = build_model("alexnet", "alexnet", 80, stem_stride=2, num_classes=4)
    images = torch.randn(2, 3, 80, 80)
    with torch.no_grad():
        assert stock.features(images).shape[-2:] == (1, 1)
        assert small.features(images).shape[-2:] == (3, 3)
        assert small.eval()(images).shape == (2, 4)
    assert [p.shape for p in small.parameters()] == [p.shape for p in stock.parameters()]


@pytest.mark.parametrize("name,stride,message", [("alexnet", 3, "must be 4 (torchvision) or 2"),
                                                 ("alexnet", True, "must be 4 (torchvision) or 2"),
                                                 ("efficientnet", 2, "applies to alexnet only")])
def test_bad_stem_stride(name, stride, message):
    """params.yaml's schema refuses these; a model file from elsewhere is refused when it is read."""
    with pytest.raises(UserError, match=re.escape(message)):
        checkpoint_of(name, stem_stride=stride)


@pytest.mark.parametrize("name,value,message", [("alexnet", "yes", "batch_norm must be False (torchvision) or True"),
                                                ("alexnet", 1, "batch_norm must be False (torchvision) or True"),
                                                ("resnet", True, "applies to alexnet only")])
def test_bad_batch_norm(name, value, message):
    with pytest.raises(UserError, match=re.escape(message)):
        checkpoint_of(name, batch_norm=value)


def checkpoint_of(name, **options):
    """A model file's checkpoint with AlexNet `options`, checked as every read checks it."""
    return checkpoints.checked({"model": name, "arch": ARCHS[name][0], "classes": ["A", "B"], "image_size": 80,
                                "mean": [0.5] * 3, "std": [0.25] * 3, "crop": {"image_size": 96}, **options},
                               "model.pt")


def test_alexnet_batch_norm_follows_each_convolution_and_imagenet_convolutions_still_load(tmp_path):
    stock = build_model("alexnet", "alexnet", 80, num_classes=1000)
    path = tmp_path / "alexnet.pth"
    torch.save(stock.state_dict(), path)
    model = build_model("alexnet", "alexnet", 80, weights=path, stem_stride=2, feature_pool=1, batch_norm=True, num_classes=4)
    layers = list(model.features.modules())
    convolutions = [layer for layer in layers if isinstance(layer, torch.nn.Conv2d)]
    norms = [layer for layer in layers if isinstance(layer, torch.nn.BatchNorm2d)]
    assert [norm.num_features for norm in norms] == [conv.out_channels for conv in convolutions]
    for index in (0, 3, 6, 8, 10):
        assert torch.equal(model.features[index].weight, stock.features[index].weight)
    images = torch.randn(4, 3, 80, 80)
    model.train()(images)
    assert not torch.equal(norms[0].running_mean, torch.zeros(64))
    assert model.eval()(images).shape == (4, 4)


def test_too_small_image_for_alexnet():
    with pytest.raises(UserError, match="too small for alexnet; use at least 63"):
        build_model("alexnet", "alexnet", 32, num_classes=4)


@pytest.mark.parametrize("script,section,key,message", [
    ("clean", "clean", "edge_cells", "params.yaml: clean.edge_cells: missing (add it"),
    ("train", "train", "seed", "params.yaml: train.seed: missing (add it"),
])
def test_a_missing_parameter_is_named_in_one_line(project, script, section, key, message):
    stage(project, "fetch")
    if script == "train":
        stage(project, "clean")
    path = project / "params.yaml"
    params = yaml.safe_load(path.read_text())
    del params[section][key]
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    result = stage(project, script, *(["resnet"] if script == "train" else []), check=False)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("changes,message", [
    ({"models": {"resnet": {"arch": "resnet101"}}}, "models.resnet.arch: must be 'resnet18', 'resnet34' or"),
    ({"models": {"resnet": {"epochs": 0}}}, "models.resnet.epochs: must be greater than 0, got 0"),
    ({"models": {"resnet": {"lr": 0}}}, "models.resnet.lr: must be greater than 0, got 0"),
    ({"models": {"resnet": {"mixup": -0.2}}}, "models.resnet.mixup: must be greater than or equal to 0"),
    ({"models": {"resnet": {"max_scale": 1.5}}}, "models.resnet.max_scale: must be less than 1, got 1.5"),
    ({"models": {"resnet": {"max_rotation": -10}}}, "models.resnet.max_rotation: must be greater than or equal to 0"),
    ({"models": {"resnet": {"batch_size": 0}}}, "models.resnet.batch_size: must be greater than 0, got 0"),
    ({"models": {"resnet": {"image_size": 96}}}, "larger than the prepared crops (64 px)"),
    ({"models": {"resnet": {"weights": "weights/resnet/missing.pt"}}}, "missing.pt does not exist"),
    ({"models": {"resnet": {"weights": "/tmp/resnet18.pth"}}}, "must be a file under weights/resnet/"),
])
def test_bad_training_parameters_are_one_line_and_write_no_model(project, changes, message):
    stage(project, "fetch")
    stage(project, "clean")
    set_params(project, changes)
    result = stage(project, "train", "resnet", check=False)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (project / "models/resnet.pt").exists()


def test_a_model_that_starts_from_learnt_weights_trains_with_finetunes_changes():
    from bloodcells.training.recipe import recipe, training_purpose
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    own = params["models"]["efficientnet"]
    params["finetune"] = {"epochs": 7, "lr_scale": 0.5, "ema": 0.9, "frozen_share": 0}
    config = validate(params, ("train", "models", "finetune"))
    scratch = recipe(config, "efficientnet", training_purpose(config, "efficientnet"))
    assert (scratch.epochs, scratch.lr, scratch.ema) == (own["epochs"], own["lr"], params["train"]["ema"])
    for start in ({"weights": "weights/efficientnet/pretrain.pt"}, {"pretrained": True}):
        params["models"]["efficientnet"] = {**own, **start}
        config = validate(params, ("train", "models", "finetune"))
        tuned = recipe(config, "efficientnet", training_purpose(config, "efficientnet"))
        assert (tuned.epochs, tuned.lr, tuned.ema) == (7, own["lr"] * 0.5, 0.9)
        assert tuned.arch == own["arch"] and tuned.image_size == own["image_size"]
    params["finetune"] = {"epochs": None, "lr_scale": 1, "ema": None, "frozen_share": 0}  # the defaults: the model's own recipe
    config = validate(params, ("train", "models", "finetune"))
    tuned = recipe(config, "efficientnet", training_purpose(config, "efficientnet"))
    assert (tuned.epochs, tuned.lr, tuned.ema) == (own["epochs"], own["lr"], params["train"]["ema"])


def test_unknown_model_name(project):
    result = stage(project, "train", "vgg", check=False)
    assert result.returncode == 2 and "unknown model 'vgg'" in result.stderr


def test_clean_data_missing_a_class_is_rejected(project):
    stage(project, "fetch")
    stage(project, "clean")
    train_csv = project / "data/clean/train.csv"
    lines = train_csv.read_text().splitlines()
    train_csv.write_text("\n".join([lines[0]] + [l for l in lines[1:] if ",MONOCYTE," not in l]) + "\n")
    result = stage(project, "train", "resnet", check=False)
    assert result.returncode == 2 and "no MONOCYTE images" in result.stderr and "dvc repro clean" in result.stderr


def test_an_ema_longer_than_the_run_is_warned_about(tmp_path):
    with pytest.warns(UserWarning, match="ema 0.99 averages over about 100 steps, but this run has only 4"):
        train_once(tmp_path, "long-ema", ema=0.99)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        train_once(tmp_path, "no-ema", ema=0)


def test_retraining_on_the_same_inputs_gives_a_byte_identical_checkpoint(project):
    stage(project, "fetch")
    stage(project, "clean")
    stage(project, "train", "alexnet")
    first = (project / "models/alexnet.pt").read_bytes()
    stage(project, "train", "alexnet")
    assert (project / "models/alexnet.pt").read_bytes() == first  # no wall-clock figures inside
    checkpoint = checkpoints.read(project / "models/alexnet.pt")
    assert "summary" not in checkpoint and checkpoint["classes"] == ["NEUTROPHIL", "EOSINOPHIL", "LYMPHOCYTE",
                                                                     "MONOCYTE"]


@pytest.mark.parametrize("name,arch,options", [("resnet", "resnet18", {}), ("efficientnet", "efficientnet-b0", {}),
                                               ("alexnet", "alexnet", {"batch_norm": True, "stem_stride": 2})])
def test_group_norm_replaces_every_batch_norm_and_a_checkpoint_keeps_it(tmp_path, name, arch, options):
    from bloodcells.models.inference import load_checkpoint, save_checkpoint
    torch.manual_seed(0)
    model = build_model(name, arch, 64, num_classes=4, norm="group", **options).eval()
    norms = [m for m in model.modules() if isinstance(m, torch.nn.GroupNorm)]
    assert norms and not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert all(m.num_channels % m.num_groups == 0 and m.num_groups <= 32 for m in norms)
    single, batch = torch.rand(1, 3, 64, 64), torch.rand(5, 3, 64, 64)
    with torch.no_grad():  # each image normalised by its own statistics: its answer does not depend on the batch
        assert torch.allclose(model(single), model(torch.cat([single, batch]))[:1], atol=1e-5)
    cfg = Recipe(**{**DEFAULTS["train"], "name": name, "arch": arch, "image_size": 64, "norm": "group", **options})
    save_checkpoint(tmp_path / "m.pt", model, cfg, ["A", "B", "C", "D"], [0.5] * 3, [0.25] * 3, {"image_size": 64}, {})
    loaded, checkpoint = load_checkpoint(tmp_path / "m.pt", name)
    assert checkpoint.norm == "group"
    with torch.no_grad():
        assert torch.allclose(loaded(batch), model(batch), atol=1e-5)
    plain = Recipe(**{**DEFAULTS["train"], "name": name, "arch": arch, "image_size": 64, **options})
    save_checkpoint(tmp_path / "b.pt", build_model(name, arch, 64, num_classes=4, **options), plain,
                    ["A", "B", "C", "D"], [0.5] * 3, [0.25] * 3, {"image_size": 64}, {})
    assert "norm" not in checkpoints.read(tmp_path / "b.pt")  # batch norm's files are written as before


def test_group_norm_on_an_alexnet_without_batch_norm_is_one_line():
    with pytest.raises(UserError, match="models.alexnet.norm: group replaces batch norms, and this alexnet has none"):
        build_model("alexnet", "alexnet", 80, num_classes=4, norm="group")
