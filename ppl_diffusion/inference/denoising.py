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

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from blackjax.mcmc import mala

Array = jax.Array


class PointState(NamedTuple):
    """A position with the target log density and its gradient there."""

    position: Array
    logdensity: Array
    logdensity_grad: Array


class DenoisingInfo(NamedTuple):
    jump_accept_prob: Array
    """Metropolis–Hastings acceptance probability of the jump proposal."""
    mala_accept_prob: Array
    """Mean MALA acceptance probability over the refinement steps (NaN proposals count as 0)."""
    num_nonfinite: Array
    """Proposals whose log density or gradient was not finite; all of them were rejected."""


def is_finite_point(logdensity: Array, logdensity_grad: Array) -> Array:
    return jnp.isfinite(logdensity) & jnp.all(jnp.isfinite(logdensity_grad))


def init_point(position: Array, logdensity_fn: Callable) -> PointState:
    logdensity, logdensity_grad = jax.value_and_grad(logdensity_fn)(position)
    return PointState(position, logdensity, logdensity_grad)


def _noise_term(x: Array, noisy: Array, alpha, sigma, block: Array | None):
    """−log N(x̃_B; αx_B, σ²) up to a constant, over the noised block B (every coordinate when
    ``block`` is None), and its gradient in x."""
    residual = noisy - alpha * x
    if block is not None:
        residual = jnp.where(block, residual, 0.0)
    # σ may be one per coordinate: the posterior under a Gaussian reference.
    return jnp.sum(residual**2 / (2 * sigma**2)), -alpha * residual / sigma**2


def denoising_logdensity(
    logdensity_fn: Callable,
    noisy: Array,
    alpha: Array,
    sigma: Array,
    beta: Array = 1.0,
    block: Array | None = None,
) -> Callable:
    """log p(x | x̃) up to a constant; with ``beta`` < 1 the AIS bridge p(x)^β N(x̃; αx, σ²).
    With a ``block`` mask only those coordinates were noised: p(x | x̃_B)."""

    def fn(x):
        return beta * logdensity_fn(x) - _noise_term(x, noisy, alpha, sigma, block)[0]

    return fn


def _to_posterior(point: PointState, noisy, alpha, sigma, beta=1.0, block=None) -> mala.MALAState:
    """The MALA state on :func:`denoising_logdensity` at ``point``, without re-evaluating p."""
    energy, grad = _noise_term(point.position, noisy, alpha, sigma, block)
    return mala.MALAState(
        point.position, beta * point.logdensity - energy, beta * point.logdensity_grad - grad
    )


def _from_posterior(state: mala.MALAState, noisy, alpha, sigma, beta=1.0, block=None) -> PointState:
    energy, grad = _noise_term(state.position, noisy, alpha, sigma, block)
    return PointState(
        state.position, (state.logdensity + energy) / beta, (state.logdensity_grad + grad) / beta
    )


PROPOSALS = ("mixed", "independent", "gaussian", "full", "diag", "iso")


def _normal_log_density(residual: Array, stddev: Array, block: Array | None) -> Array:
    """Per-coordinate log N(residual; 0, stddev²), ``stddev`` broadcasting against
    ``residual``; 0 outside ``block`` when one is given."""
    log_density = -0.5 * (residual / stddev) ** 2 - jnp.log(stddev) - 0.5 * jnp.log(2 * jnp.pi)
    return log_density if block is None else jnp.where(block, log_density, 0.0)


class GaussianProposal(NamedTuple):
    """N(mean, V diag(stddev²) Vᵀ); ``rotation`` V is None for a diagonal covariance."""

    mean: Array
    stddev: Array
    rotation: Array | None = None

    def sample(self, rng_key: Array) -> Array:
        white = self.stddev * jax.random.normal(rng_key, self.mean.shape)
        return self.mean + (white if self.rotation is None else self.rotation @ white)

    def log_prob(self, x: Array, block: Array | None = None) -> Array:
        """Log density; with a ``block`` mask (diagonal covariance only), of those coordinates."""
        u = x - self.mean
        if self.rotation is not None:
            u = self.rotation.T @ u
        return jnp.sum(_normal_log_density(u, self.stddev, block))


