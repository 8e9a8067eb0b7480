import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.infer import MCMC, NUTS

from ppl_diffusion import DiGS, NoiseSchedule, noise_schedule, ve_schedule, vp_schedule
from ppl_diffusion.benchmarks.baselines import run_with_budget, thin_to
from ppl_diffusion.diagnostics import mode_coverage
from ppl_diffusion.inference.denoising import Anchors, anchor_bandwidths, sample_denoising_posterior
from ppl_diffusion.inference.digs import JumpsNeverAcceptedWarning, build_kernel, init, levels
from ppl_diffusion.models import get_model
from ppl_diffusion.models.multimodal import LABEL_DATA, exchangeable_mixture

MEAN = jnp.array([1.0, -2.0])
COV = jnp.array([[1.0, 0.8], [0.8, 2.0]])


def gaussian_model():
    numpyro.sample("x", dist.MultivariateNormal(MEAN, COV))


def run_digs(model, num_chains=4, num_warmup=300, num_samples=1000, seed=0, **kwargs):
    model_args = kwargs.pop("model_args", ())
    model_kwargs = kwargs.pop("model_kwargs", {})
    chain_method = kwargs.pop("chain_method", "vectorized")
    mcmc = MCMC(
        DiGS(model, **kwargs),
        num_warmup=num_warmup,
        num_samples=num_samples,
        num_chains=num_chains,
        chain_method=chain_method,
        progress_bar=False,
    )
    mcmc.run(
        jax.random.PRNGKey(seed),
        *model_args,
        extra_fields=(
            "jump_accept_prob",
            "mala_accept_prob",
            "local_accept_prob",
            "num_nonfinite",
            "num_grad_evals",
        ),
        **model_kwargs,
    )
    return mcmc


def test_correlated_gaussian_moments(assert_expectations_match):
    mcmc = run_digs(gaussian_model)
    x = np.asarray(mcmc.get_samples(group_by_chain=True)["x"])
    f = np.concatenate([x, x**2, x[..., :1] * x[..., 1:]], axis=-1)
    second = COV + jnp.outer(MEAN, MEAN)
    expected = np.r_[MEAN, jnp.diag(second), second[0, 1]]
    assert_expectations_match(f, expected)


def standard_normal_50d():
    numpyro.sample("x", dist.Normal(0.0, 1.0).expand([50]).to_event(1))


def test_step_size_adaptation_reaches_each_moves_target_acceptance():
    mcmc = run_digs(gaussian_model, num_chains=2, num_mala_steps=2)
    np.testing.assert_allclose(
        mcmc.get_extra_fields()["mala_accept_prob"].mean(0), 0.574, atol=0.08
    )
    # NUTS's averaged step size lands above its target acceptance, NumPyro's own NUTS included:
    # the NUTS move must adapt like NumPyro's NUTS does on the same target.
    mcmc = run_digs(standard_normal_50d, num_chains=2, target_accept_prob=0.7)
    nuts = MCMC(
        NUTS(standard_normal_50d, target_accept_prob=0.7),
        num_warmup=300,
        num_samples=1000,
        num_chains=2,
        chain_method="vectorized",
        progress_bar=False,
    )
    nuts.run(jax.random.PRNGKey(0), extra_fields=("accept_prob",))
    np.testing.assert_allclose(
        mcmc.get_extra_fields()["local_accept_prob"].mean(),
        nuts.get_extra_fields()["accept_prob"].mean(),
        atol=0.04,
    )


def test_eight_schools_matches_exact_moments(assert_expectations_match):
    schools = get_model("eight_schools")
    mcmc = run_digs(
        schools.model,
        num_warmup=500,
        num_samples=1500,
        model_args=schools.model_args,
        model_kwargs=schools.model_kwargs,
    )
    samples = mcmc.get_samples(group_by_chain=True)
    ref = schools.reference
    f = np.concatenate(
        [
            np.stack([samples["mu"], samples["tau"], samples["mu"] ** 2], -1),
            np.asarray(samples["theta"]),
        ],
        axis=-1,
    )
    expected = np.r_[
        ref["mu"][0], ref["tau"][0], ref["mu"][0] ** 2 + ref["mu"][1] ** 2, ref["theta"][0]
    ]
    assert_expectations_match(f, expected)
    idata = az.from_numpyro(mcmc)
    assert set(idata.posterior.data_vars) >= {"mu", "tau", "theta", "theta_tilde"}
    assert float(az.rhat(idata)["mu"]) < 1.05


