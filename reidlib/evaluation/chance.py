"""Whether a measured share is chance: one z-score threshold for every verdict the notebooks print.

A count is *above* or *below* chance when it lies at least :data:`Z_THRESHOLD` standard deviations from
what chance would give (a random draw lands that far out about 3 times in 1,000), and *at* chance
otherwise. Each measurement supplies its own chance model: :func:`bernoulli_z` for independent items
with their own probabilities; :func:`reidlib.evaluation.mask_placement.placement` for masks (cells drawn
without replacement, hypergeometric).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

Z_THRESHOLD = 3.0


def verdict(z: float) -> str:
    """ "above", "at" or "below" chance: a z-score beyond +-:data:`Z_THRESHOLD` is not chance."""
    if z != z:  # NaN: nothing to measure
        return "at"
    return "above" if z >= Z_THRESHOLD else "below" if z <= -Z_THRESHOLD else "at"


def bernoulli_z(hits: int, probabilities: Sequence[float]) -> float:
    """z of ``hits`` successes among independent items, item i a success with probability p_i:
    (hits - sum p_i) / sqrt(sum p_i (1 - p_i)); NaN when the variance is 0."""
    p = np.asarray(probabilities, dtype=np.float64)
    variance = float((p * (1 - p)).sum())
    return (hits - float(p.sum())) / variance**0.5 if variance > 0 else float("nan")