def hutchinson_diagonal(rng_key: Array, vector_fn: Callable, x: Array, num_probes: int) -> Array:
    """diag(∇v(x)) ≈ mean_m r_m ⊙ (∇v(x) r_m) with Rademacher r_m, by forward-mode jvp."""
    probes = jax.random.rademacher(rng_key, (num_probes,) + x.shape, dtype=x.dtype)
    products = jax.vmap(lambda r: jax.jvp(vector_fn, (x,), (r,))[1])(probes)
    return jnp.mean(probes * products, axis=0)


def moment_matched_proposal(
    rng_key: Array,
    center: Array,
    noise_scale: Array,
    score_fn: Callable,
    covariance: str,
    num_probes: int = 8,
    iso_variance: Array | None = None,
    noisy_score: bool = True,
    curvature_diagonal: Array | None = None,
) -> GaussianProposal:
    """A Gaussian for p(x | x̃ = center) ∝ p(x) N(x; center, r² I), r = ``noise_scale``.

    With the score of the noisy marginal (``noisy_score=True``) this is Tweedie's exact first
    and second moments: mean center + r² s, covariance r² I + r⁴ ∇s (eigenvalues floored at
    10⁻³ r² against estimation error). With the clean target's score it is the Laplace
    approximation at the center, precision I/r² − ∇s and mean center + Σ s, which agrees with
    Tweedie's to second order in r and stays positive definite where the target is strongly
    curved (precision eigenvalues floored at 1/(4r²)).

    ``"diag"`` estimates diag ∇s with ``num_probes`` Hutchinson probes, unless
    ``curvature_diagonal`` gives it (e.g. a learnt one).
    """
    r2 = noise_scale**2
    score = score_fn(center)

    def from_curvature(curvature):
        """Variances (or eigenvalues) for a curvature ∇s (or its eigenvalues)."""
        if noisy_score:
            return jnp.maximum(r2 + r2**2 * curvature, 1e-3 * r2)
        return 1.0 / jnp.maximum(1.0 / r2 - curvature, 0.25 / r2)

    def mean_for(variances, rotation=None):
        if not noisy_score:
            step = score if rotation is None else rotation.T @ score
            step = variances * step
            return center + (step if rotation is None else rotation @ step)
        return center + r2 * score

    if covariance == "full":
        jacobian = jax.jacfwd(score_fn)(center)
        curvatures, rotation = jnp.linalg.eigh(0.5 * (jacobian + jacobian.T))
        variances = from_curvature(curvatures)
        return GaussianProposal(mean_for(variances, rotation), jnp.sqrt(variances), rotation)
    if covariance == "iso" and iso_variance is not None:
        variances = jnp.full(center.shape, iso_variance)
        return GaussianProposal(mean_for(variances), jnp.sqrt(variances))
    if covariance == "diag" and curvature_diagonal is not None:
        diagonal = curvature_diagonal
    else:
        diagonal = hutchinson_diagonal(rng_key, score_fn, center, num_probes)
    if covariance == "iso":
        diagonal = jnp.full(center.shape, jnp.mean(diagonal))
    elif covariance != "diag":
        raise ValueError(f"Unknown covariance {covariance!r}; choose from {PROPOSALS}.")
    variances = from_curvature(diagonal)
    return GaussianProposal(mean_for(variances), jnp.sqrt(variances))


class EqualMixtureProposal(NamedTuple):
    """An equal-weight mixture of proposals."""

    components: tuple

    def sample(self, rng_key: Array) -> Array:
        key_choice, key_draw = jax.random.split(rng_key)
        draws = jnp.stack(
            [
                c.sample(k)
                for c, k in zip(
                    self.components, jax.random.split(key_draw, len(self.components)), strict=True
                )
            ]
        )
        return draws[jax.random.randint(key_choice, (), 0, len(self.components))]

    def log_prob(self, x: Array, block: Array | None = None) -> Array:
        log_probs = jnp.stack([c.log_prob(x, block) for c in self.components])
        return jax.scipy.special.logsumexp(log_probs) - jnp.log(len(self.components))


