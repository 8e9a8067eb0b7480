import contextlib
import logging

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.infer import MCMC

from ppl_diffusion import DiffusiveSampler, DiGS
from ppl_diffusion.diagnostics import mode_coverage
from ppl_diffusion.inference.amortized import _pooled_noisy_score

MODES = jnp.array([[-5.0, -5.0], [-5.0, 5.0], [5.0, -5.0], [5.0, 5.0]])
MODE_STD = 0.6


def four_modes():
    numpyro.sample(
        "x",
        dist.MixtureSameFamily(
            dist.Categorical(probs=jnp.full(4, 0.25)), dist.Normal(MODES, MODE_STD).to_event(1)
        ),
    )


def small_sampler(objective="dikl", **kwargs):
    return DiffusiveSampler(
        four_modes, objective=objective, width=64, depth=2, output_scale=5.0, **kwargs
    )


@pytest.mark.slow
def test_short_dikl_fit_covers_every_mode():
    sampler = small_sampler()
    sampler.fit(
        jax.random.PRNGKey(0),
        800,
        batch_size=128,
        score_steps=5,
        learning_rate=1e-3,
        score_learning_rate=1e-3,
        progress_bar=False,
    )
    x = np.asarray(sampler.sample(jax.random.PRNGKey(1), 4000)["x"])
    coverage = mode_coverage(x, MODES, radius=4 * MODE_STD)
    assert coverage.num_visited == 4
    assert coverage.counts.min() > 0.03 * len(x), coverage.counts
    # The untrained generator sits near the origin (spread ≈ 0.2); training spreads it to the
    # target's per-coordinate spread sqrt(5² + 0.6²).
    np.testing.assert_allclose(x.std(0), np.sqrt(25 + MODE_STD**2), rtol=0.25)


def two_modes_1d():
    numpyro.sample(
        "x",
        dist.MixtureSameFamily(
            dist.Categorical(probs=jnp.array([0.5, 0.5])), dist.Normal(jnp.array([-3.0, 3.0]), 0.5)
        ),
    )


@pytest.mark.parametrize("skip", [True, False])
def test_the_untrained_generator_spreads_over_output_scale_only_with_its_skip(skip):
    """With the skip the untrained generator draws about N(0, output_scale² I) (its MLP adds
    a few percent); without it every z lands near one point."""

    def model():
        numpyro.sample("x", dist.Normal(0, 1).expand([6]).to_event(1))

    sampler = DiffusiveSampler(model, width=32, depth=2, output_scale=3.0, skip=skip)
    spread = np.asarray(sampler.sample_unconstrained(jax.random.PRNGKey(0), 4000)).std(0)
    if skip:
        assert np.all((spread > 0.9 * 3.0) & (spread < 1.15 * 3.0))
    else:
        assert np.all(spread < 0.15 * 3.0)


@pytest.mark.parametrize("pool_size", [0, 512])
def test_a_tiny_dikl_fit_reaches_both_modes_of_a_1d_mixture(pool_size):
    sampler = DiffusiveSampler(
        two_modes_1d,
        width=32,
        depth=2,
        output_scale=3.0,
        num_particles=8,
        num_bridges=4,
        num_mala_steps=2,
        pool_size=pool_size,
    )
    history = sampler.fit(
        jax.random.PRNGKey(0), 300, batch_size=64, score_steps=3, progress_bar=False
    )
    x = np.asarray(sampler.sample(jax.random.PRNGKey(1), 2000)["x"])
    near_left, near_right = np.mean(np.abs(x + 3) < 1.5), np.mean(np.abs(x - 3) < 1.5)
    # Equal weights: each mode holds half the mass; a collapsed generator would leave one empty.
    assert near_left > 0.2 and near_right > 0.2, (near_left, near_right)
    if pool_size:
        # In 1-D a pool of 512 is dense enough for most levels.
        assert all(h["pooled_fraction"] > 0.5 for h in history), history
    else:
        assert "pooled_fraction" not in history[-1]


