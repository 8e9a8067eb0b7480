import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.infer import MCMC

from ppl_diffusion.inference.tempering import (
    ParallelTempering,
    build_kernel,
    geometric_ladder,
    init,
)

WEIGHTS, LOCS, SCALE = jnp.array([0.3, 0.7]), jnp.array([-4.0, 4.0]), 0.7


def bimodal_model():
    numpyro.sample("x", dist.MixtureSameFamily(dist.Categorical(WEIGHTS), dist.Normal(LOCS, SCALE)))


def test_parallel_tempering_recovers_bimodal_moments(assert_expectations_match):
    kernel = ParallelTempering(bimodal_model, num_temperatures=4, min_beta=0.02)
    mcmc = MCMC(
        kernel,
        num_warmup=500,
        num_samples=3000,
        num_chains=4,
        chain_method="vectorized",
        progress_bar=False,
    )
    mcmc.run(jax.random.PRNGKey(0), extra_fields=("swap_accept_prob",))
    x = np.asarray(mcmc.get_samples(group_by_chain=True)["x"])
    mean = float(WEIGHTS @ LOCS)
    second = SCALE**2 + float(WEIGHTS @ LOCS**2)
    assert_expectations_match(np.stack([x, x**2, x > 0], -1), [mean, second, 0.7])
    swap = mcmc.get_extra_fields()["swap_accept_prob"].mean(0)
    assert swap.shape == (3,) and np.all(swap > 0.1)


@pytest.mark.parametrize("local_move", ["nuts", "mala"])
def test_swap_and_moves_keep_every_tempered_replica_exact(local_move):
    """Tempered N(0, 1) replicas are N(0, 1/β): one kernel step from exact draws keeps that."""
    betas = jnp.array([1.0, 0.3, 0.1])

    def logdensity(x):
        return -0.5 * jnp.sum(x**2)

    n = 20000
    key_start, key_step = jax.random.split(jax.random.PRNGKey(1))
    start = jax.random.normal(key_start, (n, 3, 1)) / jnp.sqrt(betas)[None, :, None]
    kernel = build_kernel(betas, local_move)
    step_sizes = jnp.array([0.5, 1.5, 5.0])

    def one(key, positions, parity):
        replicas = init(positions, logdensity)._replace(swap_parity=parity)
        return kernel(key, replicas, logdensity, step_sizes)

    keys = jax.random.split(key_step, n)
    for parity in (0, 1):
        replicas, info = jax.vmap(one, in_axes=(0, 0, None))(keys, start, jnp.array(parity))
        assert float(info.swap_accept_prob.mean()) > 0.2
        assert np.all(np.asarray(replicas.swap_parity) == 1 - parity)
        variances = np.asarray(replicas.position[..., 0]).var(0)
        np.testing.assert_allclose(variances, 1 / betas, rtol=5 * np.sqrt(2 / n))
        np.testing.assert_allclose(
            replicas.logdensity, jax.vmap(jax.vmap(logdensity))(replicas.position), rtol=1e-5
        )


def test_geometric_ladder():
    np.testing.assert_allclose(geometric_ladder(3, 0.01), [1.0, 0.1, 0.01], rtol=1e-6)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_temperatures": 1}, "at least 2 temperatures"),
        ({"min_beta": 1.5}, r"min_beta` must lie in \(0, 1\)"),
        ({"betas": [0.9, 0.5]}, "must start at 1"),
        ({"betas": [1.0, 0.5, 0.7]}, "decrease strictly"),
        ({"num_mala_steps": 0}, "at least 1"),
        ({"num_mala_steps": 1.5}, "integer"),
        ({"local_move": "hmc"}, "local_move"),
    ],
)
def test_invalid_tempering_configuration_is_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ParallelTempering(bimodal_model, **kwargs)
