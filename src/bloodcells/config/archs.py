"""The model families the pipeline trains and the torchvision / efficientnet-pytorch architectures of each."""
ARCHS = {
    "resnet": ("resnet18", "resnet34", "resnet50"),
    "efficientnet": ("efficientnet-b0", "efficientnet-b1", "efficientnet-b2", "efficientnet-b3"),
    "alexnet": ("alexnet",),
}