@pytest.mark.slow
def test_mog40_covers_all_modes_with_right_weights_where_nuts_does_not():
    mog = get_model("mog40")
    mcmc = run_digs(mog.model, num_chains=8, num_warmup=500, num_samples=2000, seed=1)
    x = np.asarray(mcmc.get_samples(group_by_chain=True)["x"])
    radius = 4 * mog.mode_std
    digs_coverage = mode_coverage(x.reshape(-1, 2), mog.modes, radius)
    # Draws 20 iterations apart are close to independent, as the chi-square test assumes.
    thinned = mode_coverage(thin_to(x, 800), mog.modes, radius)
    assert digs_coverage.num_visited == 40
    assert thinned.chi2_pvalue > 0.01, thinned

    budget = int(mcmc.get_extra_fields()["num_grad_evals"].sum())
    nuts = run_with_budget(
        jax.random.PRNGKey(1),
        NUTS(mog.model),
        budget,
        num_chains=8,
        num_warmup=500,
        min_draws=2000,
    )
    assert nuts.gradient_evaluations >= budget
    nuts_x = np.asarray(nuts.samples["x"])
    nuts_coverage = mode_coverage(nuts_x.reshape(-1, 2), mog.modes, radius)
    assert nuts_coverage.num_visited <= 25
    assert mode_coverage(thin_to(nuts_x, 2000), mog.modes, radius).chi2_pvalue < 1e-6


# "mixed" draws from the "independent" and "gaussian" proposals, so it checks both; with
# anchors, from the anchor mixtures too, here with unequal prior weights on the anchors.
ANCHORS_2D = Anchors(
    jnp.array([[1.5, 1.0], [0.0, 2.0], [-1.0, -1.0]]),
    jnp.array([True, True, True]),
    jnp.array(0.5),
    jnp.array([0.3, 0.8]),
    jnp.log(jnp.array([1.0, 0.5, 0.25])),
)


@pytest.mark.parametrize(
    "proposal, anchors",
    [("mixed", None), ("mixed", ANCHORS_2D), ("full", None)],
    ids=["mixed", "mixed with anchors", "full"],
)
def test_denoising_move_leaves_the_posterior_invariant(proposal, anchors):
    """Start from exact draws of p(x | x̃) for a Gaussian p; one move must keep that law."""
    loc, scale, alpha, sigma = 1.5, 0.7, 0.6, 0.8
    noisy = jnp.array([0.3, -1.0])
    precision = 1 / scale**2 + alpha**2 / sigma**2
    post_mean = (loc / scale**2 + alpha * noisy / sigma**2) / precision
    post_sd = precision**-0.5

    def logdensity(x):
        return jnp.sum(dist.Normal(loc, scale).log_prob(x))

    n = 20000
    key_start, key_move = jax.random.split(jax.random.PRNGKey(3))
    x0 = post_mean + post_sd * jax.random.normal(key_start, (n, 2))
    start = jax.vmap(lambda x: init(x, logdensity))(x0)

    def move(key, point):
        return sample_denoising_posterior(
            key, point, noisy, alpha, sigma, logdensity, 0.3, 3, proposal=proposal, anchors=anchors
        )

    moved, info = jax.vmap(move)(jax.random.split(key_move, n), start)
    # The jump really acts; only the Laplace ("full") proposal is exact for a Gaussian target.
    assert info.jump_accept_prob.mean() > 0.05
    assert proposal == "full" or info.jump_accept_prob.mean() < 0.99
    x1 = np.asarray(moved.position)
    np.testing.assert_allclose(x1.mean(0), post_mean, atol=5 * post_sd / np.sqrt(n))
    np.testing.assert_allclose(x1.std(0), post_sd, rtol=5 / np.sqrt(2 * n))
    np.testing.assert_allclose(moved.logdensity, jax.vmap(logdensity)(moved.position), rtol=1e-4)


