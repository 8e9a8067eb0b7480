"""Turn a NumPyro model (or a raw potential) into a flat, unconstrained log density.

Every algorithm in this package works on a single vector ``x`` in NumPyro's unconstrained
space. :func:`make_target` builds that view once: ``logdensity_fn(x)`` is minus NumPyro's
potential energy (log joint plus log-Jacobian), and ``postprocess_fn(x)`` maps a vector back to
the constrained sample sites plus deterministic sites, as ``MCMC.get_samples()`` reports them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from numpyro import handlers
from numpyro.infer.initialization import init_to_uniform
from numpyro.infer.util import initialize_model
from numpyro.util import identity, is_prng_key

Array = jax.Array


@dataclass(frozen=True)
class Target:
    """A flat unconstrained log density together with the way back to model sites.

    Attributes:
        logdensity_fn: ``x -> log p(x)`` for one unconstrained vector of length ``dim``.
        dim: number of unconstrained coordinates.
        unravel_fn: flat vector -> dict of unconstrained site values.
        postprocess_fn: flat vector -> dict of constrained sites and deterministic sites.
        postprocess_sites: the same from ``unravel_fn``'s dict of unconstrained sites.
        model: the NumPyro model, or ``None`` for a raw potential.
        for_data: ``(model_args, model_kwargs) -> Target`` of the same model conditioned on
            other data (the identity for a raw potential).
    """

    logdensity_fn: Callable[[Array], Array]
    dim: int
    unravel_fn: Callable[[Array], Any]
    postprocess_fn: Callable[[Array], dict]
    postprocess_sites: Callable[[Any], dict]
    model: Callable | None = None
    for_data: Callable[[tuple, dict], Target] | None = None

    def constrain(self, positions: Array) -> dict:
        """Map a batch of flat unconstrained positions ``(..., dim)`` to constrained sites."""
        positions = jnp.asarray(positions)
        batch_shape = positions.shape[:-1]
        flat = positions.reshape((-1, self.dim))
        samples = jax.vmap(self.postprocess_fn)(flat)
        return jax.tree.map(lambda v: v.reshape(batch_shape + v.shape[1:]), samples)

    def _site_shapes(self) -> list:
        """The latent sites' unconstrained shapes (leaves of ``unravel_fn``'s output) in
        ravel_pytree's order: the leaves in tree order, each raveled."""
        return jax.tree.leaves(jax.eval_shape(self.unravel_fn, jnp.zeros(self.dim)))

    def coordinate_sites(self) -> np.ndarray:
        """The index of the latent site (leaf of ``unravel_fn``'s output) each coordinate
        belongs to, in the flat vector's order."""
        return np.concatenate([np.full(leaf.size, i) for i, leaf in enumerate(self._site_shapes())])

    def site_rolls(self, max_rolls: int, max_length: int) -> np.ndarray:
        """Permutations of the flat vector, one row per shift k = 1 … K: row k rolls by k
        places, along its leading axis (the axis a ``numpyro.plate`` or an event dimension
        of exchangeable components indexes), every latent site whose leading axis has 2 to
        ``max_length`` entries, and leaves the other sites alone. K is the longest such axis
        less one, at most ``max_rolls``; without such a site there are no rows."""
        sites = self._site_shapes()

        def rolled(leaf):
            return leaf.ndim > 0 and 2 <= leaf.shape[0] <= max_length

        lengths = [leaf.shape[0] for leaf in sites if rolled(leaf)]
        num_rolls = min(max_rolls, max(lengths, default=1) - 1)
        rows = []
        for shift in range(1, num_rolls + 1):
            offset, row = 0, []
            for leaf in sites:
                index = np.arange(leaf.size).reshape(leaf.shape) + offset
                row.append((np.roll(index, shift, axis=0) if rolled(leaf) else index).ravel())
                offset += leaf.size
            rows.append(np.concatenate(row))
        return np.array(rows, dtype=int).reshape(num_rolls, self.dim)


class Symmetry(NamedTuple):
    """Random maps that leave a target invariant: if x ~ p and u ~ N(0, I) of size
    ``num_noise``, then ``apply(u, x) ~ p`` too. A target's symmetries (rotations, reflections,
    permutations of identical particles, drawn uniformly by ``u``) are such maps, and so is
    redrawing a part of x from its exact conditional. Pushing a generator's draws through them
    leaves only the non-symmetric part of the target for it to learn, and can only bring its
    draws closer to p. ``apply`` works on flat unconstrained vectors and must be
    differentiable in x; ``name`` identifies it in checkpoints."""

    name: str
    num_noise: int
    apply: Callable[[Array, Array], Array]


def _is_tracer(x) -> bool:
    return isinstance(x, jax.core.Tracer)


