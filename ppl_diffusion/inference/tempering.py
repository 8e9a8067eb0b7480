"""Parallel tempering (replica exchange), the classical peer of DiGS for multimodal targets.

Each chain carries ``R`` replicas of the position, replica ``r`` targeting p(x)^β_r on a
geometric ladder 1 = β_0 > β_1 > … > β_{R-1}. An iteration moves every replica with BlackJAX
MALA steps on its tempered density, then proposes swaps between adjacent temperatures,
alternating even and odd pairs (deterministic even-odd swapping, which mixes better than
random pair choice). Only the β = 1 replica is returned. BlackJAX has no replica-exchange kernel.
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from blackjax.mcmc import mala
from numpyro.infer.initialization import init_to_uniform

from ppl_diffusion.inference.base import FlatTargetKernel, StepSizeAdaptation, tally_nonfinite
from ppl_diffusion.inference.posterior import PointState, init_point, run_mala

Array = jax.Array

__all__ = [
    "geometric_ladder",
    "TemperingInfo",
    "init",
    "build_kernel",
    "ParallelTempering",
    "TemperingKernelState",
]


def geometric_ladder(num_temperatures: int, min_beta: float) -> Array:
    """Inverse temperatures from 1 down to ``min_beta``, geometrically spaced."""
    if num_temperatures < 2:
        raise ValueError(f"Parallel tempering needs at least 2 temperatures, got {num_temperatures}.")
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
    mala_acceptance: Array
    """Per temperature: mean MALA acceptance probability."""
    swap_acceptance: Array
    """Per adjacent pair (β_r, β_{r+1}): swap acceptance probability this iteration."""
    num_nonfinite: Array


def init(positions: Array, logdensity_fn: Callable) -> PointState:
    """Replica states from ``(R, dim)`` positions; log densities are untempered."""
    return jax.vmap(lambda x: init_point(x, logdensity_fn))(positions)


def build_kernel(betas: Array, num_mala_steps: int = 1) -> Callable:
    """``kernel(rng_key, replicas, logdensity_fn, step_sizes, swap_parity)``."""
    betas = _validate_betas(betas)
    if num_mala_steps < 1:
        raise ValueError(f"`num_mala_steps` must be at least 1, got {num_mala_steps}.")
    def move_replica(key, point: PointState, beta, step_size, logdensity_fn):
        def tempered(x):
            return beta * logdensity_fn(x)

        state = mala.MALAState(point.position, beta * point.logdensity, beta * point.logdensity_grad)
        state, acceptance, nonfinite = run_mala(key, state, tempered, step_size, num_mala_steps)
        point = PointState(state.position, state.logdensity / beta, state.logdensity_grad / beta)
        return point, acceptance, nonfinite

    def kernel(rng_key, replicas: PointState, logdensity_fn, step_sizes, swap_parity):
        key_move, key_swap = jax.random.split(rng_key)
        keys = jax.random.split(key_move, betas.shape[0])
        replicas, acceptance, nonfinite = jax.vmap(move_replica, in_axes=(0, 0, 0, 0, None))(
            keys, replicas, betas, step_sizes, logdensity_fn
        )
        # Swapping replicas r and r+1 has log acceptance (β_r − β_{r+1})(ℓ_{r+1} − ℓ_r).
        ld = replicas.logdensity
        log_ratio = (betas[:-1] - betas[1:]) * (ld[1:] - ld[:-1])
        log_ratio = jnp.where(jnp.isnan(log_ratio), -jnp.inf, log_ratio)
        swap_prob = jnp.minimum(1.0, jnp.exp(log_ratio))
        uniforms = jax.random.uniform(key_swap, swap_prob.shape)
        pair_index = jnp.arange(betas.shape[0] - 1)
        swap = (uniforms < swap_prob) & (pair_index % 2 == swap_parity)
        # Pairs of one parity are disjoint, so the swaps form a permutation.
        index = jnp.arange(betas.shape[0])
        from_above = jnp.concatenate([swap, jnp.array([False])])
        from_below = jnp.concatenate([jnp.array([False]), swap])
        source = jnp.where(from_above, index + 1, jnp.where(from_below, index - 1, index))
        replicas = jax.tree.map(lambda v: v[source], replicas)
        info = TemperingInfo(acceptance, swap_prob, nonfinite.sum())
        return replicas, info

    return kernel


class TemperingKernelState(NamedTuple):
    i: Array
    z: Array
    """The β = 1 replica's flat unconstrained position."""
    replicas: PointState
    step_size: Array
    adapt_state: tuple
    mala_accept_prob: Array
    swap_accept_prob: Array
    num_nonfinite: Array
    total_nonfinite: Array
    """Running count of rejected non-finite proposals (warns at 10, 100, …)."""
    rng_key: Array


