"""Sample-quality diagnostics against ground truth: mode coverage, MMD, W2, energy-histogram
TVD, and ESS / R-hat through ArviZ."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
from scipy import optimize, stats

Array = jax.Array


class ModeCoverage(NamedTuple):
    counts: np.ndarray
    """Samples per mode (samples farther than ``radius`` from every mode are not counted)."""
    num_visited: int
    weight_error: float
    """Total variation distance between the occupancy and the target weights."""
    chi2_pvalue: float
    """Chi-square goodness-of-fit p-value of the counts against the target weights."""


def mode_coverage(
    samples: Array, modes: Array, radius: float, weights: Array | None = None
) -> ModeCoverage:
    """Assign each sample to its nearest mode (within ``radius``) and compare occupancies.

    The chi-square p-value assumes independent samples: thin correlated MCMC draws first.
    """
    samples = np.asarray(samples).reshape(-1, np.shape(modes)[-1])
    modes = np.asarray(modes)
    num_modes = modes.shape[0]
    weights = np.full(num_modes, 1.0 / num_modes) if weights is None else np.asarray(weights)
    dist2 = ((samples[:, None, :] - modes[None, :, :]) ** 2).sum(-1)
    nearest = dist2.argmin(-1)
    near_enough = dist2[np.arange(len(samples)), nearest] <= radius**2
    counts = np.bincount(nearest[near_enough], minlength=num_modes)
    total = counts.sum()
    occupancy = counts / max(total, 1)
    weight_error = 0.5 * float(np.abs(occupancy - weights).sum())
    pvalue = float(stats.chisquare(counts, total * weights).pvalue) if total else 0.0
    return ModeCoverage(counts, int((counts > 0).sum()), weight_error, pvalue)


def _pairwise_sq_dists(x, y):
    return jnp.sum(x**2, -1)[:, None] + jnp.sum(y**2, -1)[None, :] - 2 * x @ y.T


def default_bandwidths(reference: Array) -> Array:
    """Multiples of the median inter-point distance of (up to 1000 points of) the reference."""
    ref = jnp.asarray(reference)[:1000]
    d = jnp.sqrt(jnp.maximum(_pairwise_sq_dists(ref, ref), 0.0))
    median = jnp.median(d[jnp.triu_indices(ref.shape[0], 1)])
    return median * jnp.array([0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0])


@jax.jit
def _mmd2(x, y, bandwidths):
    def mean_kernel(a, b):
        d2 = jnp.maximum(_pairwise_sq_dists(a, b), 0.0)
        return jnp.mean(jnp.exp(-d2[None] / (2 * bandwidths[:, None, None] ** 2)), axis=(1, 2))

    return jnp.mean(mean_kernel(x, x) + mean_kernel(y, y) - 2 * mean_kernel(x, y))


def mmd(x: Array, y: Array, bandwidths: Array | None = None) -> float:
    """Maximum mean discrepancy with a mixture of RBF kernels (biased V-statistic, so ≥ 0).

    ``bandwidths`` defaults to :func:`default_bandwidths` of ``y``; pass the same bandwidths
    when comparing several sample sets to one reference.
    """
    x = jnp.asarray(x).reshape(-1, np.shape(y)[-1])
    y = jnp.asarray(y).reshape(-1, np.shape(y)[-1])
    bandwidths = default_bandwidths(y) if bandwidths is None else jnp.asarray(bandwidths)
    return float(jnp.sqrt(jnp.maximum(_mmd2(x, y, bandwidths), 0.0)))


def wasserstein2(
    x: Array,
    y: Array,
    max_points: int = 2000,
    squared_distances: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
) -> float:
    """Exact 2-Wasserstein distance between two equal-size point clouds (optimal assignment).

    Both sets are cut to the same size, at most ``max_points``: the assignment is cubic in it.
    ``squared_distances(x, y)`` gives the cost matrix (default: squared Euclidean), e.g. a
    distance up to a target's symmetries.
    """
    n = min(len(x), len(y), max_points)
    x = np.asarray(x, dtype=float).reshape(len(x), -1)[:n]
    y = np.asarray(y, dtype=float).reshape(len(y), -1)[:n]
    if squared_distances is None:
        cost = ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)
    else:
        cost = squared_distances(x, y)
    rows, cols = optimize.linear_sum_assignment(cost)
    return float(np.sqrt(cost[rows, cols].mean()))


def histogram_tvd(a: Array, b: Array, bins: int = 50) -> float:
    """Total variation distance between the histograms of two 1-D samples on common bins
    (used on energies: it compares how much mass each sampler puts at each energy level)."""
    a, b = np.asarray(a, dtype=float).ravel(), np.asarray(b, dtype=float).ravel()
    edges = np.histogram_bin_edges(np.concatenate([a, b]), bins=bins)
    pa = np.histogram(a, edges)[0] / len(a)
    pb = np.histogram(b, edges)[0] / len(b)
    return 0.5 * float(np.abs(pa - pb).sum())


def ess_summary(samples_by_chain: dict) -> dict:
    """Smallest bulk ESS over every scalar parameter, and the largest R-hat (ArviZ)."""
    idata = az.from_dict(posterior={k: np.asarray(v) for k, v in samples_by_chain.items()})
    ess = az.ess(idata, method="bulk")
    rhat = az.rhat(idata)
    return {
        "min_ess_bulk": float(min(np.min(ess[k].values) for k in ess.data_vars)),
        "max_rhat": float(max(np.max(rhat[k].values) for k in rhat.data_vars)),
    }
