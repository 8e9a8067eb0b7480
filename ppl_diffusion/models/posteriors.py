"""Ordinary Bayesian posteriors of the kinds users bring, with reference moments.

Each model is a plain NumPyro model on a small data set simulated offline from a fixed seed.
Where the posterior moments are known exactly (the Gaussian, the funnel, eight schools by
quadrature) those are the reference; elsewhere the reference is a long NUTS run in float64
(8 chains × 5000 draws), computed once by ``benchmarks/make_references.py`` and stored, with
its Monte-Carlo standard errors, in ``posterior_references.json`` beside this file.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.distributions.transforms import OrderedTransform

from ppl_diffusion.models import eight_schools, funnel
from ppl_diffusion.models.base import BuiltinModel

REFERENCE_FILE = Path(__file__).with_name("posterior_references.json")


# ------------------------------------------------------------------------------------ models
def eight_schools_centered(sigma, y=None):
    mu = numpyro.sample("mu", dist.Normal(0.0, eight_schools.MU_PRIOR_SCALE))
    tau = numpyro.sample("tau", dist.HalfCauchy(eight_schools.TAU_PRIOR_SCALE))
    with numpyro.plate("school", len(sigma)):
        theta = numpyro.sample("theta", dist.Normal(mu, tau))
        numpyro.sample("obs", dist.Normal(theta, sigma), obs=y)


def logistic_unscaled(features, labels=None):
    """Logistic regression on raw predictors whose scales span five orders of magnitude."""
    weights = numpyro.sample(
        "weights", dist.Normal(0.0, 10.0).expand([features.shape[1]]).to_event(1)
    )
    intercept = numpyro.sample("intercept", dist.Normal(0.0, 10.0))
    numpyro.sample("obs", dist.Bernoulli(logits=features @ weights + intercept), obs=labels)


def gp_poisson(x, counts=None):
    """Counts with a latent Gaussian process log-rate (squared-exponential kernel, non-centred)."""
    lengthscale = numpyro.sample("lengthscale", dist.InverseGamma(5.0, 5.0))
    amplitude = numpyro.sample("amplitude", dist.HalfNormal(1.0))
    offset = numpyro.sample("offset", dist.Normal(0.0, 2.0))
    distance2 = (x[:, None] - x[None, :]) ** 2
    kernel = amplitude**2 * jnp.exp(-0.5 * distance2 / lengthscale**2)
    cholesky = jnp.linalg.cholesky(kernel + 1e-6 * jnp.eye(x.shape[0]))
    latent = numpyro.sample("latent", dist.Normal(0.0, 1.0).expand([x.shape[0]]).to_event(1))
    log_rate = offset + cholesky @ latent
    numpyro.sample("obs", dist.Poisson(jnp.exp(log_rate)).to_event(1), obs=counts)


def stochastic_volatility(returns):
    """AR(1) log-volatility (non-centred), the model of the Stan user's guide."""
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    phi = numpyro.sample("phi", dist.Uniform(-1.0, 1.0))
    sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
    innovations = numpyro.sample(
        "innovations", dist.Normal(0.0, 1.0).expand([returns.shape[0]]).to_event(1)
    )

    def step(previous, innovation):
        current = mu + phi * (previous - mu) + sigma * innovation
        return current, current

    first = mu + sigma * innovations[0] / jnp.sqrt(1 - phi**2)
    _, rest = jax.lax.scan(step, first, innovations[1:])
    log_volatility = jnp.concatenate([first[None], rest])
    numpyro.sample("obs", dist.Normal(0.0, jnp.exp(log_volatility / 2)).to_event(1), obs=returns)


def irt_2pl(student, item, responses=None, num_students=20, num_items=10):
    """Two-parameter logistic item-response model."""
    ability = numpyro.sample("ability", dist.Normal(0.0, 1.0).expand([num_students]).to_event(1))
    difficulty = numpyro.sample("difficulty", dist.Normal(0.0, 2.0).expand([num_items]).to_event(1))
    discrimination = numpyro.sample(
        "discrimination", dist.LogNormal(0.0, 0.5).expand([num_items]).to_event(1)
    )
    logits = discrimination[item] * (ability[student] - difficulty[item])
    numpyro.sample("obs", dist.Bernoulli(logits=logits).to_event(1), obs=responses)


CORRELATED_MEAN = np.array([3.0, -50.0])
CORRELATED_COV = np.outer([1.0, 100.0], [1.0, 100.0]) * np.array([[1.0, 0.99], [0.99, 1.0]])


def correlated_gaussian():
    """Correlation 0.99 between coordinates whose scales differ a hundredfold."""
    numpyro.sample("x", dist.MultivariateNormal(CORRELATED_MEAN, CORRELATED_COV))


def ordered_mixture(data=None):
    """Two-component normal mixture, means ordered to remove label switching."""
    means = numpyro.sample(
        "means",
        dist.TransformedDistribution(
            dist.Normal(0.0, 5.0).expand([2]).to_event(1), OrderedTransform()
        ),
    )
    scales = numpyro.sample("scales", dist.HalfNormal(2.0).expand([2]).to_event(1))
    weight = numpyro.sample("weight", dist.Beta(2.0, 2.0))
    mixing = dist.Categorical(probs=jnp.stack([weight, 1 - weight]))
    with numpyro.plate("data", data.shape[0]):
        numpyro.sample("obs", dist.MixtureSameFamily(mixing, dist.Normal(means, scales)), obs=data)


