"""Diffusive Gibbs Sampling (DiGS).

DiGS is Gibbs sampling on the joint p(x, x̃) = p(x) N(x̃; αx, σ²I), whose x-marginal is the
target. One sweep at a noise level draws x̃ ~ N(αx, σ²I) exactly and then moves x with a
p(x | x̃)-invariant kernel (:func:`~ppl_diffusion.inference.denoising.sample_denoising_posterior`):
a Metropolis–Hastings jump, optionally refined by MALA steps. Large noise levels let x jump
between distant modes; small ones move it locally. After the sweep over the ladder, one NUTS
transition on p(x) itself does the local exploration NUTS is good at. Every move is a valid
Gibbs or Metropolis–Hastings step, so the chain targets p(x) exactly.

The kernel runs in the whitened coordinates of the metric adapted in warmup
(:mod:`~ppl_diffusion.inference.kernel`), so σ/α is in units of posterior standard deviations
and one default ladder fits every posterior scale.

The functional core (:func:`init`, :func:`build_kernel`) follows BlackJAX conventions;
:class:`DiGS` wraps it as a NumPyro ``MCMCKernel``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from blackjax.mcmc import hmc, nuts
from numpyro.infer.initialization import init_to_uniform

from ppl_diffusion.inference.denoising import (
    PROPOSALS,
    Anchors,
    PointState,
    anchor_bandwidths,
    init_point,
    sample_denoising_posterior,
)
from ppl_diffusion.inference.kernel import (
    AdaptiveKernel,
    format_per_level,
    host_alarm,
    nuts_accept_prob,
)

Array = jax.Array

__all__ = [
    "LOCAL_MOVES",
    "NUM_ANCHORS",
    "NoiseSchedule",
    "noise_schedule",
    "vp_schedule",
    "ve_schedule",
    "default_schedule",
    "noise_ladder",
    "Levels",
    "levels",
    "DiGSInfo",
    "JumpsNeverAcceptedWarning",
    "init",
    "build_kernel",
    "DiGS",
    "moment_matched_gibbs",
]

LOCAL_MOVES = ("nuts", None)
MALA_TARGET_ACCEPT_PROB = 0.574
"""The acceptance at which MALA's efficiency peaks in high dimension (Roberts & Rosenthal)."""


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


SIGMA_MIN = 1.0
"""Smallest noise of the adaptive ladder, in posterior standard deviations."""
SIGMA_MAX_LIMITS = (2.0, 1000.0)
INITIAL_SIGMA_MAX = 10.0
MIN_JUMP_ACCEPT_PROB = 0.002
"""A level whose jumps were accepted less often than this over the second half of warmup is
switched off for sampling: it would cost a gradient per iteration for (almost) nothing."""
DENSE_PROPOSAL_WARNING_DIM = 50
"""From this dimension on, ``proposal="full"`` (a d × d Jacobian per jump) gets a warning."""


class JumpsNeverAcceptedWarning(UserWarning):
    """No noise level's jump was accepted in warmup: DiGS will not move between modes."""


def _warn_no_jumps(best_rate):
    warnings.warn(
        "DiGS: no noise level's jump was accepted in the second half of warmup (best level "
        f"{float(best_rate):.2%} of the time), so the chains will not jump between modes. "
        "With a NUTS move every level is switched off and each iteration is one NUTS "
        "transition, which is fine for a unimodal posterior; if you expect several modes, "
        "try a longer warmup, fewer coordinates per jump (`block_size`), or a `schedule` "
        "with smaller noise.",
        JumpsNeverAcceptedWarning,
        stacklevel=1,
    )


_no_jumps_alarm = host_alarm(_warn_no_jumps)


def noise_ladder(sigma_max: Array, num_levels: int) -> Array:
    """``num_levels`` noise levels from ``sigma_max`` down to :data:`SIGMA_MIN`, geometric."""
    fractions = jnp.linspace(0.0, 1.0, num_levels)
    return sigma_max * (SIGMA_MIN / sigma_max) ** fractions