def check_model(
    model: Callable,
    model_args=(),
    model_kwargs=None,
    rng_key=None,
    init_strategy: Callable = init_to_uniform,
) -> dict:
    """Run the model once and reject what a continuous sampler cannot handle.

    Returns the model trace. Raises ``ValueError`` naming discrete latent sites, or saying the
    model has no latent sites, or re-raising (as ``ValueError``) an exception from the model.
    """
    model_kwargs = {} if model_kwargs is None else model_kwargs
    rng_key = jax.random.PRNGKey(0) if rng_key is None else rng_key
    if not is_prng_key(rng_key):
        # One key of a batch, typed (shape (n,)) or raw uint32 (shape (n, 2)).
        typed = jax.dtypes.issubdtype(rng_key.dtype, jax.dtypes.prng_key)
        rng_key = rng_key.reshape(-1)[0] if typed else rng_key.reshape((-1, rng_key.shape[-1]))[0]
    try:
        # Substituting initial values lets models with improper sites (ImproperUniform plus a
        # factor, the NumPyro idiom for a raw density) run.
        seeded = handlers.substitute(handlers.seed(model, rng_key), substitute_fn=init_strategy)
        trace = handlers.trace(seeded).get_trace(*model_args, **model_kwargs)
    except Exception as err:
        raise ValueError(
            f"Running the model raised {type(err).__name__}: {err}. "
            "Check the model arguments before sampling."
        ) from err
    latent = {
        name: site
        for name, site in trace.items()
        if site["type"] == "sample" and not site["is_observed"]
    }
    discrete = sorted(name for name, site in latent.items() if site["fn"].support.is_discrete)
    if discrete:
        raise ValueError(
            f"Discrete latent sites {discrete} are not supported: diffusion samplers move in a "
            "continuous space. Marginalise them out (e.g. a mixture distribution) or observe them."
        )
    if not latent:
        raise ValueError("The model has no latent sample sites: there is nothing to sample.")
    return trace


def _flatten_positions(params) -> tuple[Array, Callable]:
    """Ravel a (possibly batched over leading axis) dict of site values."""
    single = jax.tree.map(lambda v: v[0], params)
    _, unravel_fn = ravel_pytree(single)
    flat = jax.vmap(lambda p: ravel_pytree(p)[0])(params)
    return flat, unravel_fn


def make_target(
    rng_key: Array,
    model: Callable | None = None,
    potential_fn: Callable | None = None,
    init_params=None,
    model_args: tuple = (),
    model_kwargs: dict | None = None,
    init_strategy: Callable = init_to_uniform,
) -> tuple[Target, Array]:
    """Build the flat target and initial positions.

    Args:
        rng_key: one PRNG key, or a batch of keys (one per chain) for vectorized chains.
        model: a NumPyro model. Exactly one of ``model`` and ``potential_fn`` is given.
        potential_fn: ``params -> potential energy`` (minus the log density) over a pytree.
        init_params: unconstrained initial values (a pytree, or a flat array); required with
            ``potential_fn``. Leading batch axis matches ``rng_key``'s when batched.
        model_args, model_kwargs: arguments of the model.
        init_strategy: NumPyro initialisation strategy when ``init_params`` is not given.

    Returns:
        ``(target, positions)`` where positions has shape ``batch + (dim,)`` with ``batch`` the
        batch shape of ``rng_key``.
    """
    if (model is None) == (potential_fn is None):
        raise ValueError("Give exactly one of `model` or `potential_fn`.")
    model_kwargs = {} if model_kwargs is None else model_kwargs
    batched = not is_prng_key(rng_key)

    if model is not None:
        if not _is_tracer(rng_key):
            check_model(model, model_args, model_kwargs, rng_key, init_strategy)
        try:
            info = initialize_model(
                rng_key,
                model,
                init_strategy=init_strategy,
                dynamic_args=True,
                model_args=model_args,
                model_kwargs=model_kwargs,
            )
        except RuntimeError as err:
            if "Cannot find valid initial parameters" not in str(err):
                raise
            raise ValueError(
                "The log density or its gradient is not finite at any initial position the "
                "init strategy tried: the model is undefined there (check its support, "
                "constraints and data); pass finite `init_params` or another `init_strategy`."
            ) from err
        params = info.param_info.z if init_params is None else init_params
    elif init_params is None:
        raise ValueError("`init_params` must be given with `potential_fn`.")
    else:
        params = init_params

    if not batched:
        params = jax.tree.map(lambda v: jnp.asarray(v)[None], params)
    flat, unravel_fn = _flatten_positions(params)
    if not batched:
        flat = flat[0]

    def for_data(model_args: tuple, model_kwargs: dict) -> Target:
        # NumPyro's potential and postprocess functions are generators over the model's
        # arguments, so a new data set (e.g. under `jit_model_args`) needs no new trace.
        if model is None:
            potential, model_postprocess = potential_fn, None
        else:
            potential = info.potential_fn(*model_args, **model_kwargs)
            model_postprocess = info.postprocess_fn(*model_args, **model_kwargs)

        def logdensity_fn(x):
            return -potential(unravel_fn(x))

        def postprocess_fn(x):
            return model_postprocess(unravel_fn(x))

        return Target(
            logdensity_fn,
            int(flat.shape[-1]),
            unravel_fn,
            unravel_fn if model_postprocess is None else postprocess_fn,
            identity if model_postprocess is None else model_postprocess,
            model,
            for_data,
        )

    target = for_data(model_args, model_kwargs)
    if not _is_tracer(flat):
        check_initial_density(target, flat)
    return target, flat


def check_initial_density(target: Target, positions: Array) -> None:
    """Raise ``ValueError`` if the log density or its gradient is non-finite at a start point."""
    flat = jnp.reshape(positions, (-1, target.dim))
    values, grads = jax.vmap(jax.value_and_grad(target.logdensity_fn))(flat)
    bad = ~(jnp.isfinite(values) & jnp.all(jnp.isfinite(grads), axis=-1))
    if bool(jnp.any(bad)):
        index = int(np.flatnonzero(np.asarray(bad))[0])
        raise ValueError(
            "The log density or its gradient is not finite at the initial position "
            f"{np.asarray(flat[index])} (log density {float(values[index])}). "
            "Pass finite `init_params` or choose another `init_strategy`."
        )
