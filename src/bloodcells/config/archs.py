"""The model families the pipeline trains and the torchvision / efficientnet-pytorch architectures of each."""
ARCHS = {
    "resnet": ("resnet18", "resnet34", "resnet50"),
    "efficientnet": ("efficientnet-b0", "efficientnet-b1", "efficientnet-b2", "efficientnet-b3"),
    "alexnet": ("alexnet",),
}
# AlexNet's options for small crops and from-scratch training, as (torchvision's value, our value): the side of the
# pool before its classifier, the stride of its first convolution, and batch norms after its convolutions.
ALEXNET_OPTIONS = {"feature_pool": (6, 1), "stem_stride": (4, 2), "batch_norm": (False, True)}
