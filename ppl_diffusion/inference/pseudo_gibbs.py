"""Moment-matching pseudo-Gibbs: sample a clean model from a noisy energy model.

A noisy energy model p_σ(x̃) ∝ exp(−f(x̃)) fitted by denoising score matching (DSM) knows the
clean data only through Tweedie's formulas for the denoising posterior p(x | x̃):

    E[x | x̃] = x̃ + σ² s(x̃),        Cov[x | x̃] = σ² I + σ⁴ ∇s(x̃),        s = −∇f.

Pseudo-Gibbs alternates x̃ = x + σε and x ~ N(E[x | x̃], Cov[x | x̃]). The covariance can be
``"full"`` (the Jacobian of s, symmetrised, eigenvalues clipped to stay positive definite),
``"diag"`` (Hutchinson's estimator of its diagonal from Rademacher probes and jvp
Hessian-vector products) or ``"iso"`` (the fixed σ² − σ⁴ E‖s‖²/d, since E[tr ∇s] = −E‖s‖²).

For a target whose density is known, :func:`~ppl_diffusion.inference.digs.moment_matched_gibbs`
is the exact relative: a DiGS kernel whose jump is the Laplace approximation of p(x | x̃) from
the target's own score, corrected by Metropolis–Hastings.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from numpyro.infer.initialization import init_to_uniform
from tqdm.auto import tqdm

from ppl_diffusion.inference.denoising import moment_matched_proposal
from ppl_diffusion.inference.kernel import AdaptiveKernel

Array = jax.Array

COVARIANCES = ("full", "diag", "iso")
ENVELOPE_WIDTH = 5.0
"""The energy's Gaussian envelope is this many times the data's overall spread."""


# ------------------------------------------------------------------------------ noisy energy
class EnergyMLP(eqx.Module):
    """Energy f(x̃) = MLP(x̃) + ‖(x̃ − centre)/envelope‖²/2; its negative gradient is the score.

    An MLP alone can keep decreasing away from the data, where DSM never sees a sample, and
    chains then drift off to infinity. The fixed Gaussian envelope, much wider than the data,
    keeps the model normalisable without shaping it where the data are.
    """

    mlp: eqx.nn.MLP
    centre: Array
    envelope: Array

    def __init__(self, dim, width, depth, key, centre=None, envelope=None):
        self.mlp = eqx.nn.MLP(dim, "scalar", width, depth, activation=jax.nn.swish, key=key)
        self.centre = jnp.zeros(dim) if centre is None else jnp.asarray(centre)
        self.envelope = jnp.full(dim, 1e3) if envelope is None else jnp.asarray(envelope)

    def __call__(self, x):
        centre, envelope = jax.lax.stop_gradient((self.centre, self.envelope))
        return self.mlp(x) + 0.5 * jnp.sum(((x - centre) / envelope) ** 2)


class NoisyEnergyModel(NamedTuple):
    energy: EnergyMLP
    sigma: float
    iso_variance: float
    """σ² − σ⁴ E‖s(x̃)‖²/d over the noisy training data (the ``"iso"`` covariance)."""

    def logdensity(self, x):
        return -self.energy(x)

    def score(self, x):
        return jax.grad(self.logdensity)(x)


def _iso_variance(score_fn, noisy: Array, sigma: float) -> float:
    squared = jnp.mean(jnp.sum(jax.vmap(score_fn)(noisy) ** 2, -1))
    variance = sigma**2 - sigma**4 * squared / noisy.shape[-1]
    # A poorly fitted model can make the estimate non-positive; keep a small floor.
    return float(jnp.maximum(variance, 1e-3 * sigma**2))


def fit_noisy_energy(
    rng_key: Array,
    data: Array,
    sigma: float,
    num_steps: int = 10_000,
    batch_size: int = 256,
    learning_rate: float = 1e-3,
    width: int = 400,
    depth: int = 4,
    progress_bar: bool = True,
) -> NoisyEnergyModel:
    """Fit p_σ(x̃) ∝ exp(−f(x̃)) to ``data`` (n, d) by DSM in Tweedie form
    ‖x̃ + σ² s(x̃) − x‖², x̃ = x + σε."""
    data = jnp.asarray(data)
    if data.ndim != 2 or data.shape[0] < 2:
        raise ValueError(f"`data` must be an (n, d) array with n ≥ 2, got shape {data.shape}.")
    if not bool(jnp.all(jnp.isfinite(data))):
        raise ValueError("`data` contains non-finite values.")
    if not sigma > 0:
        raise ValueError(f"`sigma` must be positive, got {sigma}.")
    key_init, key_train, key_iso = jax.random.split(rng_key, 3)
    spread = jnp.sqrt(jnp.sum(data.var(0))) + sigma
    energy = EnergyMLP(
        data.shape[1],
        width,
        depth,
        key_init,
        data.mean(0),
        jnp.full(data.shape[1], ENVELOPE_WIDTH * spread),
    )
    optimizer = optax.apply_if_finite(
        optax.chain(optax.clip_by_global_norm(10.0), optax.adam(learning_rate)), 100
    )
    opt_state = optimizer.init(eqx.filter(energy, eqx.is_array))

    def loss_fn(energy, clean, noise):
        noisy = clean + sigma * noise
        score = jax.vmap(jax.grad(lambda x: -energy(x)))(noisy)
        return jnp.mean(jnp.sum((noisy + sigma**2 * score - clean) ** 2, -1)) / sigma**2

    @eqx.filter_jit
    def step(energy, opt_state, key):
        key_batch, key_noise = jax.random.split(key)
        index = jax.random.randint(key_batch, (batch_size,), 0, data.shape[0])
        clean = data[index]
        loss, grads = eqx.filter_value_and_grad(loss_fn)(
            energy, clean, jax.random.normal(key_noise, clean.shape)
        )
        updates, opt_state = optimizer.update(grads, opt_state, eqx.filter(energy, eqx.is_array))
        return eqx.apply_updates(energy, updates), opt_state, loss

    bar = tqdm(range(num_steps), disable=not progress_bar, desc="fit noisy energy (DSM)")
    for i in bar:
        energy, opt_state, loss = step(energy, opt_state, jax.random.fold_in(key_train, i))
        if i % 100 == 0:
            bar.set_postfix(loss=f"{float(loss):.4g}")
    model = NoisyEnergyModel(energy, float(sigma), 0.0)
    noisy = data + sigma * jax.random.normal(key_iso, data.shape)
    return model._replace(iso_variance=_iso_variance(model.score, noisy[:5000], sigma))


# ------------------------------------------------------------------------------ the sampler
class PseudoGibbsState(NamedTuple):
    position: Array


class PseudoGibbsInfo(NamedTuple):
    num_nonfinite: Array
    """1 when the iteration's draw was not finite and was rejected."""
    num_grad_evals: Array
    """Score evaluations and Jacobian-vector products of the noisy model this iteration."""


