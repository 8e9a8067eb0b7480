"""Sampling the denoising posterior p(x | x̃) ∝ p(x) N(x̃; αx, σ²I).

This is the one posterior-sampling routine of the package: DiGS uses it as its Gibbs denoising
move. Because ``N(x̃; αx, σ²I) ∝ N(x; x̃/α, σ²/α² I)`` as a function of ``x``, a draw from
``N(x̃/α, σ²/α² I)`` is an independent Metropolis–Hastings proposal for the posterior whose
acceptance ratio is simply ``p(x')/p(x)``; BlackJAX MALA steps on the posterior then refine it.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

from blackjax.mcmc import mala
import jax
import jax.numpy as jnp

Array = jax.Array


class PointState(NamedTuple):
    """A position with the target log density and its gradient there."""

    position: Array
    logdensity: Array
    logdensity_grad: Array


class DenoisingInfo(NamedTuple):
    init_accepted: Array
    """Whether the independent proposal from N(x̃/α, σ²/α²) was accepted."""
    mala_acceptance: Array
    """Mean MALA acceptance probability over the refinement steps (NaN proposals count as 0)."""
    num_nonfinite: Array
    """Proposals whose log density or gradient was not finite; all of them were rejected."""


def is_finite_point(logdensity: Array, logdensity_grad: Array) -> Array:
    return jnp.isfinite(logdensity) & jnp.all(jnp.isfinite(logdensity_grad))


def denoising_logdensity(
    logdensity_fn: Callable, noisy: Array, alpha: Array, sigma: Array
) -> Callable:
    """log p(x | x̃) up to a constant."""

    def fn(x):
        return logdensity_fn(x) - jnp.sum((noisy - alpha * x) ** 2) / (2 * sigma**2)

    return fn


def _to_posterior(point: PointState, noisy, alpha, sigma) -> mala.MALAState:
    residual = noisy - alpha * point.position
    return mala.MALAState(
        point.position,
        point.logdensity - jnp.sum(residual**2) / (2 * sigma**2),
        point.logdensity_grad + alpha * residual / sigma**2,
    )


def _from_posterior(state: mala.MALAState, noisy, alpha, sigma) -> PointState:
    residual = noisy - alpha * state.position
    return PointState(
        state.position,
        state.logdensity + jnp.sum(residual**2) / (2 * sigma**2),
        state.logdensity_grad - alpha * residual / sigma**2,
    )


def sample_denoising_posterior(
    rng_key: Array,
    point: PointState,
    noisy: Array,
    alpha: Array,
    sigma: Array,
    logdensity_fn: Callable,
    step_size: Array,
    num_mala_steps: int,
) -> tuple[PointState, DenoisingInfo]:
    """One p(x | x̃)-invariant move from ``point``: independent MH from N(x̃/α, σ²/α²), then MALA.

    ``point`` carries log p and its gradient (not the posterior's) so that callers can chain
    moves at different noise levels without re-evaluating the target.
    """
    key_proposal, key_accept, key_mala = jax.random.split(rng_key, 3)
    scale = sigma / alpha
    proposal = noisy / alpha + scale * jax.random.normal(key_proposal, point.position.shape)
    proposal_logdensity, proposal_grad = jax.value_and_grad(logdensity_fn)(proposal)
    proposal_finite = is_finite_point(proposal_logdensity, proposal_grad)
    log_ratio = jnp.where(proposal_finite, proposal_logdensity - point.logdensity, -jnp.inf)
    accept = jnp.log(jax.random.uniform(key_accept)) < log_ratio
    point = jax.tree.map(
        lambda new, old: jnp.where(accept, new, old),
        PointState(proposal, proposal_logdensity, proposal_grad),
        point,
    )

    posterior_logdensity_fn = denoising_logdensity(logdensity_fn, noisy, alpha, sigma)
    mala_step = mala.build_kernel()

    def one_mala_step(state, key):
        state, info = mala_step(key, state, posterior_logdensity_fn, step_size)
        # BlackJAX rejects a proposal whose energy is NaN (bernoulli(NaN) is False) but reports
        # a NaN acceptance rate, which would poison step-size adaptation and summaries.
        nonfinite = jnp.isnan(info.acceptance_rate)
        return state, (jnp.where(nonfinite, 0.0, info.acceptance_rate), nonfinite)

    state = _to_posterior(point, noisy, alpha, sigma)
    keys = jax.random.split(key_mala, num_mala_steps)
    state, (acceptance, nonfinite) = jax.lax.scan(one_mala_step, state, keys)
    info = DenoisingInfo(
        init_accepted=accept,
        mala_acceptance=jnp.mean(acceptance) if num_mala_steps > 0 else jnp.nan,
        num_nonfinite=jnp.sum(nonfinite) + (~proposal_finite).astype(jnp.int32),
    )
    return _from_posterior(state, noisy, alpha, sigma), info
