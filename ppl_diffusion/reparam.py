"""Choose how far to centre each hierarchical normal site, before sampling.

A latent site ``x ~ Normal(loc, scale)`` whose ``loc`` or ``scale`` depends on other latent
sites (a centred hierarchical model, Neal's funnel) makes a funnel when the data say little
about ``x``: where ``scale`` is small, ``x`` is confined to a neck that no step size adapted on
the bulk can enter, and every local sampler (NUTS included) gives biased answers. Writing
``x = loc + scale · z`` with ``z ~ Normal(0, 1)`` removes that funnel, but when the data pin
``x`` down it makes the mirror-image one, where mixing is ruinous. Which is right depends on
how much the data say about each element.

This module decides per element from a short NUTS pilot, following the variationally inferred
parameterisation of Gorinova, Moore & Hoffman (2020): ``x̂ ~ Normal(c · loc, scale^c)``,
``x = loc + scale^(1 - c) (x̂ - c · loc)``, which is exact for any centredness c in [0, 1]
(c = 1 is the model as written, c = 0 fully non-centred). For a normal likelihood of precision
λ on an element of ``x``, c = λ s² / (1 + λ s²) makes that element's conditional posterior the
same whatever ``scale`` s is, so neither funnel appears. λ is read off the model as the
curvature of its log density in that element beyond the site's own prior, and c is averaged
over the pilot's draws. Applied with NumPyro's
:class:`~numpyro.infer.reparam.LocScaleReparam`; the sampler's draws of ``x`` are the model's.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from numpyro import distributions as dist
from numpyro import handlers
from numpyro.infer import MCMC, NUTS
from numpyro.infer.initialization import init_to_uniform
from numpyro.infer.reparam import LocScaleReparam
from numpyro.infer.util import log_density

from ppl_diffusion.target import check_model

PILOT_CHAINS = 4
PILOT_WARMUP = 200
"""NUTS warmup iterations of the pilot: enough to reach the bulk of the posterior and read the
scales there; the pilot's answer need not be exact, only its order of magnitude."""
PILOT_DRAWS_PER_CHAIN = 5
NUM_CURVATURE_PROBES = 16
"""Rademacher probes per draw for the curvature's diagonal (exact when the site's elements
do not interact in the likelihood, as in most hierarchical models)."""
CENTRED_ENOUGH = 0.99
"""A site whose every element would get at least this centredness is left as written."""
DECENTERED_SUFFIX = "_decentered"
"""What :class:`~numpyro.infer.reparam.LocScaleReparam` appends to a site's name."""


def _normal_base(fn) -> dist.Normal | None:
    while isinstance(fn, dist.ExpandedDistribution | dist.Independent):
        fn = fn.base_dist
    return fn if type(fn) is dist.Normal else None


def hierarchical_normal_sites(model: Callable, model_args=(), model_kwargs=None) -> list[str]:
    """Latent ``Normal`` sites whose location or scale changes with other latent sites.

    Found by running the model at two random points and comparing each normal site's
    parameters: only the latent values differ between the runs.
    """
    traces = [
        check_model(model, model_args, model_kwargs, jax.random.PRNGKey(seed), init_to_uniform)
        for seed in (0, 1)
    ]
    sites = []
    for name, site in traces[0].items():
        if site["type"] != "sample" or site["is_observed"]:
            continue
        other = traces[1].get(name)
        if other is None:  # a site the model draws only at some values of the others
            continue
        first, second = _normal_base(site["fn"]), _normal_base(other["fn"])
        if first is None or second is None:
            continue
        same = np.allclose(first.loc, second.loc) and np.allclose(first.scale, second.scale)
        if not same:
            sites.append(name)
    return sites


def choose_centering(
    rng_key: jax.Array,
    model: Callable,
    sites: list[str],
    model_args: tuple = (),
    model_kwargs: dict | None = None,
    init_strategy: Callable = init_to_uniform,
) -> dict[str, np.ndarray]:
    """Per site of ``sites``, the centredness c in [0, 1] of each element (see the module).

    Runs a NUTS pilot of :data:`PILOT_CHAINS` vectorized chains for :data:`PILOT_WARMUP`
    warmup iterations on the model as written, then at each of its draws estimates, per
    element, the likelihood's curvature λ (the diagonal of the log density's Hessian less the
    prior's -1/s², by Rademacher probes) and the prior scale s. ``init_strategy`` starts the
    pilot's chains.
    """
    model_kwargs = {} if model_kwargs is None else model_kwargs
    pilot = MCMC(
        NUTS(model, init_strategy=init_strategy),
        num_warmup=PILOT_WARMUP,
        num_samples=PILOT_DRAWS_PER_CHAIN,
        num_chains=PILOT_CHAINS,
        chain_method="vectorized",
        progress_bar=False,
    )
    key_pilot, key_probes = jax.random.split(rng_key)
    pilot.run(key_pilot, *model_args, **model_kwargs)
    draws = pilot.get_samples()

    def centredness(params, site, key):
        def logdensity(value):
            return log_density(model, model_args, model_kwargs, {**params, site: value})[0]

        value = params[site]
        gradient = jax.grad(logdensity)
        probes = jax.random.rademacher(
            key, (NUM_CURVATURE_PROBES,) + jnp.shape(value), dtype=value.dtype
        )
        hessian_diagonal = jnp.mean(
            jax.vmap(lambda p: p * jax.jvp(gradient, (value,), (p,))[1])(probes), axis=0
        )
        _, trace = log_density(model, model_args, model_kwargs, params)
        scale = jnp.broadcast_to(_normal_base(trace[site]["fn"]).scale, jnp.shape(value))
        precision = jnp.maximum(-hessian_diagonal - scale**-2, 0.0)
        return precision * scale**2 / (1 + precision * scale**2)

    num_draws = len(next(iter(draws.values())))
    centering = {}
    for site, key in zip(sites, jax.random.split(key_probes, len(sites)), strict=True):
        per_draw = jax.jit(jax.vmap(lambda p, k, s=site: centredness(p, s, k)))(
            draws, jax.random.split(key, num_draws)
        )
        # A draw where the curvature is not finite says nothing; an element with no finite
        # draw stays as written.
        per_draw = np.asarray(per_draw)
        finite = np.isfinite(per_draw)
        count = finite.sum(axis=0)
        total = np.where(finite, per_draw, 0.0).sum(axis=0)
        centering[site] = np.where(count > 0, total / np.maximum(count, 1), 1.0)
    return centering


def _decentred(centering: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The sites :func:`reparameterize` changes: those not centred enough throughout."""
    return {site: c for site, c in centering.items() if np.min(c) < CENTRED_ENOUGH}


def reparameterize(model: Callable, centering: dict[str, np.ndarray]) -> Callable:
    """``model`` with each site of ``centering`` partially centred as the module describes;
    sites centred at least :data:`CENTRED_ENOUGH` throughout are left as written."""
    config = {
        site: LocScaleReparam(centered=jnp.asarray(c)) for site, c in _decentred(centering).items()
    }
    return handlers.reparam(model, config=config) if config else model


def hidden_site_names(centering: dict[str, np.ndarray]) -> set[str]:
    """The latent sites :func:`reparameterize` adds, which the user's model does not have."""
    return {site + DECENTERED_SUFFIX for site in _decentred(centering)}
