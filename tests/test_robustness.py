import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.infer import MCMC

from ppl_diffusion import DiGS, ParallelTempering, sharded_chains

MEAN = jnp.array([1.0, -2.0])
COV = jnp.array([[1.0, 0.8], [0.8, 2.0]])


def gaussian_model():
    numpyro.sample("x", dist.MultivariateNormal(MEAN, COV))


def draws(kernel, chain_method="vectorized", seed=0, num_chains=4, num_samples=300, **run_kwargs):
    mcmc = MCMC(
        kernel,
        num_warmup=100,
        num_samples=num_samples,
        num_chains=num_chains,
        chain_method=chain_method,
        progress_bar=False,
    )
    mcmc.run(jax.random.PRNGKey(seed), **run_kwargs)
    return mcmc


@pytest.mark.parametrize("kernel_cls", [DiGS, ParallelTempering])
def test_float64_runs_stay_float64_and_match_moments(kernel_cls, assert_expectations_match):
    with jax.enable_x64(True):
        mcmc = draws(kernel_cls(gaussian_model), num_samples=1500)
        x = np.asarray(mcmc.get_samples(group_by_chain=True)["x"])
        assert x.dtype == np.float64
        assert mcmc.last_state.z["x"].dtype == jnp.float64
    assert_expectations_match(x, MEAN)


def test_fixed_seed_reproduces_draws_and_another_seed_does_not():
    first = draws(DiGS(gaussian_model), seed=3).get_samples()["x"]
    again = draws(DiGS(gaussian_model), seed=3).get_samples()["x"]
    other = draws(DiGS(gaussian_model), seed=4).get_samples()["x"]
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)


def test_unpooled_chain_methods_give_the_same_draws_and_use_every_device():
    # Sequential, parallel and sharded chains adapt each chain on its own, so they must agree;
    # vectorized chains pool their warmup statistics and differ. Batched arithmetic rounds
    # differently from unbatched, so the comparison runs in float64.
    assert jax.device_count() == 2
    with jax.enable_x64(True):
        runs = {
            name: draws(DiGS(gaussian_model), method, num_chains=2)
            for name, method in [
                ("sequential", "sequential"),
                ("parallel", "parallel"),
                ("sharded", sharded_chains()),
            ]
        }
        samples = {
            name: np.asarray(mcmc.get_samples(group_by_chain=True)["x"])
            for name, mcmc in runs.items()
        }
    assert samples["sequential"].dtype == np.float64
    assert not np.allclose(samples["sequential"][0], samples["sequential"][1])
    np.testing.assert_allclose(samples["parallel"], samples["sequential"], atol=1e-8)
    np.testing.assert_allclose(samples["sharded"], samples["sequential"], atol=1e-4)
    assert len(runs["sharded"].last_state.z["x"].sharding.device_set) == 2


def test_sharded_chains_need_a_multiple_of_the_device_count():
    with pytest.raises(ValueError, match="split evenly over 2 devices"):
        draws(DiGS(gaussian_model), chain_method=sharded_chains(), num_chains=3)
