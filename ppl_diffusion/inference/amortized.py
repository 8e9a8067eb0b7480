"""Amortized diffusion samplers: a one-step generator x = g_θ(z), z ~ N(0, I), trained on an
unnormalised target density so that afterwards a million samples cost one batched call.

Both objectives compare generator and target after convolving each with Gaussian noise, where
the target's noisy score ∇log p_t(x_t) can be estimated by sampling the denoising posterior
p(x₀ | x_t) (:func:`~ppl_diffusion.inference.denoising.estimate_denoising_posterior`, the same
machinery DiGS uses) and the mixed score identity.

- ``objective="dikl"`` (diffusive KL): Σ_t w(t) KL(q_t ‖ p_t) on a VP schedule. Its gradient
  needs the generator's noisy score too, which a score network learns by denoising score
  matching on generator samples, several steps per generator step.
- ``objective="vardiu"``: a variational upper bound of the same divergence on VE noise, with an
  encoder q_φ(z | x_t, σ) in place of the generator's score; generator and encoder minimise one
  loss, with no inner loop.

The training core is two pure, jitted steps in the optax/equinox style,
``dikl_step`` / ``vardiu_step(state, key, config) -> (state, metrics)``, over a NamedTuple of
networks and optimiser states and a config whose settings are static, so one compiled step
serves every :meth:`DiffusiveSampler.fit` call with the same settings.

Everything happens in NumPyro's unconstrained space (:mod:`ppl_diffusion.target`), so
constrained models work, and :meth:`DiffusiveSampler.sample` returns constrained sites.
"""

from __future__ import annotations

import functools
import json
import math
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding, PartitionSpec
from tqdm.auto import tqdm

from ppl_diffusion.inference.denoising import (
    denoising_score,
    estimate_denoising_posterior,
    mixed_score,
)
from ppl_diffusion.inference.optim import apply_optimizer, make_optimizer
from ppl_diffusion.parallel import chain_mesh
from ppl_diffusion.target import Symmetry, make_target

Array = jax.Array

OBJECTIVES = ("dikl", "vardiu")


class ConditionalMLP(eqx.Module):
    """An MLP on the concatenation of its input and a noise-level feature."""

    mlp: eqx.nn.MLP

    def __init__(self, in_size, out_size, width, depth, key):
        self.mlp = eqx.nn.MLP(in_size + 1, out_size, width, depth, activation=jax.nn.silu, key=key)

    def __call__(self, x, level_feature):
        return self.mlp(jnp.concatenate([x, jnp.atleast_1d(level_feature)]))


class Generator(eqx.Module):
    """x = output_scale · (z + MLP(z)) (``skip``) or output_scale · MLP(z), then, with a
    ``symmetry``, that map applied with the last ``symmetry.num_noise`` latent coordinates as
    its noise. With ``fourier_features`` > 0 the MLP also sees sin(Fz) and cos(Fz) for a fixed
    F ~ N(0, fourier_scale² I) of that many rows.

    The skip term makes the untrained generator N(0, output_scale² I) (z cut or zero-padded
    to the target's dimension): spread over the target's scale from the first step. Without
    it a freshly initialised MLP maps every z to nearly one point (spread about 2% of
    ``output_scale``), and a mode-seeking objective can pull that point into whichever mode is
    nearest before the noisy levels spread it.

    A plain MLP learns a map that varies slowly over the latent first, and putting mass in
    many narrow modes means cutting the latent Gaussian into as many small cells. The Fourier
    features vary on a fraction of the latent's unit scale from the start.
    """

    mlp: eqx.nn.MLP
    frequencies: Array
    output_scale: float = eqx.field(static=True)
    symmetry: Symmetry | None = eqx.field(static=True)
    skip: bool = eqx.field(static=True)

    def __init__(
        self,
        latent_dim,
        dim,
        width,
        depth,
        output_scale,
        key,
        symmetry=None,
        skip=True,
        fourier_features=0,
        fourier_scale=2.0,
    ):
        self.frequencies = fourier_scale * jax.random.normal(
            jax.random.fold_in(key, 1), (fourier_features, latent_dim)
        )
        self.mlp = eqx.nn.MLP(
            latent_dim + 2 * fourier_features, dim, width, depth, activation=jax.nn.silu, key=key
        )
        self.output_scale = output_scale
        self.symmetry = symmetry
        self.skip = skip

    @property
    def latent_size(self) -> int:
        """Length of the z the generator takes, the symmetry's noise included."""
        latent_dim = self.frequencies.shape[1]
        return latent_dim + (0 if self.symmetry is None else self.symmetry.num_noise)

    def __call__(self, z):
        latent = z[: self.frequencies.shape[1]]
        # Fixed features: training moves the MLP, not the projections.
        projected = jax.lax.stop_gradient(self.frequencies) @ latent
        x = self.mlp(jnp.concatenate([latent, jnp.sin(projected), jnp.cos(projected)]))
        if self.skip:
            x = x.at[: min(x.shape[0], latent.shape[0])].add(latent[: x.shape[0]])
        x = self.output_scale * x
        if self.symmetry is None:
            return x
        return self.symmetry.apply(z[latent.shape[0] :], x)