class Anchors(NamedTuple):
    """Points the chains have visited (one per row), which rows hold one, and the kernel
    widths of the mixture over them (see :func:`anchor_bandwidths`)."""

    points: Array
    valid: Array
    joint_bandwidth: Array
    """One width for every coordinate of the joint mixture."""
    coordinate_bandwidth: Array
    """A width per coordinate for the per-coordinate mixtures."""
    log_prior: Array | None = None
    """Each row's log weight in the prior mixture, up to a constant (``None``: equal)."""


ANCHOR_BANDWIDTHS = tuple(np.geomspace(0.01, 1.0, 15))
"""Kernel widths the leave-one-out choice picks from, in the coordinates' own units (in DiGS,
the metric's standard deviations)."""


def anchor_bandwidths(points: Array, valid: Array) -> tuple[Array, Array]:
    """Kernel widths for a mixture of Gaussians centred on ``points``, by leave-one-out
    likelihood over :data:`ANCHOR_BANDWIDTHS`: one shared by all coordinates of the joint
    mixture, and one per coordinate for the per-coordinate mixtures. The width follows the
    spread of the points around their nearest neighbours, so it is the width of the modes they
    sit in even when the metric spans several modes. With fewer than two valid points, 1."""
    widths = jnp.asarray(ANCHOR_BANDWIDTHS, points.dtype)
    num_points = points.shape[0]
    pairs = valid[:, None] & valid[None, :] & ~jnp.eye(num_points, dtype=bool)
    squared = (points[:, None, :] - points[None, :, :]) ** 2

    def leave_one_out(squared, width, dim):
        """Per column of ``squared``: Σ_j log Σ_{c≠j} N(a_j; a_c, width²) over valid points,
        for squared distances (j, c, column) in ``dim`` dimensions."""
        log_kernel = -0.5 * squared / width**2 - dim * jnp.log(width)
        per_point = jax.scipy.special.logsumexp(
            jnp.where(pairs[..., None], log_kernel, -jnp.inf), axis=1
        )
        return jnp.sum(jnp.where(valid[:, None], per_point, 0.0), axis=0)

    def joint_score(width):
        return leave_one_out(squared.sum(-1, keepdims=True), width, points.shape[-1])[0]

    def coordinate_score(width):
        return leave_one_out(squared, width, 1)

    joint = widths[jnp.argmax(jax.vmap(joint_score)(widths))]
    per_coordinate = widths[jnp.argmax(jax.vmap(coordinate_score)(widths), axis=0)]
    enough = jnp.sum(valid) >= 2
    return jnp.where(enough, joint, 1.0), jnp.where(enough, per_coordinate, 1.0)


class AnchorMixtureProposal(NamedTuple):
    """The exact p(x | x̃) under a prior that is an equal mixture of Gaussians centred on
    anchors: a Gaussian mixture whose component c has mean ``means[c]``, standard deviation
    ``stddev`` and log weight ``log_weights[c]`` (normalised over c).

    ``per_coordinate`` mixes every coordinate separately (the prior is then the product of
    the anchors' per-coordinate mixtures, and ``log_weights`` has one column per coordinate):
    it proposes combinations the chains never visited together, such as the other sign of one
    parameter out of ten, or a relabeling of mixture components.
    """

    means: Array
    stddev: Array
    log_weights: Array
    per_coordinate: bool

    def sample(self, rng_key: Array) -> Array:
        key_choice, key_noise = jax.random.split(rng_key)
        dim = self.means.shape[-1]
        if self.per_coordinate:
            chosen = jax.random.categorical(key_choice, self.log_weights, axis=0)
            mean = jnp.take_along_axis(self.means, chosen[None], axis=0)[0]
        else:
            mean = self.means[jax.random.categorical(key_choice, self.log_weights)]
        return mean + self.stddev * jax.random.normal(key_noise, (dim,))

    def log_prob(self, x: Array, block: Array | None = None) -> Array:
        per_coordinate = _normal_log_density(x - self.means, self.stddev, block)
        logsumexp = jax.scipy.special.logsumexp
        if self.per_coordinate:
            return jnp.sum(logsumexp(self.log_weights + per_coordinate, axis=0))
        return logsumexp(self.log_weights + per_coordinate.sum(-1))


