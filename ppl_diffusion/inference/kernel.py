"""The template every NumPyro kernel of this package is built on.

An algorithm supplies a functional core in BlackJAX's shape: a state with a ``position`` (and,
where it has one, the target's ``logdensity_grad`` there) and a transition
``step(rng_key, core_state, logdensity_fn, step_sizes, parameters) -> (core_state, info)``,
where ``parameters`` are whatever else of the algorithm warmup tunes (DiGS's noise ladder).
The template owns everything the kernels would otherwise repeat:

- building the flat unconstrained target from the model (:mod:`ppl_diffusion.target`) and
  batching chains for ``chain_method="vectorized"``, with centred hierarchical normal sites
  first partially non-centred as far as the data allow (:mod:`ppl_diffusion.reparam`);
- key splitting, the iteration counter, and the running tally of rejected non-finite proposals
  (with a warning at 10, 100, 1000, … that costs nothing per iteration);
- Stan-style warmup (:class:`WarmupAdaptation`): dual averaging of every step size the core
  uses, and a diagonal or dense metric estimated in doubling windows and, when chains run
  vectorized, pooled across them. The core always runs in the *whitened* coordinates
  u = L⁻¹(x − m) of the current metric estimate (m, LLᵀ), so its step sizes and noise levels
  are in units of posterior standard deviations whatever the model's scale. Everything is
  frozen after warmup, so sampling uses one fixed, valid kernel.
"""

from __future__ import annotations

import copy
import warnings
from abc import abstractmethod
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from blackjax.adaptation.mass_matrix import MassMatrixAdaptationState, mass_matrix_adaptation
from blackjax.adaptation.step_size import DualAveragingAdaptationState, dual_averaging_adaptation
from blackjax.adaptation.window_adaptation import build_schedule
from jax.custom_batching import custom_vmap
from numpyro.infer.initialization import init_to_uniform
from numpyro.infer.mcmc import MCMCKernel
from numpyro.util import identity, is_prng_key

from ppl_diffusion.reparam import (
    choose_centering,
    hidden_site_names,
    hierarchical_normal_sites,
    reparameterize,
)
from ppl_diffusion.target import Target, make_target

Array = jax.Array

CHAIN_AXIS = "chains"
"""vmap axis name of vectorized chains: warmup statistics are pooled over it."""


# ----------------------------------------------------------------------------------- whitening
class Whitening(NamedTuple):
    """The affine map u = L⁻¹(x − m) from the target's coordinates to whitened ones.

    ``scale`` is L: a vector of standard deviations (diagonal metric) or a lower-triangular
    Cholesky factor of the covariance (dense metric); ``inverse_scale`` is its inverse.
    """

    mean: Array
    scale: Array
    inverse_scale: Array

    @classmethod
    def identity(cls, dim: int, dense: bool, dtype) -> Whitening:
        scale = jnp.eye(dim, dtype=dtype) if dense else jnp.ones(dim, dtype)
        return cls(jnp.zeros(dim, dtype), scale, scale)

    @classmethod
    def from_covariance(cls, mean: Array, covariance: Array) -> Whitening:
        if covariance.ndim == 1:
            scale = jnp.sqrt(covariance)
            return cls(mean, scale, 1.0 / scale)
        scale = jnp.linalg.cholesky(covariance)
        eye = jnp.eye(covariance.shape[0], dtype=covariance.dtype)
        return cls(mean, scale, jax.scipy.linalg.solve_triangular(scale, eye, lower=True))

    def _apply(self, matrix: Array, v: Array) -> Array:
        # v may carry leading batch axes (parallel tempering's replicas).
        return matrix * v if matrix.ndim == 1 else v @ matrix.T

    def to_white(self, x: Array) -> Array:
        return self._apply(self.inverse_scale, x - self.mean)

    def from_white(self, u: Array) -> Array:
        return self.mean + self._apply(self.scale, u)

    def gradient_to_white(self, grad_x: Array) -> Array:
        # ∇_u log p(m + Lu) = Lᵀ ∇_x log p
        return self.scale * grad_x if self.scale.ndim == 1 else grad_x @ self.scale

    def gradient_from_white(self, grad_u: Array) -> Array:
        return self.inverse_scale * grad_u if self.scale.ndim == 1 else grad_u @ self.inverse_scale

    def logdensity(self, logdensity_fn: Callable) -> Callable:
        """log p in whitened coordinates; the Jacobian |L| is a constant and is dropped."""
        return lambda u: logdensity_fn(self.from_white(u))

    def map_state(self, core_state, to_white: bool):
        """A core state's position (and gradient, if it carries one) in the other coordinates."""
        position_map = self.to_white if to_white else self.from_white
        grad_map = self.gradient_to_white if to_white else self.gradient_from_white
        fields = {"position": position_map(core_state.position)}
        if hasattr(core_state, "logdensity_grad"):
            fields["logdensity_grad"] = grad_map(core_state.logdensity_grad)
        return core_state._replace(**fields)