def default_schedule(num_levels: int = 4) -> NoiseSchedule:
    """The ladder DiGS starts warmup from when no schedule is given: VE levels from
    σ = 10 down to 1. Warmup then sets the largest level from what the chains see."""
    if num_levels < 1:
        raise ValueError(f"`num_levels` must be at least 1, got {num_levels}.")
    return noise_schedule(np.ones(num_levels), noise_ladder(INITIAL_SIGMA_MAX, num_levels))


class Levels(NamedTuple):
    """The noise levels a DiGS iteration sweeps, and which of them are switched on."""

    alphas: Array
    sigmas: Array
    active: Array


def levels(schedule: NoiseSchedule) -> Levels:
    """Every level of ``schedule``, all switched on."""
    return Levels(schedule.alphas, schedule.sigmas, jnp.ones(schedule.num_levels, bool))


NUM_ANCHORS = 20
"""Positions each chain keeps from warmup for the ``"mixed"`` jump proposal: the latest of
those recorded every ``3 num_warmup / 80`` iterations, so at the end of warmup they span its
last three quarters, and hold values the chains left early on."""
MAX_SITE_ROLLS = 3
MAX_ROLLED_SITE_LENGTH = 10
"""Each anchor also enters the anchor mixtures with every latent site whose leading axis has
2 to ``MAX_ROLLED_SITE_LENGTH`` entries rolled by 1 to ``MAX_SITE_ROLLS`` places along it
(:meth:`~ppl_diffusion.target.Target.site_rolls`): exchangeable components are few, while a
long vector site is most often per-group or per-feature parameters the data tell apart."""


class LadderStatistics(NamedTuple):
    jump_accept_total: Array
    """Per level, summed jump acceptance over the second half of warmup."""
    num_iterations: Array
    radius: Array
    """Largest whitened distance from the metric's mean in the current slow window."""
    anchors: Array
    """This chain's latest :data:`NUM_ANCHORS` recorded positions (target coordinates)."""
    anchor_recorded: Array
    """Which rows of ``anchors`` hold a position yet."""
    anchor_bandwidths: tuple[Array, Array]
    """The widths of the anchor mixtures over every pooled chain's anchors (whitened), from
    :func:`~ppl_diffusion.inference.denoising.anchor_bandwidths` at the latest recording."""


class DiGSInfo(NamedTuple):
    accept_prob: Array
    """The NUTS transition's acceptance probability (what NUTS reports and
    ``target_accept_prob`` steers); without a NUTS move, the mean jump acceptance over the
    active levels."""
    jump_accept_prob: Array
    """Per level: acceptance probability of the jump proposal."""
    mala_accept_prob: Array
    """Per level: mean MALA acceptance probability (NaN with no MALA steps)."""
    local_accept_prob: Array
    """Mean acceptance probability of the NUTS transition (NaN without one)."""
    diverging: Array
    """Whether the NUTS transition diverged."""
    num_nonfinite: Array
    """Rejected proposals with a non-finite log density or gradient, over all levels."""
    num_grad_evals: Array
    """Target gradients this iteration cost (NUTS's part varies per iteration)."""


def init(position: Array, logdensity_fn: Callable) -> PointState:
    return init_point(position, logdensity_fn)


def jump_cost(proposal: str, num_probes: int, dim: int) -> int:
    """Gradients one jump costs: the candidate's, plus the score and curvature that a
    moment-matched proposal is built from (one jvp per dimension, or per probe)."""
    if proposal == "full":
        return 2 + dim
    if proposal in ("diag", "iso"):
        return 2 + num_probes
    return 1