class Encoder(eqx.Module):
    """Gaussian q_φ(z | x_t, σ): mean and a standard deviation σ·softplus(·), which shrinks with
    the noise the way the true posterior over z does."""

    net: ConditionalMLP
    latent_dim: int = eqx.field(static=True)

    def __init__(self, dim, latent_dim, width, depth, key):
        self.net = ConditionalMLP(dim, 2 * latent_dim, width, depth, key)
        self.latent_dim = latent_dim

    def log_prob(self, z, noisy, sigma, sigma_max):
        out = self.net(noisy, jnp.log(sigma / sigma_max))
        mean, raw_scale = out[: self.latent_dim], out[self.latent_dim :]
        scale = sigma * jax.nn.softplus(raw_scale) + 1e-4
        return jnp.sum(jax.scipy.stats.norm.logpdf(z, mean, scale))


class NoisyTargetScore(eqx.Module):
    """The target's noisy score ∇log p_t(x_t), estimated row by row by sampling the denoising
    posterior and applying the mixed score identity. All settings are static. ``draws`` (the
    sampler's current clean draws) set the posterior sampling's Gaussian reference: their
    mean and ``reference_width`` times their standard deviation; without them, or with
    ``reference_width=None``, it starts flat."""

    logdensity_fn: Callable = eqx.field(static=True)
    num_particles: int = eqx.field(static=True)
    num_bridges: int = eqx.field(static=True)
    num_mala_steps: int = eqx.field(static=True)
    max_step_size: float = eqx.field(static=True)
    reference_width: float | None = eqx.field(static=True, default=None)

    def __call__(
        self, key: Array, noisy: Array, alpha: Array, sigma: Array, draws: Array | None = None
    ) -> Array:
        reference = None
        if self.reference_width is not None and draws is not None:
            draws = jax.lax.stop_gradient(draws)
            # The floor keeps a coordinate the draws do not spread yet from pinning it; it is
            # relative, so that it stays negligible on any target's scale.
            spread = draws.var(0)
            floor = 1e-6 * jnp.mean(spread) + jnp.finfo(spread.dtype).tiny
            variance = self.reference_width**2 * (spread + floor)
            reference = (draws.mean(0), variance)

        def one(key, x_t, alpha, sigma):
            post = estimate_denoising_posterior(
                key,
                x_t,
                alpha,
                sigma,
                self.logdensity_fn,
                self.num_particles,
                self.num_bridges,
                self.num_mala_steps,
                self.max_step_size,
                reference,
            )
            return mixed_score(x_t, alpha, sigma, post.mean, post.mean_grad)

        return jax.vmap(one)(jax.random.split(key, noisy.shape[0]), noisy, alpha, sigma)


class DiKLState(NamedTuple):
    generator: Generator
    score_network: ConditionalMLP
    """Predicts the noise in x_t, which gives the generator's noisy score
    s(x_t, t) = −net(x_t, t)/σ_t."""
    averaged_generator: Generator
    """Exponential moving average of the generator's weights, the one that draws samples."""
    generator_opt: optax.OptState
    score_network_opt: optax.OptState
    step: Array
    rng_key: Array
    """The training key; step ``n`` uses ``fold_in(rng_key, n)``, so a resumed fit repeats
    the keys of an uninterrupted one."""


class VarDiUState(NamedTuple):
    generator: Generator
    encoder: Encoder
    averaged_generator: Generator
    generator_opt: optax.OptState
    encoder_opt: optax.OptState
    step: Array
    rng_key: Array


class DiKLConfig(eqx.Module):
    """Everything a DiKL step needs besides its state: the VP levels (arrays) and static
    settings, so one compiled step serves every ``fit`` call with the same settings."""

    target_score: NoisyTargetScore
    alphas: Array
    sigmas: Array
    weight_exponent: float = eqx.field(static=True)
    batch_size: int = eqx.field(static=True)
    score_steps: int = eqx.field(static=True)
    pool_size: int = eqx.field(static=True)
    min_pool_ess: float = eqx.field(static=True)
    ema_decay: float = eqx.field(static=True)
    generator_optimizer: optax.GradientTransformation = eqx.field(static=True)
    score_optimizer: optax.GradientTransformation = eqx.field(static=True)
    rows: NamedSharding = eqx.field(static=True)


class VarDiUConfig(eqx.Module):
    target_score: NoisyTargetScore
    sigma_min: float = eqx.field(static=True)
    sigma_max: float = eqx.field(static=True)
    batch_size: int = eqx.field(static=True)
    ema_decay: float = eqx.field(static=True)
    generator_optimizer: optax.GradientTransformation = eqx.field(static=True)
    encoder_optimizer: optax.GradientTransformation = eqx.field(static=True)
    rows: NamedSharding = eqx.field(static=True)


def _latent_normal(key: Array, num: int, generator: Generator, rows: NamedSharding) -> Array:
    # Everything computed row by row from this batch inherits the split over devices.
    z = jax.random.normal(key, (num, generator.latent_size))
    return jax.lax.with_sharding_constraint(z, rows)