# ----------------------------------------------------------------------------------- warmup
class WarmupState(NamedTuple):
    step_size: Array
    """The core's step sizes (one per noise level, temperature or local move)."""
    dual_averaging: DualAveragingAdaptationState
    metric: MassMatrixAdaptationState
    whitening: Whitening
    parameters: Any
    """The algorithm's other tuned parameters, the same for every chain when pooled."""
    statistics: Any
    """What the algorithm's tuning collects per chain during warmup."""


class WarmupPhase(NamedTuple):
    """Where an iteration stands in the warmup schedule."""

    iteration: Array
    num_warmup: int
    collecting: Array
    """In a slow window, where the metric is being estimated."""
    window_end: Array
    """The last iteration of a slow window."""


class WarmupAdaptation:
    """Stan's windowed warmup for a vector of step sizes and a (pooled) metric.

    The schedule (BlackJAX's ``build_schedule``) is a fast window that reaches the typical
    set with the step sizes alone, slow windows of doubling length that each estimate the
    metric from the chain's positions (Welford, regularised as in Stan, BlackJAX's
    ``mass_matrix_adaptation``), and a final fast window. At the end of each slow window the
    new metric replaces the whitening and dual averaging restarts from the current step sizes.
    With ``pooled`` (vectorized chains) each chain's within-chain mean and covariance are
    averaged over chains: within-chain rather than total variance, so chains sitting in
    different modes do not inflate the metric to the distance between modes.
    """

    def __init__(
        self,
        num_warmup: int,
        target_accept_probs: np.ndarray,
        adapted: np.ndarray,
        adapt_step_size: bool,
        adapt_metric: bool,
        dense: bool,
        pooled: bool,
    ):
        self.num_warmup = int(num_warmup)
        self.adapted = jnp.asarray(np.asarray(adapted, bool) & adapt_step_size)
        self.adapt_metric = adapt_metric
        self.dense = dense
        self.pooled = pooled
        # NumPyro may call `init` while tracing (sequential and parallel chains).
        with jax.ensure_compile_time_eval():
            schedule = np.asarray(build_schedule(self.num_warmup) if self.num_warmup else [])
        schedule = schedule.reshape(-1, 2)
        # Index i of these arrays describes warmup iteration i (padded for sampling iterations).
        self._slow = jnp.asarray(np.r_[schedule[:, 0] == 1, False])
        self._window_end = jnp.asarray(np.r_[schedule[:, 1] == 1, False])
        # Dual averaging steers by (target − acceptance) alone, so one scheme built for the
        # first target serves every step size once each acceptance is shifted by its offset.
        targets = np.asarray(target_accept_probs, float)
        reference = float(targets[0]) if targets.size else 0.5
        self._da = dual_averaging_adaptation(reference)
        self._target_offset = jnp.asarray(reference - targets)
        self._metric = mass_matrix_adaptation(is_diagonal_matrix=not dense)

    def init(self, step_sizes: Array, dim: int, dtype, parameters, statistics) -> WarmupState:
        return WarmupState(
            step_sizes,
            jax.vmap(self._da[0])(step_sizes),
            self._metric[0](dim),
            Whitening.identity(dim, self.dense, dtype),
            parameters,
            statistics,
        )

    def pool_mean(self, value: Array) -> Array:
        """The mean over chains when they are pooled, else ``value``."""
        return jax.lax.pmean(value, CHAIN_AXIS) if self.pooled else value

    def pool_max(self, value: Array) -> Array:
        """The maximum over chains when they are pooled, else ``value``."""
        return jax.lax.pmax(value, CHAIN_AXIS) if self.pooled else value

    def gather(self, value: Array) -> Array:
        """Every pooled chain's ``value``, stacked on a new leading axis (just this chain's
        when not pooled)."""
        return jax.lax.all_gather(value, CHAIN_AXIS) if self.pooled else value[None]

    def alone(self) -> WarmupAdaptation:
        """This adaptation as one chain sees it with no other chains to pool with."""
        alone = copy.copy(self)
        alone.pooled = False
        return alone

    def agreed(self, tree):
        """Values every pooled chain holds alike, as one unbatched value: a ``cond`` on them
        then really skips its other branch instead of computing both for the batch."""
        return jax.tree.map(self.pool_max, tree) if self.pooled else tree

    def update(
        self,
        state: WarmupState,
        iteration: Array,
        position: Array,
        acceptance: Array,
        info,
        tune: Callable,
    ) -> WarmupState:
        """The warmup state after an iteration that ended at ``position`` (target
        coordinates) with per-step-size ``acceptance`` and the core's ``info``; ``tune`` is
        the algorithm's hook for its own parameters. After warmup, the state as it is, at
        no cost: chains step together, so they agree on the phase and the ``cond`` skips
        the adaptation (DiGS's anchor-width search alone would cost more than a cheap
        model's NUTS transition)."""
        in_warmup = iteration < self.num_warmup
        return jax.lax.cond(
            self.agreed(in_warmup),
            lambda: self._adapt(state, iteration, position, acceptance, info, tune),
            lambda: state,
        )

    def _adapt(self, state, iteration, position, acceptance, info, tune) -> WarmupState:
        in_warmup = iteration < self.num_warmup
        index = jnp.minimum(iteration, self.num_warmup)
        phase = WarmupPhase(iteration, self.num_warmup, self._slow[index], self._window_end[index])
        parameters, statistics = tune(
            state.parameters, state.statistics, info, position, state.whitening, phase, self
        )
        da_init, da_update, da_final = (jax.vmap(f) for f in self._da)
        dual_averaging = da_update(state.dual_averaging, acceptance + self._target_offset)
        step_size = jnp.where(self.adapted, jnp.exp(dual_averaging.log_step_size), state.step_size)
        metric, whitening = state.metric, state.whitening
        if self.adapt_metric:
            collecting = self._slow[index]
            updated = self._metric[1](metric, position)
            metric = jax.tree.map(lambda new, old: jnp.where(collecting, new, old), updated, metric)

            def close_window(args):
                metric, dual_averaging, step_size = args
                mean = self.pool_mean(metric.wc_state.mean)
                metric = self._metric[2](metric)
                covariance = self.pool_mean(metric.inverse_mass_matrix)
                metric = metric._replace(inverse_mass_matrix=covariance)
                dtype = state.whitening.mean.dtype
                whitening = Whitening.from_covariance(mean.astype(dtype), covariance.astype(dtype))
                final = jnp.where(self.adapted, da_final(dual_averaging), step_size)
                return metric, da_init(final), final, whitening

            def keep(args):
                return (*args, whitening)

            metric, dual_averaging, step_size, whitening = jax.lax.cond(
                self._window_end[index], close_window, keep, (metric, dual_averaging, step_size)
            )
        last = iteration == self.num_warmup - 1
        step_size = jnp.where(last & self.adapted, da_final(dual_averaging), step_size)
        new = WarmupState(step_size, dual_averaging, metric, whitening, parameters, statistics)
        # Redundant under `update`'s cond as this package drives it, but a caller that vmaps
        # an unpooled kernel turns that cond into a select that runs this branch after warmup.
        return jax.tree.map(lambda n, o: jnp.where(in_warmup, n, o), new, state)


