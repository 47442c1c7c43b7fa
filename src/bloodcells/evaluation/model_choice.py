"""Which model the comparison names best: the one predict uses when no --model is given."""


def best_model(rows):
    """Highest accuracy; ties go to the higher sensitivity, then to the smaller model."""
    return max(rows, key=lambda n: (rows[n]["accuracy"], rows[n]["macro_sensitivity"], -rows[n]["parameters"]))
