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
from numpyro.infer.initialization import init_to_uniform

from ppl_diffusion.inference.denoising import moment_matched_proposal
from ppl_diffusion.inference.kernel import AdaptiveKernel
from ppl_diffusion.inference.optim import apply_optimizer, train

Array = jax.Array

COVARIANCES = ("full", "diag", "ocm", "iso")


# ------------------------------------------------------------------------------ noisy energy
def _outside(x, lower, upper):
    """The nearest point of the box [lower, upper] and the offset of ``x`` from it."""
    inside = jnp.clip(x, lower, upper)
    return inside, x - inside


class EnergyMLP(eqx.Module):
    """Energy f(x̃) = MLP(c) + ∇MLP(c)·(x̃ − c) + ‖x̃ − c‖²/(2τ²), c = clip(x̃) into the box
    [lower, upper]; its negative gradient is the score.

    Inside the box this is the network. Outside it the network is continued to first order
    (so the energy and score are continuous at the box) plus a Gaussian of scale τ in the
    distance to the box. With the box around the data and τ = σ that is the decay of the
    noisy data distribution itself, which falls like a Gaussian of scale σ (times the data's
    own tail, which the network's slope at the box carries on). An MLP alone keeps whatever
    slope it has where DSM never sees a sample, and chains drifted off to infinity; this
    model is normalisable by construction, and from outside the box Tweedie's mean
    x̃ + σ² s(x̃) of every outside coordinate is the box's face moved by σ² times the
    network's slope there, however far out x̃ is: chains come straight back.
    Without a box (the default) the energy is the bare MLP.
    """

    mlp: eqx.nn.MLP
    lower: Array
    upper: Array
    tail_scale: float = eqx.field(static=True)

    def __init__(self, dim, width, depth, key, lower=None, upper=None, tail_scale=1.0):
        self.mlp = eqx.nn.MLP(dim, "scalar", width, depth, activation=jax.nn.swish, key=key)
        self.lower = jnp.full(dim, -jnp.inf) if lower is None else jnp.asarray(lower)
        self.upper = jnp.full(dim, jnp.inf) if upper is None else jnp.asarray(upper)
        self.tail_scale = float(tail_scale)

    def __call__(self, x):
        inside, offset = _outside(x, *jax.lax.stop_gradient((self.lower, self.upper)))
        value, slope_along_offset = jax.jvp(self.mlp, (inside,), (offset,))
        return value + slope_along_offset + 0.5 * jnp.sum(offset**2) / self.tail_scale**2


class CurvatureMLP(eqx.Module):
    """h(x̃) ≈ diag ∇s(x̃), the diagonal of the noisy score's Jacobian, learnt by OCM.

    Outside the energy's box ∇s is exactly −I/τ² in the coordinates that are outside; the
    network answers only inside, where it was trained.
    """

    mlp: eqx.nn.MLP
    lower: Array
    upper: Array
    tail_scale: float = eqx.field(static=True)

    def __init__(self, energy: EnergyMLP, width, depth, key):
        dim = energy.lower.shape[0]
        self.mlp = eqx.nn.MLP(dim, dim, width, depth, activation=jax.nn.swish, key=key)
        self.lower, self.upper, self.tail_scale = energy.lower, energy.upper, energy.tail_scale

    def __call__(self, x):
        inside, offset = _outside(x, *jax.lax.stop_gradient((self.lower, self.upper)))
        return jnp.where(offset != 0, -1.0 / self.tail_scale**2, self.mlp(inside))


class NoisyEnergyModel(NamedTuple):
    energy: EnergyMLP
    sigma: float
    iso_variance: float
    """σ² − σ⁴ E‖s(x̃)‖²/d over the noisy training data (the ``"iso"`` covariance)."""
    curvature: CurvatureMLP | None = None
    """The OCM network for the ``"ocm"`` covariance (:func:`fit_ocm_diagonal`)."""

    def logdensity(self, x):
        return -self.energy(x)

    def score(self, x):
        return jax.grad(self.logdensity)(x)


