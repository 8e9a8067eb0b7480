"""Running the samplers users would otherwise pick, on equal terms with ours."""

from __future__ import annotations

import math
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.infer import HMC, MCMC


class BudgetRun(NamedTuple):
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


def gradient_cost_field(kernel) -> str:
    """The extra field holding a kernel's gradient evaluations per iteration: NumPyro's HMC and
    NUTS count leapfrog steps; this package's kernels report ``num_grad_evals``."""
    return "num_steps" if isinstance(kernel, HMC) else "num_grad_evals"


def run_with_budget(
    rng_key,
    kernel,
    gradient_budget: int,
    num_chains: int,
    num_warmup: int,
    min_draws: int,
    model_args: tuple = (),
    model_kwargs: dict | None = None,
    progress_bar: bool = False,
) -> BudgetRun:
    """Run ``kernel`` until its post-warmup gradient evaluations reach ``gradient_budget``.

    The cost per draw of NUTS (alone or inside DiGS) is adaptive, so the chains first draw
    ``min_draws`` each and then, while still under budget, continue for as many more draws as
    the measured cost per draw says the budget allows.
    """
    model_kwargs = {} if model_kwargs is None else model_kwargs
    cost_field = gradient_cost_field(kernel)
    start = time.perf_counter()
    mcmc = MCMC(
        kernel,
        num_warmup=num_warmup,
        num_samples=min_draws,
        num_chains=num_chains,
        chain_method="vectorized",
        progress_bar=progress_bar,
    )
    mcmc.run(rng_key, *model_args, extra_fields=(cost_field,), **model_kwargs)
    parts = [mcmc.get_samples(group_by_chain=True)]
    used = first_used = int(mcmc.get_extra_fields()[cost_field].sum())
    draws = min_draws
    # The cost per draw varies, so a top-up can fall a little short: top up until it is spent.
    while used < gradient_budget:
        grads_per_draw = used / (num_chains * draws)
        extra = math.ceil((gradient_budget - used) / (grads_per_draw * num_chains))
        draws += extra
        mcmc.post_warmup_state = mcmc.last_state
        mcmc.num_samples = extra
        mcmc.run(
            mcmc.post_warmup_state.rng_key,
            *model_args,
            extra_fields=(cost_field,),
            **model_kwargs,
        )
        parts.append(mcmc.get_samples(group_by_chain=True))
        used += int(mcmc.get_extra_fields()[cost_field].sum())
    samples = jax.tree.map(lambda *xs: jnp.concatenate(xs, axis=1), *parts)
    jax.block_until_ready(samples)
    return BudgetRun(samples, min_draws, used, first_used, time.perf_counter() - start, mcmc)


def time_compiled_run(mcmc: MCMC, rng_key, *model_args, **model_kwargs) -> float:
    """Wall time of ``mcmc.run`` once compiled: a first run (other key) compiles, the second is
    timed. Samples of the timed run stay in ``mcmc``. A callable ``chain_method`` (like
    NumPyro's ``"parallel"``) recompiles on every run; with JAX's persistent compilation cache
    on, the timed run loads that program instead of compiling it."""
    key_compile, key_run = jax.random.split(rng_key)
    mcmc.run(key_compile, *model_args, **model_kwargs)
    jax.block_until_ready(mcmc.get_samples())
    start = time.perf_counter()
    mcmc.run(key_run, *model_args, **model_kwargs)
    jax.block_until_ready(mcmc.get_samples())
    return time.perf_counter() - start


def thin_to(samples: np.ndarray, n: int) -> np.ndarray:
    """Evenly thin ``(chains, draws, ...)`` draws to about ``n`` points, pooled over chains."""
    samples = np.asarray(samples)
    chains, draws = samples.shape[:2]
    step = max(1, (chains * draws) // n)
    return samples[:, ::step].reshape((-1,) + samples.shape[2:])[:n]


class SMCRun(NamedTuple):
    positions: jax.Array
    """Equally weighted flat unconstrained particles after resampling at temperature 1."""
    gradient_evaluations: int
    num_tempering_steps: int
    wall_time: float


def run_tempered_smc(
    rng_key,
    logdensity_fn,
    dim: int,
    num_particles: int,
    reference_scale: float,
    step_size: float,
    num_mcmc_steps: int = 10,
    target_ess: float = 0.5,
) -> SMCRun:
    """BlackJAX adaptive tempered SMC from N(0, reference_scale² I) to the target, MALA moves.

    The reference plays the prior's role: particles start there and the tempering exponent
    moves the remaining factor ``p(x) / N(x; 0, s²I)`` from 0 to 1.
    """
    import blackjax
    from blackjax.smc import resampling

    def log_reference(x):
        return jnp.sum(jax.scipy.stats.norm.logpdf(x, 0.0, reference_scale))

    def log_ratio(x):
        return logdensity_fn(x) - log_reference(x)

    smc = blackjax.adaptive_tempered_smc(
        log_reference,
        log_ratio,
        blackjax.mala.build_kernel(),
        blackjax.mala.init,
        {"step_size": jnp.array([step_size])},
        resampling.systematic,
        target_ess,
        num_mcmc_steps=num_mcmc_steps,
    )

    @jax.jit
    def run(key):
        key_init, key_loop, key_final = jax.random.split(key, 3)
        state = smc.init(reference_scale * jax.random.normal(key_init, (num_particles, dim)))

        def not_done(carry):
            return carry[1].tempering_param < 1

        def one_step(carry):
            i, state, key = carry
            key, subkey = jax.random.split(key)
            state, _ = smc.step(subkey, state)
            return i + 1, state, key

        steps, state, _ = jax.lax.while_loop(not_done, one_step, (0, state, key_loop))
        index = resampling.systematic(key_final, state.weights, num_particles)
        return state.particles[index], steps

    start = time.perf_counter()
    positions, steps = jax.block_until_ready(run(rng_key))
    steps = int(steps)
    return SMCRun(
        positions, steps * num_mcmc_steps * num_particles, steps, time.perf_counter() - start
    )