# ----------------------------------------------------------------------------- non-finite tally
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


def host_alarm(warn: Callable[[Array], None]) -> Callable[[Array, Array], Array]:
    """``alarm(condition, value)``: ``warn(value)`` on the host where ``condition`` holds.

    Under vmap a ``cond`` with a batched predicate runs both branches, i.e. a host callback
    per chain and iteration. The batching rule reduces over chains first and keeps one real
    branch: at most one callback per call, with the largest ``value`` among the chains where
    the condition holds, and only when it holds for some chain.
    """

    @custom_vmap
    def alarm(condition, value):
        jax.lax.cond(condition, lambda: jax.debug.callback(warn, value), lambda: None)
        return condition

    @alarm.def_vmap
    def alarm_batched(axis_size, in_batched, condition, value):
        condition, value = (
            x if batched else jnp.broadcast_to(x, (axis_size,) + jnp.shape(x))
            for x, batched in zip((condition, value), in_batched, strict=True)
        )
        worst = jnp.argmax(jnp.where(condition, value, -1))
        fired = alarm(jnp.any(condition), value[worst])
        return jnp.broadcast_to(fired, (axis_size,)), True

    return alarm


_nonfinite_alarm = host_alarm(_warn_nonfinite)


NONFINITE_WARNING_RATE = 0.05
"""Share of the gradient evaluations lost to non-finite proposals below which a count
crossing a threshold stays silent. Each rejected proposal cost one evaluation, so this is the
share of the chain's work wasted: a few far jumps landing where an exp link overflows (common
in float32) waste almost nothing, while a model undefined inside its support wastes much."""


