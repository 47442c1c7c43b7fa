"""Temperature scaling (Guo et al. 2017, "On calibration of modern neural networks"): one number T per model, fitted
on its validation split, that turns its probabilities p into softmax(log p / T). T < 1 sharpens them (label smoothing
and the weight average leave these models under-confident), T > 1 softens them; the top class never changes.

Applied to the final probabilities, so the same formula serves one view (where log p is the logits less a constant
and this is the textbook softmax(logits / T)) and the average of the 8 test-time views; a model keeps one T for each
way it is run. NumPy only: ONNX inference (bloodcells.models.onnx_engine) uses it without torch.
"""
import numpy as np
from scipy.optimize import minimize_scalar

TINY = 1e-12  # a probability of 0 (a float32 softmax underflow) would be log 0
BOUNDS = (np.log(0.02), np.log(50.0))  # T from 0.02 to 50, searched on its logarithm
MODES = ("single_view", "tta")  # the keys of a checkpoint's `temperature`: predictions without and with the 8 views


def apply_temperature(probabilities, temperature):
    """softmax(log p / T) row by row, in the dtype given; T = 1 returns the probabilities as they are."""
    probabilities = np.asarray(probabilities)
    if temperature == 1:
        return probabilities
    scaled = np.log(np.clip(probabilities.astype(np.float64), TINY, 1.0)) / temperature
    scaled -= scaled.max(axis=1, keepdims=True)
    exp = np.exp(scaled)
    return (exp / exp.sum(axis=1, keepdims=True)).astype(probabilities.dtype)


def negative_log_likelihood(probabilities, labels, temperature):
    calibrated = apply_temperature(np.asarray(probabilities, dtype=np.float64), temperature)
    return float(-np.log(np.clip(calibrated[np.arange(len(labels)), labels], TINY, 1.0)).mean())


def fit_temperature(probabilities, labels):
    """The T that minimises the negative log-likelihood of `labels` (class indices) under the calibrated
    probabilities: a one-dimensional bounded search, deterministic, rounded to 4 decimals so that the same
    probabilities give the same file. 1.0 where there is nothing to fit on."""
    labels = np.asarray(labels)
    if len(labels) == 0:
        return 1.0
    result = minimize_scalar(lambda log_t: negative_log_likelihood(probabilities, labels, np.exp(log_t)),
                             bounds=BOUNDS, method="bounded", options={"xatol": 1e-6})
    return round(float(np.exp(result.x)), 4)


def temperature_for(stored, tta):
    """A model's temperature for the way it is run, from its stored {single_view: T, tta: T}; 1.0 (as trained) for
    a model that predates calibration (None)."""
    stored = stored or {}
    return float(stored.get("tta" if tta else "single_view", 1.0))
