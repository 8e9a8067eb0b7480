import jax
import jax.numpy as jnp
import numpy as np

from ppl_diffusion.diagnostics import histogram_tvd, mmd, mode_coverage, wasserstein2
from ppl_diffusion.models import dw4, funnel, many_well


def test_wasserstein2_is_exact_on_shifted_sets():
    x = np.random.default_rng(0).normal(size=(300, 2))
    assert wasserstein2(x, x[::-1]) < 1e-9
    # Shifting every point by c moves the optimal coupling's cost by exactly |c|² on average.
    np.testing.assert_allclose(wasserstein2(x, x + np.array([3.0, 4.0])), 5.0, rtol=1e-6)


def test_mmd_separates_distributions():
    key1, key2 = jax.random.split(jax.random.PRNGKey(0))
    x = jax.random.normal(key1, (1000, 2))
    y = jax.random.normal(key2, (1000, 2))
    same, shifted = mmd(x, y), mmd(x + 1.0, y)
    assert same < 0.05 < shifted


def test_mode_coverage_counts_and_weights():
    modes = np.array([[0.0, 0.0], [10.0, 0.0]])
    samples = np.array([[0.1, 0.0]] * 30 + [[9.9, 0.0]] * 10 + [[5.0, 5.0]])
    coverage = mode_coverage(samples, modes, radius=1.0)
    assert coverage.counts.tolist() == [30, 10]
    assert coverage.num_visited == 2
    np.testing.assert_allclose(coverage.weight_error, 0.25)
    assert coverage.chi2_pvalue < 0.01


def test_histogram_tvd():
    a = np.random.default_rng(1).normal(size=5000)
    assert histogram_tvd(a, a) == 0.0
    assert histogram_tvd(a, a + 10) > 0.99


def test_many_well_exact_sampler_and_normaliser():
    # Published value of log Z for the 32-D many-well.
    np.testing.assert_allclose(many_well.log_z(), 164.69568, atol=1e-3)
    x = np.asarray(many_well.sample_exact(jax.random.PRNGKey(0), 20000)["x"])
    p = many_well.right_well_probability()
    assert abs((x[:, 0::2] > 0).mean() - p) < 5 * np.sqrt(p * (1 - p) / x[:, 0::2].size)
    np.testing.assert_allclose(x[:, 1::2].std(), 1.0, atol=0.02)


def test_funnel_exact_sampler_scale():
    v = np.asarray(funnel.sample_exact(jax.random.PRNGKey(0), 20000)["v"])
    np.testing.assert_allclose(v.std(), 3.0, rtol=0.03)


def test_dw4_pair_energy_has_two_wells():
    d = jnp.linspace(1.0, 7.0, 6001)
    pair = 0.9 * (d - 4) ** 4 - 4 * (d - 4) ** 2
    minima = np.asarray(d[1:-1][(pair[1:-1] < pair[:-2]) & (pair[1:-1] < pair[2:])])
    np.testing.assert_allclose(minima, [4 - np.sqrt(4 / 1.8), 4 + np.sqrt(4 / 1.8)], atol=1e-3)
    square = jnp.array([0.0, 0.0, 2.5, 0.0, 0.0, 2.5, 2.5, 2.5])
    np.testing.assert_allclose(dw4.pair_distances(square)[0], 2.5, rtol=1e-5)
