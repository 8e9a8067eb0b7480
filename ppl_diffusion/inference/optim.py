"""The optimiser and training loop every trained network in the package uses."""

from __future__ import annotations

import functools

import equinox as eqx
import jax
import optax
from tqdm.auto import tqdm


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


def apply_optimizer(optimizer, network, grads, opt_state):
    """One optimiser update of an equinox ``network``; returns it and the new state."""
    updates, opt_state = optimizer.update(grads, opt_state, eqx.filter(network, eqx.is_array))
    return eqx.apply_updates(network, updates), opt_state


def train(
    step,
    network,
    rng_key,
    num_steps: int,
    learning_rate,
    description: str,
    progress_bar: bool,
    *step_args,
):
    """Run ``network, opt_state, loss = step(network, opt_state, key_i, *step_args, optimizer)``
    ``num_steps`` times with keys ``fold_in(rng_key, i)``, with a tqdm bar showing the loss."""
    optimizer = make_optimizer(learning_rate)
    opt_state = optimizer.init(eqx.filter(network, eqx.is_array))
    bar = tqdm(range(num_steps), disable=not progress_bar, desc=description)
    for i in bar:
        network, opt_state, loss = step(
            network, opt_state, jax.random.fold_in(rng_key, i), *step_args, optimizer
        )
        if i % 100 == 0:
            bar.set_postfix(loss=f"{float(loss):.4g}")
    return network
