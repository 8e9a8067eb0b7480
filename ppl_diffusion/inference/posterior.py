"""Sampling the denoising posterior p(x | x̃) ∝ p(x) N(x̃; αx, σ²I).

This module is the package's one posterior-sampling machinery: DiGS uses
:func:`sample_denoising_posterior` as its Gibbs denoising move, and the amortized samplers use
:func:`estimate_denoising_posterior` with the score identities to estimate the noisy target's
score. Both run the same BlackJAX MALA loop (:func:`run_mala`) on the same posterior.

Because ``N(x̃; αx, σ²I) ∝ N(x; x̃/α, σ²/α² I)`` as a function of ``x``, a draw from
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
    state = _to_posterior(point, noisy, alpha, sigma)
    state, acceptance, nonfinite = run_mala(
        key_mala, state, posterior_logdensity_fn, step_size, num_mala_steps
    )
    info = DenoisingInfo(
        init_accepted=accept,
        mala_acceptance=acceptance,
        num_nonfinite=nonfinite + (~proposal_finite).astype(jnp.int32),
    )
    return _from_posterior(state, noisy, alpha, sigma), info


def run_mala(
    rng_key: Array,
    state: mala.MALAState,
    logdensity_fn: Callable,
    step_size: Array,
    num_steps: int,
) -> tuple[mala.MALAState, Array, Array]:
    """``num_steps`` BlackJAX MALA steps; returns the state, the mean acceptance probability
    and the number of rejected non-finite proposals."""
    mala_step = mala.build_kernel()

    def one_step(state, key):
        state, info = mala_step(key, state, logdensity_fn, step_size)
        # BlackJAX rejects a proposal whose energy is NaN (bernoulli(NaN) is False) but reports
        # a NaN acceptance rate, which would poison step-size adaptation and summaries.
        nonfinite = jnp.isnan(info.acceptance_rate)
        return state, (jnp.where(nonfinite, 0.0, info.acceptance_rate), nonfinite)

    if num_steps == 0:
        return state, jnp.array(jnp.nan, state.logdensity.dtype), jnp.array(0)
    state, (acceptance, nonfinite) = jax.lax.scan(
        one_step, state, jax.random.split(rng_key, num_steps)
    )
    return state, acceptance.mean(), nonfinite.sum()


class PosteriorEstimate(NamedTuple):
    """Equally weighted draws of p(x₀ | x_t) and the moments the score identities need."""

    particles: Array
    mean: Array
    """E[x₀ | x_t] (estimate)."""
    mean_grad: Array
    """E[∇ log p(x₀) | x_t] (estimate)."""
    log_normaliser: Array
    """AIS estimate of log ∫ p(x₀) N(x₀; x_t/α, σ²/α² I) dx₀."""


def estimate_denoising_posterior(
    rng_key: Array,
    noisy: Array,
    alpha: Array,
    sigma: Array,
    logdensity_fn: Callable,
    num_particles: int = 10,
    num_bridges: int = 15,
    num_mala_steps: int = 5,
    max_step_size: float = 0.1,
) -> PosteriorEstimate:
    """Annealed importance sampling for p(x₀ | x_t), then resampling and MALA refinement.

    Particles start from N(x_t/α, σ²/α² I) and move through the geometric bridges
    π_k(x) ∝ N(x; x_t/α, σ²/α² I) p(x)^{β_k}, β_k = k/K, each with one MALA step; the AIS
    weights then pick ``num_particles`` equally weighted draws (Gumbel-max, independently per
    draw), which ``num_mala_steps`` MALA steps on the exact posterior refine.
    """
    scale = sigma / alpha
    step_size = jnp.minimum(max_step_size, 0.25 * scale**2)
    key_init, key_bridges, key_resample, key_refine = jax.random.split(rng_key, 4)
    dim = noisy.shape[-1]
    x = noisy / alpha + scale * jax.random.normal(key_init, (num_particles, dim))
    betas = jnp.linspace(0.0, 1.0, num_bridges + 1)

    def bridge_logdensity(beta):
        def fn(x):
            return beta * logdensity_fn(x) - jnp.sum((noisy - alpha * x) ** 2) / (2 * sigma**2)

        return fn

    def anneal(carry, inputs):
        x, log_weights = carry
        beta_prev, beta, key = inputs
        log_p = jax.vmap(logdensity_fn)(x)
        log_weights = log_weights + (beta - beta_prev) * jnp.where(jnp.isfinite(log_p), log_p, -jnp.inf)
        bridge = bridge_logdensity(beta)

        def move(key, x):
            state = mala.init(x, bridge)
            state, _, _ = run_mala(key, state, bridge, step_size, 1)
            return state.position

        x = jax.vmap(move)(jax.random.split(key, num_particles), x)
        return (x, log_weights), None

    steps = (betas[:-1], betas[1:], jax.random.split(key_bridges, num_bridges))
    (x, log_weights), _ = jax.lax.scan(anneal, (x, jnp.zeros(num_particles)), steps)
    log_normaliser = jax.scipy.special.logsumexp(log_weights) - jnp.log(num_particles)
    gumbel = jax.random.gumbel(key_resample, (num_particles, num_particles))
    x = x[jnp.argmax(log_weights[None, :] + gumbel, axis=-1)]

    posterior = denoising_logdensity(logdensity_fn, noisy, alpha, sigma)

    def refine(key, x):
        state, _, _ = run_mala(key, mala.init(x, posterior), posterior, step_size, num_mala_steps)
        return _from_posterior(state, noisy, alpha, sigma)

    points = jax.vmap(refine)(jax.random.split(key_refine, num_particles), x)
    return PosteriorEstimate(
        points.position,
        points.position.mean(0),
        points.logdensity_grad.mean(0),
        log_normaliser,
    )


def denoising_score(noisy: Array, alpha, sigma, posterior_mean: Array) -> Array:
    """Tweedie / denoising score identity: ∇log p_t(x_t) = (α E[x₀|x_t] − x_t) / σ²."""
    return (alpha * posterior_mean - noisy) / sigma**2


def target_score(alpha, posterior_mean_grad: Array) -> Array:
    """Target score identity: ∇log p_t(x_t) = E[∇log p(x₀) | x_t] / α."""
    return posterior_mean_grad / alpha


def mixed_score(noisy: Array, alpha, sigma, posterior_mean: Array, posterior_mean_grad: Array) -> Array:
    """(σ²·DSI + α²·TSI) / (σ² + α²): the denoising identity's variance blows up as σ → 0
    and the target identity's as α → 0; this weighting keeps the better one at each end.
    With a VP schedule (α² + σ² = 1) it is α(E[x₀] + E[∇log p(x₀)]) − x_t."""
    return (
        sigma**2 * denoising_score(noisy, alpha, sigma, posterior_mean)
        + alpha**2 * target_score(alpha, posterior_mean_grad)
    ) / (sigma**2 + alpha**2)