def init(position: Array) -> PseudoGibbsState:
    return PseudoGibbsState(position)


def pseudo_gibbs_step(
    rng_key: Array,
    position: Array,
    score_fn: Callable,
    sigma: float,
    covariance: str,
    num_probes: int = 8,
    iso_variance: float | None = None,
) -> Array:
    """x̃ = x + σε, then x ~ N(x̃ + σ² s(x̃), σ² I + σ⁴ ∇s(x̃)) with the chosen covariance."""
    key_noise, key_proposal, key_draw = jax.random.split(rng_key, 3)
    noisy = position + sigma * jax.random.normal(key_noise, position.shape)
    proposal = moment_matched_proposal(
        key_proposal, noisy, sigma, score_fn, covariance, num_probes, iso_variance
    )
    return proposal.sample(key_draw)


def build_kernel(
    sigma: float, covariance: str, num_probes: int = 8, iso_variance: float | None = None
) -> Callable:
    """``kernel(rng_key, state, logdensity_fn) -> (state, PseudoGibbsInfo)`` where
    ``logdensity_fn`` is the noisy model's log density. A non-finite draw (a badly behaved
    energy far from the data) is rejected and counted."""
    if covariance not in COVARIANCES:
        raise ValueError(f"`covariance` must be one of {COVARIANCES}, got {covariance!r}.")
    if sigma is None or not sigma > 0:
        raise ValueError(f"`sigma` must be a positive noise level, got {sigma}.")
    if covariance == "iso" and iso_variance is None:
        raise ValueError("`covariance='iso'` needs `iso_variance` (or a NoisyEnergyModel).")
    if isinstance(num_probes, bool) or int(num_probes) != num_probes or num_probes < 1:
        raise ValueError(f"`num_probes` must be a positive integer, got {num_probes}.")

    def kernel(rng_key, state: PseudoGibbsState, logdensity_fn):
        score_fn = jax.grad(logdensity_fn)
        position = pseudo_gibbs_step(
            rng_key, state.position, score_fn, sigma, covariance, num_probes, iso_variance
        )
        finite = jnp.all(jnp.isfinite(position))
        dim = position.shape[-1]
        curvature_cost = {"full": dim, "diag": num_probes, "iso": 0}[covariance]
        info = PseudoGibbsInfo(
            (~finite).astype(jnp.int32), jnp.array(1 + curvature_cost, jnp.int32)
        )
        return PseudoGibbsState(jnp.where(finite, position, state.position)), info

    return kernel


