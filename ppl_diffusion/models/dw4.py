"""Double well DW-4: four particles in 2-D with pair energy 0.9(d − 4)⁴ − 4(d − 4)².

Each pair distance prefers d ≈ 2.5 or d ≈ 5.5 with a barrier at d = 4. The energy depends on
distances only, so the centre of mass is free; a unit Gaussian on it makes the density proper
without touching the relative coordinates that the metrics (energies, distances) look at.

The published comparisons use 1,000 configurations of a fixed test split (``../shared/data``,
see :func:`load_configurations`): W2 between centred configurations and W2 between energies.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from ppl_diffusion.models.base import BuiltinModel
from ppl_diffusion.target import Symmetry

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


def _rotate_reflect_permute(noise: jax.Array, x: jax.Array) -> jax.Array:
    particles = x.reshape(NUM_PARTICLES, SPACE_DIM)
    particles = particles - particles.mean(0)
    cos, sin = noise[:2] / jnp.linalg.norm(noise[:2])  # a uniform angle
    rotation = jnp.array([[cos, -sin], [sin, cos]])
    mirror = jnp.where(noise[2] < 0, jnp.array([1.0, -1.0]), jnp.ones(2))
    particles = (particles * mirror) @ rotation.T
    particles = particles[jnp.argsort(noise[3 : 3 + NUM_PARTICLES])]
    # The centre of mass is independent of the relative coordinates, N(0, I) under the model.
    return (particles + noise[3 + NUM_PARTICLES :]).reshape(-1)


SYMMETRY = Symmetry(
    "dw4: O(2) x S4, centre of mass redrawn", 5 + NUM_PARTICLES, _rotate_reflect_permute
)
"""DW-4's invariances: rotations and reflections of the plane, permutations of the particles
(all drawn uniformly) and a fresh centre of mass from its exact N(0, I) marginal."""


# -------------------------------------------------------------------------- published metrics
DATA_DIR_VARIABLE = "PPL_DIFFUSION_DATA"


def load_configurations(split: str = "test", data_dir: str | Path | None = None) -> np.ndarray:
    """The published ``"test"`` or ``"val"`` split: ``(10000, 8)`` configurations, not
    centred. ``data_dir`` defaults to ``$PPL_DIFFUSION_DATA``, else ``../shared/data`` beside
    the repository."""
    if split not in ("test", "val"):
        raise ValueError(f"`split` must be 'test' or 'val', got {split!r}.")
    if data_dir is None:
        default = Path(__file__).resolve().parents[3] / "shared" / "data"
        data_dir = os.environ.get(DATA_DIR_VARIABLE, default)
    path = Path(data_dir) / f"dw4_{split}_split.npy"
    if not path.is_file():
        raise FileNotFoundError(
            f"DW-4 {split} split not found at {path}; set ${DATA_DIR_VARIABLE} to the folder "
            "holding dw4_test_split.npy and dw4_val_split.npy."
        )
    return np.load(path).astype(np.float64)


def centred(x) -> np.ndarray:
    """Flat configurations with each one's centre of mass subtracted."""
    particles = np.asarray(x, float).reshape(-1, NUM_PARTICLES, SPACE_DIM)
    return (particles - particles.mean(1, keepdims=True)).reshape(-1, DIM)


_PERMUTATIONS = np.array(list(itertools.permutations(range(NUM_PARTICLES))))


def aligned_squared_distances(a, b) -> np.ndarray:
    """``(len(a), len(b))`` squared distances between centred configurations after the best
    rotation or reflection and particle permutation of each pair: the distance between
    configurations up to DW-4's symmetries."""
    first = centred(a).reshape(-1, NUM_PARTICLES, SPACE_DIM)
    second = centred(b).reshape(-1, NUM_PARTICLES, SPACE_DIM)
    norms = (first**2).sum((1, 2))[:, None] + (second**2).sum((1, 2))[None]
    best = np.zeros(norms.shape)
    for permutation in _PERMUTATIONS:
        # max over rotations of tr(R Hᵀ) is |(H00 + H11, H01 − H10)|; over reflections the same
        # with the signs swapped.
        h = np.einsum("ikx,jky->ijxy", first, second[:, permutation], optimize=True)
        rotated = np.hypot(h[..., 0, 0] + h[..., 1, 1], h[..., 0, 1] - h[..., 1, 0])
        reflected = np.hypot(h[..., 0, 0] - h[..., 1, 1], h[..., 0, 1] + h[..., 1, 0])
        best = np.maximum(best, np.maximum(rotated, reflected))
    return np.maximum(norms - 2 * best, 0.0)


def energy_wasserstein2(a, b) -> float:
    """1-D W2 between the energies of two equal-size sets of configurations."""
    first, second = (np.sort(np.asarray(energy(jnp.asarray(v)))) for v in (a, b))
    return float(np.sqrt(np.mean((first - second) ** 2)))