# Anchors at both modes (and an unrecorded row) make the anchor mixtures jump between them.
ANCHORS_AT_BOTH_MODES = Anchors(
    jnp.array([[-3.0], [3.0], [40.0]]),
    jnp.array([True, True, False]),
    jnp.array(0.6),
    jnp.array([0.6]),
)


@pytest.mark.parametrize("anchors", [None, ANCHORS_AT_BOTH_MODES], ids=["no anchors", "anchors"])
def test_digs_sweep_leaves_a_bimodal_target_invariant(anchors):
    """Stationarity of a whole multi-level sweep, from exact draws of a 1-D two-mode mixture."""
    weights, locs, scale = jnp.array([0.3, 0.7]), jnp.array([-3.0, 3.0]), 0.6
    mixture = dist.MixtureSameFamily(dist.Categorical(weights), dist.Normal(locs, scale))

    def logdensity(x):
        return mixture.log_prob(x[0])

    n = 40000
    key_start, key_move = jax.random.split(jax.random.PRNGKey(4))
    x0 = mixture.sample(key_start, (n,))[:, None]
    kernel = build_kernel(num_mala_steps=2)
    step_sizes = jnp.array([0.3, 0.2, 0.1, 0.5])  # MALA per level, then the NUTS move
    ladder = levels(vp_schedule([0.2, 0.6, 0.9]))

    def sweep(key, x):
        return kernel(key, init(x, logdensity), logdensity, step_sizes, ladder, anchors)

    moved, info = jax.vmap(sweep)(jax.random.split(key_move, n), x0)
    x1 = np.asarray(moved.position[:, 0])
    # Mass really moves between the modes, yet the right-mode fraction stays 0.7.
    switched = np.mean(np.sign(x1) != np.sign(np.asarray(x0[:, 0])))
    # (Measured: 4% of draws switch without anchors, 14% with them.)
    assert switched > (0.1 if anchors else 0.02)
    assert abs(np.mean(x1 > 0) - 0.7) < 5 * np.sqrt(0.21 / n)
    exact_mean = float(weights @ locs)
    exact_var = scale**2 + float(weights @ locs**2) - exact_mean**2
    assert abs(x1.mean() - exact_mean) < 5 * np.sqrt(exact_var / n)


@pytest.mark.parametrize("by_site", [True, False], ids=["sites", "no sites"])
def test_partial_jumps_move_whole_latent_sites(by_site):
    """A 2-coordinate site among 10 nuisance coordinates: an eighth of the sweeps (half are
    partial, half of those take one of the two sites) move exactly that site, where random
    blocks of 1–2 coordinates pick that pair once in 66. The Gaussian proposal is exact on a
    standard normal, so every jump is accepted and the draws stay N(0, I)."""
    dim, n = 12, 4000
    sites = np.r_[0, 0, np.ones(dim - 2, int)] if by_site else None

    def logdensity(x):
        return -0.5 * jnp.sum(x**2)

    kernel = build_kernel(proposal="gaussian", local_move=None)
    ladder = levels(vp_schedule([0.5]))
    key_start, key_move = jax.random.split(jax.random.PRNGKey(6))
    x0 = jax.random.normal(key_start, (n, dim))

    def sweep(key, x):
        state = init(x, logdensity)
        return kernel(key, state, logdensity, jnp.array([0.1, 0.1]), ladder, None, sites)[0]

    x1 = np.asarray(jax.vmap(sweep)(jax.random.split(key_move, n), x0).position)
    moved = x1 != np.asarray(x0)
    site_alone = np.mean(np.all(moved[:, :2], axis=1) & ~np.any(moved[:, 2:], axis=1))
    expected = (0.125 if by_site else 0.0) + 0.125 / 66
    assert abs(site_alone - expected) < 5 * np.sqrt(expected * (1 - expected) / n) + 1e-3
    assert np.all(np.abs(x1.mean(0)) < 5 / np.sqrt(n))
    assert np.all(np.abs(x1.var(0) - 1) < 5 * np.sqrt(2 / n))