def _noisy_batch(key: Array, generator: Generator, config: DiKLConfig):
    """``config.batch_size`` draws x of ``generator``, each noised at a uniformly drawn level:
    (level, ε, x_t = α x + σ ε, α, σ, x)."""
    key_z, key_t, key_eps = jax.random.split(key, 3)
    x = jax.vmap(generator)(_latent_normal(key_z, config.batch_size, generator, config.rows))
    level = jax.random.randint(key_t, (config.batch_size,), 0, config.alphas.shape[0])
    eps = jax.random.normal(key_eps, x.shape)
    alpha, sigma = config.alphas[level], config.sigmas[level]
    return level, eps, alpha[:, None] * x + sigma[:, None] * eps, alpha, sigma, x


def score_matching_loss(
    score_network: Callable, generator: Generator, key: Array, config: DiKLConfig
) -> Array:
    """The denoising-score-matching loss that DiKL's score network (any network called as
    ``network(x_t, level / num_levels)``, predicting ε) minimises on a fresh batch of
    ``generator`` draws."""
    level, eps, noisy, *_ = _noisy_batch(key, generator, config)
    pred = jax.vmap(score_network)(jax.lax.stop_gradient(noisy), level / config.alphas.shape[0])
    return jnp.mean(jnp.sum((pred - eps) ** 2, -1))


@eqx.filter_jit
def dikl_step(state: DiKLState, key: Array, config: DiKLConfig) -> tuple[DiKLState, dict]:
    """One DiKL step: ``score_steps`` denoising-score-matching steps of the score network on
    fresh generator draws, then one generator step along the weighted difference between the
    generator's and the target's noisy scores. Metrics: ``loss`` (the generator's surrogate
    loss), ``score_loss`` (the score network's last DSM loss) and, with a pool, the
    ``pooled_fraction`` of rows whose generator score came from it."""
    key_score_network, key_gen, key_target, key_pool = jax.random.split(key, 4)
    num_levels = config.alphas.shape[0]

    # scan carries arrays only; the network's static parts (activations) stay outside.
    params, static = eqx.partition(state.score_network, eqx.is_array)

    def score_network_update(carry, key):
        params, opt_state = carry
        loss, grads = eqx.filter_value_and_grad(score_matching_loss)(
            eqx.combine(params, static), state.generator, key, config
        )
        updates, opt_state = config.score_optimizer.update(grads, opt_state, params)
        return (eqx.apply_updates(params, updates), opt_state), loss

    (params, score_network_opt), score_losses = jax.lax.scan(
        score_network_update,
        (params, state.score_network_opt),
        jax.random.split(key_score_network, config.score_steps),
    )
    score_network = eqx.combine(params, static)

    level, _, noisy, alpha, sigma, draws = _noisy_batch(key_gen, state.generator, config)
    target_score = config.target_score(key_target, noisy, alpha, sigma, draws)
    model_score = -jax.vmap(score_network)(noisy, level / num_levels) / sigma[:, None]
    metrics = {}
    if config.pool_size:
        pool = jax.vmap(state.generator)(
            _latent_normal(key_pool, config.pool_size, state.generator, config.rows)
        )
        model_score, pooled = _pooled_noisy_score(
            noisy, alpha, sigma, jax.lax.stop_gradient(pool), model_score, config.min_pool_ess
        )
        metrics["pooled_fraction"] = jnp.mean(pooled)
    weight = (alpha**-config.weight_exponent)[:, None]
    direction = jax.lax.stop_gradient(weight * (model_score - target_score))

    def generator_loss(generator):
        # Same key, so x_t is the batch above, now as a function of θ.
        noisy_theta = _noisy_batch(key_gen, generator, config)[2]
        return jnp.mean(jnp.sum(direction * noisy_theta, -1))

    loss, grads = eqx.filter_value_and_grad(generator_loss)(state.generator)
    generator, generator_opt = apply_optimizer(
        config.generator_optimizer, state.generator, grads, state.generator_opt
    )
    state = state._replace(
        generator=generator,
        score_network=score_network,
        generator_opt=generator_opt,
        score_network_opt=score_network_opt,
        step=state.step + 1,
    )
    metrics |= {"loss": loss, "score_loss": score_losses[-1]}
    return _update_average(state, config.ema_decay), metrics


