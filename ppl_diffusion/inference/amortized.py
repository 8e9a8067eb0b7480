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

from ppl_diffusion.inference.denoising import estimate_denoising_posterior, mixed_score
from ppl_diffusion.parallel import chain_mesh
from ppl_diffusion.target import make_target

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
    mlp: eqx.nn.MLP
    output_scale: float = eqx.field(static=True)

    def __init__(self, latent_dim, dim, width, depth, output_scale, key):
        self.mlp = eqx.nn.MLP(latent_dim, dim, width, depth, activation=jax.nn.silu, key=key)
        self.output_scale = output_scale

    def __call__(self, z):
        return self.output_scale * self.mlp(z)


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


class TrainState(NamedTuple):
    generator: Generator
    critic: eqx.Module
    """The score network (DiKL) or the encoder (VarDiU)."""
    averaged_generator: Generator
    """Exponential moving average of the generator's weights, the one that draws samples."""
    generator_opt: optax.OptState
    critic_opt: optax.OptState
    step: Array
    rng_key: Array


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
        num_levels, beta_min, beta_max: DiKL's VP schedule (linear β over ``num_levels``).
        weight_exponent: DiKL weights level t by w(t) = α_t^(−weight_exponent). Mode weights
            are only visible at noise levels where modes blur together (small α), so those
            levels need the most weight (measurements in ``benchmarks/README.md``).
        sigma_min, sigma_max: VarDiU's VE noise range (σ log-uniform in it).
        num_particles, num_bridges, num_mala_steps, max_step_size: posterior sampling for the
            target's noisy score.
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
        num_levels: int = 30,
        beta_min: float = 1e-4,
        beta_max: float = 0.5,
        weight_exponent: float = 2.0,
        sigma_min: float = 0.1,
        sigma_max: float = 40.0,
        num_particles: int = 10,
        num_bridges: int = 15,
        num_mala_steps: int = 5,
        max_step_size: float = 0.1,
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
        if num_levels < 1:
            raise ValueError(f"`num_levels` must be at least 1, got {num_levels}.")
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
        self._posterior_kwargs = dict(
            num_particles=num_particles,
            num_bridges=num_bridges,
            num_mala_steps=num_mala_steps,
            max_step_size=max_step_size,
        )
        key_gen, key_critic = jax.random.split(jax.random.PRNGKey(seed))
        self.generator = Generator(self.latent_dim, self.dim, width, depth, output_scale, key_gen)
        if objective == "dikl":
            self.critic = ConditionalMLP(self.dim, self.dim, width, depth, key_critic)
        else:
            self.critic = Encoder(self.dim, self.latent_dim, width, depth, key_critic)
        self.num_steps_trained = 0
        self.history: list[dict] = []
        self._state: TrainState | None = None

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
            },
        }

    # ----------------------------------------------------------------------------- sampling
    def sample_unconstrained(self, rng_key: Array, num_samples: int) -> Array:
        """``(num_samples, dim)`` flat unconstrained draws."""
        _check_count("num_samples", num_samples)
        return _generate(self.generator, rng_key, num_samples, self.latent_dim, self._rows)

    def sample(self, rng_key: Array, num_samples: int) -> dict:
        """Constrained samples (and deterministic sites), like ``MCMC.get_samples()``."""
        _check_count("num_samples", num_samples)
        return _generate_constrained(
            self.generator,
            self.target.postprocess_fn,
            rng_key,
            num_samples,
            self.latent_dim,
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
        critic_learning_rate: float | optax.Schedule | None = None,
        critic_steps: int = 10,
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

        With ``checkpoint_path`` set, state is saved every ``checkpoint_every`` steps and at the
        end, and an existing checkpoint there is loaded first, so an interrupted fit resumes
        where it stopped. A path that is a directory or cannot be written, and a checkpoint
        written for another target, objective or network configuration, raise ``ValueError``
        before any training. ``eval_fn(samples)`` (unconstrained draws) gives the live quality
        metric on the progress bar; the default is the mean target log density of the draws.
        Steps whose gradients are not finite are skipped (optax ``apply_if_finite``).

        Learning rates may be optax schedules (counted in generator steps for the generator and
        in critic steps for the critic). Samples come from an exponential moving average of the
        generator's weights with decay ``min(ema_decay, (1 + step) / (10 + step))``, which
        smooths the step-to-step jitter of adversarial-style updates. ``ema_decay=0`` samples
        from the latest weights.
        """
        if num_steps < 0 or batch_size < 1 or critic_steps < 1:
            raise ValueError("`num_steps` ≥ 0, `batch_size` ≥ 1 and `critic_steps` ≥ 1 required.")
        if not 0 <= ema_decay < 1:
            raise ValueError(f"`ema_decay` must be in [0, 1), got {ema_decay}.")
        generator_opt = _optimizer(learning_rate, clip_norm)
        critic_opt = _optimizer(critic_learning_rate or learning_rate, clip_norm)
        if jax.dtypes.issubdtype(jnp.asarray(rng_key).dtype, jax.dtypes.prng_key):
            # Checkpoints hold the key as raw data, whichever style the caller uses.
            rng_key = jax.random.key_data(rng_key)
        state = self._current_state(rng_key)
        if checkpoint_path is not None:
            checkpoint_path = _writable_checkpoint_path(checkpoint_path)
            if checkpoint_path.exists():
                state = self._load_state(checkpoint_path)
        if int(state.step) >= num_steps:
            warnings.warn(
                f"fit(num_steps={num_steps}) trained nothing: this sampler has already taken "
                f"{int(state.step)} steps, and `num_steps` counts every step taken so far. "
                f"Pass num_steps={int(state.step) + num_steps} to train {num_steps} more.",
                UserWarning,
                stacklevel=2,
            )
        train_step = self._dikl_step if self.objective == "dikl" else self._vardiu_step

        @eqx.filter_jit
        def step_fn(state):
            state, loss = train_step(state, generator_opt, critic_opt, batch_size, critic_steps)
            return _update_average(state, ema_decay), loss

        eval_fn = eval_fn or (lambda x: float(jnp.mean(jax.vmap(self.target.logdensity_fn)(x))))
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
            state, loss = step_fn(state)
            done = step + 1
            if done % eval_every == 0 or done == num_steps:
                eval_key = jax.random.fold_in(state.rng_key, done)
                metric = eval_fn(
                    _generate(state.averaged_generator, eval_key, 2000, self.latent_dim, self._rows)
                )
                self.history.append(
                    {"step": done, "loss": float(loss), "metric": metric, "time": time.time()}
                )
            bar.set_postfix(loss=f"{float(loss):.3g}", metric=f"{metric:.4g}")
            if checkpoint_path is not None and (done % checkpoint_every == 0 or done == num_steps):
                self._commit(state)
                self._write_checkpoint(checkpoint_path, state)
        self._commit(state)
        return self.history

    def _commit(self, state: TrainState) -> None:
        self.generator, self.critic = state.averaged_generator, state.critic
        self.num_steps_trained = int(state.step)
        self._state = state

    def _current_state(self, rng_key: Array) -> TrainState:
        """Training state to continue from: the last one, or fresh optimiser states. Adam's state
        has the same structure whatever the learning rate, so one template serves all."""
        if self._state is not None:
            return self._state._replace(rng_key=rng_key)
        template = _optimizer(1e-3, 10.0)
        return TrainState(
            self.generator,
            self.critic,
            self.generator,
            template.init(eqx.filter(self.generator, eqx.is_array)),
            template.init(eqx.filter(self.critic, eqx.is_array)),
            jnp.array(self.num_steps_trained),
            rng_key,
        )

    def _shard_rows(self, batch: Array) -> Array:
        # Everything computed row by row from this batch inherits the split over devices.
        return jax.lax.with_sharding_constraint(batch, self._rows)

    def _noisy_target_score(self, key, noisy, alpha, sigma):
        keys = jax.random.split(key, noisy.shape[0])

        def one(key, x_t, alpha, sigma):
            post = estimate_denoising_posterior(
                key, x_t, alpha, sigma, self.target.logdensity_fn, **self._posterior_kwargs
            )
            return mixed_score(x_t, alpha, sigma, post.mean, post.mean_grad)

        return jax.vmap(one)(keys, noisy, alpha, sigma)

    def _dikl_step(self, state: TrainState, generator_opt, critic_opt, batch_size, critic_steps):
        keys = jax.random.split(state.rng_key, 4)
        rng_key, key_critic, key_gen, key_score = keys
        num_levels = self.alphas.shape[0]

        def noisy_batch(key, generator):
            key_z, key_t, key_eps = jax.random.split(key, 3)
            z = self._shard_rows(jax.random.normal(key_z, (batch_size, self.latent_dim)))
            x = jax.vmap(generator)(z)
            level = jax.random.randint(key_t, (batch_size,), 0, num_levels)
            eps = jax.random.normal(key_eps, x.shape)
            alpha, sigma = self.alphas[level], self.sigmas[level]
            return x, level, eps, alpha[:, None] * x + sigma[:, None] * eps, alpha, sigma

        def dsm_loss(critic, key):
            x, level, eps, noisy, _, _ = noisy_batch(key, state.generator)
            # The network predicts the noise: s_φ(x_t, t) = −net(x_t, t)/σ_t.
            pred = jax.vmap(critic)(jax.lax.stop_gradient(noisy), level / num_levels)
            return jnp.mean(jnp.sum((pred - eps) ** 2, -1))

        # scan carries arrays only; the networks' static parts (activations) stay outside.
        critic_params, critic_static = eqx.partition(state.critic, eqx.is_array)

        def critic_update(carry, key):
            params, opt_state = carry
            critic = eqx.combine(params, critic_static)
            loss, grads = eqx.filter_value_and_grad(dsm_loss)(critic, key)
            updates, opt_state = critic_opt.update(grads, opt_state, params)
            return (eqx.apply_updates(params, updates), opt_state), loss

        (critic_params, critic_opt_state), _ = jax.lax.scan(
            critic_update,
            (critic_params, state.critic_opt),
            jax.random.split(key_critic, critic_steps),
        )
        critic = eqx.combine(critic_params, critic_static)

        _, level, _, noisy, alpha, sigma = noisy_batch(key_gen, state.generator)
        target_score = self._noisy_target_score(key_score, noisy, alpha, sigma)
        model_score = -jax.vmap(critic)(noisy, level / num_levels) / sigma[:, None]
        weight = (alpha**-self.weight_exponent)[:, None]
        direction = jax.lax.stop_gradient(weight * (model_score - target_score))

        def generator_loss(generator):
            # Same key, so x_t is the batch above, now as a function of θ.
            _, _, _, noisy_theta, _, _ = noisy_batch(key_gen, generator)
            return jnp.mean(jnp.sum(direction * noisy_theta, -1))

        loss, grads = eqx.filter_value_and_grad(generator_loss)(state.generator)
        updates, generator_opt_state = generator_opt.update(
            grads, state.generator_opt, eqx.filter(state.generator, eqx.is_array)
        )
        generator = eqx.apply_updates(state.generator, updates)
        return state._replace(
            generator=generator,
            critic=critic,
            generator_opt=generator_opt_state,
            critic_opt=critic_opt_state,
            step=state.step + 1,
            rng_key=rng_key,
        ), loss

    def _vardiu_step(self, state: TrainState, generator_opt, critic_opt, batch_size, critic_steps):
        rng_key, key_z, key_sigma, key_eps, key_score = jax.random.split(state.rng_key, 5)
        sigma_min, sigma_max = self.sigma_range
        half = max(1, batch_size // 2)
        z = self._shard_rows(jax.random.normal(key_z, (half, self.latent_dim)))
        log_sigma = jax.random.uniform(
            key_sigma, (half,), minval=math.log(sigma_min), maxval=math.log(sigma_max)
        )
        sigma = jnp.exp(log_sigma)
        eps = jax.random.normal(key_eps, (half, self.dim))
        # Antithetic pairs x ± σε share z and σ, which cancels most of the noise's variance.
        z, sigma = jnp.concatenate([z, z]), jnp.concatenate([sigma, sigma])
        eps = jnp.concatenate([eps, -eps])
        weight = (sigma / sigma_max) ** 2

        noisy = jax.vmap(state.generator)(z) + sigma[:, None] * eps
        target_score = jax.lax.stop_gradient(
            self._noisy_target_score(key_score, noisy, jnp.ones_like(sigma), sigma)
        )

        def loss_fn(params):
            generator, encoder = params
            noisy = jax.vmap(generator)(z) + sigma[:, None] * eps
            log_q = jax.vmap(encoder.log_prob, in_axes=(0, 0, 0, None))(z, noisy, sigma, sigma_max)
            return jnp.mean(-weight * (log_q + jnp.sum(target_score * noisy, -1)))

        loss, (gen_grads, enc_grads) = eqx.filter_value_and_grad(loss_fn)(
            (state.generator, state.critic)
        )
        gen_updates, generator_opt_state = generator_opt.update(
            gen_grads, state.generator_opt, eqx.filter(state.generator, eqx.is_array)
        )
        enc_updates, critic_opt_state = critic_opt.update(
            enc_grads, state.critic_opt, eqx.filter(state.critic, eqx.is_array)
        )
        return state._replace(
            generator=eqx.apply_updates(state.generator, gen_updates),
            critic=eqx.apply_updates(state.critic, enc_updates),
            generator_opt=generator_opt_state,
            critic_opt=critic_opt_state,
            step=state.step + 1,
            rng_key=rng_key,
        ), loss

    # ----------------------------------------------------------------------------- checkpoints
    def save(self, path: str | Path, state: TrainState | None = None) -> None:
        """Write networks, optimiser states, step and PRNG key (equinox serialisation) after
        a one-line JSON header that identifies the target and the networks."""
        state = self._current_state(jax.random.PRNGKey(0)) if state is None else state
        self._write_checkpoint(_writable_checkpoint_path(path), state)

    def _write_checkpoint(self, path: Path, state: TrainState) -> None:
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

    def _load_state(self, path: Path) -> TrainState:
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


def _optimizer(learning_rate, clip_norm: float):
    # A constant rate becomes a schedule too, so the optimiser state (which then holds a step
    # count) has one structure whatever the user passes, and checkpoints always load.
    if not callable(learning_rate):
        learning_rate = optax.constant_schedule(learning_rate)
    # apply_if_finite skips a step whose gradients contain NaN/inf instead of poisoning weights.
    return optax.apply_if_finite(
        optax.chain(optax.clip_by_global_norm(clip_norm), optax.adam(learning_rate)),
        max_consecutive_errors=100,
    )


def _update_average(state: TrainState, ema_decay: float) -> TrainState:
    decay = jnp.minimum(ema_decay, (1.0 + state.step) / (10.0 + state.step))
    averaged = jax.tree.map(
        lambda avg, new: decay * avg + (1 - decay) * new,
        eqx.filter(state.averaged_generator, eqx.is_array),
        eqx.filter(state.generator, eqx.is_array),
    )
    static = eqx.filter(state.generator, eqx.is_array, inverse=True)
    return state._replace(averaged_generator=eqx.combine(averaged, static))


@eqx.filter_jit
def _generate(generator, rng_key, num_samples, latent_dim, rows):
    z = jax.lax.with_sharding_constraint(
        jax.random.normal(rng_key, (num_samples, latent_dim)), rows
    )
    return jax.vmap(generator)(z)


@eqx.filter_jit
def _generate_constrained(generator, postprocess_fn, rng_key, num_samples, latent_dim, rows):
    return jax.vmap(postprocess_fn)(_generate(generator, rng_key, num_samples, latent_dim, rows))
