"""What every NumPyro kernel of this package shares: building the flat target, batching chains
for ``chain_method="vectorized"``, mapping draws back to model sites, and warmup step-size
adaptation by dual averaging."""

from __future__ import annotations

import warnings
from abc import abstractmethod
from typing import Callable

import jax
import jax.numpy as jnp
from blackjax.adaptation.step_size import dual_averaging_adaptation
from jax.custom_batching import custom_vmap
from numpyro.infer.initialization import init_to_uniform
from numpyro.infer.mcmc import MCMCKernel
from numpyro.util import identity, is_prng_key

from ppl_diffusion.target import Target, make_target

Array = jax.Array


class StepSizeAdaptation:
    """Dual averaging of several independent step sizes (one per noise level or temperature).

    During warmup each step size follows its dual-averaging iterate; at the last warmup
    iteration it is frozen at the averaged value, so sampling uses a fixed, valid kernel.
    """

    def __init__(self, target_accept_prob: float, enabled: bool = True):
        if not 0 < target_accept_prob < 1:
            raise ValueError(
                f"`target_accept_prob` must lie in (0, 1), got {target_accept_prob}."
            )
        da_init, da_update, da_final = dual_averaging_adaptation(target_accept_prob)
        self._init, self._update, self._final = (
            jax.vmap(da_init),
            jax.vmap(da_update),
            jax.vmap(da_final),
        )
        self.enabled = enabled

    def init(self, step_sizes: Array):
        return self._init(step_sizes)

    def update(self, adapt_state, step_sizes, acceptance, iteration, num_warmup):
        """Return ``(adapt_state, step_sizes)`` after an iteration with the given acceptance."""
        if not self.enabled:
            return adapt_state, step_sizes
        in_warmup = iteration < num_warmup
        updated = self._update(adapt_state, acceptance)
        adapt_state = jax.tree.map(
            lambda new, old: jnp.where(in_warmup, new, old), updated, adapt_state
        )
        step_sizes = jnp.where(
            in_warmup,
            jnp.where(
                iteration == num_warmup - 1,
                self._final(adapt_state),
                jnp.exp(adapt_state.log_step_size),
            ),
            step_sizes,
        )
        return adapt_state, step_sizes


# A chain's running count of rejected non-finite proposals triggers a warning each time it
# reaches one of these: a few are harmless at a hard boundary, many mean wasted iterations.
NONFINITE_WARNING_COUNTS = tuple(10**k for k in range(1, 10))


def _warn_nonfinite(total):
    # The text names the threshold, not the exact count, so Python's default warning filter
    # shows it once however many chains cross it.
    threshold = max(t for t in NONFINITE_WARNING_COUNTS if t <= int(total))
    warnings.warn(
        f"A chain has rejected at least {threshold} proposals whose log density or gradient "
        "was NaN/inf: the model overflows or is undefined where they landed (e.g. exp of a "
        "large unconstrained value). Rejection keeps the chain correct but wastes its work: "
        "check the model's support and constraints, keep the largest noise level near the "
        "posterior's scale, or run in float64. The per-iteration count is the extra field "
        "`num_nonfinite`.",
        RuntimeWarning,
        stacklevel=1,
    )


@custom_vmap
def _nonfinite_alarm(crossed, total):
    jax.lax.cond(crossed, lambda: jax.debug.callback(_warn_nonfinite, total), lambda: None)
    return crossed


@_nonfinite_alarm.def_vmap
def _nonfinite_alarm_batched(axis_size, in_batched, crossed, total):
    # Under vmap a cond with a batched predicate runs both branches, i.e. a host callback per
    # chain and iteration. Reducing over chains first keeps one real branch: at most one
    # callback per iteration, and only in iterations where some chain crosses a threshold.
    crossed, total = (
        value if batched else jnp.broadcast_to(value, (axis_size,) + jnp.shape(value))
        for value, batched in zip((crossed, total), in_batched)
    )
    worst = jnp.argmax(jnp.where(crossed, total, -1))
    fired = _nonfinite_alarm(jnp.any(crossed), total[worst])
    return jnp.broadcast_to(fired, (axis_size,)), True


def tally_nonfinite(total: Array, new: Array) -> Array:
    """Add this iteration's rejected non-finite proposals to a chain's running count, warning
    (``RuntimeWarning``) when the count reaches 10, 100, 1000, …"""
    updated = total + new
    thresholds = jnp.asarray(NONFINITE_WARNING_COUNTS)
    _nonfinite_alarm(jnp.any((total < thresholds) & (updated >= thresholds)), updated)
    return updated


class FlatTargetKernel(MCMCKernel):
    """A NumPyro kernel whose state holds a flat unconstrained position in field ``z``.

    Subclasses implement :meth:`init_state` and :meth:`sample_one` for one chain; this class
    batches them over chains when NumPyro passes a batch of keys (``chain_method="vectorized"``).
    """

    sample_field = "z"

    def __init__(
        self,
        model: Callable | None = None,
        potential_fn: Callable | None = None,
        init_strategy: Callable = init_to_uniform,
    ):
        if (model is None) == (potential_fn is None):
            raise ValueError("Give exactly one of `model` or `potential_fn`.")
        self._model = model
        self._potential_fn = potential_fn
        self._init_strategy = init_strategy
        self._target: Target | None = None
        self._num_warmup = 0
        self._sample_fn = None

    @property
    def model(self):
        return self._model

    @property
    def target(self) -> Target | None:
        """The flat :class:`~ppl_diffusion.target.Target` built at ``init``."""
        return self._target

    @abstractmethod
    def init_state(self, position: Array, rng_key: Array):
        """The state of one chain starting at ``position``."""

    @abstractmethod
    def sample_one(self, state):
        """One transition of one chain."""

    def init(self, rng_key, num_warmup, init_params, model_args, model_kwargs):
        self._num_warmup = int(num_warmup)
        batched = not is_prng_key(rng_key)
        if batched:
            keys = jax.vmap(jax.random.split)(rng_key)
            rng_key, key_init = keys[:, 0], keys[:, 1]
        else:
            rng_key, key_init = jax.random.split(rng_key)
        self._target, positions = make_target(
            key_init,
            model=self._model,
            potential_fn=self._potential_fn,
            init_params=init_params,
            model_args=model_args,
            model_kwargs=model_kwargs,
            init_strategy=self._init_strategy,
        )
        if batched:
            self._sample_fn = jax.vmap(self.sample_one)
            return jax.vmap(self.init_state)(positions, rng_key)
        self._sample_fn = self.sample_one
        return self.init_state(positions, rng_key)

    def sample(self, state, model_args, model_kwargs):
        if self._sample_fn is None:
            raise RuntimeError("`init` must be called before `sample`.")
        return self._sample_fn(state)

    def postprocess_fn(self, model_args, model_kwargs):
        if self._target is None:
            return identity
        return self._target.postprocess_fn