@eqx.filter_jit
def vardiu_step(state: VarDiUState, key: Array, config: VarDiUConfig) -> tuple[VarDiUState, dict]:
    """One VarDiU step: generator and encoder descend one loss, the variational upper bound of
    the diffusive KL on VE noise. Metrics: ``loss``."""
    key_z, key_sigma, key_eps, key_target = jax.random.split(key, 4)
    half = max(1, config.batch_size // 2)
    z = _latent_normal(key_z, half, state.generator, config.rows)
    log_sigma = jax.random.uniform(
        key_sigma, (half,), minval=math.log(config.sigma_min), maxval=math.log(config.sigma_max)
    )
    sigma = jnp.exp(log_sigma)
    eps = jax.random.normal(key_eps, (half, state.generator.mlp.out_size))
    # Antithetic pairs x ± σε share z and σ, which cancels most of the noise's variance.
    z, sigma = jnp.concatenate([z, z]), jnp.concatenate([sigma, sigma])
    eps = jnp.concatenate([eps, -eps])
    weight = (sigma / config.sigma_max) ** 2

    draws = jax.vmap(state.generator)(z)
    noisy = draws + sigma[:, None] * eps
    target_score = jax.lax.stop_gradient(
        config.target_score(key_target, noisy, jnp.ones_like(sigma), sigma, draws)
    )

    def loss_fn(networks):
        generator, encoder = networks
        noisy = jax.vmap(generator)(z) + sigma[:, None] * eps
        log_q = jax.vmap(encoder.log_prob, in_axes=(0, 0, 0, None))(
            z, noisy, sigma, config.sigma_max
        )
        return jnp.mean(-weight * (log_q + jnp.sum(target_score * noisy, -1)))

    loss, (generator_grads, encoder_grads) = eqx.filter_value_and_grad(loss_fn)(
        (state.generator, state.encoder)
    )
    generator, generator_opt = apply_optimizer(
        config.generator_optimizer, state.generator, generator_grads, state.generator_opt
    )
    encoder, encoder_opt = apply_optimizer(
        config.encoder_optimizer, state.encoder, encoder_grads, state.encoder_opt
    )
    state = state._replace(
        generator=generator,
        encoder=encoder,
        generator_opt=generator_opt,
        encoder_opt=encoder_opt,
        step=state.step + 1,
    )
    return _update_average(state, config.ema_decay), {"loss": loss}


class DiffusiveSampler:
    """A one-step neural sampler for a NumPyro model (or a potential), trained by DiKL or VarDiU.

    Args:
        model, potential_fn, init_params, model_args, model_kwargs: the target, as for DiGS
            (``init_params`` only with ``potential_fn``, to fix its structure).
        objective: ``"dikl"`` or ``"vardiu"``.
        width, depth: MLP hidden width and number of hidden layers for every network.
        latent_dim: size of z (default: the target's dimension).
        output_scale: multiplies the generator output; set it near the target's spread so the
            untrained generator already covers the region where the modes lie.
        skip: the generator is x = output_scale · (z + MLP(z)), so that untrained it draws
            N(0, output_scale² I); ``False``: x = output_scale · MLP(z), whose untrained draws
            nearly coincide (measured in ``benchmarks/README.md``: many_well needs the skip,
            DW-4's symmetric generator trains better without it).
        fourier_features, fourier_scale: the generator's MLP also sees sin and cos of
            ``fourier_features`` fixed random projections of z, with frequencies
            N(0, fourier_scale²) in the latent's units (so the setting does not depend on the
            target's scale). They help it cut the latent Gaussian into many narrow modes: on
            mog40 (40 modes in 2-D) 64 features at scale 2 left 34% of the draws more than 3
            mode standard deviations from every mode instead of 45%, though with mode weights
            no better (``benchmarks/README.md``). 0 (the default): a plain MLP of z.
        symmetry: a :class:`~ppl_diffusion.target.Symmetry` of the target; every draw is then
            pushed through it with fresh noise (e.g. DW-4's rotations, reflections and particle
            permutations: :data:`ppl_diffusion.models.dw4.SYMMETRY`), so the generator only
            learns the target up to it.
        num_levels, beta_min, beta_max: DiKL's VP schedule (linear β over ``num_levels``).
        weight_exponent: DiKL weights level t by w(t) = α_t^(−weight_exponent). Mode weights
            are only visible at noise levels where modes blur together (small α), so those
            levels need the most weight (measurements in ``benchmarks/README.md``).
        pool_size, min_pool_ess: DiKL only. With ``pool_size`` > 0, each step draws that many
            fresh generator samples and estimates the generator's noisy score from them
            directly (a self-normalised importance average over the pool) wherever their
            effective sample size reaches ``min_pool_ess``, and from the score network
            elsewhere: the noisy levels, where the score network's noise prediction is
            least accurate relative to what DiKL compares, are then the pool's. On one
            double well with the target's score exact, α⁻³ weights then reach the right
            well weights as with an exact generator score, and not with the network alone;
            on many_well and mog40, where the pool serves only the noisier levels, it does
            not help (``benchmarks/README.md``). 0 (the default): the network everywhere.
        sigma_min, sigma_max: VarDiU's VE noise range (σ log-uniform in it).
        num_particles, num_bridges, num_mala_steps, max_step_size: posterior sampling for the
            target's noisy score.
        reference_width: the posterior sampling starts from a Gaussian reference with the
            mean of the generator's current draws and ``reference_width`` times their
            standard deviation (per coordinate), instead of the flat-prior start
            N(x_t/α, σ²/α²), which at large noise lies far outside the target (see
            :func:`~ppl_diffusion.inference.denoising.estimate_denoising_posterior`).
            Wider than the draws so that modes the generator has not reached yet stay in
            view. ``None``: the flat start.
        seed: seed for network initialisation.
        devices: devices to split every training batch and every ``sample`` call over (data
            parallel: networks replicated, batch rows sharded with ``jax.sharding``); default
            all local devices. The per-row denoising-posterior sampling, the bulk of a training
            step, then runs on all of them. Results do not depend on the device count.
    """

    def __init__(
        self,
        model: Callable | None = None,
        potential_fn: Callable | None = None,
        init_params=None,
        model_args: tuple = (),
        model_kwargs: dict | None = None,
        objective: str = "dikl",
        width: int = 400,
        depth: int = 4,
        latent_dim: int | None = None,
        output_scale: float = 1.0,
        skip: bool = True,
        fourier_features: int = 0,
        fourier_scale: float = 2.0,
        symmetry: Symmetry | None = None,
        num_levels: int = 30,
        beta_min: float = 1e-4,
        beta_max: float = 0.5,
        weight_exponent: float = 2.0,
        pool_size: int = 0,
        min_pool_ess: float = 32.0,
        sigma_min: float = 0.1,
        sigma_max: float = 40.0,
        num_particles: int = 10,
        num_bridges: int = 15,
        num_mala_steps: int = 5,
        max_step_size: float = 0.1,
        reference_width: float | None = 2.0,
        seed: int = 0,
        devices: Sequence[jax.Device] | None = None,
    ):
        if objective not in OBJECTIVES:
            raise ValueError(f"`objective` must be one of {OBJECTIVES}, got {objective!r}.")
        if not 0 < beta_min < beta_max < 1:
            raise ValueError(f"Need 0 < beta_min < beta_max < 1, got {beta_min}, {beta_max}.")
        if not 0 < sigma_min < sigma_max:
            raise ValueError(f"Need 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}.")
        if weight_exponent < 0:
            raise ValueError(f"`weight_exponent` must be non-negative, got {weight_exponent}.")
        if fourier_features < 0 or fourier_scale <= 0:
            raise ValueError(
                f"Need fourier_features ≥ 0 and fourier_scale > 0, got {fourier_features}, "
                f"{fourier_scale}."
            )
        if num_levels < 1:
            raise ValueError(f"`num_levels` must be at least 1, got {num_levels}.")
        if pool_size < 0 or min_pool_ess < 1:
            raise ValueError(
                f"Need pool_size ≥ 0 and min_pool_ess ≥ 1, got {pool_size}, {min_pool_ess}."
            )
        if pool_size and objective != "dikl":
            raise ValueError("`pool_size` is for objective='dikl'; VarDiU has no generator score.")
        self.objective = objective
        self._rows = NamedSharding(chain_mesh(devices), PartitionSpec("chains"))
        self.target, _ = make_target(
            jax.random.PRNGKey(seed),
            model=model,
            potential_fn=potential_fn,
            init_params=init_params,
            model_args=model_args,
            model_kwargs=model_kwargs,
        )
        self.dim = self.target.dim
        self.latent_dim = self.dim if latent_dim is None else int(latent_dim)
        betas = np.linspace(beta_min, beta_max, num_levels)
        alpha_bar = np.cumprod(1 - betas)
        self.alphas = jnp.asarray(np.sqrt(alpha_bar), dtype=jnp.float32)
        self.sigmas = jnp.asarray(np.sqrt(1 - alpha_bar), dtype=jnp.float32)
        self.sigma_range = (float(sigma_min), float(sigma_max))
        self.weight_exponent = float(weight_exponent)
        self.pool_size = int(pool_size)
        self.min_pool_ess = float(min_pool_ess)
        self._posterior_kwargs = dict(
            num_particles=num_particles,
            num_bridges=num_bridges,
            num_mala_steps=num_mala_steps,
            max_step_size=max_step_size,
            reference_width=reference_width,
        )
        key_gen, key_second = jax.random.split(jax.random.PRNGKey(seed))
        self.generator = Generator(
            self.latent_dim,
            self.dim,
            width,
            depth,
            output_scale,
            key_gen,
            symmetry,
            skip,
            fourier_features,
            fourier_scale,
        )
        self.score_network: ConditionalMLP | None = None
        """DiKL's model of the generator's noisy score."""
        self.encoder: Encoder | None = None
        """VarDiU's q(z | x_t, σ)."""
        if objective == "dikl":
            self.score_network = ConditionalMLP(self.dim, self.dim, width, depth, key_second)
        else:
            self.encoder = Encoder(self.dim, self.generator.latent_size, width, depth, key_second)
        self.num_steps_trained = 0
        self.history: list[dict] = []
        self._state: DiKLState | VarDiUState | None = None

    @functools.cached_property
    def _identity(self) -> dict:
        """What a checkpoint must match to be loaded here: the target's sites and shapes, its
        log density at fixed points (two models with the same sites differ there), the
        objective and the networks. Computed when a checkpoint is first written or read."""
        sites = jax.eval_shape(self.target.unravel_fn, jnp.zeros(self.dim))
        probes = jax.random.normal(jax.random.PRNGKey(20240601), (3, self.dim))
        density = np.asarray(jax.vmap(self.target.logdensity_fn)(probes), float)
        return {
            "sites": str(jax.tree.map(lambda s: list(s.shape), sites)),
            "log_density_at_probes": [float(v) if np.isfinite(v) else str(v) for v in density],
            "objective": self.objective,
            "networks": {
                "width": self.generator.mlp.width_size,
                "depth": self.generator.mlp.depth,
                "latent_dim": self.latent_dim,
                "output_scale": float(self.generator.output_scale),
                "skip": self.generator.skip,
                "fourier_features": int(self.generator.frequencies.shape[0]),
                "symmetry": None
                if self.generator.symmetry is None
                else self.generator.symmetry.name,
            },
        }

    # ----------------------------------------------------------------------------- sampling
    def sample_unconstrained(self, rng_key: Array, num_samples: int) -> Array:
        """``(num_samples, dim)`` flat unconstrained draws."""
        _check_count("num_samples", num_samples)
        return _generate(self.generator, rng_key, num_samples, self._rows)

    def sample(self, rng_key: Array, num_samples: int) -> dict:
        """Constrained samples (and deterministic sites), like ``MCMC.get_samples()``."""
        _check_count("num_samples", num_samples)
        return _generate_constrained(
            self.generator,
            self.target.postprocess_fn,
            rng_key,
            num_samples,
            self._rows,
        )

    def to_arviz(self, rng_key: Array, num_samples: int):
        """Draws as an ArviZ InferenceData with one chain (draws are independent)."""
        import arviz as az

        samples = self.sample(rng_key, num_samples)
        return az.from_dict(posterior={k: np.asarray(v)[None] for k, v in samples.items()})

    def init_params(self, rng_key: Array, num_chains: int) -> dict:
        """Unconstrained starting points for ``MCMC(...).run(key, init_params=...)``: trained
        generator draws make good, already mode-spread starts for DiGS (or any) chains."""
        flat = self.sample_unconstrained(rng_key, num_chains)
        return jax.vmap(self.target.unravel_fn)(flat)

    # ----------------------------------------------------------------------------- training
    def fit(
        self,
        rng_key: Array,
        num_steps: int,
        batch_size: int = 256,
        learning_rate: float | optax.Schedule = 1e-3,
        score_learning_rate: float | optax.Schedule | None = None,
        score_steps: int | None = None,
        encoder_learning_rate: float | optax.Schedule | None = None,
        ema_decay: float = 0.999,
        clip_norm: float = 10.0,
        checkpoint_path: str | Path | None = None,
        checkpoint_every: int = 500,
        eval_every: int = 100,
        eval_fn: Callable[[Array], float] | None = None,
        progress_bar: bool = True,
    ) -> list[dict]:
        """Train until ``num_steps`` generator steps have been taken in all, earlier training
        (and a resumed checkpoint) included: ``fit(key, 200)`` after ``fit(key, 100)`` trains
        100 more steps, and a ``num_steps`` already reached trains nothing and warns.

        DiKL takes ``score_steps`` (default 10) score-network steps per generator step, at
        ``score_learning_rate`` (default: ``learning_rate``); VarDiU trains its encoder
        alongside the generator at ``encoder_learning_rate`` (default: ``learning_rate``). The
        encoder's rate decides whether VarDiU keeps the modes: on mog40 an encoder at 1e-3
        kept 39 or 40 of the 40 with the generator at 3e-4 or 1e-3, while at 3e-4 or 3e-3 it
        fell onto 2 or 8 within 200 steps (``benchmarks/README.md``).
        Giving one objective's setting to the other raises ``ValueError``.

        With ``checkpoint_path`` set, state is saved every ``checkpoint_every`` steps and at the
        end, and an existing checkpoint there is loaded first, so an interrupted fit resumes
        where it stopped. A path that is a directory or cannot be written, and a checkpoint
        written for another target, objective or network configuration, raise ``ValueError``
        before any training. ``eval_fn(samples)`` (unconstrained draws) gives the live quality
        metric on the progress bar; the default is the mean target log density of the draws.
        Steps whose gradients are not finite are skipped (optax ``apply_if_finite``).

        Learning rates may be optax schedules (counted in generator steps for the generator and
        the encoder, in score-network steps for the score network). Samples come from an
        exponential moving average of the generator's weights with decay
        ``min(ema_decay, (1 + step) / (10 + step))``, which smooths the step-to-step jitter of
        adversarial-style updates. ``ema_decay=0`` samples from the latest weights.

        The training step is compiled once per sampler and settings; later ``fit`` calls with
        the same settings reuse it.
        """
        if num_steps < 0:
            raise ValueError(f"`num_steps` must be ≥ 0, got {num_steps}.")
        if jax.dtypes.issubdtype(jnp.asarray(rng_key).dtype, jax.dtypes.prng_key):
            # Checkpoints hold the key as raw data, whichever style the caller uses.
            rng_key = jax.random.key_data(rng_key)
        config, train_step = self.training_config(
            batch_size,
            learning_rate,
            score_learning_rate,
            score_steps,
            encoder_learning_rate,
            ema_decay,
            clip_norm,
        )
        state = self._current_state(rng_key)
        if checkpoint_path is not None:
            checkpoint_path = _writable_checkpoint_path(checkpoint_path)
            if checkpoint_path.exists():
                state = self._load_state(checkpoint_path)
        # Fresh arrays and a step's outputs must have the same (replicated) placement, or the
        # step compiles once for each.
        state, config = self._replicate(state), self._replicate(config)
        if int(state.step) >= num_steps:
            warnings.warn(
                f"fit(num_steps={num_steps}) trained nothing: this sampler has already taken "
                f"{int(state.step)} steps, and `num_steps` counts every step taken so far. "
                f"Pass num_steps={int(state.step) + num_steps} to train {num_steps} more.",
                UserWarning,
                stacklevel=2,
            )
        if eval_fn is None:

            def eval_fn(x):
                return float(_mean_logdensity(self.target.logdensity_fn, x))

        start_step = int(state.step)
        bar = tqdm(
            range(start_step, num_steps),
            initial=start_step,
            total=num_steps,
            disable=not progress_bar,
            desc=f"fit ({self.objective})",
        )
        metric = float("nan")
        for step in bar:
            state, metrics = train_step(state, jax.random.fold_in(state.rng_key, step), config)
            done = step + 1
            if done % eval_every == 0 or done == num_steps:
                eval_key = jax.random.fold_in(jax.random.fold_in(state.rng_key, done), 1)
                metric = eval_fn(_generate(state.averaged_generator, eval_key, 2000, self._rows))
                self.history.append(
                    {k: float(v) for k, v in metrics.items()}
                    | {"step": done, "metric": metric, "time": time.time()}
                )
            bar.set_postfix(loss=f"{float(metrics['loss']):.3g}", metric=f"{metric:.4g}")
            if checkpoint_path is not None and (done % checkpoint_every == 0 or done == num_steps):
                self._commit(state)
                self._write_checkpoint(checkpoint_path, state)
        self._commit(state)
        return self.history

    def training_config(
        self,
        batch_size: int,
        learning_rate: float | optax.Schedule,
        score_learning_rate: float | optax.Schedule | None,
        score_steps: int | None,
        encoder_learning_rate: float | optax.Schedule | None,
        ema_decay: float,
        clip_norm: float,
    ) -> tuple[DiKLConfig | VarDiUConfig, Callable]:
        """The config and step function (:func:`dikl_step` or :func:`vardiu_step`) that
        :meth:`fit` trains with, for driving the steps by hand; the settings are
        :meth:`fit`'s, checked the same way."""
        if self.objective == "dikl" and encoder_learning_rate is not None:
            raise ValueError("`encoder_learning_rate` is for objective='vardiu'; DiKL has none.")
        if self.objective == "vardiu" and (
            score_learning_rate is not None or score_steps is not None
        ):
            raise ValueError(
                "`score_learning_rate` and `score_steps` are for objective='dikl'; VarDiU "
                "trains an encoder (`encoder_learning_rate`)."
            )
        score_steps = 10 if score_steps is None else score_steps
        if batch_size < 1 or score_steps < 1:
            raise ValueError("`batch_size` ≥ 1 and `score_steps` ≥ 1 required.")
        if not 0 <= ema_decay < 1:
            raise ValueError(f"`ema_decay` must be in [0, 1), got {ema_decay}.")
        generator_optimizer = make_optimizer(learning_rate, clip_norm)
        if self.objective == "dikl":
            config = DiKLConfig(
                self.target_score,
                self.alphas,
                self.sigmas,
                self.weight_exponent,
                batch_size,
                score_steps,
                self.pool_size,
                self.min_pool_ess,
                ema_decay,
                generator_optimizer,
                make_optimizer(score_learning_rate or learning_rate, clip_norm),
                self._rows,
            )
            return config, dikl_step
        config = VarDiUConfig(
            self.target_score,
            *self.sigma_range,
            batch_size,
            ema_decay,
            generator_optimizer,
            make_optimizer(encoder_learning_rate or learning_rate, clip_norm),
            self._rows,
        )
        return config, vardiu_step

    def _replicate(self, tree):
        arrays, static = eqx.partition(tree, eqx.is_array)
        replicated = NamedSharding(self._rows.mesh, PartitionSpec())
        return eqx.combine(jax.device_put(arrays, replicated), static)

    @functools.cached_property
    def target_score(self) -> NoisyTargetScore:
        """The estimator of the target's noisy score that training uses."""
        return NoisyTargetScore(self.target.logdensity_fn, **self._posterior_kwargs)

    def _commit(self, state: DiKLState | VarDiUState) -> None:
        self.generator = state.averaged_generator
        if isinstance(state, DiKLState):
            self.score_network = state.score_network
        else:
            self.encoder = state.encoder
        self.num_steps_trained = int(state.step)
        self._state = state

    def _current_state(self, rng_key: Array) -> DiKLState | VarDiUState:
        """Training state to continue from: the last one, or fresh optimiser states. Adam's state
        has the same structure whatever the learning rate, so one template serves all."""
        if self._state is not None:
            return self._state._replace(rng_key=rng_key)
        template = make_optimizer(1e-3)
        if self.objective == "dikl":
            state_type, second_network = DiKLState, self.score_network
        else:
            state_type, second_network = VarDiUState, self.encoder
        return state_type(
            self.generator,
            second_network,
            self.generator,
            template.init(eqx.filter(self.generator, eqx.is_array)),
            template.init(eqx.filter(second_network, eqx.is_array)),
            jnp.array(self.num_steps_trained),
            rng_key,
        )

    # ----------------------------------------------------------------------------- checkpoints
    def save(self, path: str | Path, state: DiKLState | VarDiUState | None = None) -> None:
        """Write networks, optimiser states, step and PRNG key (equinox serialisation) after
        a one-line JSON header that identifies the target and the networks."""
        state = self._current_state(jax.random.PRNGKey(0)) if state is None else state
        self._write_checkpoint(_writable_checkpoint_path(path), state)

    def _write_checkpoint(self, path: Path, state: DiKLState | VarDiUState) -> None:
        tmp = path.with_suffix(path.suffix + ".tmp")
        with open(tmp, "wb") as file:
            file.write(json.dumps(self._identity).encode() + b"\n")
            eqx.tree_serialise_leaves(file, state)
        tmp.replace(path)  # never leave a half-written checkpoint behind

    def load(self, path: str | Path) -> None:
        """Load networks and training progress saved by :meth:`save` or ``fit``. Raises
        ``ValueError`` if the checkpoint was written for another target, objective or network
        configuration."""
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"Checkpoint {path} is not a file.")
        self._commit(self._load_state(path))

    def _load_state(self, path: Path) -> DiKLState | VarDiUState:
        like = self._current_state(jax.random.PRNGKey(0))
        with open(path, "rb") as file:
            try:
                saved = json.loads(file.readline())
            except (json.JSONDecodeError, UnicodeDecodeError) as err:
                raise ValueError(
                    f"Checkpoint {path} has no sampler header: it was not written by "
                    "DiffusiveSampler.save or fit."
                ) from err
            mismatched = _mismatches(saved, self._identity)
            if mismatched:
                raise ValueError(
                    f"Checkpoint {path} does not fit this sampler: it was written for "
                    + "; ".join(
                        f"{key} {saved.get(key)} (here {self._identity[key]})" for key in mismatched
                    )
                    + "."
                )
            try:
                return eqx.tree_deserialise_leaves(file, like)
            except (ValueError, RuntimeError, TypeError) as err:
                raise ValueError(f"Checkpoint {path} does not fit this sampler: {err}") from err


