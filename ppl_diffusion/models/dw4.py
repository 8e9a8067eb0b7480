"""Double well DW-4: four particles in 2-D with pair energy 0.9(d − 4)⁴ − 4(d − 4)².

Each pair distance prefers d ≈ 2.5 or d ≈ 5.5 with a barrier at d = 4. The energy depends on
distances only, so the centre of mass is free; a unit Gaussian on it makes the density proper
without touching the relative coordinates that the metrics (energies, distances) look at.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist

from ppl_diffusion.models.base import BuiltinModel

NUM_PARTICLES = 4
SPACE_DIM = 2
DIM = NUM_PARTICLES * SPACE_DIM
_PAIRS = jnp.triu_indices(NUM_PARTICLES, 1)


def pair_distances(x: jax.Array) -> jax.Array:
    """``(..., 8)`` flat coordinates -> ``(..., 6)`` interparticle distances."""
    p = x.reshape(x.shape[:-1] + (NUM_PARTICLES, SPACE_DIM))
    diff = p[..., _PAIRS[0], :] - p[..., _PAIRS[1], :]
    return jnp.sqrt(jnp.sum(diff**2, -1) + 1e-12)


def energy(x: jax.Array) -> jax.Array:
    d = pair_distances(x) - 4.0
    return jnp.sum(0.9 * d**4 - 4.0 * d**2, axis=-1)


def model():
    x = numpyro.sample("x", dist.ImproperUniform(dist.constraints.real_vector, (), (DIM,)))
    centre = x.reshape(NUM_PARTICLES, SPACE_DIM).mean(0)
    numpyro.factor("log_density", -energy(x) - 0.5 * jnp.sum(centre**2))


def builtin() -> BuiltinModel:
    return BuiltinModel(name="dw4", model=model)
