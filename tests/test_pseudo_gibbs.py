import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.infer import MCMC

from ppl_diffusion import PseudoGibbs, fit_noisy_energy, fit_ocm_diagonal, moment_matched_gibbs
from ppl_diffusion.inference.denoising import hutchinson_diagonal, moment_matched_proposal
from ppl_diffusion.inference.pseudo_gibbs import CurvatureMLP, EnergyMLP, pseudo_gibbs_step

MEAN = jnp.array([1.0, -1.0])
COV = jnp.array([[1.0, 0.8], [0.8, 1.0]])
SIGMA = 1.0


def run(kernel, num_samples=2000, num_chains=4, init_params=None, seed=0):
    mcmc = MCMC(
        kernel,
        num_warmup=200,
        num_samples=num_samples,
        num_chains=num_chains,
        chain_method="vectorized",
        progress_bar=False,
    )
    mcmc.run(jax.random.PRNGKey(seed), init_params=init_params)
    return mcmc


def second_moments(x):
    """(chains, draws, 2) -> E[x], E[x x^T] entries as (chains, draws, 5)."""
    return np.concatenate([x, x**2, x[..., :1] * x[..., 1:]], axis=-1)


def expected_second_moments(mean, cov):
    second = cov + jnp.outer(mean, mean)
    return np.r_[mean, jnp.diag(second), second[0, 1]]


def test_full_covariance_pseudo_gibbs_recovers_the_clean_gaussian_exactly(
    assert_expectations_match,
):
    """With the exact noisy energy N(m, C + σ²I), full-covariance moment matching is exact
    Gibbs, so the draws have the clean covariance C, not C + σ²I."""
    noisy_precision = jnp.linalg.inv(COV + SIGMA**2 * jnp.eye(2))

    def noisy_energy(x):
        return 0.5 * (x - MEAN) @ noisy_precision @ (x - MEAN)

    kernel = PseudoGibbs(potential_fn=noisy_energy, sigma=SIGMA, covariance="full")
    mcmc = run(kernel, init_params=jnp.zeros((4, 2)))
    x = np.asarray(mcmc.get_samples(group_by_chain=True))
    assert_expectations_match(second_moments(x), expected_second_moments(MEAN, COV))


@pytest.fixture(scope="module")
def gaussian_noisy_model():
    """A noisy energy and its OCM diagonal fitted to 10,000 draws of N(MEAN, COV)."""
    data = jax.random.multivariate_normal(jax.random.PRNGKey(0), MEAN, COV, (10000,))
    model = fit_noisy_energy(
        jax.random.PRNGKey(1), data, SIGMA, num_steps=1500, width=64, depth=2, progress_bar=False
    )
    model = fit_ocm_diagonal(
        jax.random.PRNGKey(2), model, data, num_steps=1000, width=64, depth=2, progress_bar=False
    )
    return data, model


def test_trained_noisy_energy_gives_clean_not_noisy_covariance(gaussian_noisy_model):
    _, model = gaussian_noisy_model
    samples = {}
    for covariance in ["full", "ocm", "iso"]:
        mcmc = run(
            PseudoGibbs(noisy_model=model, covariance=covariance),
            init_params=jnp.zeros((4, 2)),
            num_samples=1500,
        )
        samples[covariance] = np.asarray(mcmc.get_samples())
    full_cov = np.cov(samples["full"].T)
    np.testing.assert_allclose(full_cov, COV, atol=0.2)
    # The noisy covariance would have 2.0 on the diagonal.
    assert np.all(np.diag(full_cov) < 1.4)
    assert np.all(np.diag(np.cov(samples["ocm"].T)) < 1.4)
    # Isotropic moment matching ignores the correlation in its noise, so it is visibly worse.
    assert abs(np.cov(samples["iso"].T)[0, 1] - 0.8) > abs(full_cov[0, 1] - 0.8)


