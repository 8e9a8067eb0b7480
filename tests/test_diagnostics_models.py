from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ppl_diffusion.diagnostics import histogram_tvd, mmd, mode_coverage, wasserstein2
from ppl_diffusion.models import dw4, funnel, many_well
from ppl_diffusion.target import make_target


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


def test_many_well_noisy_score_is_the_gradient_of_the_noised_density():
    # log p_t(u) = log ∫ p(x) N(u; αx, σ²) dx per well coordinate, by float64 quadrature on a
    # finer and wider grid than the score's, differentiated by central differences.
    grid = np.linspace(-5.0, 5.0, 400_001)
    log_well = -(grid**4) + 6 * grid**2 + 0.5 * grid

    def log_noisy(u, alpha, sigma):
        log_terms = log_well - 0.5 * (u - alpha * grid) ** 2 / sigma**2
        top = log_terms.max()
        return top + np.log(np.trapezoid(np.exp(log_terms - top), grid))

    rng = np.random.default_rng(0)
    alpha = np.array([0.99, 0.9, 0.6, 0.2])
    sigma = np.sqrt(1 - alpha**2)
    noisy = rng.normal(scale=1.5, size=(4, many_well.DIM))
    score = np.asarray(
        many_well.noisy_score(jnp.asarray(noisy), jnp.asarray(alpha), jnp.asarray(sigma))
    )
    h = 1e-4
    for row in range(4):
        for well in range(0, many_well.DIM, 2):
            u, a, s = noisy[row, well], alpha[row], sigma[row]
            expected = (log_noisy(u + h, a, s) - log_noisy(u - h, a, s)) / (2 * h)
            np.testing.assert_allclose(score[row, well], expected, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(score[:, 1::2], -noisy[:, 1::2], rtol=1e-5)


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


DW4_TEST_SPLIT = Path(__file__).resolve().parents[2] / "shared" / "data" / "dw4_test_split.npy"
needs_dw4_data = pytest.mark.skipif(
    not DW4_TEST_SPLIT.exists(), reason="the shared DW-4 data are not beside the checkout"
)


@needs_dw4_data
def test_dw4_model_energy_matches_the_published_test_split():
    configurations = dw4.load_configurations("test")
    np.testing.assert_array_equal(configurations, np.load(DW4_TEST_SPLIT))
    energies = np.asarray(dw4.energy(jnp.asarray(configurations)))
    # The data's README: mean energy -22.45, sd 1.90 over its 10,000 configurations.
    np.testing.assert_allclose(energies.mean(), -22.45, atol=0.01)
    np.testing.assert_allclose(energies.std(), 1.90, atol=0.01)


def test_dw4_model_density_is_minus_energy_with_a_centre_of_mass_prior():
    target, _ = make_target(jax.random.PRNGKey(0), model=dw4.model)
    x = jax.random.normal(jax.random.PRNGKey(1), (5, 8)) * 3.0
    centre = x.reshape(5, 4, 2).mean(1)
    expected = -dw4.energy(x) - 0.5 * jnp.sum(centre**2, -1)
    np.testing.assert_allclose(jax.vmap(target.logdensity_fn)(x), expected, rtol=1e-5)


def _dw4_orbit_point(key, x):
    """x moved by the DW-4 symmetry with its centre of mass put back: the same configuration
    rotated or reflected, with its particles permuted."""
    noise = jax.random.normal(key, (dw4.SYMMETRY.num_noise,))
    moved = dw4.SYMMETRY.apply(noise, x).reshape(4, 2)
    return (moved - moved.mean(0) + x.reshape(4, 2).mean(0)).reshape(-1)


def test_dw4_symmetry_keeps_the_energy_and_redraws_the_centre_of_mass():
    x = jax.random.normal(jax.random.PRNGKey(0), (4000, 8)) * 2.0 + 5.0
    noise = jax.random.normal(jax.random.PRNGKey(1), (4000, dw4.SYMMETRY.num_noise))
    moved = jax.vmap(dw4.SYMMETRY.apply)(noise, x)
    np.testing.assert_allclose(dw4.energy(moved), dw4.energy(x), rtol=1e-4, atol=1e-3)
    centre = np.asarray(moved).reshape(-1, 4, 2).mean(1)
    # The model's centre of mass is N(0, I): 4000 draws, 5 standard errors.
    np.testing.assert_allclose(centre.mean(0), 0.0, atol=5 / np.sqrt(4000))
    np.testing.assert_allclose(centre.std(0), 1.0, atol=5 / np.sqrt(2 * 4000))
    # Rotations are uniform: the first particle's direction from the centre has mean zero.
    offset = np.asarray(moved).reshape(-1, 4, 2)[:, 0] - centre
    direction = offset / np.linalg.norm(offset, axis=-1, keepdims=True)
    np.testing.assert_allclose(direction.mean(0), 0.0, atol=5 / np.sqrt(2 * 4000))


def test_dw4_distance_up_to_symmetry_is_zero_on_an_orbit_and_at_most_the_plain_one():
    x = jax.random.normal(jax.random.PRNGKey(0), (20, 8)) * 2.0
    keys = jax.random.split(jax.random.PRNGKey(1), 20)
    orbit = jax.vmap(_dw4_orbit_point)(keys, x)
    aligned = dw4.aligned_squared_distances(x, orbit)
    plain = ((dw4.centred(x)[:, None] - dw4.centred(orbit)[None]) ** 2).sum(-1)
    np.testing.assert_allclose(np.diag(aligned), 0.0, atol=1e-8)
    assert np.diag(plain).min() > 1.0
    assert np.all(aligned <= plain + 1e-9)
    assert wasserstein2(x, orbit, squared_distances=dw4.aligned_squared_distances) < 1e-4


def test_dw4_energy_wasserstein2_compares_sorted_energies():
    x = jax.random.normal(jax.random.PRNGKey(0), (50, 8)) * 2.0
    energies = np.sort(np.asarray(dw4.energy(x)))
    assert dw4.energy_wasserstein2(x, x[::-1]) == 0.0
    y = x.at[0].multiply(1.5)
    expected = np.sqrt(np.mean((energies - np.sort(np.asarray(dw4.energy(y)))) ** 2))
    np.testing.assert_allclose(dw4.energy_wasserstein2(x, y), expected, rtol=1e-12)


def test_dw4_data_loading_names_what_is_wrong(tmp_path):
    with pytest.raises(ValueError, match="'test' or 'val'"):
        dw4.load_configurations("train")
    with pytest.raises(FileNotFoundError, match="PPL_DIFFUSION_DATA"):
        dw4.load_configurations("test", data_dir=tmp_path)


@needs_dw4_data
def test_dw4_benchmark_quality_uses_the_published_protocol():
    from ppl_diffusion.benchmarks.amortized import quality
    from ppl_diffusion.models import get_model

    builtin = get_model("dw4")
    test = dw4.load_configurations("test")[:200]
    validation = dw4.load_configurations("val")[:200]
    same = quality(test, test, builtin)
    assert same == pytest.approx(
        {"w2": 0.0, "w2_up_to_symmetry": 0.0, "energy_w2": 0.0, "energy_w2_sd": 0.0, "num_sets": 1},
        abs=1e-6,
    )
    floor = quality(validation, test, builtin)
    # Orientation and labelling dominate the plain W2; the energies differ least.
    assert floor["w2"] > 3 * floor["w2_up_to_symmetry"] > 0
    assert 0 < floor["energy_w2"] < 1.0


@needs_dw4_data
def test_dw4_benchmark_quality_averages_disjoint_sets_of_the_reference_size():
    from ppl_diffusion.benchmarks.amortized import quality
    from ppl_diffusion.models import get_model

    builtin = get_model("dw4")
    test = dw4.load_configurations("test")[:100]
    validation = dw4.load_configurations("val")[:300]
    # Three sets, interleaved over the draws: rows 0, 3, 6, ...; 1, 4, 7, ...; 2, 5, 8, ...
    per_set = [quality(validation[k::3], test, builtin) for k in range(3)]
    pooled = quality(validation, test, builtin)
    assert pooled["num_sets"] == 3
    for name in ("w2", "w2_up_to_symmetry", "energy_w2"):
        assert pooled[name] == pytest.approx(np.mean([row[name] for row in per_set]), rel=1e-12)
    energies = [row["energy_w2"] for row in per_set]
    assert pooled["energy_w2_sd"] == pytest.approx(np.std(energies), rel=1e-12)
    assert pooled["energy_w2_sd"] > 0
    with pytest.raises(ValueError, match="at least 100 draws"):
        quality(validation[:99], test, builtin)