def test_the_pooled_generator_score_is_a_gaussian_generators_and_falls_back_where_thin():
    """A pool drawn from N(m, diag s²) gives the closed-form noisy score of N(αm, α²s² + σ²)
    within its Monte-Carlo error (over 32 independent pools); where the pool's effective size
    is below the threshold (σ tiny) each row keeps its fallback score."""
    mean, scale = jnp.array([1.0, -2.0]), jnp.array([0.5, 2.0])
    alpha, sigma = 0.3, float(np.sqrt(1 - 0.3**2))
    num_rows, num_pools = 64, 32
    key_noisy, key_pools = jax.random.split(jax.random.PRNGKey(0))
    noisy_scale = jnp.sqrt(alpha**2 * scale**2 + sigma**2)
    noisy = alpha * mean + noisy_scale * jax.random.normal(key_noisy, (num_rows, 2))
    exact = -(noisy - alpha * mean) / noisy_scale**2
    alphas, sigmas = jnp.full(num_rows, alpha), jnp.full(num_rows, sigma)
    fallback = jnp.full((num_rows, 2), jnp.nan)

    def estimate(key):
        pool = mean + scale * jax.random.normal(key, (4096, 2))
        return _pooled_noisy_score(noisy, alphas, sigmas, pool, fallback, 32.0)

    estimates, pooled = jax.vmap(estimate)(jax.random.split(key_pools, num_pools))
    assert bool(pooled.all())
    standard_error = estimates.std(0, ddof=1) / np.sqrt(num_pools)
    z = np.asarray((estimates.mean(0) - exact) / standard_error)
    assert np.abs(z).max() < 5, np.abs(z).max()

    pool = mean + scale * jax.random.normal(key_pools, (4096, 2))
    fallback = jnp.ones((num_rows, 2))
    tiny = jnp.full(num_rows, 1e-3)
    score, pooled = _pooled_noisy_score(noisy, jnp.ones(num_rows), tiny, pool, fallback, 32.0)
    assert not bool(pooled.any())
    np.testing.assert_array_equal(score, fallback)


@pytest.mark.slow
def test_vardiu_trains_with_finite_loss_and_records_history():
    sampler = small_sampler("vardiu")
    history = sampler.fit(
        jax.random.PRNGKey(0), 20, batch_size=64, eval_every=10, progress_bar=False
    )
    assert [h["step"] for h in history] == [10, 20]
    assert all(np.isfinite(h["loss"]) and np.isfinite(h["metric"]) for h in history)


@pytest.mark.slow
def test_checkpoint_resume_matches_uninterrupted_training(tmp_path):
    straight = small_sampler()
    straight.fit(jax.random.PRNGKey(3), 6, batch_size=32, score_steps=2, progress_bar=False)

    path = tmp_path / "sampler.eqx"
    interrupted = small_sampler()
    interrupted.fit(
        jax.random.PRNGKey(3),
        4,
        batch_size=32,
        score_steps=2,
        checkpoint_path=path,
        progress_bar=False,
    )
    resumed = small_sampler()  # a new process would start like this
    resumed.fit(
        jax.random.PRNGKey(99),
        6,
        batch_size=32,
        score_steps=2,
        checkpoint_path=path,
        progress_bar=False,
    )
    assert resumed.num_steps_trained == 6
    key = jax.random.PRNGKey(5)
    np.testing.assert_allclose(
        resumed.sample_unconstrained(key, 100), straight.sample_unconstrained(key, 100), atol=1e-5
    )

    loaded = small_sampler()
    loaded.load(path)
    np.testing.assert_array_equal(
        loaded.sample_unconstrained(key, 10), resumed.sample_unconstrained(key, 10)
    )


