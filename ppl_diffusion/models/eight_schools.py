"""Eight schools (Rubin, 1981) in its non-centred form, with exact posterior moments.

The school effects integrate out analytically (y_j | μ, τ ~ N(μ, σ_j² + τ²)), so the posterior
over (μ, log τ) is two-dimensional and its moments, and those of θ and θ̃, follow by quadrature
on a fine grid. Those are the reference values the tests compare samplers against.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import numpyro
import numpyro.distributions as dist

from ppl_diffusion.models.base import BuiltinModel

Y = np.array([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])
SIGMA = np.array([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])
MU_PRIOR_SCALE = 5.0
TAU_PRIOR_SCALE = 5.0


def model(sigma, y=None):
    mu = numpyro.sample("mu", dist.Normal(0.0, MU_PRIOR_SCALE))
    tau = numpyro.sample("tau", dist.HalfCauchy(TAU_PRIOR_SCALE))
    with numpyro.plate("school", len(sigma)):
        theta_tilde = numpyro.sample("theta_tilde", dist.Normal(0.0, 1.0))
        theta = numpyro.deterministic("theta", mu + tau * theta_tilde)
        numpyro.sample("obs", dist.Normal(theta, sigma), obs=y)


@lru_cache(maxsize=1)
def reference_moments(num_mu: int = 1201, num_log_tau: int = 1201) -> dict:
    """Exact posterior (mean, sd) of mu, tau, theta and theta_tilde by 2-D quadrature."""
    mu = np.linspace(-30.0, 40.0, num_mu)[:, None, None]
    log_tau = np.linspace(-14.0, 6.0, num_log_tau)[None, :, None]
    tau = np.exp(log_tau)
    total_var = SIGMA**2 + tau**2
    log_post = (
        -0.5 * (mu[..., 0] / MU_PRIOR_SCALE) ** 2
        - np.log1p((tau[..., 0] / TAU_PRIOR_SCALE) ** 2)
        + log_tau[..., 0]  # Jacobian of tau = exp(log_tau)
        + np.sum(-0.5 * (Y - mu) ** 2 / total_var - 0.5 * np.log(total_var), axis=-1)
    )
    weights = np.exp(log_post - log_post.max())
    weights /= weights.sum()

    def moments(first, second):
        mean = (
            np.tensordot(weights, first, axes=([0, 1], [0, 1]))
            if first.ndim == 3
            else np.sum(weights * first)
        )
        sq = (
            np.tensordot(weights, second, axes=([0, 1], [0, 1]))
            if second.ndim == 3
            else np.sum(weights * second)
        )
        return np.asarray(mean), np.sqrt(np.asarray(sq) - np.asarray(mean) ** 2)

    cond_var = 1.0 / (1.0 / SIGMA**2 + 1.0 / tau**2)
    cond_mean = cond_var * (Y / SIGMA**2 + mu / tau**2)
    mu_b = np.broadcast_to(mu, cond_mean.shape)
    tau_b = np.broadcast_to(tau, cond_mean.shape)
    return {
        "mu": moments(mu_b[..., 0], mu_b[..., 0] ** 2),
        "tau": moments(tau_b[..., 0], tau_b[..., 0] ** 2),
        "theta": moments(cond_mean, cond_var + cond_mean**2),
        "theta_tilde": moments(
            (cond_mean - mu_b) / tau_b, (cond_var + (cond_mean - mu_b) ** 2) / tau_b**2
        ),
    }


def builtin() -> BuiltinModel:
    return BuiltinModel(
        name="eight_schools",
        model=model,
        model_args=(SIGMA,),
        model_kwargs={"y": Y},
        reference=reference_moments(),
    )