# -------------------------------------------------------------------------------------- data
def _rng(name: str) -> np.random.Generator:
    return np.random.default_rng(sum(map(ord, name)))


def _logistic_data():
    rng = _rng("logistic_unscaled")
    scales = np.array([0.01, 1.0, 10.0, 100.0, 1000.0])
    features = rng.normal(size=(200, 5)) * scales
    weights = np.array([50.0, 1.0, -0.1, 0.01, -0.002])
    logits = features @ weights + 0.5
    labels = (rng.uniform(size=200) < 1 / (1 + np.exp(-logits))).astype(float)
    return (features,), {"labels": labels}


def _gp_data():
    rng = _rng("gp_poisson")
    x = np.linspace(0.0, 10.0, 25)
    log_rate = 1.0 + np.sin(x)
    return (x,), {"counts": rng.poisson(np.exp(log_rate)).astype(float)}


def _volatility_data():
    rng = _rng("stochastic_volatility")
    h = np.empty(60)
    h[0] = -1.0
    for t in range(1, 60):
        h[t] = -1.0 + 0.9 * (h[t - 1] + 1.0) + 0.3 * rng.normal()
    return (rng.normal(size=60) * np.exp(h / 2),), {}


def _irt_data():
    rng = _rng("irt_2pl")
    ability, difficulty = rng.normal(size=20), rng.normal(size=10)
    discrimination = np.exp(0.3 * rng.normal(size=10))
    student, item = np.repeat(np.arange(20), 10), np.tile(np.arange(10), 20)
    logits = discrimination[item] * (ability[student] - difficulty[item])
    responses = (rng.uniform(size=200) < 1 / (1 + np.exp(-logits))).astype(float)
    return (student, item), {"responses": responses}


def _mixture_data():
    rng = _rng("ordered_mixture")
    component = rng.uniform(size=150) < 0.3
    return (), {"data": np.where(component, rng.normal(-2.0, 1.0, 150), rng.normal(2.0, 0.8, 150))}


# -------------------------------------------------------------------------------- references
@lru_cache(maxsize=1)
def stored_references() -> dict:
    """Reference moments from long NUTS runs: model -> site -> {"mean", "sd", "mcse"}."""
    if not REFERENCE_FILE.exists():
        return {}
    return json.loads(REFERENCE_FILE.read_text())


def _exact(reference: dict) -> dict:
    """(mean, sd) pairs as the reference format, with zero Monte-Carlo error."""
    return {
        site: {
            "mean": np.asarray(mean).tolist(),
            "sd": np.asarray(sd).tolist(),
            "mcse": np.zeros_like(np.asarray(mean)).tolist(),
        }
        for site, (mean, sd) in reference.items()
    }


def _schools_reference() -> dict:
    moments = eight_schools.reference_moments()
    return _exact({site: moments[site] for site in ("mu", "tau", "theta")})


def _funnel_reference() -> dict:
    # v ~ N(0, 3²); x_i | v ~ N(0, e^v). The sd of x_i is e^{9/4}, but E[x_i⁴] = 3e^{18}
    # makes its estimate from 4000 draws useless (relative sd about 2.5: exact draws land in
    # [0.8, 1.25] one time in twenty), so it is not judged; v's sd is, and it is what a sampler
    # that misses the neck gets wrong.
    return _exact(
        {"v": (0.0, 3.0), "x": (np.zeros(funnel.DIM - 1), np.full(funnel.DIM - 1, np.nan))}
    )


POSTERIORS = {
    "eight_schools_centered": (
        eight_schools_centered,
        lambda: ((eight_schools.SIGMA,), {"y": eight_schools.Y}),
    ),
    "eight_schools": (
        eight_schools.model,
        lambda: ((eight_schools.SIGMA,), {"y": eight_schools.Y}),
    ),
    "logistic_unscaled": (logistic_unscaled, _logistic_data),
    "gp_poisson": (gp_poisson, _gp_data),
    "stochastic_volatility": (stochastic_volatility, _volatility_data),
    "irt_2pl": (irt_2pl, _irt_data),
    "correlated_gaussian": (correlated_gaussian, lambda: ((), {})),
    "funnel": (funnel.model, lambda: ((), {})),
    "ordered_mixture": (ordered_mixture, _mixture_data),
}


def reference_for(name: str) -> dict | None:
    if name in ("eight_schools_centered",):
        return _schools_reference()
    if name == "eight_schools":
        moments = eight_schools.reference_moments()
        return _exact({site: moments[site] for site in ("mu", "tau", "theta_tilde")})
    if name == "correlated_gaussian":
        return _exact({"x": (CORRELATED_MEAN, np.sqrt(np.diag(CORRELATED_COV)))})
    if name == "funnel":
        return _funnel_reference()
    return stored_references().get(name)


def posterior(name: str) -> BuiltinModel:
    """The suite's model ``name`` with its data and reference moments."""
    model, data = POSTERIORS[name]
    model_args, model_kwargs = data()
    return BuiltinModel(
        name=name,
        model=model,
        model_args=model_args,
        model_kwargs=model_kwargs,
        reference=reference_for(name),
    )
