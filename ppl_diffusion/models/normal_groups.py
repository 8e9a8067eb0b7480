"""Eight normal groups written centred, each seen once with a chosen likelihood sd: how much
the data say about each group, and so whether it samples best centred or non-centred, is set
by that sd alone."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

NUM_GROUPS = 8


def model(y, noise, tau_location=None):
    """``theta ~ Normal(mu, tau)`` per group, ``y ~ Normal(theta, noise)``; ``tau_location``
    pins the group scale near one value instead of a HalfCauchy(5) prior."""
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    tau_prior = (
        dist.HalfCauchy(5.0)
        if tau_location is None
        else dist.LogNormal(jnp.log(tau_location), 1e-4)
    )
    tau = numpyro.sample("tau", tau_prior)
    with numpyro.plate("groups", NUM_GROUPS):
        theta = numpyro.sample("theta", dist.Normal(mu, tau))
        numpyro.sample("obs", dist.Normal(theta, noise), obs=y)


def data(noise: float) -> np.ndarray:
    """One observation per group: group means spread with sd 3 around 1, plus noise of sd
    ``noise`` (fixed seed)."""
    rng = np.random.default_rng(0)
    return 1.0 + 3.0 * rng.standard_normal(NUM_GROUPS) + noise * rng.standard_normal(NUM_GROUPS)
