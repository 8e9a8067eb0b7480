"""``ppl-diffusion bench --suite noisy-score``: how well the amortized samplers' estimate of
the target's noisy score matches the exact one, per noise level.

On mog40 the noisy marginal p_t(x_t) = ∫ p(x₀) N(x_t; αx₀, σ²I) dx₀ is again a Gaussian
mixture, so its score is known in closed form. At each of several VP levels of the DiKL
schedule, noisy points are drawn from p_t itself (exact x₀, then noise: where training
evaluates the score once the generator is right), and the estimator of
:class:`~ppl_diffusion.inference.amortized.NoisyTargetScore` is repeated on each point; its
Gaussian reference comes from the exact draws (as from a generator that is right). Per level
and estimator setting the suite reports, relative to the RMS of the exact score over the points:
the bias (the error of the mean over repeats, minus its own Monte-Carlo error), the standard
deviation of one estimate, and the RMS error of one estimate; and that RMS error times
α⁻¹, what reaches the generator's gradient (DiKL weights a level by α⁻², and x_t moves with
the generator's output by the factor α).
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist

from ppl_diffusion.benchmarks.report import format_table, new_figure, write_report
from ppl_diffusion.inference.amortized import DiffusiveSampler, NoisyTargetScore
from ppl_diffusion.models import mog40

SETTINGS = {
    "10 particles, 15 bridges, 5 MALA (default)": dict(
        num_particles=10, num_bridges=15, num_mala_steps=5
    ),
    "50 particles, 3 bridges, 1 MALA, flat start": dict(
        num_particles=50, num_bridges=3, num_mala_steps=1, reference_width=None
    ),
    "50 particles, 3 bridges, 1 MALA, Gaussian reference (mog40 suite)": dict(
        num_particles=50, num_bridges=3, num_mala_steps=1
    ),
}
"""The reference's draws are exact ones here: what the estimator sees once the generator is
right."""


def noisy_mog40(alpha, sigma) -> dist.Distribution:
    means = mog40.mode_means()
    scale = jnp.sqrt(alpha**2 * mog40.MODE_STD**2 + sigma**2)
    return dist.MixtureSameFamily(
        dist.Categorical(probs=jnp.full(mog40.NUM_MODES, 1.0 / mog40.NUM_MODES)),
        dist.Normal(alpha * means, scale).to_event(1),
    )


def noisy_mog40_score(noisy: jax.Array, alpha: jax.Array, sigma: jax.Array) -> jax.Array:
    """Exact score of mog40 noised as x_t = αx + σε, for ``(n, 2)`` points ``noisy`` with
    per-row ``alpha`` and ``sigma`` of shape ``(n,)``."""
    return jax.vmap(lambda x, a, s: jax.grad(noisy_mog40(a, s).log_prob)(x))(noisy, alpha, sigma)


def level_errors(
    estimator: NoisyTargetScore, key, alpha, sigma, num_points: int, num_repeats: int
) -> dict:
    key_clean, key_noise, key_estimate = jax.random.split(key, 3)
    clean = mog40.sample_exact(key_clean, num_points)["x"]
    noisy = alpha * clean + sigma * jax.random.normal(key_noise, clean.shape)
    ones = jnp.ones(num_points)
    exact = noisy_mog40_score(noisy, alpha * ones, sigma * ones)

    def estimate(key):
        return estimator(key, noisy, alpha * ones, sigma * ones, clean)

    estimates = jax.lax.map(estimate, jax.random.split(key_estimate, num_repeats))
    scale = float(jnp.sqrt(jnp.mean(jnp.sum(exact**2, -1))))
    variance = jnp.mean(jnp.sum(estimates.var(0, ddof=1), -1))
    squared_bias = jnp.mean(jnp.sum((estimates.mean(0) - exact) ** 2, -1)) - variance / num_repeats
    squared_error = jnp.mean(jnp.sum((estimates - exact) ** 2, -1))
    return {
        "alpha": float(alpha),
        "noise_to_signal": float(sigma / alpha),
        "exact_score_rms": scale,
        "relative_bias": float(jnp.sqrt(jnp.maximum(squared_bias, 0.0))) / scale,
        "relative_sd": float(jnp.sqrt(variance)) / scale,
        "relative_rmse": float(jnp.sqrt(squared_error)) / scale,
        "rmse_in_generator_gradient": float(jnp.sqrt(squared_error)) / float(alpha),
    }


def run_noisy_score_benchmark(
    quick: bool = False, seed: int = 0, out_dir: Path = Path("benchmarks/results")
) -> dict:
    samplers = {
        name: DiffusiveSampler(mog40.model, width=8, depth=1, **settings)
        for name, settings in SETTINGS.items()
    }
    schedule = next(iter(samplers.values()))
    num_levels = schedule.alphas.shape[0]
    picked = np.unique(np.linspace(0, num_levels - 1, 3 if quick else 8).round().astype(int))
    num_points, num_repeats = (16, 4) if quick else (128, 16)
    # Every setting sees the same points and repeats' keys.
    keys = jax.random.split(jax.random.PRNGKey(seed), len(picked))
    results = {}
    for name, sampler in samplers.items():
        results[name] = [
            {"level": int(level)}
            | level_errors(
                sampler.target_score,
                key,
                schedule.alphas[level],
                schedule.sigmas[level],
                num_points,
                num_repeats,
            )
            for level, key in zip(picked, keys, strict=True)
        ]
    columns = [
        "level",
        "alpha",
        "noise_to_signal",
        "relative_bias",
        "relative_sd",
        "relative_rmse",
        "rmse_in_generator_gradient",
    ]
    tables = [
        f"{name}\n"
        + format_table(
            columns,
            [
                [f"{row[c]:.3g}" if isinstance(row[c], float) else row[c] for c in columns]
                for row in rows
            ],
        )
        for name, rows in results.items()
    ]
    table = (
        f"mog40 noisy-score estimator vs the exact score ({num_points} points per level drawn "
        f"from p_t, {num_repeats} estimates each)\n" + "\n".join(tables)
    )
    print(table)
    figure = new_figure((6, 4))
    ax = figure.subplots()
    for name, rows in results.items():
        ratios = [row["noise_to_signal"] for row in rows]
        ax.plot(ratios, [row["relative_bias"] for row in rows], "o-", label=f"bias, {name}")
        ax.plot(ratios, [row["relative_sd"] for row in rows], "s--", label=f"sd, {name}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("σ/α of the level")
    ax.set_ylabel("error / RMS exact score")
    ax.set_title("mog40 noisy-score estimator")
    ax.legend(fontsize=7)
    stem = "noisy_score_quick" if quick else "noisy_score"
    write_report(out_dir, stem, results, table, figure)
    return results
