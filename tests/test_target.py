import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

from ppl_diffusion.target import make_target

KEY = jax.random.PRNGKey(0)


def test_model_target_matches_numpyro_potential_and_constrains():
    def model():
        numpyro.sample("scale", dist.LogNormal(0.0, 1.0))
        numpyro.sample("loc", dist.Normal(jnp.zeros(3), 1.0))

    target, position = make_target(KEY, model=model)
    assert target.dim == 4 and position.shape == (4,)
    x = jnp.array([0.3, -1.0, 0.5, 2.0])  # sites are raveled in sorted order: loc, scale
    expected = (
        dist.Normal(0.0, 1.0).log_prob(x[:3]).sum()
        + dist.LogNormal(0.0, 1.0).log_prob(jnp.exp(x[3]))
        + x[3]  # log-Jacobian of exp
    )
    np.testing.assert_allclose(target.logdensity_fn(x), expected, rtol=1e-5)
    constrained = target.constrain(jnp.stack([x, x]))
    np.testing.assert_allclose(constrained["scale"], jnp.exp(2.0) * jnp.ones(2), rtol=1e-6)
    assert constrained["loc"].shape == (2, 3)
    sites = target.coordinate_sites()
    np.testing.assert_array_equal(sites, [0, 0, 0, 1])
    unravelled = target.unravel_fn(jnp.asarray(sites, x.dtype))
    assert np.all(np.asarray(unravelled["loc"]) == 0) and float(unravelled["scale"]) == 1


def test_site_rolls_permute_short_sites_along_their_leading_axis():
    def model():
        numpyro.sample("means", dist.Normal(jnp.zeros(3), 1.0))
        numpyro.sample("offset", dist.Normal(0.0, 1.0))
        numpyro.sample("scales", dist.LogNormal(jnp.zeros((2, 2)), 1.0))
        numpyro.sample("effects", dist.Normal(jnp.zeros(5), 1.0))

    target, _ = make_target(KEY, model=model)
    x = jnp.arange(13.0)
    original = target.unravel_fn(x)
    rolls = target.site_rolls(max_rolls=5, max_length=4)
    assert rolls.shape == (2, 13)  # "effects" is too long; "means" (3) allows two rolls
    for shift, roll in enumerate(rolls, start=1):
        rolled = target.unravel_fn(x[roll])
        for site in ("means", "scales"):
            np.testing.assert_array_equal(rolled[site], np.roll(original[site], shift, axis=0))
        for site in ("offset", "effects"):
            np.testing.assert_array_equal(rolled[site], original[site])
    assert target.site_rolls(max_rolls=1, max_length=4).shape == (1, 13)
    assert target.site_rolls(max_rolls=5, max_length=5).shape == (4, 13)
    assert target.site_rolls(max_rolls=5, max_length=1).shape == (0, 13)


def test_batched_keys_give_one_start_per_chain():
    def model():
        numpyro.sample("x", dist.Normal(jnp.zeros(2), 1.0))

    _, positions = make_target(jax.random.split(KEY, 5), model=model)
    assert positions.shape == (5, 2)
    assert len(np.unique(np.asarray(positions[:, 0]))) == 5


def test_discrete_latent_site_is_rejected_by_name():
    def model():
        numpyro.sample("switch", dist.Bernoulli(0.5))
        numpyro.sample("x", dist.Normal(0.0, 1.0))

    with pytest.raises(ValueError, match=r"Discrete latent sites \['switch'\]"):
        make_target(KEY, model=model)


def test_model_without_latent_sites_is_rejected():
    def model(y):
        numpyro.sample("y", dist.Normal(0.0, 1.0), obs=y)

    with pytest.raises(ValueError, match="no latent sample sites"):
        make_target(KEY, model=model, model_args=(1.0,))


def test_model_that_raises_is_reported():
    def model(data):
        numpyro.sample("x", dist.Normal(0.0, 1.0))
        raise RuntimeError(f"bad data {data}")

    with pytest.raises(ValueError, match="Running the model raised RuntimeError: bad data 3"):
        make_target(KEY, model=model, model_args=(3,))


def test_non_finite_initial_density_is_rejected():
    def potential(x):
        return jnp.sum(x**2) + jnp.where(x[0] > 0, jnp.nan, 0.0)

    with pytest.raises(ValueError, match="not finite at the initial position"):
        make_target(KEY, potential_fn=potential, init_params=jnp.array([1.0, 0.0]))


def test_model_non_finite_at_every_start_is_rejected_by_name():
    def model():
        x = numpyro.sample("x", dist.Normal(0.0, 1.0))
        numpyro.factor("undefined", jnp.nan * x)

    with pytest.raises(ValueError, match="not finite at any initial position"):
        make_target(KEY, model=model)


def test_potential_needs_init_params_and_exactly_one_source():
    with pytest.raises(ValueError, match="init_params"):
        make_target(KEY, potential_fn=lambda x: jnp.sum(x**2))
    with pytest.raises(ValueError, match="exactly one"):
        make_target(KEY)