def tally_nonfinite(total: Array, new: Array, num_grad_evals: Array) -> Array:
    """Add this iteration's rejected non-finite proposals to a chain's running count, warning
    (``RuntimeWarning``) when the count reaches 10, 100, 1000, … while it exceeds 5% of the
    ``num_grad_evals`` spent over the same iterations."""
    updated = total + new
    thresholds = jnp.asarray(NONFINITE_WARNING_COUNTS)
    crossed = jnp.any((total < thresholds) & (updated >= thresholds))
    _nonfinite_alarm(crossed & (updated > NONFINITE_WARNING_RATE * num_grad_evals), updated)
    return updated


# ------------------------------------------------------------------------------- the kernel
EXTRA_STATE_FIELDS = ("diverging", "potential_energy", "step_size")


class KernelState(NamedTuple):
    """The state NumPyro carries for one chain of any kernel of this package.

    Besides its fields, every field of the last transition's ``info`` (the algorithm's
    diagnostics, e.g. ``num_grad_evals``) reads as an attribute, so NumPyro's
    ``extra_fields`` can name it directly.
    """

    i: Array
    z: Any
    """Unconstrained position as NumPyro's HMC holds it: a dict of latent sites for a model
    (so ``print_summary`` can leave deterministic sites out), the structure of ``init_params``
    for a potential. ``postprocess_fn`` maps it to constrained and deterministic sites."""
    potential_energy: Array
    """Minus the log density at ``z`` (NaN for a kernel that never evaluates it)."""
    core: Any
    """The algorithm's own state, in the target's (not whitened) coordinates."""
    info: Any
    warmup: WarmupState
    total_nonfinite: Array
    """Running count of rejected non-finite proposals after warmup (warns at 10, 100, … when
    that is over 5% of the gradient evaluations)."""
    total_grad_evals: Array
    """Running count of gradient evaluations after warmup."""
    rng_key: Array

    @property
    def step_size(self) -> Array:
        return self.warmup.step_size

    @property
    def diverging(self) -> Array:
        """Whether the iteration's NUTS move diverged (always False without one), so that
        NumPyro's default ``diverging`` field and ``print_summary`` work for every kernel."""
        # Shaped like the iteration counter: one flag per chain when chains are batched.
        return getattr(self.info, "diverging", jnp.zeros(jnp.shape(self.i), bool))

    def __getattr__(self, name):
        info = self.info
        if name.startswith("_") or not hasattr(info, name):
            raise AttributeError(
                f"{type(info).__name__} has no field {name!r}; extra fields available: "
                f"{sorted(EXTRA_STATE_FIELDS + tuple(getattr(info, '_fields', ())))}."
            )
        return getattr(info, name)