def test_checkpoint_round_trip_reproduces_draws_exactly(tmp_path):
    path = tmp_path / "sampler.eqx"
    saved = DiffusiveSampler(four_modes, width=16, depth=2, seed=1)
    saved.save(path)
    loaded = DiffusiveSampler(four_modes, width=16, depth=2, seed=2)
    key = jax.random.PRNGKey(0)
    assert not np.array_equal(
        loaded.sample_unconstrained(key, 5), saved.sample_unconstrained(key, 5)
    )
    loaded.load(path)
    np.testing.assert_array_equal(
        loaded.sample_unconstrained(key, 5), saved.sample_unconstrained(key, 5)
    )


def gaussian_2d():
    numpyro.sample("x", dist.Normal(jnp.array([1.0, -1.0]), 2.0))


def two_sites():
    numpyro.sample("a", dist.Normal(0.0, 1.0))
    numpyro.sample("b", dist.Normal(0.0, 1.0))


@pytest.mark.parametrize(
    "other, message",
    [
        (lambda: DiffusiveSampler(four_modes, width=16, depth=2), "networks"),
        (lambda: DiffusiveSampler(four_modes, width=32, depth=2, objective="vardiu"), "objective"),
        # Same sites, shapes and networks: only the density tells the models apart.
        (lambda: DiffusiveSampler(gaussian_2d, width=32, depth=2), "log_density"),
        # Same dimension, other sites.
        (lambda: DiffusiveSampler(two_sites, width=32, depth=2), "sites"),
        (lambda: DiffusiveSampler(four_modes, width=32, depth=2, fourier_features=4), "fourier"),
    ],
)
def test_checkpoint_of_another_sampler_is_refused_by_load_and_fit(tmp_path, other, message):
    path = tmp_path / "sampler.eqx"
    DiffusiveSampler(four_modes, width=32, depth=2).save(path)
    with pytest.raises(ValueError, match=f"does not fit this sampler.*{message}"):
        other().load(path)
    with pytest.raises(ValueError, match=f"does not fit this sampler.*{message}"):
        other().fit(jax.random.PRNGKey(0), 1, checkpoint_path=path, progress_bar=False)


def test_checkpoint_paths_that_cannot_be_written_fail_before_training(tmp_path):
    sampler = DiffusiveSampler(four_modes, width=16, depth=2)
    with pytest.raises(ValueError, match="is a directory"):
        sampler.fit(jax.random.PRNGKey(0), 1, checkpoint_path=tmp_path, progress_bar=False)
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(ValueError, match="not writable"):
        sampler.fit(
            jax.random.PRNGKey(0), 1, checkpoint_path=blocker / "sampler.eqx", progress_bar=False
        )
    assert sampler.num_steps_trained == 0
    with pytest.raises(ValueError, match="not a file"):
        sampler.load(tmp_path)


def test_a_fit_that_would_train_nothing_says_so(tmp_path):
    sampler = DiffusiveSampler(
        four_modes, width=8, depth=1, num_particles=2, num_bridges=1, num_mala_steps=0
    )
    path = tmp_path / "sampler.eqx"
    # Typed and raw keys both train and checkpoint.
    sampler.fit(
        jax.random.key(0), 2, batch_size=8, score_steps=1, checkpoint_path=path, progress_bar=False
    )
    with pytest.warns(UserWarning, match="trained nothing.*num_steps=4 to train 2 more"):
        sampler.fit(
            jax.random.PRNGKey(0),
            2,
            batch_size=8,
            score_steps=1,
            checkpoint_path=path,
            progress_bar=False,
        )
    assert sampler.num_steps_trained == 2


@contextlib.contextmanager
def compile_messages():
    messages = []

    class Collect(logging.Handler):
        def emit(self, record):
            messages.append(record.getMessage())

    handler = Collect()
    logging.getLogger("jax").addHandler(handler)
    try:
        with jax.log_compiles():
            yield messages
    finally:
        logging.getLogger("jax").removeHandler(handler)