def _iso_variance(score_fn, noisy: Array, sigma: float) -> float:
    squared = jnp.mean(jnp.sum(jax.vmap(score_fn)(noisy) ** 2, -1))
    variance = sigma**2 - sigma**4 * squared / noisy.shape[-1]
    # A poorly fitted model can make the estimate non-positive; keep a small floor.
    return float(jnp.maximum(variance, 1e-3 * sigma**2))


def _dsm_loss(energy, clean, noise, sigma):
    noisy = clean + sigma * noise
    score = jax.vmap(jax.grad(lambda x: -energy(x)))(noisy)
    return jnp.mean(jnp.sum((noisy + sigma**2 * score - clean) ** 2, -1)) / sigma**2


@eqx.filter_jit
def _dsm_step(energy, opt_state, key, data, sigma, batch_size, optimizer):
    key_batch, key_noise = jax.random.split(key)
    clean = data[jax.random.randint(key_batch, (batch_size,), 0, data.shape[0])]
    noise = jax.random.normal(key_noise, clean.shape)
    loss, grads = eqx.filter_value_and_grad(_dsm_loss)(energy, clean, noise, sigma)
    return *apply_optimizer(optimizer, energy, grads, opt_state), loss


def _checked_data(data) -> Array:
    data = jnp.asarray(data)
    if data.ndim != 2 or data.shape[0] < 2:
        raise ValueError(f"`data` must be an (n, d) array with n ≥ 2, got shape {data.shape}.")
    if not bool(jnp.all(jnp.isfinite(data))):
        raise ValueError("`data` contains non-finite values.")
    return data


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
    ‖x̃ + σ² s(x̃) − x‖², x̃ = x + σε. The energy is an :class:`EnergyMLP` on the data's
    bounding box with Gaussian tails of scale σ outside it."""
    data = _checked_data(data)
    if not sigma > 0:
        raise ValueError(f"`sigma` must be positive, got {sigma}.")
    key_init, key_train, key_iso = jax.random.split(rng_key, 3)
    energy = EnergyMLP(
        data.shape[1], width, depth, key_init, data.min(0), data.max(0), tail_scale=sigma
    )
    energy = train(
        _dsm_step,
        energy,
        key_train,
        num_steps,
        learning_rate,
        "fit noisy energy (DSM)",
        progress_bar,
        data,
        sigma,
        batch_size,
    )
    model = NoisyEnergyModel(energy, float(sigma), 0.0)
    noisy = data + sigma * jax.random.normal(key_iso, data.shape)
    return model._replace(iso_variance=_iso_variance(model.score, noisy[:5000], sigma))


def _ocm_loss(curvature, energy, noisy, probes):
    def score(x):
        return -jax.grad(energy)(x)

    targets = jax.vmap(lambda x, v: v * jax.jvp(score, (x,), (v,))[1])(noisy, probes)
    return jnp.mean(jnp.sum((jax.vmap(curvature)(noisy) - targets) ** 2, -1))


@eqx.filter_jit
def _ocm_step(curvature, opt_state, key, energy, data, sigma, batch_size, optimizer):
    key_batch, key_noise, key_probe = jax.random.split(key, 3)
    clean = data[jax.random.randint(key_batch, (batch_size,), 0, data.shape[0])]
    noisy = clean + sigma * jax.random.normal(key_noise, clean.shape)
    probes = jax.random.rademacher(key_probe, clean.shape, dtype=clean.dtype)
    loss, grads = eqx.filter_value_and_grad(_ocm_loss)(curvature, energy, noisy, probes)
    return *apply_optimizer(optimizer, curvature, grads, opt_state), loss


def fit_ocm_diagonal(
    rng_key: Array,
    model: NoisyEnergyModel,
    data: Array,
    num_steps: int = 5_000,
    batch_size: int = 256,
    learning_rate: float = 1e-3,
    width: int = 256,
    depth: int = 3,
    progress_bar: bool = True,
) -> NoisyEnergyModel:
    """Learn diag ∇s(x̃) of a fitted noisy model by optimal covariance matching: regress a
    network h(x̃) onto v ⊙ (∇s(x̃) v), Rademacher v, whose expectation over v is exactly
    diag ∇s(x̃) (the off-diagonal terms average out), at noisy data points x̃ = x + σε.
    Returns ``model`` with ``curvature`` set, for the ``"ocm"`` covariance
    σ² I + σ⁴ diag h(x̃): one network call per pseudo-Gibbs step where Hutchinson's estimate
    needs ``num_probes`` Jacobian-vector products."""
    data = _checked_data(data)
    if data.shape[1] != model.energy.lower.shape[0]:
        raise ValueError(
            f"`data` has {data.shape[1]} coordinates but the model {model.energy.lower.shape[0]}."
        )
    key_init, key_train = jax.random.split(rng_key)
    curvature = CurvatureMLP(model.energy, width, depth, key_init)
    curvature = train(
        _ocm_step,
        curvature,
        key_train,
        num_steps,
        learning_rate,
        "fit OCM diagonal",
        progress_bar,
        model.energy,
        data,
        model.sigma,
        batch_size,
    )
    return model._replace(curvature=curvature)


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
    curvature_fn: Callable | None = None,
) -> Array:
    """x̃ = x + σε, then x ~ N(x̃ + σ² s(x̃), σ² I + σ⁴ ∇s(x̃)) with the chosen covariance
    (``"ocm"``: the diagonal of ∇s from ``curvature_fn``, see :func:`fit_ocm_diagonal`)."""
    key_noise, key_proposal, key_draw = jax.random.split(rng_key, 3)
    noisy = position + sigma * jax.random.normal(key_noise, position.shape)
    learnt = curvature_fn(noisy) if covariance == "ocm" else None
    proposal = moment_matched_proposal(
        key_proposal,
        noisy,
        sigma,
        score_fn,
        "diag" if covariance == "ocm" else covariance,
        num_probes,
        iso_variance,
        curvature_diagonal=learnt,
    )
    return proposal.sample(key_draw)


def build_kernel(
    sigma: float,
    covariance: str,
    num_probes: int = 8,
    iso_variance: float | None = None,
    curvature_fn: Callable | None = None,
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
    if covariance == "ocm" and curvature_fn is None:
        raise ValueError(
            "`covariance='ocm'` needs the learnt diagonal: a NoisyEnergyModel from "
            "`fit_ocm_diagonal` (or `curvature_fn`)."
        )
    if isinstance(num_probes, bool) or int(num_probes) != num_probes or num_probes < 1:
        raise ValueError(f"`num_probes` must be a positive integer, got {num_probes}.")

    def kernel(rng_key, state: PseudoGibbsState, logdensity_fn):
        score_fn = jax.grad(logdensity_fn)
        position = pseudo_gibbs_step(
            rng_key,
            state.position,
            score_fn,
            sigma,
            covariance,
            num_probes,
            iso_variance,
            curvature_fn,
        )
        finite = jnp.all(jnp.isfinite(position))
        dim = position.shape[-1]
        curvature_cost = {"full": dim, "diag": num_probes, "ocm": 0, "iso": 0}[covariance]
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
        covariance: ``"full"``, ``"diag"`` (Hutchinson), ``"ocm"`` (the learnt diagonal of a
            model from :func:`fit_ocm_diagonal`: one network call instead of ``num_probes``
            Jacobian-vector products) or ``"iso"``.
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
        curvature_fn = None
        if noisy_model is not None:
            if model is not None or potential_fn is not None:
                raise ValueError("Give `noisy_model` alone, without `model`/`potential_fn`.")
            potential_fn = noisy_model.energy
            sigma = noisy_model.sigma if sigma is None else sigma
            iso_variance = noisy_model.iso_variance if iso_variance is None else iso_variance
            curvature_fn = noisy_model.curvature
        super().__init__(
            model,
            potential_fn,
            init_strategy,
            adapt_step_size=False,
            adapt_metric=False,
            auto_reparam=False,
        )
        self._kernel = build_kernel(sigma, covariance, num_probes, iso_variance, curvature_fn)
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
    "CurvatureMLP",
    "fit_noisy_energy",
    "fit_ocm_diagonal",
    "init",
    "pseudo_gibbs_step",
]