def anchor_mixture_proposals(
    center: Array, scale: Array, anchors: Anchors, block: Array | None = None
) -> tuple[AnchorMixtureProposal, AnchorMixtureProposal]:
    """The joint and the per-coordinate :class:`AnchorMixtureProposal` for
    p(x | x̃) ∝ p(x) N(x; center, scale² I).

    Under the prior N(a_c, h² I), component c of the posterior has mean
    (a_c scale² + center h²) / (h² + scale²), variance h² scale² / (h² + scale²), and weight
    ∝ w_c N(center; a_c, (h² + scale²) I), with w_c the row's prior weight
    (``anchors.log_prior``), the normal counted over the ``block`` coordinates only when one
    is given (the proposal then moves only those). Rows of ``anchors`` not ``valid`` get
    weight 0; at least one must be valid.
    """

    def posterior(bandwidth, per_coordinate):
        variance = bandwidth**2 + scale**2
        points = jnp.where(anchors.valid[:, None], anchors.points, 0.0)
        means = (points * scale**2 + center * bandwidth**2) / variance
        stddev = bandwidth * scale / jnp.sqrt(variance)
        log_likelihood = -0.5 * (center - points) ** 2 / variance
        if block is not None:
            log_likelihood = jnp.where(block, log_likelihood, 0.0)
        log_prior = 0.0 if anchors.log_prior is None else anchors.log_prior
        log_prior = jnp.where(anchors.valid, log_prior, -jnp.inf).astype(points.dtype)
        if per_coordinate:
            log_weights = jax.nn.log_softmax(log_likelihood + log_prior[:, None], axis=0)
        else:
            log_weights = jax.nn.log_softmax(log_likelihood.sum(-1) + log_prior)
        return AnchorMixtureProposal(means, stddev, log_weights, per_coordinate)

    return (
        posterior(anchors.joint_bandwidth, per_coordinate=False),
        posterior(anchors.coordinate_bandwidth, per_coordinate=True),
    )