def build_kernel(
    num_mala_steps: int = 0,
    proposal: str = "mixed",
    num_probes: int = 8,
    local_move: str | None = "nuts",
    block_size: int | None = 2,
) -> Callable:
    """A DiGS iteration: a sweep over the active noise levels, then the local move.

    Returns ``kernel(rng_key, state, logdensity_fn, step_sizes, levels, anchors=None,
    sites=None) -> (state, DiGSInfo)`` where ``levels`` is a :class:`Levels` (see
    :func:`levels`), ``step_sizes`` holds one MALA step size per level and, last, the NUTS
    step size, ``anchors`` (points visited in warmup) feed the ``"mixed"`` jump proposal, and
    ``sites`` (a NumPy array: the latent site of each coordinate,
    :meth:`~ppl_diffusion.target.Target.coordinate_sites`) lets blocks follow the model.

    With ``block_size`` set, each level noises and jumps every coordinate in half of the
    sweeps, and in the other half a block of 1 to ``block_size`` coordinates (the number
    uniform, the coordinates chosen at random; Gibbs on that block, and a random choice of
    valid moves stays valid). A jump of the whole vector is accepted less and less often as
    the dimension grows; a jump of one coordinate still flips a sign ambiguity, and a jump of
    two swaps a pair of exchangeable components. With ``sites`` naming more than one site,
    half of those blocks are instead one latent site, chosen uniformly: a site's coordinates
    often have to move together to reach another mode (a 2-D position among nuisance
    coordinates), which random blocks of a few coordinates rarely pick.
    """
    if (
        isinstance(num_mala_steps, bool)
        or int(num_mala_steps) != num_mala_steps
        or num_mala_steps < 0
    ):
        raise ValueError(f"`num_mala_steps` must be a non-negative integer, got {num_mala_steps}.")
    if proposal not in PROPOSALS:
        raise ValueError(f"`proposal` must be one of {PROPOSALS}, got {proposal!r}.")
    if local_move not in LOCAL_MOVES:
        raise ValueError(f"`local_move` must be one of {LOCAL_MOVES}, got {local_move!r}.")
    if isinstance(num_probes, bool) or int(num_probes) != num_probes or num_probes < 1:
        raise ValueError(f"`num_probes` must be a positive integer, got {num_probes}.")
    if block_size is not None:
        if isinstance(block_size, bool) or int(block_size) != block_size or block_size < 1:
            raise ValueError(f"`block_size` must be a positive integer or None, got {block_size}.")
        if proposal in ("full", "diag", "iso"):
            raise ValueError(
                f"`block_size` needs a diagonal jump proposal; use block_size=None with "
                f"proposal={proposal!r}."
            )
        block_size = int(block_size)
    num_mala_steps, num_probes = int(num_mala_steps), int(num_probes)
    nuts_step = nuts.build_kernel()

    def kernel(
        rng_key,
        state: PointState,
        logdensity_fn,
        step_sizes,
        levels: Levels,
        anchors: Anchors | None = None,
        sites: np.ndarray | None = None,
    ):
        key_levels, key_local = jax.random.split(rng_key)
        num_sites = 1 if sites is None else int(np.max(sites)) + 1

        def random_block(key, dim):
            if block_size is None or dim == 1:
                return None
            key_whole, key_size, key_pick = jax.random.split(key, 3)
            size = jax.random.randint(key_size, (), 1, min(block_size, dim) + 1)
            rank = jax.random.permutation(key_pick, dim)
            block = rank < size
            if num_sites > 1:
                # Keys folded off the others: single-site targets keep their random stream.
                key_by_site, key_site = jax.random.split(jax.random.fold_in(key, 1))
                site = jax.random.randint(key_site, (), 0, num_sites)
                block = jnp.where(jax.random.bernoulli(key_by_site), sites == site, block)
            return block | jax.random.bernoulli(key_whole)

        def one_level(point, level):
            key, alpha, sigma, active, step_size = level
            key_noise, key_denoise, key_block = jax.random.split(key, 3)
            block = random_block(key_block, point.position.shape[-1])

            def move(point):
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
                    block,
                    anchors,
                )

            def skip(point):
                return point, jax.tree.map(jnp.zeros_like, jax.eval_shape(move, point)[1])

            return jax.lax.cond(active, move, skip, point)

        num_levels = levels.sigmas.shape[0]
        keys = jax.random.split(key_levels, num_levels)
        sweep = (keys, levels.alphas, levels.sigmas, levels.active, step_sizes[:-1])
        state, level_info = jax.lax.scan(one_level, state, sweep)
        dim = state.position.shape[-1]
        per_level = jump_cost(proposal, num_probes, dim) + num_mala_steps
        num_grad_evals = jnp.sum(levels.active) * per_level
        if local_move == "nuts":
            hmc_state = hmc.HMCState(state.position, state.logdensity, state.logdensity_grad)
            hmc_state, nuts_info = nuts_step(
                key_local,
                hmc_state,
                logdensity_fn,
                step_sizes[-1],
                jnp.ones(dim, state.position.dtype),
            )
            state = PointState(hmc_state.position, hmc_state.logdensity, hmc_state.logdensity_grad)
            local_accept_prob = nuts_accept_prob(nuts_info)
            accept_prob = jnp.minimum(local_accept_prob, 1.0)
            diverging = nuts_info.is_divergent
            num_grad_evals = num_grad_evals + nuts_info.num_integration_steps
        else:
            local_accept_prob = jnp.array(jnp.nan, state.logdensity.dtype)
            accept_prob = jnp.sum(level_info.jump_accept_prob * levels.active) / jnp.maximum(
                jnp.sum(levels.active), 1
            )
            diverging = jnp.array(False)
        info = DiGSInfo(
            accept_prob=accept_prob,
            jump_accept_prob=level_info.jump_accept_prob,
            mala_accept_prob=level_info.mala_accept_prob,
            local_accept_prob=local_accept_prob,
            diverging=diverging,
            num_nonfinite=level_info.num_nonfinite.sum(),
            num_grad_evals=num_grad_evals.astype(jnp.int32),
        )
        return state, info

    return kernel


