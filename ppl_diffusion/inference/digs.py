"""Diffusive Gibbs Sampling (DiGS).

DiGS is Gibbs sampling on the joint p(x, x̃) = p(x) N(x̃; αx, σ²I), whose x-marginal is the
target. One sweep at a noise level draws x̃ ~ N(αx, σ²I) exactly and then moves x with a
p(x | x̃)-invariant kernel (:func:`~ppl_diffusion.inference.posterior.sample_denoising_posterior`).
Large noise levels let x jump between distant modes; small ones refine locally. Every move is a
valid Gibbs or Metropolis–Hastings step, so the chain targets p(x) exactly.

The functional core (:func:`init`, :func:`build_kernel`) follows
BlackJAX conventions; :class:`DiGS` wraps it as a NumPyro ``MCMCKernel``.
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.infer.initialization import init_to_uniform

from ppl_diffusion.inference.base import FlatTargetKernel, StepSizeAdaptation, tally_nonfinite
from ppl_diffusion.inference.posterior import (
    PROPOSALS,
    PointState,
    init_point,
    sample_denoising_posterior,
)

Array = jax.Array

__all__ = [
    "NoiseSchedule",
    "noise_schedule",
    "vp_schedule",
    "ve_schedule",
    "default_schedule",
    "DiGSInfo",
    "init",
    "build_kernel",
    "DiGS",
    "DiGSKernelState",
]


class NoiseSchedule(NamedTuple):
    """Noise levels (α_l, σ_l), largest noise-to-signal ratio σ/α first."""

    alphas: Array
    sigmas: Array

    @property
    def num_levels(self) -> int:
        return int(np.shape(self.alphas)[0])


def noise_schedule(alphas: Sequence[float], sigmas: Sequence[float]) -> NoiseSchedule:
    """Validate and build a schedule. Raises ``ValueError`` on an invalid schedule."""
    alphas_np = np.atleast_1d(np.asarray(alphas, dtype=float))
    sigmas_np = np.atleast_1d(np.asarray(sigmas, dtype=float))
    if alphas_np.ndim != 1 or alphas_np.shape != sigmas_np.shape or alphas_np.size == 0:
        raise ValueError(
            "Noise schedule: `alphas` and `sigmas` must be non-empty 1-D sequences of equal "
            f"length, got shapes {alphas_np.shape} and {sigmas_np.shape}."
        )
    if not (np.all(np.isfinite(alphas_np)) and np.all(np.isfinite(sigmas_np))):
        raise ValueError("Noise schedule: every α and σ must be finite.")
    if np.any(sigmas_np <= 0):
        raise ValueError(f"Noise schedule: every σ must be positive, got {sigmas_np.tolist()}.")
    if np.any(alphas_np <= 0):
        raise ValueError(f"Noise schedule: every α must be positive, got {alphas_np.tolist()}.")
    ratios = sigmas_np / alphas_np
    if np.any(np.diff(ratios) >= 0):
        raise ValueError(
            "Noise schedule: levels must go from large to small noise (σ/α strictly "
            f"decreasing), got σ/α = {np.round(ratios, 4).tolist()}."
        )
    return NoiseSchedule(jnp.asarray(alphas_np), jnp.asarray(sigmas_np))


def vp_schedule(alphas: Sequence[float]) -> NoiseSchedule:
    """Variance-preserving levels: σ = sqrt(1 − α²), α increasing in (0, 1)."""
    alphas_np = np.asarray(alphas, dtype=float)
    if np.any((alphas_np <= 0) | (alphas_np >= 1)):
        raise ValueError(f"VP schedule: every α must lie in (0, 1), got {alphas_np.tolist()}.")
    return noise_schedule(alphas_np, np.sqrt(1 - alphas_np**2))


def ve_schedule(sigma_max: float, sigma_min: float, num_levels: int) -> NoiseSchedule:
    """Variance-exploding levels: α = 1 and a geometric σ ladder from ``sigma_max`` down."""
    if num_levels < 1:
        raise ValueError(f"VE schedule: `num_levels` must be at least 1, got {num_levels}.")
    if not 0 < sigma_min <= sigma_max:
        raise ValueError(
            f"VE schedule: need 0 < sigma_min <= sigma_max, got {sigma_min}, {sigma_max}."
        )
    if num_levels > 1 and sigma_min == sigma_max:
        raise ValueError("VE schedule: several levels need sigma_min < sigma_max.")
    sigmas = np.geomspace(sigma_max, sigma_min, num_levels)
    return noise_schedule(np.ones(num_levels), sigmas)


def default_schedule() -> NoiseSchedule:
    """Six VP levels with σ/α ≈ 40, 20, 10, 5, 2 and 0.5.

    In NumPyro's unconstrained space a posterior of roughly unit scale is refined by the small
    levels, while the large ones let chains jump between modes up to ~40 units apart. Levels
    much wider than the target only cost their gradient evaluations; they never bias the chain.
    """
    return vp_schedule([0.025, 0.05, 0.1, 0.2, 0.45, 0.9])


class DiGSInfo(NamedTuple):
    init_accepted: Array
    """Per level: whether the independent MH initialisation of the denoising step was accepted."""
    mala_acceptance: Array
    """Per level: mean MALA acceptance probability."""
    num_nonfinite: Array
    """Rejected proposals with a non-finite log density or gradient, over all levels."""


def init(position: Array, logdensity_fn: Callable) -> PointState:
    return init_point(position, logdensity_fn)


def build_kernel(
    schedule: NoiseSchedule,
    num_mala_steps: int,
    proposal: str = "independent",
    num_probes: int = 8,
) -> Callable:
    """A DiGS sweep over every level of ``schedule``.

    ``proposal`` selects the Metropolis–Hastings proposal of each denoising move (see
    :func:`~ppl_diffusion.inference.posterior.sample_denoising_posterior`).

    Returns ``kernel(rng_key, state, logdensity_fn, step_sizes) -> (state, DiGSInfo)`` where
    ``step_sizes`` holds one MALA step size per level.
    """
    if num_mala_steps < 0:
        raise ValueError(f"`num_mala_steps` must be non-negative, got {num_mala_steps}.")
    if proposal not in PROPOSALS:
        raise ValueError(f"`proposal` must be one of {PROPOSALS}, got {proposal!r}.")

    def kernel(rng_key, state: PointState, logdensity_fn, step_sizes):
        def one_level(point, level):
            key, alpha, sigma, step_size = level
            key_noise, key_denoise = jax.random.split(key)
            noise = jax.random.normal(key_noise, point.position.shape)
            noisy = alpha * point.position + sigma * noise
            return sample_denoising_posterior(
                key_denoise,
                point,
                noisy,
                alpha,
                sigma,
                logdensity_fn,
                step_size,
                num_mala_steps,
                proposal,
                num_probes,
            )

        keys = jax.random.split(rng_key, schedule.num_levels)
        levels = (keys, schedule.alphas, schedule.sigmas, step_sizes)
        state, info = jax.lax.scan(one_level, state, levels)
        return state, DiGSInfo(info.init_accepted, info.mala_acceptance, info.num_nonfinite.sum())

    return kernel


def initial_step_sizes(schedule: NoiseSchedule, step_size: float) -> Array:
    """The posterior p(x | x̃) is no wider than σ/α, so cap the MALA step there."""
    ratio = schedule.sigmas / schedule.alphas
    return jnp.minimum(step_size, 0.25 * ratio**2)


class DiGSKernelState(NamedTuple):
    i: Array
    z: Array
    """Flat unconstrained position (``postprocess_fn`` maps it to model sites)."""
    logdensity: Array
    logdensity_grad: Array
    step_size: Array
    adapt_state: tuple
    init_accept: Array
    mala_accept_prob: Array
    num_nonfinite: Array
    total_nonfinite: Array
    """Running count of rejected non-finite proposals (warns at 10, 100, …)."""
    rng_key: Array


class DiGS(FlatTargetKernel):
    """Diffusive Gibbs Sampling as a drop-in NumPyro kernel: ``MCMC(DiGS(model), ...)``.

    Args:
        model: a NumPyro model with continuous latent sites.
        potential_fn: alternatively, ``params -> potential energy``; then ``init_params`` must be
            given to ``MCMC.run``.
        schedule: a :class:`NoiseSchedule` (large noise first). Defaults to
            :func:`default_schedule`, six VP levels. For multimodal targets whose modes are
            far apart compared to their width, use a ladder whose largest σ/α reaches the
            distance between modes.
        num_mala_steps: MALA refinement steps per level and iteration. With 0, each level is a
            single independent Metropolis–Hastings move (cheap mode hopping in low dimension);
            its gradient is still evaluated and counted.
        step_size: initial MALA step size (capped per level at (σ/α)²/4).
        adapt_step_size: adapt each level's step size during warmup by dual averaging.
        target_accept_prob: MALA acceptance targeted by adaptation.
        init_strategy: NumPyro initialisation strategy.
        proposal: the denoising move's MH proposal: ``"independent"`` N(x̃/α, σ²/α²), or a
            Gaussian moment-matched to p(x | x̃) from the target's score and its Jacobian
            (``"full"``), Hutchinson diagonal (``"diag"``) or trace (``"iso"``).
        num_probes: Rademacher probes for the ``"diag"``/``"iso"`` proposals.

    Extra fields: ``init_accept`` (per level), ``mala_accept_prob`` (per level),
    ``num_nonfinite`` (rejected non-finite proposals in the iteration), ``step_size``.
    One iteration costs ``num_levels * (num_mala_steps + 1)`` gradient evaluations with the
    independent proposal (see :attr:`gradient_evaluations_per_iteration`).
    """

    def __init__(
        self,
        model: Callable | None = None,
        potential_fn: Callable | None = None,
        schedule: NoiseSchedule | None = None,
        num_mala_steps: int = 3,
        step_size: float = 0.1,
        adapt_step_size: bool = True,
        target_accept_prob: float = 0.574,
        init_strategy: Callable = init_to_uniform,
        proposal: str = "independent",
        num_probes: int = 8,
    ):
        super().__init__(model, potential_fn, init_strategy)
        if not step_size > 0:
            raise ValueError(f"`step_size` must be positive, got {step_size}.")
        self.schedule = default_schedule() if schedule is None else schedule
        if not isinstance(self.schedule, NoiseSchedule):
            raise TypeError("`schedule` must be a NoiseSchedule (see `noise_schedule`).")
        self.num_mala_steps = int(num_mala_steps)
        self.proposal, self.num_probes = proposal, int(num_probes)
        self._kernel = build_kernel(self.schedule, self.num_mala_steps, proposal, num_probes)
        self._step_size = step_size
        # With no MALA steps there is no acceptance to adapt to.
        self._adaptation = StepSizeAdaptation(
            target_accept_prob, adapt_step_size and self.num_mala_steps > 0
        )

    @property
    def gradient_evaluations_per_iteration(self) -> int:
        """Target gradients (or Jacobian-vector products) one iteration costs."""
        per_level = self.num_mala_steps + 1
        if self.proposal != "independent":
            # the score at x̃/α, plus its Jacobian (one jvp per dimension) or probes
            if self.proposal == "full":
                if self._target is None:
                    raise RuntimeError("The cost of a full-covariance proposal is known after `init`.")
                per_level += 1 + self._target.dim
            else:
                per_level += 1 + self.num_probes
        return self.schedule.num_levels * per_level

    def init_state(self, position, rng_key) -> DiGSKernelState:
        point = init(position, self._target.logdensity_fn)
        dtype = point.position.dtype
        step_sizes = initial_step_sizes(self.schedule, self._step_size).astype(dtype)
        num_levels = self.schedule.num_levels
        return DiGSKernelState(
            i=jnp.array(0),
            z=point.position,
            logdensity=point.logdensity,
            logdensity_grad=point.logdensity_grad,
            step_size=step_sizes,
            adapt_state=self._adaptation.init(step_sizes),
            init_accept=jnp.zeros(num_levels, dtype),
            mala_accept_prob=jnp.zeros(num_levels, dtype),
            num_nonfinite=jnp.array(0),
            total_nonfinite=jnp.array(0),
            rng_key=rng_key,
        )

    def sample_one(self, state: DiGSKernelState) -> DiGSKernelState:
        rng_key, key_step = jax.random.split(state.rng_key)
        point = PointState(state.z, state.logdensity, state.logdensity_grad)
        point, info = self._kernel(key_step, point, self._target.logdensity_fn, state.step_size)
        adapt_state, step_size = self._adaptation.update(
            state.adapt_state, state.step_size, info.mala_acceptance, state.i, self._num_warmup
        )
        dtype = point.position.dtype
        return DiGSKernelState(
            i=state.i + 1,
            z=point.position,
            logdensity=point.logdensity,
            logdensity_grad=point.logdensity_grad,
            step_size=step_size,
            adapt_state=adapt_state,
            init_accept=info.init_accepted.astype(dtype),
            mala_accept_prob=info.mala_acceptance.astype(dtype),
            num_nonfinite=info.num_nonfinite,
            total_nonfinite=tally_nonfinite(state.total_nonfinite, info.num_nonfinite),
            rng_key=rng_key,
        )

    def get_diagnostics_str(self, state):
        init_acc = " ".join(f"{a:.2f}" for a in np.atleast_1d(np.asarray(state.init_accept)))
        mala_acc = " ".join(f"{a:.2f}" for a in np.atleast_1d(np.asarray(state.mala_accept_prob)))
        return f"init acc [{init_acc}], MALA acc [{mala_acc}]"