def jump_proposal(
    rng_key: Array,
    center: Array,
    scale: Array,
    logdensity_fn: Callable,
    proposal: str,
    num_probes: int = 8,
    anchors: Anchors | None = None,
    block: Array | None = None,
) -> GaussianProposal | EqualMixtureProposal:
    """A proposal for p(x | x̃) ∝ p(x) N(x; center, scale² I), center = x̃/α, scale = σ/α.

    - ``"independent"``: N(center, scale²), the exact posterior under a flat prior; blind to p,
      so it reaches modes nobody has seen yet, but its acceptance decays with dimension.
    - ``"gaussian"``: the exact posterior under a N(0, I) prior, i.e. under the Gaussian fitted
      in warmup once the coordinates are whitened: N(center/(1 + scale²), scale²/(1 + scale²)).
      Exact for a Gaussian target at any noise and dimension.
    - ``"mixed"``: an equal mixture of those two and, with ``anchors`` (points the chains
      visited in warmup, whitened), the two :func:`anchor_mixture_proposals`, which jump
      straight to modes the chains have seen and to per-coordinate combinations of them.
      Without anchors, half independent and half Gaussian.
    - ``"full"`` / ``"diag"`` / ``"iso"``: the Laplace approximation at the center from the
      target's score and its (Hutchinson-estimated) curvature; see
      :func:`moment_matched_proposal`.

    ``block`` (diagonal proposals only) is the mask of the coordinates that will move; only
    the anchor mixtures' weights depend on it.
    """
    flat_prior = GaussianProposal(center, jnp.full(center.shape, scale))
    shrink = 1.0 / (1.0 + scale**2)
    gaussian_prior = GaussianProposal(
        center * shrink, jnp.full(center.shape, scale * jnp.sqrt(shrink))
    )
    if proposal == "independent":
        return flat_prior
    if proposal == "gaussian":
        return gaussian_prior
    if proposal == "mixed":
        if anchors is None:
            return EqualMixtureProposal((flat_prior, gaussian_prior))
        joint, per_coordinate = anchor_mixture_proposals(center, scale, anchors, block)
        return EqualMixtureProposal((flat_prior, gaussian_prior, joint, per_coordinate))
    return moment_matched_proposal(
        rng_key, center, scale, jax.grad(logdensity_fn), proposal, num_probes, noisy_score=False
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
    proposal: str = "mixed",
    num_probes: int = 8,
    block: Array | None = None,
    anchors: Anchors | None = None,
) -> tuple[PointState, DenoisingInfo]:
    """One p(x | x̃)-invariant move from ``point``: a Metropolis–Hastings jump from
    :func:`jump_proposal`, then ``num_mala_steps`` MALA steps.

    The jump is an independent proposal for the posterior, accepted with probability
    min(1, π(x')q(x) / (π(x)q(x'))) where π(x) = p(x) N(x; x̃/α, σ²/α² I).
    With a ``block`` mask only those coordinates were noised and only they jump: the move is
    then exact for p(x | x̃_B), Gibbs on the block with the rest held fixed (diagonal
    proposals only). ``anchors`` feed the ``"mixed"`` proposal (see :func:`jump_proposal`).
    ``point`` carries log p and its gradient (not the posterior's) so that callers can chain
    moves at different noise levels without re-evaluating the target.
    """
    key_build, key_proposal, key_accept, key_mala = jax.random.split(rng_key, 4)
    center, scale = noisy / alpha, sigma / alpha
    jump = jump_proposal(
        key_build, center, scale, logdensity_fn, proposal, num_probes, anchors, block
    )
    candidate = jump.sample(key_proposal)
    if block is not None:
        candidate = jnp.where(block, candidate, point.position)
    proposed = init_point(candidate, logdensity_fn)
    candidate_finite = is_finite_point(proposed.logdensity, proposed.logdensity_grad) & jnp.all(
        jnp.isfinite(candidate)
    )

    def log_target_over_proposal(x, logdensity):
        return logdensity - _noise_term(x, noisy, alpha, sigma, block)[0] - jump.log_prob(x, block)

    log_ratio = log_target_over_proposal(candidate, proposed.logdensity) - log_target_over_proposal(
        point.position, point.logdensity
    )
    log_ratio = jnp.where(candidate_finite & ~jnp.isnan(log_ratio), log_ratio, -jnp.inf)
    accept = jnp.log(jax.random.uniform(key_accept)) < log_ratio
    point = jax.tree.map(lambda new, old: jnp.where(accept, new, old), proposed, point)

    posterior_logdensity_fn = denoising_logdensity(logdensity_fn, noisy, alpha, sigma, block=block)
    state = _to_posterior(point, noisy, alpha, sigma, block=block)
    state, acceptance, nonfinite = run_mala(
        key_mala, state, posterior_logdensity_fn, step_size, num_mala_steps
    )
    info = DenoisingInfo(
        jump_accept_prob=jnp.exp(jnp.minimum(log_ratio, 0.0)),
        mala_accept_prob=acceptance,
        num_nonfinite=nonfinite + (~candidate_finite).astype(jnp.int32),
    )
    return _from_posterior(state, noisy, alpha, sigma, block=block), info


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
    reference: tuple[Array, Array] | None = None,
) -> PosteriorEstimate:
    """Annealed importance sampling for p(x₀ | x_t), then resampling and MALA refinement.

    Particles start from N(x_t/α, σ²/α² I) and move through the geometric bridges
    π_k(x) ∝ N(x; x_t/α, σ²/α² I) p(x)^{β_k}, β_k = k/K, each with one MALA step; the AIS
    weights then pick ``num_particles`` equally weighted draws (Gumbel-max, independently per
    draw), which ``num_mala_steps`` MALA steps on the exact posterior refine.

    A ``reference`` Gaussian g = N(mean, diag(variance)) (say, the moments of a sampler's
    current draws) replaces the flat prior at the bridges' start: particles then start from
    the exact posterior under g, π_k(x) ∝ N(x̃; αx, σ²) g(x)^{1-β_k} p(x)^{β_k}. With large
    noise N(x_t/α, σ²/α² I) spreads particles far beyond the target's scale, where the
    gradients of a steep (quartic) target are too large for any MALA step; under g they start
    within it. ``mean_grad`` stays E[∇log p(x₀) | x_t] and ``log_normaliser`` is then that of
    p(x₀) N(x_t; αx₀, σ²) over the normalised g.
    """
    if reference is not None:
        # The bridges' start g(x) N(x̃; αx, σ²) is the Gaussian N(center, scale²), and
        # π_k ∝ N(x; center, scale²) (p/g)^{β_k}: the flat-prior code below on log(p/g).
        reference_mean, reference_variance = reference
        reference_density = GaussianProposal(reference_mean, jnp.sqrt(reference_variance))
        scale = 1.0 / jnp.sqrt(1.0 / reference_variance + alpha**2 / sigma**2)
        center = scale**2 * (reference_mean / reference_variance + alpha * noisy / sigma**2)
        estimate = estimate_denoising_posterior(
            rng_key,
            center,
            1.0,
            scale,
            lambda x: logdensity_fn(x) - reference_density.log_prob(x),
            num_particles,
            num_bridges,
            num_mala_steps,
            max_step_size,
        )
        reference_grad = -(estimate.particles - reference_mean) / reference_variance
        return estimate._replace(mean_grad=estimate.mean_grad + reference_grad.mean(0))
    scale = sigma / alpha
    step_size = jnp.minimum(max_step_size, 0.25 * jnp.min(scale) ** 2)
    key_init, key_bridges, key_resample, key_refine = jax.random.split(rng_key, 4)
    dim = noisy.shape[-1]
    start = noisy / alpha + scale * jax.random.normal(key_init, (num_particles, dim))
    points = jax.vmap(lambda x: init_point(x, logdensity_fn))(start)
    betas = jnp.linspace(0.0, 1.0, num_bridges + 1)

    # Particles carry log p and its gradient, so each bridge costs one MALA step and no
    # re-evaluation: the weight increment and the bridge's MALA state both derive from them.
    def anneal(carry, inputs):
        points, log_weights = carry
        beta_prev, beta, key = inputs
        log_p = jnp.where(jnp.isfinite(points.logdensity), points.logdensity, -jnp.inf)
        log_weights = log_weights + (beta - beta_prev) * log_p
        bridge = denoising_logdensity(logdensity_fn, noisy, alpha, sigma, beta)

        def move(key, point):
            state = _to_posterior(point, noisy, alpha, sigma, beta)
            state, _, _ = run_mala(key, state, bridge, step_size, 1)
            return _from_posterior(state, noisy, alpha, sigma, beta)

        points = jax.vmap(move)(jax.random.split(key, num_particles), points)
        return (points, log_weights), None

    steps = (betas[:-1], betas[1:], jax.random.split(key_bridges, num_bridges))
    (points, log_weights), _ = jax.lax.scan(anneal, (points, jnp.zeros(num_particles)), steps)
    log_normaliser = jax.scipy.special.logsumexp(log_weights) - jnp.log(num_particles)
    gumbel = jax.random.gumbel(key_resample, (num_particles, num_particles))
    chosen = jnp.argmax(log_weights[None, :] + gumbel, axis=-1)
    points = jax.tree.map(lambda v: v[chosen], points)

    posterior = denoising_logdensity(logdensity_fn, noisy, alpha, sigma)

    def refine(key, point):
        state = _to_posterior(point, noisy, alpha, sigma)
        state, _, _ = run_mala(key, state, posterior, step_size, num_mala_steps)
        return _from_posterior(state, noisy, alpha, sigma)

    points = jax.vmap(refine)(jax.random.split(key_refine, num_particles), points)
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


def mixed_score(
    noisy: Array, alpha, sigma, posterior_mean: Array, posterior_mean_grad: Array
) -> Array:
    """(σ²·DSI + α²·TSI) / (σ² + α²): the denoising identity's variance blows up as σ → 0
    and the target identity's as α → 0; this weighting keeps the better one at each end.
    With a VP schedule (α² + σ² = 1) it is α(E[x₀] + E[∇log p(x₀)]) − x_t."""
    return (
        sigma**2 * denoising_score(noisy, alpha, sigma, posterior_mean)
        + alpha**2 * target_score(alpha, posterior_mean_grad)
    ) / (sigma**2 + alpha**2)
