"""Parallel tempering (replica exchange), the classical peer of DiGS for multimodal targets.

Each chain carries ``R`` replicas of the position, replica ``r`` targeting p(x)^β_r on a
geometric ladder 1 = β_0 > β_1 > … > β_{R-1}. An iteration moves every replica with BlackJAX
MALA steps on its tempered density, then proposes swaps between adjacent temperatures,
alternating even and odd pairs (deterministic even-odd swapping, which mixes better than
random pair choice). Only the β = 1 replica is returned. BlackJAX has no replica-exchange kernel.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from blackjax.mcmc import mala, nuts
from numpyro.infer.initialization import init_to_uniform

from ppl_diffusion.inference.denoising import PointState, init_point, run_mala
from ppl_diffusion.inference.kernel import AdaptiveKernel, format_per_level, nuts_accept_prob

Array = jax.Array

__all__ = [
    "geometric_ladder",
    "TemperingInfo",
    "init",
    "build_kernel",
    "ParallelTempering",
    "LOCAL_MOVES",
    "ReplicaState",
]


def geometric_ladder(num_temperatures: int, min_beta: float) -> Array:
    """Inverse temperatures from 1 down to ``min_beta``, geometrically spaced."""
    if num_temperatures < 2:
        raise ValueError(
            f"Parallel tempering needs at least 2 temperatures, got {num_temperatures}."
        )
    if not 0 < min_beta < 1:
        raise ValueError(f"`min_beta` must lie in (0, 1), got {min_beta}.")
    return jnp.asarray(np.geomspace(1.0, min_beta, num_temperatures))


def _validate_betas(betas: Sequence[float]) -> Array:
    betas_np = np.asarray(betas, dtype=float)
    if betas_np.ndim != 1 or betas_np.size < 2:
        raise ValueError("`betas` must be a 1-D sequence of at least 2 inverse temperatures.")
    if betas_np[0] != 1.0 or np.any(np.diff(betas_np) >= 0) or betas_np[-1] <= 0:
        raise ValueError(
            f"`betas` must start at 1 and decrease strictly to a positive value, got {betas_np}."
        )
    return jnp.asarray(betas_np)


class TemperingInfo(NamedTuple):
    accept_prob: Array
    """Acceptance probability of the β = 1 replica's local move, the returned chain's."""
    local_accept_prob: Array
    """Per temperature: acceptance probability of the local move (mean over MALA steps)."""
    swap_accept_prob: Array
    """Per adjacent pair (β_r, β_{r+1}): swap acceptance probability this iteration."""
    diverging: Array
    """Whether the β = 1 replica's NUTS move diverged."""
    num_nonfinite: Array
    num_grad_evals: Array


class ReplicaState(NamedTuple):
    """R replicas (leading axis), replica r at inverse temperature β_r; log densities are
    untempered. ``swap_parity`` alternates which adjacent pairs may swap."""

    position: Array
    logdensity: Array
    logdensity_grad: Array
    swap_parity: Array


def init(positions: Array, logdensity_fn: Callable) -> ReplicaState:
    """Replica states from ``(R, dim)`` positions."""
    points = jax.vmap(lambda x: init_point(x, logdensity_fn))(positions)
    return ReplicaState(*points, swap_parity=jnp.array(0))


LOCAL_MOVES = ("nuts", "mala")