class AdaptiveKernel(MCMCKernel):
    """A NumPyro kernel over a flat unconstrained target with Stan-style adaptive warmup.

    Subclasses implement :meth:`core_init`, :meth:`core_step` and :meth:`initial_step_sizes`
    (and may override :meth:`adaptation_signal` and :meth:`returned_position`); the class
    handles chains, keys, warmup and bookkeeping.
    """

    sample_field = "z"
    default_fields = ("z", "diverging")

    def __init__(
        self,
        model: Callable | None = None,
        potential_fn: Callable | None = None,
        init_strategy: Callable = init_to_uniform,
        adapt_step_size: bool = True,
        adapt_metric: bool = True,
        dense_mass: bool = False,
        target_accept_prob: float = 0.8,
        step_size: float = 1.0,
        auto_reparam: bool = True,
    ):
        if (model is None) == (potential_fn is None):
            raise ValueError("Give exactly one of `model` or `potential_fn`.")
        if not step_size > 0:
            raise ValueError(f"`step_size` must be positive, got {step_size}.")
        if not 0 < target_accept_prob < 1:
            raise ValueError(f"`target_accept_prob` must lie in (0, 1), got {target_accept_prob}.")
        self._model = model
        self._potential_fn = potential_fn
        self._init_strategy = init_strategy
        self.adapt_step_size = bool(adapt_step_size)
        self.adapt_metric = bool(adapt_metric)
        self.dense_mass = bool(dense_mass)
        self.target_accept_prob = float(target_accept_prob)
        self.step_size = float(step_size)
        """The step size the core's moves start from (whitened units)."""
        self._target: Target | None = None
        self._warmup: WarmupAdaptation | None = None
        self._batched = False
        self.auto_reparam = bool(auto_reparam)
        self._centering: dict[str, np.ndarray] | None = None

    @property
    def model(self):
        return self._model

    @property
    def centering(self) -> dict[str, np.ndarray]:
        """Per hierarchical normal site, the centredness of each element the sampler runs at
        (:mod:`ppl_diffusion.reparam`; 1 is the model as written), chosen at the first ``init``
        and kept for later runs; empty before it, without ``auto_reparam`` or when the model
        has no such site."""
        return {} if self._centering is None else self._centering

    def _model_to_sample(
        self, init_params, model_args: tuple, model_kwargs: dict
    ) -> Callable | None:
        data = jax.tree.leaves((model_args, model_kwargs))
        # `init_params` are in the coordinates of the model as written; a pilot needs the
        # data's values, which a caller tracing the data does not have.
        if (
            self._model is None
            or not self.auto_reparam
            or init_params is not None
            or any(isinstance(leaf, jax.core.Tracer) for leaf in data)
        ):
            return self._model
        if self._centering is None:
            # Chosen once per kernel, from the model alone (a fixed pilot key), so every
            # chain, however NumPyro maps them, samples the same parameterisation.
            with jax.ensure_compile_time_eval():
                centering = {}
                sites = hierarchical_normal_sites(self._model, model_args, model_kwargs)
                if sites:
                    # A model the sampler cannot start on gets make_target's errors, not the
                    # pilot's.
                    make_target(
                        jax.random.PRNGKey(0),
                        model=self._model,
                        model_args=model_args,
                        model_kwargs=model_kwargs,
                        init_strategy=self._init_strategy,
                    )
                    centering = choose_centering(
                        jax.random.PRNGKey(0),
                        self._model,
                        sites,
                        model_args,
                        model_kwargs,
                        self._init_strategy,
                    )
            self._centering = centering
        return reparameterize(self._model, self._centering)

    @property
    def target(self) -> Target | None:
        """The flat :class:`~ppl_diffusion.target.Target` built at ``init``."""
        return self._target

    # ----------------------------------------------------------------- what an algorithm gives
    @abstractmethod
    def core_init(self, position: Array, logdensity_fn: Callable):
        """The core state at ``position`` (whitened coordinates)."""

    @abstractmethod
    def core_step(
        self, rng_key: Array, core_state, logdensity_fn: Callable, step_sizes: Array, parameters
    ):
        """One transition in whitened coordinates: ``(core_state, info)``. ``info`` is a
        NamedTuple with at least ``num_nonfinite`` and ``num_grad_evals``."""

    @abstractmethod
    def initial_step_sizes(self, dtype) -> Array:
        """Step sizes the core starts from (whitened units)."""

    def adapted_step_sizes(self) -> np.ndarray:
        """Which step sizes warmup adapts (those whose moves run)."""
        return np.ones(np.shape(self.initial_step_sizes(jnp.float32)), bool)

    def step_size_targets(self) -> np.ndarray:
        """Per step size, the acceptance probability dual averaging aims at."""
        return np.full(np.shape(self.adapted_step_sizes()), self.target_accept_prob)

    def adaptation_signal(self, info) -> Array:
        """Per step size, the acceptance probability dual averaging steers."""
        return info.acceptance

    def returned_position(self, core_state) -> Array:
        return core_state.position

    def returned_potential_energy(self, core_state) -> Array:
        logdensity = getattr(core_state, "logdensity", None)
        if logdensity is None:
            return jnp.full((), jnp.nan, core_state.position.dtype)
        return -logdensity

    def check_target(self, target: Target) -> None:
        """Called once the target is built: raise or warn about a configuration that does
        not suit it."""

    def initial_tuning(self, dim: int, dtype) -> tuple:
        """``(parameters, statistics)`` the algorithm tunes in warmup beyond step sizes and
        metric; none by default."""
        return (), ()

    def tune(
        self,
        parameters,
        statistics,
        info,
        position: Array,
        whitening: Whitening,
        phase: WarmupPhase,
        pool: WarmupAdaptation,
    ):
        """``(parameters, statistics)`` after a warmup iteration that ended at ``position``
        (target coordinates; ``whitening`` is the metric it ran in). ``pool`` has
        ``pool_mean``, ``pool_max`` and ``gather`` over chains. Parameters must end equal
        across pooled chains."""
        return parameters, statistics

    def step_parameters(self, warmup: WarmupState, pool: WarmupAdaptation):
        """What :meth:`core_step` gets as ``parameters``: by default the tuned parameters,
        as one value that every pooled chain holds alike."""
        return pool.agreed(warmup.parameters)

    # ----------------------------------------------------------------------------- template
    def init(self, rng_key, num_warmup, init_params, model_args, model_kwargs):
        batched = not is_prng_key(rng_key)
        if batched:
            keys = jax.vmap(jax.random.split)(rng_key)
            rng_key, key_init = keys[:, 0], keys[:, 1]
        else:
            rng_key, key_init = jax.random.split(rng_key)
        self._target, positions = make_target(
            key_init,
            model=self._model_to_sample(init_params, model_args, model_kwargs),
            potential_fn=self._potential_fn,
            init_params=init_params,
            model_args=model_args,
            model_kwargs=model_kwargs,
            init_strategy=self._init_strategy,
        )
        self._warmup = WarmupAdaptation(
            num_warmup,
            self.step_size_targets(),
            self.adapted_step_sizes(),
            self.adapt_step_size,
            self.adapt_metric,
            self.dense_mass,
            pooled=batched,
        )
        self._batched = batched
        self.check_target(self._target)
        if batched:
            return jax.vmap(self._init_one)(positions, rng_key)
        return self._init_one(positions, rng_key)

    def _init_one(self, position: Array, rng_key: Array) -> KernelState:
        dtype = position.dtype
        dim = position.shape[-1]
        warmup = self._warmup.init(
            self.initial_step_sizes(dtype), dim, dtype, *self.initial_tuning(dim, dtype)
        )
        logdensity_fn = warmup.whitening.logdensity(self._target.logdensity_fn)
        core = self.core_init(warmup.whitening.to_white(position), logdensity_fn)
        # The info of a transition not yet taken: zeros of the right shapes, so the state's
        # structure (and NumPyro's extra fields) is the same before and after the first step.
        parameters = self.step_parameters(warmup, self._warmup.alone())
        info_shape = jax.eval_shape(
            lambda: self.core_step(rng_key, core, logdensity_fn, warmup.step_size, parameters)[1]
        )
        info = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), info_shape)
        core = warmup.whitening.map_state(core, to_white=False)
        return KernelState(
            i=jnp.array(0),
            z=self._target.unravel_fn(self.returned_position(core)),
            potential_energy=self.returned_potential_energy(core),
            core=core,
            info=info,
            warmup=warmup,
            total_nonfinite=jnp.array(0),
            total_grad_evals=jnp.array(0),
            rng_key=rng_key,
        )

    def _sample_one(self, state: KernelState, logdensity_fn: Callable) -> KernelState:
        rng_key, key_step = jax.random.split(state.rng_key)
        whitening = state.warmup.whitening
        core = whitening.map_state(state.core, to_white=True)
        core, info = self.core_step(
            key_step,
            core,
            whitening.logdensity(logdensity_fn),
            state.step_size,
            self.step_parameters(state.warmup, self._warmup),
        )
        core = whitening.map_state(core, to_white=False)
        position = self.returned_position(core)
        warmup = self._warmup.update(
            state.warmup, state.i, position, self.adaptation_signal(info), info, self.tune
        )
        # Far jumps before the metric is known may land where the model overflows; only
        # the sampling phase's rejections are wasted work worth a warning.
        sampling = state.i >= self._warmup.num_warmup
        total_grad_evals = state.total_grad_evals + jnp.where(sampling, info.num_grad_evals, 0)
        return KernelState(
            i=state.i + 1,
            z=self._target.unravel_fn(position),
            potential_energy=self.returned_potential_energy(core),
            core=core,
            info=info,
            warmup=warmup,
            total_nonfinite=tally_nonfinite(
                state.total_nonfinite,
                jnp.where(sampling, info.num_nonfinite, 0),
                total_grad_evals,
            ),
            total_grad_evals=total_grad_evals,
            rng_key=rng_key,
        )

    def sample(self, state, model_args, model_kwargs):
        if self._target is None:
            raise RuntimeError("`init` must be called before `sample`.")
        # The log density comes from this call's arguments, as in NumPyro's HMC: with
        # `jit_model_args=True` a second `MCMC.run` passes new data to the same program.
        logdensity_fn = self._target.for_data(model_args, model_kwargs).logdensity_fn
        if self._batched:
            return jax.vmap(lambda s: self._sample_one(s, logdensity_fn), axis_name=CHAIN_AXIS)(
                state
            )
        return self._sample_one(state, logdensity_fn)

    def postprocess_fn(self, model_args, model_kwargs):
        if self._target is None:
            return identity
        postprocess = self._target.for_data(model_args, model_kwargs).postprocess_sites
        hidden = hidden_site_names(self.centering)
        if not hidden:
            return postprocess
        return lambda z: {k: v for k, v in postprocess(z).items() if k not in hidden}

    def get_diagnostics_str(self, state):
        return "step size " + " ".join(
            f"{s:.2e}" for s in np.atleast_1d(np.asarray(state.step_size))
        )


def nuts_accept_prob(nuts_info) -> Array:
    """A BlackJAX NUTS transition's mean acceptance, with NaN (no finite point on the
    trajectory) counted as 0. The mean may round a hair above 1; what is reported as
    ``accept_prob`` is clipped, what dual averaging steers by is not."""
    return jnp.nan_to_num(nuts_info.acceptance_rate)


def format_per_level(name: str, values) -> str:
    """``name [a b c]`` with two decimals, for progress-bar diagnostics."""
    return f"{name} [" + " ".join(f"{v:.2f}" for v in np.atleast_1d(np.asarray(values))) + "]"