def _mismatches(saved: dict, current: dict) -> list[str]:
    """Keys of ``current`` that ``saved`` does not match; densities to float32 rounding."""

    def same(key):
        if key != "log_density_at_probes":
            return saved.get(key) == current[key]
        old, new = saved.get(key), current[key]
        if not isinstance(old, list) or len(old) != len(new):
            return False
        return all(
            a == b
            if isinstance(a, str) or isinstance(b, str)
            else math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-4)
            for a, b in zip(old, new, strict=True)
        )

    return [key for key in current if not same(key)]


def _writable_checkpoint_path(path: str | Path) -> Path:
    """``path`` as a checkpoint file, checked before any training is spent: not a directory,
    and in a folder this process can write (created if missing)."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"Checkpoint path {path} is a directory; give a file name in it.")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent):
            pass
    except OSError as err:
        raise ValueError(f"Checkpoint path {path} is not writable: {err}") from err
    return path


def _check_count(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"`{name}` must be a positive integer, got {value!r}.")


def pooled_noisy_score(x_t: Array, alpha, sigma, pool: Array) -> tuple[Array, Array]:
    """The noisy score ∇log q_t(x_t) = (α E[x | x_t] − x_t)/σ² of the distribution that
    ``pool`` (rows of draws) samples, at one point ``x_t``, with E[x | x_t] a self-normalised
    importance average of the pool (weights N(x_t; α x_i, σ²)); and the weights' effective
    sample size, which says whether the pool is dense enough there to trust it."""
    log_weights = -jnp.sum((x_t - alpha * pool) ** 2, -1) / (2 * sigma**2)
    weights = jax.nn.softmax(log_weights)
    return denoising_score(x_t, alpha, sigma, weights @ pool), 1.0 / jnp.sum(weights**2)


def _pooled_noisy_score(noisy, alpha, sigma, pool, fallback, min_ess):
    """The generator's noisy score from a pool of its own draws (:func:`pooled_noisy_score`)
    in the rows where the effective sample size reaches ``min_ess``; ``fallback`` in the
    others. Also says which rows used the pool."""

    def one(x_t, alpha, sigma, fallback):
        pooled, ess = pooled_noisy_score(x_t, alpha, sigma, pool)
        use_pool = ess >= min_ess
        return jnp.where(use_pool, pooled, fallback), use_pool

    return jax.vmap(one)(noisy, alpha, sigma, fallback)


def _update_average(state, ema_decay: float):
    decay = jnp.minimum(ema_decay, (1.0 + state.step) / (10.0 + state.step))
    averaged = jax.tree.map(
        lambda avg, new: decay * avg + (1 - decay) * new,
        eqx.filter(state.averaged_generator, eqx.is_array),
        eqx.filter(state.generator, eqx.is_array),
    )
    static = eqx.filter(state.generator, eqx.is_array, inverse=True)
    return state._replace(averaged_generator=eqx.combine(averaged, static))


@eqx.filter_jit
def _mean_logdensity(logdensity_fn, x):
    return jnp.mean(jax.vmap(logdensity_fn)(x))


@eqx.filter_jit
def _generate(generator, rng_key, num_samples, rows):
    return jax.vmap(generator)(_latent_normal(rng_key, num_samples, generator, rows))


@eqx.filter_jit
def _generate_constrained(generator, postprocess_fn, rng_key, num_samples, rows):
    return jax.vmap(postprocess_fn)(_generate(generator, rng_key, num_samples, rows))