def build_kernel(betas: Array, local_move: str = "nuts", num_mala_steps: int = 1) -> Callable:
    """``kernel(rng_key, replicas, logdensity_fn, step_sizes) -> (replicas, TemperingInfo)``
    with one step size per temperature: every replica takes one NUTS transition (or
    ``num_mala_steps`` MALA steps) on its tempered density, then adjacent pairs of one parity
    propose to swap."""
    betas = _validate_betas(betas)
    if local_move not in LOCAL_MOVES:
        raise ValueError(f"`local_move` must be one of {LOCAL_MOVES}, got {local_move!r}.")
    if (
        isinstance(num_mala_steps, bool)
        or int(num_mala_steps) != num_mala_steps
        or num_mala_steps < 1
    ):
        raise ValueError(
            f"`num_mala_steps` must be an integer of at least 1, got {num_mala_steps}."
        )
    num_mala_steps = int(num_mala_steps)
    nuts_step = nuts.build_kernel()

    def move_replica(key, point: PointState, beta, step_size, logdensity_fn):
        def tempered(x):
            return beta * logdensity_fn(x)

        state = mala.MALAState(
            point.position, beta * point.logdensity, beta * point.logdensity_grad
        )
        if local_move == "nuts":
            state, info = nuts_step(key, state, tempered, step_size, jnp.ones_like(point.position))
            acceptance = nuts_accept_prob(info)
            diverging, nonfinite = info.is_divergent, jnp.array(0)
            cost = info.num_integration_steps
        else:
            state, acceptance, nonfinite = run_mala(key, state, tempered, step_size, num_mala_steps)
            diverging, cost = jnp.array(False), jnp.array(num_mala_steps)
        point = PointState(state.position, state.logdensity / beta, state.logdensity_grad / beta)
        return point, (acceptance, diverging, nonfinite, cost)

    def kernel(rng_key, replicas: ReplicaState, logdensity_fn, step_sizes):
        key_move, key_swap = jax.random.split(rng_key)
        keys = jax.random.split(key_move, betas.shape[0])
        points = PointState(replicas.position, replicas.logdensity, replicas.logdensity_grad)
        points, (acceptance, diverging, nonfinite, cost) = jax.vmap(
            move_replica, in_axes=(0, 0, 0, 0, None)
        )(keys, points, betas, step_sizes, logdensity_fn)
        # Swapping replicas r and r+1 has log acceptance (β_r − β_{r+1})(ℓ_{r+1} − ℓ_r).
        ld = points.logdensity
        log_ratio = (betas[:-1] - betas[1:]) * (ld[1:] - ld[:-1])
        log_ratio = jnp.where(jnp.isnan(log_ratio), -jnp.inf, log_ratio)
        swap_prob = jnp.minimum(1.0, jnp.exp(log_ratio))
        uniforms = jax.random.uniform(key_swap, swap_prob.shape)
        pair_index = jnp.arange(betas.shape[0] - 1)
        swap = (uniforms < swap_prob) & (pair_index % 2 == replicas.swap_parity)
        # Pairs of one parity are disjoint, so the swaps form a permutation.
        index = jnp.arange(betas.shape[0])
        from_above = jnp.concatenate([swap, jnp.array([False])])
        from_below = jnp.concatenate([jnp.array([False]), swap])
        source = jnp.where(from_above, index + 1, jnp.where(from_below, index - 1, index))
        points = jax.tree.map(lambda v: v[source], points)
        info = TemperingInfo(
            jnp.minimum(acceptance[0], 1.0),
            acceptance,
            swap_prob,
            diverging[0],
            nonfinite.sum(),
            cost.sum().astype(jnp.int32),
        )
        return ReplicaState(*points, swap_parity=1 - replicas.swap_parity), info

    return kernel


class ParallelTempering(AdaptiveKernel):
    """Replica-exchange MCMC as a NumPyro kernel: ``MCMC(ParallelTempering(model), ...)``.

    Args:
        model / potential_fn: as for NumPyro's NUTS.
        num_temperatures: replicas per chain (ignored when ``betas`` is given).
        min_beta: smallest inverse temperature of the geometric ladder.
        betas: explicit inverse temperatures, starting at 1 and strictly decreasing.
        local_move: ``"nuts"`` (default): one NUTS transition per replica between swap rounds;
            ``"mala"``: ``num_mala_steps`` MALA steps.
        step_size, adapt_step_size, target_accept_prob: per-temperature step size and its
            dual-averaging adaptation during warmup (default target 0.8 for NUTS, 0.574 for
            MALA).
        adapt_metric, dense_mass: a diagonal (default) or dense metric adapted in Stan's warmup
            windows from the β = 1 replica; every replica moves in its whitened coordinates.
        auto_reparam: as for :class:`~ppl_diffusion.inference.digs.DiGS`: hierarchical normal
            sites are partially non-centred as far as the data allow.

    Extra fields: ``accept_prob`` (the β = 1 replica's local move), ``local_accept_prob`` (per
    temperature), ``swap_accept_prob`` (per adjacent pair), ``diverging``,
    ``potential_energy``, ``num_nonfinite``, ``num_grad_evals``, ``step_size``.
    """

    def __init__(
        self,
        model: Callable | None = None,
        potential_fn: Callable | None = None,
        num_temperatures: int = 5,
        min_beta: float = 0.01,
        betas: Sequence[float] | None = None,
        local_move: str = "nuts",
        num_mala_steps: int = 1,
        step_size: float = 0.5,
        adapt_step_size: bool = True,
        target_accept_prob: float | None = None,
        adapt_metric: bool = True,
        dense_mass: bool = False,
        init_strategy: Callable = init_to_uniform,
        auto_reparam: bool = True,
    ):
        if target_accept_prob is None:
            target_accept_prob = 0.8 if local_move == "nuts" else 0.574
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
        self.betas = (
            geometric_ladder(num_temperatures, min_beta)
            if betas is None
            else _validate_betas(betas)
        )
        self._kernel = build_kernel(self.betas, local_move, num_mala_steps)
        self.local_move = local_move
        self.num_mala_steps = int(num_mala_steps)

    def core_init(self, position, logdensity_fn):
        return init(jnp.broadcast_to(position, self.betas.shape + position.shape), logdensity_fn)

    def core_step(self, rng_key, core_state, logdensity_fn, step_sizes, parameters):
        return self._kernel(rng_key, core_state, logdensity_fn, step_sizes)

    def initial_step_sizes(self, dtype):
        # Hotter replicas are wider by 1/sqrt(β), so start their steps proportionally larger.
        return (self.step_size / jnp.sqrt(self.betas)).astype(dtype)

    def adaptation_signal(self, info):
        return info.local_accept_prob

    def returned_position(self, core_state):
        return core_state.position[0]

    def returned_potential_energy(self, core_state):
        return -core_state.logdensity[0]

    def get_diagnostics_str(self, state):
        return format_per_level("swap acc", state.swap_accept_prob)
