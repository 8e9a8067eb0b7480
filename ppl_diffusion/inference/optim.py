"""The optimiser every trained network in the package uses."""

from __future__ import annotations

import functools

import optax


def make_optimizer(learning_rate: float | optax.Schedule, clip_norm: float = 10.0):
    """Adam on globally clipped gradients, skipping steps whose gradients are not finite.

    Equal settings give the same transformation object: jitted training steps take it as
    static configuration and then compile once, not once per ``fit`` call.
    """
    if not callable(learning_rate):
        learning_rate = float(learning_rate)  # a NumPy or JAX scalar is not hashable
    return _cached_optimizer(learning_rate, float(clip_norm))


@functools.cache
def _cached_optimizer(learning_rate, clip_norm: float):
    # A constant rate becomes a schedule too, so the optimiser state (which then holds a step
    # count) has one structure whatever the user passes, and checkpoints always load.
    schedule = learning_rate if callable(learning_rate) else optax.constant_schedule(learning_rate)
    # apply_if_finite skips a step whose gradients contain NaN/inf instead of poisoning weights.
    return optax.apply_if_finite(
        optax.chain(optax.clip_by_global_norm(clip_norm), optax.adam(schedule)),
        max_consecutive_errors=100,
    )
