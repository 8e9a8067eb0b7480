"""Many-Well: 16 independent copies of a 2-D double well, 32 dimensions and 2^16 modes.

log p(x, y) = −x⁴ + 6x² + 0.5x − 0.5y² per pair. The pairs are independent, so exact samples
come from a 1-D inverse-CDF on a fine grid for x and a standard normal for y, and log Z is
16 × (log ∫exp(−x⁴ + 6x² + 0.5x)dx + ½ log 2π).
"""

from __future__ import annotations

from functools import lru_cache

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from ppl_diffusion.models.base import BuiltinModel

NUM_PAIRS = 16
DIM = 2 * NUM_PAIRS
_GRID = np.linspace(-4.0, 4.0, 200_001)


def _log_well(x):
    """Unnormalised log density of one double-well coordinate (NumPy or JAX arrays)."""
    return -(x**4) + 6 * x**2 + 0.5 * x


def log_density(x: jax.Array) -> jax.Array:
    """Unnormalised log density of ``(..., 32)`` points; even coordinates are the wells."""
    wells, gaussians = x[..., 0::2], x[..., 1::2]
    return jnp.sum(_log_well(wells) - 0.5 * gaussians**2, axis=-1)


def model():
    x = numpyro.sample("x", dist.ImproperUniform(dist.constraints.real_vector, (), (DIM,)))
    numpyro.factor("log_density", log_density(x))


@lru_cache(maxsize=1)
def _well_table():
    log_w = _log_well(_GRID)
    w = np.exp(log_w - log_w.max())
    dx = _GRID[1] - _GRID[0]
    cdf = np.cumsum(w) * dx
    log_z_well = np.log(cdf[-1]) + log_w.max()
    return cdf / cdf[-1], log_z_well, float(np.sum(w[_GRID > 0]) / np.sum(w))


def log_z() -> float:
    _, log_z_well, _ = _well_table()
    return NUM_PAIRS * (log_z_well + 0.5 * np.log(2 * np.pi))


def right_well_probability() -> float:
    """Exact P(x > 0) for each double-well coordinate (the 0.5x tilt favours the right well)."""
    return _well_table()[2]


def sample_exact(rng_key: jax.Array, n: int) -> dict:
    cdf, _, _ = _well_table()
    key_x, key_y = jax.random.split(rng_key)
    u = np.asarray(jax.random.uniform(key_x, (n, NUM_PAIRS), dtype=jnp.float32), dtype=float)
    wells = np.interp(u, cdf, _GRID)
    gaussians = np.asarray(jax.random.normal(key_y, (n, NUM_PAIRS)))
    x = np.empty((n, DIM))
    x[:, 0::2], x[:, 1::2] = wells, gaussians
    return {"x": jnp.asarray(x, dtype=jnp.float32)}


def noisy_score(noisy: jax.Array, alpha: jax.Array, sigma: jax.Array) -> jax.Array:
    """Exact score ∇log p_t(x_t) of the target noised as x_t = αx + σε, for ``(n, 32)`` points
    ``noisy`` with per-row ``alpha`` and ``sigma`` of shape ``(n,)``. Each well coordinate's
    score is (α E[x | x_t] − x_t)/σ², its posterior mean by quadrature; each Gaussian
    coordinate's is −x_t/(α² + σ²)."""
    # The wells' density is below e⁻³⁰ of its peak outside ±3.5.
    grid = jnp.linspace(-3.5, 3.5, 1401, dtype=noisy.dtype)
    log_well = _log_well(grid)
    alpha, sigma = alpha[:, None], sigma[:, None]
    wells, gaussians = noisy[:, 0::2], noisy[:, 1::2]
    log_posterior = log_well - 0.5 * (wells[..., None] - alpha[..., None] * grid) ** 2 / (
        sigma[..., None] ** 2
    )
    posterior_mean = jnp.sum(jax.nn.softmax(log_posterior, -1) * grid, -1)
    score = jnp.empty_like(noisy)
    score = score.at[:, 0::2].set((alpha * posterior_mean - wells) / sigma**2)
    return score.at[:, 1::2].set(-gaussians / (alpha**2 + sigma**2))


def builtin() -> BuiltinModel:
    return BuiltinModel(name="many_well", model=model, sample_exact=sample_exact)