@pytest.mark.parametrize(
    "objective, settings",
    [("dikl", {"score_steps": 1}), ("vardiu", {"encoder_learning_rate": 2e-3})],
)
def test_a_second_fit_reuses_the_compiled_training_step(objective, settings):
    sampler = DiffusiveSampler(
        four_modes,
        objective=objective,
        width=8,
        depth=1,
        num_particles=2,
        num_bridges=1,
        num_mala_steps=0,
    )
    sampler.fit(jax.random.PRNGKey(0), 2, batch_size=8, progress_bar=False, **settings)
    with compile_messages() as messages:
        sampler.fit(jax.random.PRNGKey(1), 4, batch_size=8, progress_bar=False, **settings)
    assert sampler.num_steps_trained == 4
    assert [m for m in messages if m.startswith("Compiling")] == []


def test_the_generators_fourier_features_stay_fixed_while_its_mlp_trains():
    sampler = DiffusiveSampler(
        four_modes,
        width=8,
        depth=1,
        fourier_features=4,
        num_particles=2,
        num_bridges=1,
        num_mala_steps=0,
    )
    before = sampler.generator
    assert before.frequencies.shape == (4, 2)
    sampler.fit(
        jax.random.PRNGKey(0), 2, batch_size=8, score_steps=1, ema_decay=0.0, progress_bar=False
    )
    np.testing.assert_array_equal(sampler.generator.frequencies, before.frequencies)
    assert not np.allclose(sampler.generator.mlp.layers[0].weight, before.mlp.layers[0].weight)


@pytest.mark.parametrize(
    "objective, settings, message",
    [
        ("dikl", {"encoder_learning_rate": 1e-3}, "encoder_learning_rate"),
        ("vardiu", {"score_steps": 10}, "score_steps"),
        ("vardiu", {"score_learning_rate": 1e-3}, "score_learning_rate"),
    ],
)
def test_settings_of_the_other_objective_are_rejected(objective, settings, message):
    sampler = DiffusiveSampler(four_modes, objective=objective, width=8, depth=1)
    with pytest.raises(ValueError, match=message):
        sampler.fit(jax.random.PRNGKey(0), 1, progress_bar=False, **settings)
    assert sampler.num_steps_trained == 0


def test_constrained_sites_and_arviz_and_digs_initialisation():
    def model():
        numpyro.sample("scale", dist.LogNormal(0.0, 0.5))
        numpyro.sample("loc", dist.Normal(jnp.zeros(2), 1.0))

    sampler = DiffusiveSampler(model, width=16, depth=1)
    samples = sampler.sample(jax.random.PRNGKey(0), 50)
    assert samples["scale"].shape == (50,) and bool(jnp.all(samples["scale"] > 0))
    assert samples["loc"].shape == (50, 2)
    idata = sampler.to_arviz(jax.random.PRNGKey(0), 50)
    assert idata.posterior["loc"].shape == (1, 50, 2)

    init = sampler.init_params(jax.random.PRNGKey(1), 3)
    mcmc = MCMC(
        DiGS(model),
        num_warmup=20,
        num_samples=20,
        num_chains=3,
        chain_method="vectorized",
        progress_bar=False,
    )
    mcmc.run(jax.random.PRNGKey(2), init_params=init)
    assert mcmc.get_samples()["scale"].shape == (60,)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"objective": "kl"}, "objective"),
        ({"beta_min": 0.8, "beta_max": 0.7}, "beta_min < beta_max"),
        ({"sigma_min": 0.0}, "sigma_min < sigma_max"),
        ({"weight_exponent": -1.0}, "weight_exponent"),
        ({"pool_size": -1}, "pool_size"),
        ({"min_pool_ess": 0.5}, "min_pool_ess"),
        ({"objective": "vardiu", "pool_size": 16}, "pool_size"),
        ({"fourier_features": -1}, "fourier_features"),
        ({"fourier_scale": 0.0}, "fourier_scale"),
    ],
)
def test_invalid_sampler_configuration_is_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DiffusiveSampler(four_modes, **kwargs)


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"batch_size": 0}, "batch_size"),
        ({"score_steps": 0}, "score_steps"),
        ({"ema_decay": 1.0}, "ema_decay"),
    ],
)
def test_training_settings_are_checked_when_the_steps_are_driven_by_hand(settings, message):
    defaults = {
        "batch_size": 8,
        "learning_rate": 1e-3,
        "score_learning_rate": None,
        "score_steps": None,
        "encoder_learning_rate": None,
        "ema_decay": 0.999,
        "clip_norm": 10.0,
    }
    with pytest.raises(ValueError, match=message):
        DiffusiveSampler(four_modes).training_config(**defaults | settings)
    with pytest.raises(ValueError, match="num_steps"):
        DiffusiveSampler(four_modes).fit(jax.random.PRNGKey(0), -1, progress_bar=False)