class DiGS(AdaptiveKernel):
    """Diffusive Gibbs Sampling as a drop-in NumPyro kernel: ``MCMC(DiGS(model), ...)``.

    Args:
        model: a NumPyro model with continuous latent sites.
        potential_fn: alternatively, ``params -> potential energy``; then ``init_params`` must be
            given to ``MCMC.run``.
        schedule: a fixed :class:`NoiseSchedule` (large noise first), in whitened units
            (posterior standard deviations) when the metric is adapted. By default the ladder
            is chosen in warmup: ``num_levels`` VE levels from σ_max down to 1, where at the
            end of each slow window σ_max becomes the largest whitened distance of any chain
            from the metric's mean in that window (clipped to [2, 1000]): about half the
            distance between the modes the chains have seen, or the radius of the typical set
            of a unimodal posterior. Each coordinate counts in units of its modes' width (the
            anchor mixture's kernel width) relative to the widest coordinate's. Either way, a
            level whose jumps were accepted less than 0.2% of the time over the second half
            of warmup is switched off for sampling, and costs nothing after it (unless
            ``local_move=None``, when the levels are the only move and all stay on).
        num_levels: levels of the warmup-chosen ladder (ignored with ``schedule``).
        proposal: the jump proposal of each level (see
            :func:`~ppl_diffusion.inference.denoising.jump_proposal`): ``"mixed"`` (default:
            flat, Gaussian and two anchor mixtures over :data:`NUM_ANCHORS` positions per
            chain recorded over the last three quarters of warmup, pooled over vectorized
            chains, each also with its short latent sites rolled by 1 to
            :data:`MAX_SITE_ROLLS` places along their leading axis), ``"independent"``,
            ``"gaussian"``, or the moment-matched ``"full"``, ``"diag"``, ``"iso"``. The
            rolled anchors are for exchangeable components (a mixture's, indexed by a plate or
            a vector site), whose relabelings are modes of equal weight: a relabeling no chain
            visited in warmup is then still proposed directly. They share half of the anchor
            mixtures' prior weight, so where a site's entries are not exchangeable at most
            half of the anchor jumps are spent on them.
        num_mala_steps: MALA steps on p(x | x̃) after each level's jump (default 0: the NUTS
            transition after the sweep does the local work).
        local_move: ``"nuts"`` (default): one NUTS transition on p(x) per iteration; ``None``:
            none.
        num_probes: Rademacher probes for the ``"diag"``/``"iso"`` proposals.
        block_size: the most coordinates a partial jump moves: half of the sweeps jump all
            coordinates, the other half a random block of 1 to ``block_size`` of them, or,
            in models with several latent sites, half of the time one whole site;
            ``None``: always all (see :func:`build_kernel`).
        step_size: initial step size of the NUTS move (MALA steps start at (σ/α)²/4, at most 1).
        adapt_step_size, target_accept_prob: dual averaging of every step size during warmup;
            the NUTS move aims at ``target_accept_prob``, the MALA steps at 0.574.
        adapt_metric, dense_mass: estimate a diagonal (default) or dense metric in Stan's
            warmup windows and run the whole kernel in its whitened coordinates.
        init_strategy: NumPyro initialisation strategy.
        auto_reparam: partially non-centre each latent ``Normal`` site whose location or scale
            depends on other latent sites, as far as the data allow, so that hierarchical
            models written centred and funnels sample correctly (a short NUTS pilot decides;
            see :mod:`ppl_diffusion.reparam`, and ``kernel.centering`` for the choice). The
            draws are of the sites as written. Skipped when ``init_params`` are given
            (they are in the model's own coordinates) or the model's data are traced.

    Extra fields: ``accept_prob`` (the NUTS move's, or without one the mean jump
    acceptance), ``jump_accept_prob`` and ``mala_accept_prob`` (per level),
    ``local_accept_prob``, ``diverging``, ``potential_energy``, ``num_nonfinite``,
    ``num_grad_evals``, ``step_size``.

    Warns (:class:`JumpsNeverAcceptedWarning`) at the end of warmup when no level's jump was
    accepted, and (``UserWarning``) when ``proposal="full"`` meets a target of 50 or more
    dimensions.
    """

    def __init__(
        self,
        model: Callable | None = None,
        potential_fn: Callable | None = None,
        schedule: NoiseSchedule | None = None,
        num_levels: int = 4,
        proposal: str = "mixed",
        num_mala_steps: int = 0,
        local_move: str | None = "nuts",
        num_probes: int = 8,
        block_size: int | None = 2,
        step_size: float = 1.0,
        adapt_step_size: bool = True,
        target_accept_prob: float = 0.8,
        adapt_metric: bool = True,
        dense_mass: bool = False,
        init_strategy: Callable = init_to_uniform,
        auto_reparam: bool = True,
    ):
        super().__init__(
            model,
            potential_fn,
            init_strategy,
            adapt_step_size,
            adapt_metric,
            dense_mass,
            target_accept_prob,
            step_size,
            auto_reparam,
        )
        self.adaptive_ladder = schedule is None
        schedule = default_schedule(num_levels) if schedule is None else schedule
        if not isinstance(schedule, NoiseSchedule):
            raise TypeError("`schedule` must be a NoiseSchedule (see `noise_schedule`).")
        self.schedule = noise_schedule(schedule.alphas, schedule.sigmas)
        self.proposal, self.local_move = proposal, local_move
        self._kernel = build_kernel(num_mala_steps, proposal, num_probes, local_move, block_size)
        self.block_size = block_size
        self.num_mala_steps, self.num_probes = int(num_mala_steps), int(num_probes)

    def check_target(self, target):
        if self.proposal == "full" and target.dim >= DENSE_PROPOSAL_WARNING_DIM:
            warnings.warn(
                f'proposal="full" builds a {target.dim} × {target.dim} Jacobian of the score '
                f"for every jump ({jump_cost('full', self.num_probes, target.dim)} gradient "
                "evaluations each, and a dense factorisation): slow at this dimension. "
                'proposal="diag" estimates the diagonal with `num_probes` probes instead.',
                UserWarning,
                stacklevel=2,
            )

    def core_init(self, position, logdensity_fn):
        return init(position, logdensity_fn)

    def core_step(self, rng_key, core_state, logdensity_fn, step_sizes, parameters):
        levels, anchors = parameters
        sites = self.target.coordinate_sites()
        return self._kernel(rng_key, core_state, logdensity_fn, step_sizes, levels, anchors, sites)

    def initial_tuning(self, dim, dtype):
        num_levels = self.schedule.num_levels
        parameters = levels(self.schedule)
        parameters = parameters._replace(
            alphas=parameters.alphas.astype(dtype), sigmas=parameters.sigmas.astype(dtype)
        )
        statistics = LadderStatistics(
            jnp.zeros(num_levels, dtype),
            jnp.array(0),
            jnp.array(0, dtype),
            jnp.zeros((NUM_ANCHORS, dim), dtype),
            jnp.zeros(NUM_ANCHORS, bool),
            (jnp.ones((), dtype), jnp.ones(dim, dtype)),
        )
        return parameters, statistics

    def tune(self, parameters, statistics, info, position, whitening, phase, pool):
        # Distances count each coordinate in units of its modes' width relative to the
        # widest: where chains jump between narrow modes, the metric spans the modes and
        # shrinks their separation in whitened units; coordinates whose other modes no chain
        # has found yet then still get noise that reaches as far, in their own mode widths.
        widths = statistics.anchor_bandwidths[1]
        scaled = whitening.to_white(position) * jnp.max(widths) / widths
        radius = jnp.where(
            phase.collecting,
            jnp.maximum(statistics.radius, jnp.linalg.norm(scaled)),
            statistics.radius,
        )
        interval = max(1, 3 * phase.num_warmup // (4 * NUM_ANCHORS))
        record = (phase.iteration + 1) % interval == 0
        slot = (phase.iteration // interval) % NUM_ANCHORS
        anchors = jnp.where(record, statistics.anchors.at[slot].set(position), statistics.anchors)
        recorded = statistics.anchor_recorded | (record & (jnp.arange(NUM_ANCHORS) == slot))
        bandwidths = jax.lax.cond(
            pool.agreed(record),
            lambda: anchor_bandwidths(*self._pooled_anchors(anchors, recorded, whitening, pool)),
            lambda: statistics.anchor_bandwidths,
        )
        if self.adaptive_ladder:
            sigma_max = jnp.clip(pool.pool_max(radius), *SIGMA_MAX_LIMITS)
            sigmas = noise_ladder(sigma_max, self.schedule.num_levels)
            parameters = parameters._replace(
                sigmas=jnp.where(phase.window_end, sigmas, parameters.sigmas)
            )
        radius = jnp.where(phase.window_end, 0.0, radius)
        counting = phase.iteration >= phase.num_warmup // 2
        total = statistics.jump_accept_total + jnp.where(counting, info.jump_accept_prob, 0.0)
        count = statistics.num_iterations + counting
        rate = pool.pool_mean(total / jnp.maximum(count, 1))
        last = phase.iteration == phase.num_warmup - 1
        useful = rate >= MIN_JUMP_ACCEPT_PROB
        _no_jumps_alarm(last & ~jnp.any(useful), jnp.max(rate))
        if self.local_move is not None:
            # Without a local move the levels are the only move: switching them all off
            # would freeze the chain, so they stay on.
            parameters = parameters._replace(active=jnp.where(last, useful, parameters.active))
        statistics = LadderStatistics(total, count, radius, anchors, recorded, bandwidths)
        return parameters, statistics

    @staticmethod
    def _pooled_anchors(anchors, recorded, whitening, pool):
        """Every pooled chain's anchors, whitened; until one is recorded, the metric's mean
        stands in, so the anchor mixture is never empty."""
        points = whitening.to_white(pool.gather(anchors).reshape(-1, anchors.shape[-1]))
        recorded = pool.gather(recorded).reshape(-1)
        points = jnp.concatenate([jnp.zeros_like(points[:1]), points])
        return points, jnp.concatenate([~jnp.any(recorded, keepdims=True), recorded])

    def step_parameters(self, warmup, pool):
        levels = pool.agreed(warmup.parameters)
        if self.proposal != "mixed":
            return levels, None
        statistics = warmup.statistics
        # Anchors record only the relabelings the chains happened to visit in warmup, and a
        # relabeling changes several coordinates at once by whole mode separations, which
        # the blind proposals almost never manage.
        rolls = self.target.site_rolls(MAX_SITE_ROLLS, MAX_ROLLED_SITE_LENGTH)
        copies = [statistics.anchors] + [statistics.anchors[..., roll] for roll in rolls]
        recorded = jnp.concatenate([statistics.anchor_recorded] * len(copies))
        points, valid = self._pooled_anchors(
            jnp.concatenate(copies), recorded, warmup.whitening, pool
        )
        if not len(rolls):
            return levels, Anchors(points, valid, *statistics.anchor_bandwidths)
        # The rolled copies together weigh as much as the anchors themselves: where a site's
        # entries are not exchangeable, they are wasted proposals.
        per_chain = np.repeat(np.r_[0.0, np.full(len(rolls), -np.log(len(rolls)))], NUM_ANCHORS)
        num_chains = (points.shape[0] - 1) // per_chain.size
        log_prior = jnp.asarray(np.r_[0.0, np.tile(per_chain, num_chains)], points.dtype)
        return levels, Anchors(points, valid, *statistics.anchor_bandwidths, log_prior)

    def initial_step_sizes(self, dtype):
        # p(x | x̃) is no wider than σ/α, so a MALA step starts below that.
        ratio = self.schedule.sigmas / self.schedule.alphas
        mala = jnp.minimum(1.0, 0.25 * ratio**2)
        return jnp.append(mala, self.step_size).astype(dtype)

    def adapted_step_sizes(self):
        return np.r_[
            np.full(self.schedule.num_levels, self.num_mala_steps > 0), self.local_move is not None
        ]

    def step_size_targets(self):
        return np.r_[
            np.full(self.schedule.num_levels, MALA_TARGET_ACCEPT_PROB), self.target_accept_prob
        ]

    def adaptation_signal(self, info):
        return jnp.append(info.mala_accept_prob, info.local_accept_prob)

    def get_diagnostics_str(self, state):
        text = format_per_level("jump acc", state.jump_accept_prob)
        if self.num_mala_steps:
            text += ", " + format_per_level("MALA acc", state.mala_accept_prob)
        if self.local_move is not None:
            text += f", NUTS acc {float(np.mean(state.local_accept_prob)):.2f}"
        return text


def moment_matched_gibbs(
    model: Callable | None = None,
    potential_fn: Callable | None = None,
    sigma: float = 0.5,
    covariance: str = "full",
    num_probes: int = 8,
    num_mala_steps: int = 0,
    **kwargs,
) -> DiGS:
    """Gibbs on (x, x̃ = x + σε) whose denoising move proposes from a Gaussian moment-matched
    to p(x | x̃): the Laplace approximation from the target's own score and curvature, which a
    Metropolis–Hastings step corrects, so the chain targets p(x) exactly. It is DiGS with one
    VE level, that proposal and no NUTS move; ``num_mala_steps`` MALA steps may follow.
    (Pseudo-Gibbs, for a model known only through a noisy energy, uses Tweedie's moments of
    the noisy score instead and has no correction.)"""
    kwargs.setdefault("local_move", None)
    kwargs.setdefault("block_size", None)
    return DiGS(
        model,
        potential_fn,
        schedule=ve_schedule(sigma, sigma, 1),
        num_mala_steps=num_mala_steps,
        proposal=covariance,
        num_probes=num_probes,
        **kwargs,
    )