def test_ocm_diagonal_beats_hutchinson_at_equal_cost(gaussian_noisy_model):
    """The learnt diagonal (one network call) is closer to the model's exact diag ∇s than a
    one-probe Hutchinson estimate (one Jacobian-vector product)."""
    data, model = gaussian_noisy_model
    noisy = data[:1000] + SIGMA * jax.random.normal(jax.random.PRNGKey(3), (1000, 2))
    exact = jax.vmap(lambda x: jnp.diag(jax.jacfwd(model.score)(x)))(noisy)
    keys = jax.random.split(jax.random.PRNGKey(4), 1000)
    one_probe = jax.vmap(lambda k, x: hutchinson_diagonal(k, model.score, x, 1))(keys, noisy)
    learnt = jax.vmap(model.curvature)(noisy)
    learnt_error = float(jnp.sqrt(jnp.mean((learnt - exact) ** 2)))
    # Rademacher probes are exact for the diagonal terms: the one-probe error is the
    # off-diagonal Jacobian (−0.8/(1.8² − 0.8²) ≈ −0.31 for the Gaussian's noisy score).
    assert learnt_error < 0.5 * float(jnp.sqrt(jnp.mean((one_probe - exact) ** 2)))


def test_tweedie_mean_from_outside_the_data_box_does_not_depend_on_the_distance():
    """Chains come back from anywhere: outside the box the energy grows like a Gaussian of
    scale τ, so with σ = τ the denoised value of an outside coordinate is the same point near
    the box however far out the noisy point is."""
    tail_scale = 0.3
    energy = EnergyMLP(
        2, 16, 2, jax.random.PRNGKey(0), jnp.array([-1.0, -2.0]), jnp.array([1.0, 2.0]), tail_scale
    )

    def tweedie_mean(x):
        return x - tail_scale**2 * jax.grad(energy)(x)

    cases = [([5.0, 0.5], [500.0, 0.5], [0]), ([-3.0, 4.0], [-300.0, 40.0], [0, 1])]
    for near, far, outside in cases:
        near, far, outside = jnp.array(near), jnp.array(far), jnp.array(outside)
        np.testing.assert_allclose(
            tweedie_mean(far)[outside], tweedie_mean(near)[outside], atol=1e-3
        )
        assert float(jnp.max(jnp.abs(tweedie_mean(far)[outside]))) < 3.0
    # Inside the box the energy is the network itself.
    inside = jnp.array([0.3, -1.5])
    np.testing.assert_allclose(energy(inside), energy.mlp(inside), rtol=1e-6)

    curvature = CurvatureMLP(energy, 8, 1, jax.random.PRNGKey(1))
    # Outside the box ∇s is −I/τ² in the outside coordinates; inside, the network answers.
    diagonal = jax.vmap(curvature)(jnp.array([[50.0, 0.5], [-30.0, 40.0]]))
    np.testing.assert_allclose(diagonal[0, 0], -1 / tail_scale**2)
    np.testing.assert_allclose(diagonal[1], -1 / tail_scale**2)
    assert diagonal[0, 1] != -1 / tail_scale**2
    exact = jnp.diag(jax.jacfwd(jax.grad(lambda x: -energy(x)))(jnp.array([50.0, 0.5])))
    np.testing.assert_allclose(exact[0], -1 / tail_scale**2, rtol=1e-5)


def test_chains_started_far_from_the_data_come_back(gaussian_noisy_model):
    data, model = gaussian_noisy_model
    directions = jax.random.normal(jax.random.PRNGKey(5), (200, 2))
    start = MEAN + 50 * directions / jnp.linalg.norm(directions, axis=1, keepdims=True)

    def chain(key, x):
        def step(x, key):
            return pseudo_gibbs_step(key, x, model.score, SIGMA, "full"), None

        return jax.lax.scan(step, x, jax.random.split(key, 200))[0]

    end = jax.vmap(chain)(jax.random.split(jax.random.PRNGKey(6), 200), start)

    def nearest(points, exclude_self=False):
        distances = jnp.sqrt(jnp.sum((points[:, None] - data[None]) ** 2, -1))
        if exclude_self:
            distances = distances.at[jnp.arange(len(points)), jnp.arange(len(points))].set(jnp.inf)
        return float(jnp.median(distances.min(1)))

    assert nearest(end) < 2 * nearest(data[:200], exclude_self=True)