class ParallelTempering(FlatTargetKernel):
    """Replica-exchange MCMC as a NumPyro kernel: ``MCMC(ParallelTempering(model), ...)``.

    Args:
        model / potential_fn: as for NumPyro's NUTS.
        num_temperatures: replicas per chain (ignored when ``betas`` is given).
        min_beta: smallest inverse temperature of the geometric ladder.
        betas: explicit inverse temperatures, starting at 1 and strictly decreasing.
        num_mala_steps: MALA steps per replica between swap rounds.
        step_size, adapt_step_size, target_accept_prob: per-temperature MALA step size and its
            dual-averaging adaptation during warmup.

    Extra fields: ``mala_accept_prob`` (per temperature), ``swap_accept_prob`` (per adjacent
    pair), ``num_nonfinite``, ``step_size``. One iteration costs
    ``num_temperatures * num_mala_steps`` gradient evaluations.
    """

    def __init__(
        self,
        model: Callable | None = None,
        potential_fn: Callable | None = None,
        num_temperatures: int = 5,
        min_beta: float = 0.01,
        betas: Sequence[float] | None = None,
        num_mala_steps: int = 1,
        step_size: float = 0.1,
        adapt_step_size: bool = True,
        target_accept_prob: float = 0.574,
        init_strategy: Callable = init_to_uniform,
    ):
        super().__init__(model, potential_fn, init_strategy)
        if not step_size > 0:
            raise ValueError(f"`step_size` must be positive, got {step_size}.")
        self.betas = (
            geometric_ladder(num_temperatures, min_beta) if betas is None else _validate_betas(betas)
        )
        self.num_mala_steps = int(num_mala_steps)
        self._kernel = build_kernel(self.betas, self.num_mala_steps)
        self._step_size = step_size
        self._adaptation = StepSizeAdaptation(target_accept_prob, adapt_step_size)

    @property
    def gradient_evaluations_per_iteration(self) -> int:
        return int(self.betas.shape[0]) * self.num_mala_steps

    def init_state(self, position, rng_key) -> TemperingKernelState:
        num_temperatures = self.betas.shape[0]
        replicas = init(jnp.broadcast_to(position, (num_temperatures,) + position.shape), self._target.logdensity_fn)
        dtype = position.dtype
        # Hotter replicas are wider by 1/sqrt(β), so start their steps proportionally larger.
        step_sizes = (self._step_size / self.betas).astype(dtype)
        return TemperingKernelState(
            i=jnp.array(0),
            z=position,
            replicas=replicas,
            step_size=step_sizes,
            adapt_state=self._adaptation.init(step_sizes),
            mala_accept_prob=jnp.zeros(num_temperatures, dtype),
            swap_accept_prob=jnp.zeros(num_temperatures - 1, dtype),
            num_nonfinite=jnp.array(0),
            total_nonfinite=jnp.array(0),
            rng_key=rng_key,
        )

    def sample_one(self, state: TemperingKernelState) -> TemperingKernelState:
        rng_key, key_step = jax.random.split(state.rng_key)
        replicas, info = self._kernel(
            key_step, state.replicas, self._target.logdensity_fn, state.step_size, state.i % 2
        )
        adapt_state, step_size = self._adaptation.update(
            state.adapt_state, state.step_size, info.mala_acceptance, state.i, self._num_warmup
        )
        dtype = state.z.dtype
        return TemperingKernelState(
            i=state.i + 1,
            z=replicas.position[0],
            replicas=replicas,
            step_size=step_size,
            adapt_state=adapt_state,
            mala_accept_prob=info.mala_acceptance.astype(dtype),
            swap_accept_prob=info.swap_acceptance.astype(dtype),
            num_nonfinite=info.num_nonfinite,
            total_nonfinite=tally_nonfinite(state.total_nonfinite, info.num_nonfinite),
            rng_key=rng_key,
        )

    def get_diagnostics_str(self, state):
        swap = " ".join(f"{a:.2f}" for a in np.atleast_1d(np.asarray(state.swap_accept_prob)))
        return f"swap acc [{swap}]"
