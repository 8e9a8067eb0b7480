"""Running the samplers users would otherwise pick, on equal terms with ours."""

from __future__ import annotations

import math
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.infer import MCMC, NUTS


class PeerRun(NamedTuple):
    samples: dict
    """Constrained samples grouped by chain: site -> (chains, draws, ...)."""
    num_first_draws: int
    """Draws per chain of the first phase (``min_draws``), before any budget top-up."""
    gradient_evaluations: int
    """Post-warmup gradient evaluations over all chains."""
    first_gradient_evaluations: int
    """Of which the first phase used."""
    wall_time: float
    mcmc: MCMC


def run_nuts_with_budget(
    rng_key,
    model,
    gradient_budget: int,
    num_chains: int,
    num_warmup: int,
    min_draws: int,
    model_args: tuple = (),
    model_kwargs: dict | None = None,
    progress_bar: bool = False,
) -> PeerRun:
    """Run NUTS until its post-warmup gradient evaluations reach ``gradient_budget``.

    NUTS's cost per draw is adaptive, so it first draws ``min_draws`` per chain and then, if it
    is still under budget, continues the same chains for as many more draws as its measured
    cost per draw says the budget allows.
    """
    model_kwargs = {} if model_kwargs is None else model_kwargs
    start = time.perf_counter()
    mcmc = MCMC(
        NUTS(model),
        num_warmup=num_warmup,
        num_samples=min_draws,
        num_chains=num_chains,
        chain_method="vectorized",
        progress_bar=progress_bar,
    )
    mcmc.run(rng_key, *model_args, extra_fields=("num_steps",), **model_kwargs)
    parts = [mcmc.get_samples(group_by_chain=True)]
    used = first_used = int(mcmc.get_extra_fields()["num_steps"].sum())
    if used < gradient_budget:
        steps_per_draw = used / (num_chains * min_draws)
        extra = math.ceil((gradient_budget - used) / (steps_per_draw * num_chains))
        mcmc.post_warmup_state = mcmc.last_state
        mcmc.num_samples = extra
        mcmc.run(mcmc.post_warmup_state.rng_key, *model_args, extra_fields=("num_steps",), **model_kwargs)
        parts.append(mcmc.get_samples(group_by_chain=True))
        used += int(mcmc.get_extra_fields()["num_steps"].sum())
    samples = jax.tree.map(lambda *xs: jnp.concatenate(xs, axis=1), *parts)
    jax.block_until_ready(samples)
    return PeerRun(samples, min_draws, used, first_used, time.perf_counter() - start, mcmc)


def thin_to(samples: np.ndarray, n: int) -> np.ndarray:
    """Evenly thin ``(chains, draws, ...)`` draws to about ``n`` points, pooled over chains."""
    samples = np.asarray(samples)
    chains, draws = samples.shape[:2]
    step = max(1, (chains * draws) // n)
    return samples[:, ::step].reshape((-1,) + samples.shape[2:])[:n]