def test_anchor_bandwidths_follow_the_modes_not_the_spread_between_them():
    """Two modes of sd 0.1, 17 apart: the widths must be those of a mode, not of the spread."""
    key_points, key_junk = jax.random.split(jax.random.PRNGKey(5))
    centers = jnp.array([[0.0, 0.0, 0.0], [10.0, -10.0, 10.0]])
    points = centers[jnp.arange(40) % 2] + 0.1 * jax.random.normal(key_points, (40, 3))
    # Unrecorded rows hold junk that must not count.
    points = points.at[-4:].set(jax.random.normal(key_junk, (4, 3)))
    valid = jnp.arange(40) < 36
    joint, per_coordinate = anchor_bandwidths(points, valid)
    assert 0.02 <= float(joint) <= 0.2
    assert np.all((np.asarray(per_coordinate) >= 0.02) & (np.asarray(per_coordinate) <= 0.2))
    joint, per_coordinate = anchor_bandwidths(points, jnp.arange(40) < 1)
    assert float(joint) == 1.0 and np.all(np.asarray(per_coordinate) == 1.0)


def test_non_finite_proposals_are_rejected_and_counted():
    def potential(x):
        # A wall where the density is undefined: the sampler must never step onto it.
        return 0.5 * jnp.sum(x**2) + jnp.where(jnp.abs(x[0]) > 0.5, jnp.nan, 0.0)

    # The blind proposal lands on the wall often enough to cross two warning thresholds.
    mcmc = MCMC(
        DiGS(potential_fn=potential, proposal="independent"),
        num_warmup=200,
        num_samples=500,
        num_chains=2,
        chain_method="vectorized",
        progress_bar=False,
    )
    with pytest.warns(
        RuntimeWarning, match=r"rejected at least 10+ proposals .* NaN/inf"
    ) as record:
        mcmc.run(
            jax.random.PRNGKey(0),
            init_params=jnp.zeros((2, 2)),
            extra_fields=("num_nonfinite", "num_grad_evals"),
        )
        jax.effects_barrier()
    z = np.asarray(mcmc.get_samples())
    assert np.all(np.isfinite(z)) and np.abs(z[:, 0]).max() <= 0.5
    fields = mcmc.get_extra_fields(group_by_chain=True)
    counts = np.asarray(fields["num_nonfinite"])
    assert counts.sum() > 0
    # The running count covers the sampling phase. A warning fires at an iteration where a
    # chain crosses a threshold (10, 100, ...) while its count exceeds 5% of its gradient
    # evaluations so far: one per such iteration however many chains cross there, worded by
    # threshold so the default filter shows each once; never one per iteration.
    totals = np.asarray(mcmc.last_state.total_nonfinite)
    np.testing.assert_array_equal(totals, counts.sum(1))
    running = np.cumsum(counts, axis=1)
    grad_evals = np.cumsum(np.asarray(fields["num_grad_evals"]), axis=1)
    crossings = [
        (int(np.argmax(chain >= threshold)), threshold)
        for chain, evals in zip(running, grad_evals, strict=True)
        for threshold in (10, 100, 1000)
        if np.any(chain >= threshold)
        and chain[np.argmax(chain >= threshold)] > 0.05 * evals[np.argmax(chain >= threshold)]
    ]
    assert len(record) == len({iteration for iteration, _ in crossings}) >= 2
    named = {int(str(w.message).split("at least ")[1].split()[0]) for w in record}
    assert named == {threshold for _, threshold in crossings}
    # A normal truncated to [-0.5, 0.5]: mean 0, variance 1 - 2a phi(a) / (2 Phi(a) - 1) at
    # a = 0.5; four standard errors with an effective sample size of a tenth of the draws.
    truncated_sd = np.sqrt(1 - 0.5 * 2 * 0.3520653 / (2 * (0.6914625 - 0.5)))
    assert abs(z[:, 0].mean()) < 4 * truncated_sd / np.sqrt(len(z) / 10)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: noise_schedule([1.0, 1.0], [0.5, 1.0]), "large to small noise"),
        (lambda: noise_schedule([1.0, 1.0], [1.0, 0.0]), "σ must be positive"),
        (lambda: noise_schedule([1.0, -1.0], [1.0, 0.5]), "α must be positive"),
        (lambda: noise_schedule([1.0, 1.0], [1.0]), "equal length"),
        (lambda: vp_schedule([0.5, 1.0]), r"lie in \(0, 1\)"),
        (lambda: ve_schedule(1.0, 2.0, 3), "sigma_min <= sigma_max"),
        (lambda: DiGS(gaussian_model, num_mala_steps=-1), "non-negative integer"),
        (lambda: DiGS(gaussian_model, num_mala_steps=2.5), "non-negative integer"),
        (lambda: DiGS(gaussian_model, num_probes=0, proposal="diag"), "num_probes"),
        (lambda: DiGS(gaussian_model, proposal="bogus"), "proposal"),
        (lambda: DiGS(gaussian_model, local_move="hmc"), "local_move"),
        (
            lambda: DiGS(gaussian_model, schedule=NoiseSchedule(jnp.array([]), jnp.array([]))),
            "non-empty",
        ),
        (lambda: DiGS(gaussian_model, target_accept_prob=1.5), "target_accept_prob"),
        (lambda: DiGS(), "exactly one"),
    ],
)
def test_invalid_configuration_is_rejected(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_ve_schedule_is_valid_and_geometric():
    schedule = ve_schedule(10.0, 0.1, 3)
    np.testing.assert_allclose(schedule.sigmas, [10.0, 1.0, 0.1], rtol=1e-6)
    np.testing.assert_allclose(schedule.alphas, 1.0)


@pytest.mark.parametrize("local_move", ["nuts", None])
def test_jumps_never_accepted_are_announced_and_never_freeze_the_chain(local_move):
    # Whole-vector flat-prior jumps with noise 30 sd in 50 dimensions land nowhere near the
    # posterior: no jump is ever accepted.
    with pytest.warns(JumpsNeverAcceptedWarning, match="no noise level's jump was accepted"):
        mcmc = run_digs(
            standard_normal_50d,
            num_chains=2,
            num_warmup=100,
            num_samples=50,
            schedule=ve_schedule(30.0, 20.0, 2),
            proposal="independent",
            block_size=None,
            local_move=local_move,
            # A chain that never moves would shrink an adapted metric until jumps land.
            adapt_metric=False,
        )
        jax.effects_barrier()
    active = np.asarray(mcmc.last_state.warmup.parameters.active)
    if local_move == "nuts":
        # Levels that never help are not paid for: only the NUTS move runs.
        assert not active.any()
    else:
        # The levels are the only move, so they stay on.
        assert active.all()


def test_dense_jacobian_proposal_warns_at_high_dimension():
    kernel = DiGS(standard_normal_50d, proposal="full", block_size=None)
    with pytest.warns(UserWarning, match='50 × 50 Jacobian.*proposal="diag"'):
        kernel.init(jax.random.PRNGKey(0), 10, None, (), {})


def test_rolled_anchors_reach_relabelings_no_chain_visited():
    """Three exchangeable components, modes 0.2 wide and 4 apart: each of the 3! orderings of
    the means has weight 1/6. The chains start in the four orderings where the first mean is
    not the lowest, so warmup records no anchor with that value in the first coordinate, and
    without the anchors' site rolls the jumps rarely build the other two orderings (measured:
    2 of 3 seeds off by more than the bound below, one of them never visiting two orderings;
    with the rolls the largest error over 6 seeds was 0.024)."""
    starts = [[0.0, -4.0, 4.0], [0.0, 4.0, -4.0], [4.0, -4.0, 0.0], [4.0, 0.0, -4.0]]
    mcmc = MCMC(
        DiGS(exchangeable_mixture),
        num_warmup=300,
        num_samples=1000,
        num_chains=4,
        chain_method="vectorized",
        progress_bar=False,
    )
    mcmc.run(jax.random.PRNGKey(2), LABEL_DATA, init_params={"means": jnp.array(starts)})
    order = np.argsort(np.asarray(mcmc.get_samples()["means"]), axis=-1)
    labels = order @ np.array([9, 3, 1])
    frequencies = np.array([np.mean(labels == label) for label in np.unique(labels)])
    assert len(frequencies) == 6
    # The chains change ordering about every 4 draws: 5 standard errors of 1000 independent
    # draws out of the 4000.
    assert np.all(np.abs(frequencies - 1 / 6) < 5 * np.sqrt((1 / 6) * (5 / 6) / 1000))