@pytest.mark.parametrize("num_samples", [-1, 0, 2.5])
def test_a_sample_count_that_is_not_a_positive_integer_is_rejected(num_samples):
    sampler = small_sampler()
    with pytest.raises(ValueError, match="positive integer"):
        sampler.sample(jax.random.PRNGKey(0), num_samples)
    with pytest.raises(ValueError, match="positive integer"):
        sampler.sample_unconstrained(jax.random.PRNGKey(0), num_samples)


@pytest.mark.slow
def test_training_and_sampling_split_rows_over_devices():
    assert len(jax.devices()) == 2  # conftest forces two CPU devices
    one, two = small_sampler(devices=jax.devices()[:1]), small_sampler()
    for sampler in (one, two):
        sampler.fit(jax.random.PRNGKey(4), 3, batch_size=32, score_steps=2, progress_bar=False)
    key = jax.random.PRNGKey(6)
    split = two.sample_unconstrained(key, 101)  # rows need not divide evenly
    assert len(split.sharding.device_set) == 2
    np.testing.assert_allclose(split, one.sample_unconstrained(key, 101), atol=1e-4)


def _direction_of_first_particle(draws):
    particles = np.asarray(draws).reshape(-1, 4, 2)
    offset = particles[:, 0] - particles.mean(1)
    return offset / np.linalg.norm(offset, axis=-1, keepdims=True)


def test_a_generator_with_a_symmetry_draws_every_rotation_and_stays_reproducible():
    from ppl_diffusion.models import dw4

    key = jax.random.PRNGKey(3)
    plain = DiffusiveSampler(dw4.model, width=16, depth=1, output_scale=3.0)
    symmetric = DiffusiveSampler(
        dw4.model, width=16, depth=1, output_scale=3.0, symmetry=dw4.SYMMETRY
    )
    # Both generators' networks shift the first particle far along x; the plain generator
    # then points it one way, the symmetric one spreads it over every direction (4000 draws,
    # 5 standard errors).
    for sampler in (plain, symmetric):
        sampler.generator = eqx.tree_at(
            lambda g: g.mlp.layers[-1].bias,
            sampler.generator,
            sampler.generator.mlp.layers[-1].bias.at[0].add(10.0),
        )
    assert (
        np.linalg.norm(_direction_of_first_particle(plain.sample_unconstrained(key, 4000)).mean(0))
        > 0.5
    )
    direction = _direction_of_first_particle(symmetric.sample_unconstrained(key, 4000))
    np.testing.assert_allclose(direction.mean(0), 0.0, atol=5 / np.sqrt(2 * 4000))
    np.testing.assert_array_equal(
        symmetric.sample_unconstrained(key, 8), symmetric.sample_unconstrained(key, 8)
    )
    vardiu = DiffusiveSampler(
        dw4.model, objective="vardiu", width=16, depth=1, symmetry=dw4.SYMMETRY
    )
    history = vardiu.fit(key, 2, batch_size=8, eval_every=1, progress_bar=False)
    assert all(np.isfinite(h["loss"]) for h in history)
