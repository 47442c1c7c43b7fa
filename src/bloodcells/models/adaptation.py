"""Test-time adaptation to another laboratory without its labels: AdaBN (Li et al., "Revisiting Batch Normalization
For Practical Domain Adaptation", 2017). A model's batch norms hold the mean and variance of their inputs on the
training images; on another laboratory's images (another stain, camera, magnification) those statistics are off,
and every layer after them sees shifted inputs. AdaBN recomputes them on the target's unlabelled images and keeps
every learnt weight."""
import copy

import torch
from torch import nn

from bloodcells.data.dataset import normalise
from bloodcells.models.inference import CHANNELS_LAST


def batch_norms(model):
    return [module for module in model.modules() if isinstance(module, nn.modules.batchnorm._BatchNorm)]


@torch.no_grad()
def adapt_batch_norm(model, images, mean, std, batch_size=64):
    """A copy of `model` whose batch-norm statistics are the averages over `images` (uint8 [N, 3, S, S] at the
    model's input side, standardised by `mean` / `std` as the model's inputs are), in batches of `batch_size`; the
    model itself is left as it is. Each batch counts by its size (a short last batch weighs less); the variance is
    the batches' average, the spread a batch norm sees while it trains. A model without batch norm (GroupNorm) is
    returned as it is, with False."""
    if not batch_norms(model):
        return model, False
    adapted = copy.deepcopy(model).eval()
    norms = batch_norms(adapted)
    for norm in norms:
        norm.reset_running_stats()
        norm.train()  # only the norms: dropout stays off
    device = next(adapted.parameters()).device
    for start in range(0, len(images), batch_size):
        batch = images[start:start + batch_size]
        for norm in norms:
            norm.momentum = len(batch) / (start + len(batch))  # the running value: the mean over every image so far
        adapted(normalise(batch, mean, std).to(device, memory_format=CHANNELS_LAST))
    return adapted.eval(), True
