"""Neal's funnel in 10 dimensions: v ~ N(0, 3²), x_i | v ~ N(0, e^v) for i = 1..9.

Its neck (v ≪ 0) is far narrower than its mouth, so no single step size fits everywhere.
Exact samples come from the generative definition.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist

from ppl_diffusion.models.base import BuiltinModel

DIM = 10
V_SCALE = 3.0


def model():
    v = numpyro.sample("v", dist.Normal(0.0, V_SCALE))
    numpyro.sample("x", dist.Normal(jnp.zeros(DIM - 1), jnp.exp(v / 2)).to_event(1))


def sample_exact(rng_key: jax.Array, n: int) -> dict:
    key_v, key_x = jax.random.split(rng_key)
    v = V_SCALE * jax.random.normal(key_v, (n,))
    x = jnp.exp(v / 2)[:, None] * jax.random.normal(key_x, (n, DIM - 1))
    return {"v": v, "x": x}


def builtin() -> BuiltinModel:
    return BuiltinModel(name="funnel", model=model, sample_exact=sample_exact)
