"""The kernel template: windowed warmup, pooled metric, whitening, extra fields."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.infer import MCMC

from ppl_diffusion import DiGS, ParallelTempering
from ppl_diffusion.inference.kernel import Whitening

# Correlation 0.99, scales 1 and 100: hopeless for an unadapted sampler with one step size.
MEAN = jnp.array([3.0, -50.0])
SCALES = jnp.array([1.0, 100.0])
CORRELATION = 0.99
COV = jnp.outer(SCALES, SCALES) * jnp.array([[1.0, CORRELATION], [CORRELATION, 1.0]])


def badly_scaled_gaussian():
    numpyro.sample("x", dist.MultivariateNormal(MEAN, COV))


def run(kernel, num_warmup=1000, num_samples=1000, num_chains=4, seed=0, **run_kwargs):
    mcmc = MCMC(
        kernel,
        num_warmup=num_warmup,
        num_samples=num_samples,
        num_chains=num_chains,
        chain_method="vectorized",
        progress_bar=False,
    )
    mcmc.run(jax.random.PRNGKey(seed), **run_kwargs)
    return mcmc


def last_window_size(num_warmup: int) -> int:
    from blackjax.adaptation.window_adaptation import build_schedule

    ends = np.flatnonzero(np.asarray(build_schedule(num_warmup))[:, 1])
    return int(ends[-1] - ends[-2])


@pytest.mark.parametrize(
    "kernel_cls, dense", [(DiGS, False), (DiGS, True), (ParallelTempering, False)]
)
def test_metric_adaptation_recovers_the_posterior_covariance(kernel_cls, dense):
    num_warmup, num_chains = 1000, 4
    mcmc = run(
        kernel_cls(badly_scaled_gaussian, dense_mass=dense),
        num_warmup=num_warmup,
        num_samples=10,
        num_chains=num_chains,
    )
    estimate = np.asarray(mcmc.last_state.warmup.metric.inverse_mass_matrix[0])
    expected = np.asarray(COV if dense else jnp.diag(COV))
    # The last window's pooled estimate: relative error of a variance from n near-independent
    # draws is sqrt(2/n); allow 5 of those, doubled for the draws' autocorrelation.
    n = last_window_size(num_warmup) * num_chains
    tolerance = 10 * np.sqrt(2 / n)
    np.testing.assert_allclose(
        np.diag(estimate) if dense else estimate,
        np.diag(expected) if dense else expected,
        rtol=tolerance,
    )
    if dense:
        estimated_correlation = estimate[0, 1] / np.sqrt(estimate[0, 0] * estimate[1, 1])
        assert abs(estimated_correlation - CORRELATION) < 10 * (1 - CORRELATION**2) / np.sqrt(n)
    # Every chain holds the same pooled metric.
    np.testing.assert_allclose(
        mcmc.last_state.warmup.metric.inverse_mass_matrix,
        np.broadcast_to(estimate, (num_chains,) + estimate.shape),
    )


@pytest.mark.parametrize("dense", [False, True])
def test_whitened_digs_is_exact_on_a_correlated_badly_scaled_gaussian(
    dense, assert_expectations_match
):
    mcmc = run(DiGS(badly_scaled_gaussian, dense_mass=dense), num_samples=1500)
    x = np.asarray(mcmc.get_samples(group_by_chain=True)["x"])
    second = COV + jnp.outer(MEAN, MEAN)
    f = np.concatenate([x, x**2, x[..., :1] * x[..., 1:]], axis=-1)
    assert_expectations_match(f, np.r_[MEAN, jnp.diag(second), second[0, 1]])


def test_metric_is_frozen_after_warmup_and_extra_fields_report_cost():
    mcmc = run(
        DiGS(badly_scaled_gaussian),
        num_warmup=300,
        num_samples=200,
        extra_fields=("num_grad_evals", "jump_accept_prob", "step_size", "diverging"),
    )
    fields = mcmc.get_extra_fields(group_by_chain=True)
    assert np.all(np.asarray(fields["step_size"]) == np.asarray(fields["step_size"])[:, :1])
    num_levels = mcmc.sampler.schedule.num_levels
    # A jump costs one gradient per level; the NUTS move at least one leapfrog step.
    assert np.all(np.asarray(fields["num_grad_evals"]) >= num_levels + 1)
    assert fields["jump_accept_prob"].shape == (4, 200, num_levels)
    with pytest.raises(AttributeError, match="extra fields available"):
        mcmc.last_state.no_such_field  # noqa: B018


@pytest.mark.parametrize("dense", [False, True])
def test_whitening_round_trips_positions_and_gradients(dense):
    key_a, key_b = jax.random.split(jax.random.PRNGKey(0))
    a = jax.random.normal(key_a, (3, 3))
    covariance = a @ a.T + jnp.eye(3)
    whitening = Whitening.from_covariance(
        jnp.arange(3.0), covariance if dense else jnp.diag(covariance)
    )
    x = jax.random.normal(key_b, (5, 3))
    np.testing.assert_allclose(whitening.from_white(whitening.to_white(x)), x, atol=1e-5)

    def logdensity(x):
        return -0.5 * jnp.sum(x**3 + x**2)

    u = whitening.to_white(x[0])
    grad_u = jax.grad(whitening.logdensity(logdensity))(u)
    np.testing.assert_allclose(
        whitening.gradient_to_white(jax.grad(logdensity)(x[0])), grad_u, rtol=1e-5
    )
    np.testing.assert_allclose(
        whitening.gradient_from_white(grad_u), jax.grad(logdensity)(x[0]), rtol=1e-5
    )


def two_distant_modes():
    numpyro.sample(
        "x",
        dist.MixtureSameFamily(
            dist.Categorical(probs=jnp.array([0.5, 0.5])), dist.Normal(jnp.array([-8.0, 8.0]), 0.5)
        ),
    )


def test_warmup_ladder_is_reproducible_and_geometric_down_to_one_sd():
    ladders = []
    for _ in range(2):
        mcmc = run(DiGS(two_distant_modes), num_warmup=500, num_samples=10, seed=7)
        levels = jax.tree.map(lambda v: np.asarray(v[0]), mcmc.last_state.warmup.parameters)
        ladders.append(levels)
    np.testing.assert_array_equal(ladders[0].sigmas, ladders[1].sigmas)
    np.testing.assert_array_equal(ladders[0].active, ladders[1].active)
    sigmas = ladders[0].sigmas
    # Geometric from σ_max down to one (whitened) standard deviation.
    np.testing.assert_allclose(sigmas[-1], 1.0, rtol=1e-5)
    np.testing.assert_allclose(sigmas[1:] / sigmas[:-1], sigmas[1] / sigmas[0], rtol=1e-4)
    assert 2.0 <= sigmas[0] <= 1000.0
    # Jumps between modes 32 standard deviations apart are what keep the levels switched on.
    assert ladders[0].active.all()