class PseudoGibbs(AdaptiveKernel):
    """Pseudo-Gibbs on a noisy energy model as a NumPyro kernel.

    The model (or potential) is the *noisy* model p_σ; the chain's draws approximate the clean
    model. Pass ``noisy_model=`` a :class:`NoisyEnergyModel` from :func:`fit_noisy_energy`, or a
    NumPyro model / potential whose log density is that energy's negative. Its moves have no
    step size and its noise is fixed in the data's units, so warmup adapts nothing.

    Args:
        sigma: the noise level the model was trained at.
        covariance: ``"full"``, ``"diag"`` or ``"iso"``.
        num_probes: Rademacher probes for the ``"diag"`` estimator.
        iso_variance: the ``"iso"`` variance; from the model when given a NoisyEnergyModel.

    Extra fields: ``num_nonfinite``, ``num_grad_evals``.
    """

    def __init__(
        self,
        model: Callable | None = None,
        potential_fn: Callable | None = None,
        noisy_model: NoisyEnergyModel | None = None,
        sigma: float | None = None,
        covariance: str = "full",
        num_probes: int = 8,
        iso_variance: float | None = None,
        init_strategy: Callable = init_to_uniform,
    ):
        if noisy_model is not None:
            if model is not None or potential_fn is not None:
                raise ValueError("Give `noisy_model` alone, without `model`/`potential_fn`.")
            potential_fn = noisy_model.energy
            sigma = noisy_model.sigma if sigma is None else sigma
            iso_variance = noisy_model.iso_variance if iso_variance is None else iso_variance
        super().__init__(
            model, potential_fn, init_strategy, adapt_step_size=False, adapt_metric=False
        )
        self._kernel = build_kernel(sigma, covariance, num_probes, iso_variance)
        self.sigma, self.covariance = float(sigma), covariance
        self.num_probes, self.iso_variance = int(num_probes), iso_variance

    def core_init(self, position, logdensity_fn):
        return init(position)

    def core_step(self, rng_key, core_state, logdensity_fn, step_sizes, parameters):
        return self._kernel(rng_key, core_state, logdensity_fn)

    def initial_step_sizes(self, dtype):
        return jnp.zeros(0, dtype)

    def adaptation_signal(self, info):
        return jnp.zeros(0)


__all__ = [
    "COVARIANCES",
    "EnergyMLP",
    "NoisyEnergyModel",
    "PseudoGibbs",
    "PseudoGibbsInfo",
    "PseudoGibbsState",
    "build_kernel",
    "fit_noisy_energy",
    "init",
    "pseudo_gibbs_step",
]
