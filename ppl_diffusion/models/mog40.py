"""A 2-D mixture of 40 equally weighted Gaussians spread over [-40, 40]², the standard test of
mode hopping: the modes are several standard deviations apart, so local samplers stay put."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist

from ppl_diffusion.models.base import BuiltinModel

NUM_MODES = 40
LOC_SCALE = 40.0
MODE_STD = float(jax.nn.softplus(1.0))  # 1.3133, as in the reference benchmark
MEANS_SEED = 0


def mode_means() -> jax.Array:
    """Mode locations (U − 0.5)·80 with U ~ Uniform[0, 1)² from a fixed seed."""
    u = jax.random.uniform(jax.random.PRNGKey(MEANS_SEED), (NUM_MODES, 2))
    return (u - 0.5) * 2 * LOC_SCALE


def distribution() -> dist.Distribution:
    means = mode_means()
    return dist.MixtureSameFamily(
        dist.Categorical(probs=jnp.full(NUM_MODES, 1.0 / NUM_MODES)),
        dist.Normal(means, MODE_STD).to_event(1),
    )


def model():
    numpyro.sample("x", distribution())


def sample_exact(rng_key: jax.Array, n: int) -> dict:
    return {"x": distribution().sample(rng_key, (n,))}


def builtin() -> BuiltinModel:
    return BuiltinModel(
        name="mog40",
        model=model,
        sample_exact=sample_exact,
        modes=mode_means(),
        mode_std=MODE_STD,
    )