def test_hutchinson_diagonal_matches_the_exact_diagonal():
    weights = jax.random.normal(jax.random.PRNGKey(2), (5, 5))

    def vector_fn(x):
        return jnp.tanh(weights @ x) + x**3

    x = jnp.linspace(-1.0, 1.0, 5)
    exact = jnp.diag(jax.jacfwd(vector_fn)(x))
    estimate = hutchinson_diagonal(jax.random.PRNGKey(3), vector_fn, x, 20000)
    off_diagonal = jax.jacfwd(vector_fn)(x) - jnp.diag(exact)
    # Each probe's error is Σ_j≠i J_ij r_i r_j: standard error sqrt(Σ_j≠i J_ij² / M).
    tolerance = 5 * np.sqrt(np.sum(np.asarray(off_diagonal) ** 2, axis=1) / 20000)
    np.testing.assert_array_less(np.abs(estimate - exact), tolerance + 1e-6)
    # For a diagonal Jacobian one Rademacher probe is already exact (r_i² = 1).
    np.testing.assert_allclose(
        hutchinson_diagonal(jax.random.PRNGKey(4), lambda x: x**3, x, 1), 3 * x**2, rtol=1e-6
    )


def test_tweedie_moments_of_the_noisy_score_are_the_exact_gaussian_posterior():
    r = 0.5

    def noisy_score(x):  # score of N(m, C + r²I)
        return -jnp.linalg.solve(COV + r**2 * jnp.eye(2), x - MEAN)

    center = jnp.array([0.3, 0.4])
    proposal = moment_matched_proposal(jax.random.PRNGKey(0), center, r, noisy_score, "full")
    cov = proposal.rotation @ jnp.diag(proposal.stddev**2) @ proposal.rotation.T
    precision = jnp.linalg.inv(COV) + jnp.eye(2) / r**2
    exact_cov = jnp.linalg.inv(precision)
    np.testing.assert_allclose(cov, exact_cov, atol=1e-5)
    exact_mean = exact_cov @ (jnp.linalg.solve(COV, MEAN) + center / r**2)
    np.testing.assert_allclose(proposal.mean, exact_mean, atol=1e-5)


def banana_model():
    x = numpyro.sample("x", dist.Normal(0.0, 1.0))
    numpyro.sample("y", dist.Normal(0.5 * x**2, 0.5))


@pytest.mark.parametrize("covariance", ["full", "diag", "iso"])
def test_mh_corrected_variant_leaves_a_known_target_invariant(
    covariance, assert_expectations_match
):
    kernel = moment_matched_gibbs(banana_model, sigma=0.7, covariance=covariance)
    mcmc = run(kernel, num_samples=3000)
    samples = mcmc.get_samples(group_by_chain=True)
    x, y = np.asarray(samples["x"]), np.asarray(samples["y"])
    # E[x]=0, E[x²]=1, E[y]=0.5, E[y²]=Var+mean² = 0.25 + 0.5·... computed from the model:
    # y | x ~ N(x²/2, 0.25): E[y²] = 0.25 + E[x⁴]/4 = 0.25 + 0.75.
    f = np.stack([x, x**2, y, y**2], -1)
    assert_expectations_match(f, [0.0, 1.0, 0.5, 1.0])


@pytest.mark.parametrize(
    "make, message",
    [
        (
            lambda: PseudoGibbs(potential_fn=lambda x: x @ x, sigma=0.5, covariance="dense"),
            "covariance",
        ),
        (
            lambda: PseudoGibbs(potential_fn=lambda x: x @ x, sigma=0.5, covariance="iso"),
            "iso_variance",
        ),
        (lambda: PseudoGibbs(potential_fn=lambda x: x @ x, sigma=-1.0), "positive noise level"),
        (
            lambda: PseudoGibbs(
                potential_fn=lambda x: x @ x, sigma=0.5, covariance="diag", num_probes=0
            ),
            "num_probes",
        ),
        (lambda: fit_noisy_energy(jax.random.PRNGKey(0), jnp.zeros(5), 0.1), r"\(n, d\) array"),
        (
            lambda: fit_noisy_energy(jax.random.PRNGKey(0), jnp.full((4, 2), jnp.nan), 0.1),
            "non-finite",
        ),
        (lambda: moment_matched_gibbs(banana_model, covariance="dense"), "proposal"),
        (
            lambda: PseudoGibbs(potential_fn=lambda x: x @ x, sigma=0.5, covariance="ocm"),
            "fit_ocm_diagonal",
        ),
    ],
)
def test_invalid_pseudo_gibbs_input_is_rejected(make, message):
    with pytest.raises(ValueError, match=message):
        make()
