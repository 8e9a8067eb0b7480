"""Multimodal Bayesian posteriors whose mode weights are known exactly, by symmetry.

Each model comes with ``mode_of(samples) -> integer label per draw`` and the exact weight of
every label, so a sampler's occupancy can be compared with the truth chain by chain.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from ppl_diffusion.models import many_well, mog40


@dataclass(frozen=True)
class MultimodalPosterior:
    name: str
    model: Callable
    model_args: tuple
    model_kwargs: dict
    mode_of: Callable[[dict], np.ndarray]
    """Constrained samples (site -> (..., shape)) to a mode label per draw, or per draw and
    coordinate for models whose modes factorise (then every coordinate has ``weights``)."""
    weights: np.ndarray
    """Exact probability of each label."""


# A parameter seen only through its square: y ~ N(θ², 1), five observations of θ² = 4 put
# modes at θ ≈ ±2 with standard deviation about 0.1, 40 standard deviations apart.
SQUARE_DATA = np.array([4.3, 3.6, 4.1, 3.9, 4.4])


def sign_unidentified(y, num_parameters=1):
    theta = numpyro.sample("theta", dist.Normal(0.0, 3.0).expand([num_parameters]).to_event(1))
    numpyro.sample("obs", dist.Normal(theta[:, None] ** 2, 1.0).to_event(2), obs=y)


# Range-only localisation from three anchors on a line: the position and its mirror image
# across the line explain the ranges equally well.
ANCHORS = np.array([[-4.0, 0.0], [0.0, 0.0], [4.0, 0.0]])
RANGES = np.linalg.norm(np.array([1.0, 2.0]) - ANCHORS, axis=1) + np.array([0.05, -0.08, 0.03])


def mirror_localisation(ranges):
    position = numpyro.sample("position", dist.Normal(0.0, 5.0).expand([2]).to_event(1))
    distance = jnp.linalg.norm(position - ANCHORS, axis=1)
    numpyro.sample("obs", dist.Normal(distance, 0.1).to_event(1), obs=ranges)


# Two Gaussian modes in 5-D, 10 standard deviations apart, weights 0.3 and 0.7.
MIXTURE_MEANS = np.stack([np.zeros(5), np.full(5, 10.0 / np.sqrt(5))])
MIXTURE_WEIGHTS = np.array([0.3, 0.7])


def separated_mixture():
    numpyro.sample(
        "x",
        dist.MixtureSameFamily(
            dist.Categorical(probs=MIXTURE_WEIGHTS), dist.Normal(MIXTURE_MEANS, 1.0).to_event(1)
        ),
    )


# Label switching: a three-component mixture with exchangeable component means; each of the
# 3! relabelings of the posterior mode carries weight 1/6.
LABEL_DATA = np.concatenate(
    [np.random.default_rng(3).normal(loc, 1.0, 20) for loc in (-4.0, 0.0, 4.0)]
)
PERMUTATIONS = list(itertools.permutations(range(3)))


def exchangeable_mixture(data):
    means = numpyro.sample("means", dist.Normal(0.0, 5.0).expand([3]).to_event(1))
    mixing = dist.Categorical(probs=jnp.full(3, 1 / 3))
    with numpyro.plate("data", data.shape[0]):
        numpyro.sample("obs", dist.MixtureSameFamily(mixing, dist.Normal(means, 1.0)), obs=data)


def mog40_in_50d():
    """mog40 in the first two coordinates, 48 standard normal ones beside it."""
    mog40.model()
    numpyro.sample("noise", dist.Normal(0.0, 1.0).expand([48]).to_event(1))


def _permutation_label(samples):
    order = np.argsort(np.asarray(samples["means"]), axis=-1)
    lookup = {perm: k for k, perm in enumerate(PERMUTATIONS)}
    flat = order.reshape(-1, 3)
    return np.array([lookup[tuple(p)] for p in flat]).reshape(order.shape[:-1])


def _nearest(modes: np.ndarray, site: str):
    def label(samples):
        x = np.asarray(samples[site])
        return np.argmin(((x[..., None, :] - modes) ** 2).sum(-1), axis=-1)

    return label


def posteriors() -> dict[str, MultimodalPosterior]:
    sign_weights = np.array([0.5, 0.5])
    mog40_modes = np.asarray(mog40.mode_means())
    right_well = many_well.right_well_probability()
    positive = lambda site, column: (  # noqa: E731
        lambda samples: (np.asarray(samples[site])[..., column] > 0).astype(int)
    )
    return {
        "sign_unidentified": MultimodalPosterior(
            "sign_unidentified",
            sign_unidentified,
            (SQUARE_DATA[None],),
            {},
            positive("theta", 0),
            sign_weights,
        ),
        "sign_unidentified_10": MultimodalPosterior(
            "sign_unidentified_10",
            sign_unidentified,
            (np.tile(SQUARE_DATA, (10, 1)),),
            {"num_parameters": 10},
            lambda samples: (np.asarray(samples["theta"]) > 0).astype(int),
            sign_weights,
        ),
        "mirror_localisation": MultimodalPosterior(
            "mirror_localisation",
            mirror_localisation,
            (RANGES,),
            {},
            positive("position", 1),
            sign_weights,
        ),
        "separated_mixture_5d": MultimodalPosterior(
            "separated_mixture_5d",
            separated_mixture,
            (),
            {},
            _nearest(MIXTURE_MEANS, "x"),
            MIXTURE_WEIGHTS,
        ),
        "label_switching": MultimodalPosterior(
            "label_switching",
            exchangeable_mixture,
            (LABEL_DATA,),
            {},
            _permutation_label,
            np.full(6, 1 / 6),
        ),
        "mog40": MultimodalPosterior(
            "mog40",
            mog40.model,
            (),
            {},
            _nearest(mog40_modes, "x"),
            np.full(40, 1 / 40),
        ),
        "mog40_in_50d": MultimodalPosterior(
            "mog40_in_50d",
            mog40_in_50d,
            (),
            {},
            _nearest(mog40_modes, "x"),
            np.full(40, 1 / 40),
        ),
        "many_well": MultimodalPosterior(
            "many_well",
            many_well.model,
            (),
            {},
            lambda samples: (np.asarray(samples["x"])[..., 0::2] > 0).astype(int),
            np.array([1 - right_well, right_well]),
        ),
    }
