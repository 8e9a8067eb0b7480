"""Six of NumPyro's example models, as their scripts write them, on data simulated offline.

Each script passes its model to ``NUTS(...)``; swapping in ``DiGS(...)`` or
``ParallelTempering(...)`` and nothing else must work (1 or several chains, either PRNG key
style). The models are copied from NumPyro's ``examples/`` folder (funnel, bnn, gp,
horseshoe_regression, neutra, ucbadmit); the data sets are simulated the way those scripts
simulate theirs, or, for UC Berkeley admissions, written out (the script downloads them).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from jax.scipy.special import expit, logsumexp
from numpyro.distributions import constraints
from numpyro.handlers import reparam
from numpyro.infer.initialization import init_to_median, init_to_uniform
from numpyro.infer.reparam import LocScaleReparam

__all__ = ["NumPyroExample", "numpyro_examples"]


class NumPyroExample(NamedTuple):
    model: Callable
    model_args: tuple
    init_strategy: Callable
    """What the script passes to ``NUTS(model, init_strategy=...)``."""


# ------------------------------------------------------------------------------------ funnel
def funnel(dim=10):
    y = numpyro.sample("y", dist.Normal(0, 3))
    numpyro.sample("x", dist.Normal(jnp.zeros(dim - 1), jnp.exp(y / 2)))


# The script samples the non-centred version too, whose "x" becomes a deterministic site.
reparam_funnel = reparam(funnel, config={"x": LocScaleReparam(0)})


# --------------------------------------------------------------------------------------- bnn
def bnn(X, Y, D_H, D_Y=1):
    N, D_X = X.shape
    w1 = numpyro.sample("w1", dist.Normal(jnp.zeros((D_X, D_H)), jnp.ones((D_X, D_H))))
    z1 = jnp.tanh(jnp.matmul(X, w1))
    w2 = numpyro.sample("w2", dist.Normal(jnp.zeros((D_H, D_H)), jnp.ones((D_H, D_H))))
    z2 = jnp.tanh(jnp.matmul(z1, w2))
    w3 = numpyro.sample("w3", dist.Normal(jnp.zeros((D_H, D_Y)), jnp.ones((D_H, D_Y))))
    z3 = jnp.matmul(z2, w3)
    prec_obs = numpyro.sample("prec_obs", dist.Gamma(3.0, 1.0))
    sigma_obs = 1.0 / jnp.sqrt(prec_obs)
    with numpyro.plate("data", N):
        numpyro.sample("Y", dist.Normal(z3, sigma_obs).to_event(1), obs=Y)


def _bnn_data(rng, N=100, D_X=3, sigma_obs=0.05):
    X = np.linspace(-1, 1, N)
    X = np.power(X[:, np.newaxis], np.arange(D_X))
    W = 0.5 * rng.standard_normal(D_X)
    Y = X @ W + 0.5 * np.power(0.5 + X[:, 1], 2.0) * np.sin(4.0 * X[:, 1])
    Y = Y + sigma_obs * rng.standard_normal(N)
    Y = (Y - Y.mean()) / Y.std()
    return jnp.asarray(X), jnp.asarray(Y[:, np.newaxis]), 5


# ---------------------------------------------------------------------------------------- gp
def _rbf(X, Z, var, length, noise, jitter=1.0e-6):
    deltaXsq = jnp.power((X[:, None] - Z) / length, 2.0)
    return var * jnp.exp(-0.5 * deltaXsq) + (noise + jitter) * jnp.eye(X.shape[0])


def gp(X, Y):
    var = numpyro.sample("kernel_var", dist.LogNormal(0.0, 10.0))
    noise = numpyro.sample("kernel_noise", dist.LogNormal(0.0, 10.0))
    length = numpyro.sample("kernel_length", dist.LogNormal(0.0, 10.0))
    k = _rbf(X, X, var, length, noise)
    numpyro.sample(
        "Y",
        dist.MultivariateNormal(loc=jnp.zeros(X.shape[0]), covariance_matrix=k),
        obs=Y,
    )


def _gp_data(rng, N=25, sigma_obs=0.15):
    X = np.linspace(-1, 1, N)
    Y = X + 0.2 * np.power(X, 3.0) + 0.5 * np.power(0.5 + X, 2.0) * np.sin(4.0 * X)
    Y = Y + sigma_obs * rng.standard_normal(N)
    Y = (Y - Y.mean()) / Y.std()
    return jnp.asarray(X), jnp.asarray(Y)


# ---------------------------------------------------------------------- horseshoe regression
def horseshoe_regression(X, Y):
    D_X = X.shape[1]
    lambdas = numpyro.sample("lambdas", dist.HalfCauchy(jnp.ones(D_X)))
    tau = numpyro.sample("tau", dist.HalfCauchy(jnp.ones(1)))
    unscaled_betas = numpyro.sample("unscaled_betas", dist.Normal(0.0, jnp.ones(D_X)))
    scaled_betas = numpyro.deterministic("betas", tau * lambdas * unscaled_betas)
    mean_function = jnp.dot(X, scaled_betas)
    prec_obs = numpyro.sample("prec_obs", dist.Gamma(3.0, 1.0))
    sigma_obs = 1.0 / jnp.sqrt(prec_obs)
    numpyro.sample("Y", dist.Normal(mean_function, sigma_obs), obs=Y)


def _horseshoe_data(rng, N=50, D_X=32, sigma_obs=0.05):
    X = rng.standard_normal((N, D_X))
    W = np.r_[0.5 + rng.random(3), np.zeros(D_X - 3)]
    Y = X @ W + sigma_obs * rng.standard_normal(N)
    return jnp.asarray(X), jnp.asarray(Y)


# ------------------------------------------------------------------------------------ neutra
class DualMoonDistribution(dist.Distribution):
    support = constraints.real_vector

    def __init__(self):
        super().__init__(event_shape=(2,))

    def sample(self, key, sample_shape=()):
        # An arbitrary point of the right shape is enough for initialisation.
        return jnp.zeros(sample_shape + self.event_shape)

    def log_prob(self, x):
        term1 = 0.5 * ((jnp.linalg.norm(x, axis=-1) - 2) / 0.4) ** 2
        term2 = -0.5 * ((x[..., :1] + jnp.array([-2.0, 2.0])) / 0.6) ** 2
        return -(term1 - logsumexp(term2, axis=-1))


def dual_moon():
    numpyro.sample("x", DualMoonDistribution())


# ---------------------------------------------------------------------------------- ucbadmit
# UC Berkeley graduate admissions 1973, six departments × (male, female).
UCBADMIT_ADMIT = (512, 89, 353, 17, 120, 202, 138, 131, 53, 94, 22, 24)
UCBADMIT_APPLICATIONS = (825, 108, 560, 25, 325, 593, 417, 375, 191, 393, 373, 341)


def ucbadmit(dept, male, applications, admit=None):
    v_mu = numpyro.sample("v_mu", dist.Normal(0, jnp.array([4.0, 1.0])))
    sigma = numpyro.sample("sigma", dist.HalfNormal(jnp.ones(2)))
    L_Rho = numpyro.sample("L_Rho", dist.LKJCholesky(2, concentration=2))
    scale_tril = sigma[..., jnp.newaxis] * L_Rho
    num_dept = len(np.unique(dept))
    z = numpyro.sample("z", dist.Normal(jnp.zeros((num_dept, 2)), 1))
    v = jnp.dot(scale_tril, z.T).T
    logits = v_mu[0] + v[dept, 0] + (v_mu[1] + v[dept, 1]) * male
    if admit is None:
        probs = expit(logits)
        numpyro.sample("probs", dist.Delta(probs), obs=probs)
    numpyro.sample("admit", dist.Binomial(applications, logits=logits), obs=admit)


def _ucbadmit_data():
    dept = np.repeat(np.arange(6), 2)
    male = np.tile([1.0, 0.0], 6)
    return (
        dept,
        jnp.asarray(male),
        jnp.asarray(UCBADMIT_APPLICATIONS, jnp.float32),
        jnp.asarray(UCBADMIT_ADMIT, jnp.float32),
    )


def numpyro_examples(seed: int = 0) -> dict[str, NumPyroExample]:
    """The examples by name, each with its model, data and the script's init strategy."""
    rng = np.random.default_rng(seed)
    return {
        "funnel": NumPyroExample(funnel, (), init_to_uniform),
        "funnel_reparam": NumPyroExample(reparam_funnel, (), init_to_uniform),
        "bnn": NumPyroExample(bnn, _bnn_data(rng), init_to_uniform),
        "gp": NumPyroExample(gp, _gp_data(rng), init_to_median),
        "horseshoe_regression": NumPyroExample(
            horseshoe_regression, _horseshoe_data(rng), init_to_uniform
        ),
        "neutra": NumPyroExample(dual_moon, (), init_to_uniform),
        "ucbadmit": NumPyroExample(ucbadmit, _ucbadmit_data(), init_to_uniform),
    }
