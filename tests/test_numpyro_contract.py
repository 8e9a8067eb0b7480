"""What NumPyro users rely on: new data under jit_model_args, both key styles, the default
`diverging` field and the sample statistics ArviZ reads."""

import arviz as az
import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.infer import MCMC

from ppl_diffusion import DiGS, ParallelTempering, moment_matched_gibbs

X = jnp.linspace(0.5, 1.5, 20)


def regression(x, y=None):
    slope = numpyro.sample("slope", dist.Normal(0.0, 10.0))
    numpyro.sample("y", dist.Normal(slope * x, 1.0), obs=y)


KERNELS = {
    "DiGS": DiGS,
    "ParallelTempering": ParallelTempering,
    "moment_matched_gibbs": lambda model: moment_matched_gibbs(model, sigma=0.3),
}


@pytest.mark.parametrize(
    "kernel_name, new_style_key",
    [("DiGS", True), ("ParallelTempering", False), ("moment_matched_gibbs", True)],
)
def test_a_second_run_with_new_data_samples_the_new_posterior(kernel_name, new_style_key):
    make_kernel = KERNELS[kernel_name]
    key = jax.random.key(0) if new_style_key else jax.random.PRNGKey(0)
    mcmc = MCMC(
        make_kernel(regression),
        num_warmup=100,
        num_samples=200,
        num_chains=2,
        chain_method="vectorized",
        jit_model_args=True,
        progress_bar=False,
    )
    # Posterior sd of the slope is 1/|x| ≈ 0.2; the two data sets put it 4.5 apart.
    for true_slope in (1.5, -3.0):
        mcmc.run(key, X, true_slope * X)
        slope = mcmc.get_samples()["slope"]
        assert abs(float(slope.mean()) - true_slope) < 0.2


@pytest.mark.parametrize("kernel_name", sorted(KERNELS))
def test_default_and_standard_extra_fields_reach_arviz(kernel_name):
    mcmc = MCMC(
        KERNELS[kernel_name](regression),
        num_warmup=50,
        num_samples=100,
        num_chains=2,
        chain_method="vectorized",
        progress_bar=False,
    )
    mcmc.run(
        jax.random.PRNGKey(1),
        X,
        2.0 * X,
        extra_fields=("potential_energy", "accept_prob", "diverging", "num_grad_evals"),
    )
    fields = mcmc.get_extra_fields(group_by_chain=True)
    assert fields["diverging"].shape == (2, 100) and fields["diverging"].dtype == bool
    assert bool(jnp.all(jnp.isfinite(fields["potential_energy"])))
    accept = fields["accept_prob"]
    assert accept.shape == (2, 100) and bool(jnp.all((accept >= 0) & (accept <= 1)))
    # Not a constant: the acceptance of real moves, which adaptation steers near 0.8 for a
    # NUTS move (moment-matched Gibbs's Laplace jump is exact here, so it is accepted).
    assert 0.5 < float(accept.mean()) <= 1.0
    assert bool(jnp.all(fields["num_grad_evals"] >= 1))
    idata = az.from_numpyro(mcmc)
    assert {"lp", "diverging", "acceptance_rate"} <= set(idata.sample_stats)


def regression_with_prediction(x, y=None):
    slope = numpyro.sample("slope", dist.Normal(0.0, 10.0))
    numpyro.deterministic("prediction", slope * x)
    numpyro.sample("y", dist.Normal(slope * x, 1.0), obs=y)


@pytest.mark.parametrize("kernel_name", sorted(KERNELS))
def test_print_summary_leaves_deterministic_sites_out_as_nuts_does(kernel_name, capsys):
    mcmc = MCMC(
        KERNELS[kernel_name](regression_with_prediction),
        num_warmup=20,
        num_samples=20,
        progress_bar=False,
    )
    mcmc.run(jax.random.PRNGKey(0), X, 2.0 * X)
    assert mcmc.get_samples()["prediction"].shape == (20, X.size)
    mcmc.print_summary()
    summary = capsys.readouterr().out
    assert "slope" in summary and "prediction" not in summary
