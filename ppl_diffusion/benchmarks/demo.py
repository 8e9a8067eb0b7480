"""``ppl-diffusion demo``: DiGS and NUTS on the 40-mode mixture, side by side."""

from __future__ import annotations

import time
from pathlib import Path

import arviz as az
import jax
import numpy as np
from numpyro.infer import MCMC, NUTS

from ppl_diffusion.benchmarks.baselines import run_with_budget, thin_to
from ppl_diffusion.benchmarks.report import format_table, new_figure
from ppl_diffusion.diagnostics import default_bandwidths, mmd, mode_coverage
from ppl_diffusion.inference.digs import DiGS
from ppl_diffusion.models import get_model

NUM_COMPARISON_POINTS = 2000


def run_demo(
    num_chains: int = 8,
    num_warmup: int = 500,
    num_samples: int = 2000,
    seed: int = 0,
    out_dir: Path = Path("demo_output"),
) -> dict:
    target = get_model("mog40")
    key_digs, key_nuts, key_exact = jax.random.split(jax.random.PRNGKey(seed), 3)

    print(f"DiGS on mog40: {num_chains} chains, {num_warmup} warmup + {num_samples} draws each")
    start = time.perf_counter()
    kernel = DiGS(target.model)
    digs = MCMC(
        kernel,
        num_warmup=num_warmup,
        num_samples=num_samples,
        num_chains=num_chains,
        chain_method="vectorized",
    )
    digs.run(key_digs, extra_fields=("num_grad_evals",))
    digs_samples = digs.get_samples(group_by_chain=True)
    jax.block_until_ready(digs_samples)
    digs_time = time.perf_counter() - start
    digs_grads = int(digs.get_extra_fields()["num_grad_evals"].sum())

    print(f"NUTS on mog40: {num_chains} chains, run until it has used {digs_grads} gradients")
    nuts = run_with_budget(
        key_nuts,
        NUTS(target.model),
        gradient_budget=digs_grads,
        num_chains=num_chains,
        num_warmup=num_warmup,
        min_draws=num_samples,
        progress_bar=True,
    )

    exact = np.asarray(target.sample_exact(key_exact, 2 * NUM_COMPARISON_POINTS)["x"])
    reference, independent = exact[:NUM_COMPARISON_POINTS], exact[NUM_COMPARISON_POINTS:]
    bandwidths = default_bandwidths(reference)
    radius = 4 * target.mode_std
    num_modes = target.modes.shape[0]

    results = {}
    rows = []
    for name, draws, grads, wall in [
        ("DiGS", digs_samples["x"], digs_grads, digs_time),
        (
            "NUTS, same draws",
            nuts.samples["x"][:, : nuts.num_first_draws],
            nuts.first_gradient_evaluations,
            float("nan"),
        ),
        ("NUTS, same gradients", nuts.samples["x"], nuts.gradient_evaluations, nuts.wall_time),
        ("exact (2nd set)", independent[None], 0, float("nan")),
    ]:
        all_draws = np.asarray(draws).reshape(-1, 2)
        points = thin_to(draws, NUM_COMPARISON_POINTS)
        coverage = mode_coverage(all_draws, target.modes, radius)
        distance = mmd(points, reference, bandwidths)
        results[name] = {
            "modes_visited": coverage.num_visited,
            "mode_weight_error": coverage.weight_error,
            "mmd": distance,
            "gradient_evaluations": grads,
            "wall_time_s": wall,
        }
        rows.append(
            [
                name,
                f"{coverage.num_visited}/{num_modes}",
                f"{coverage.weight_error:.3f}",
                f"{distance:.4f}",
                grads if grads else "-",
                f"{wall:.1f}" if np.isfinite(wall) else "-",
            ]
        )

    print("\nArviZ summary, DiGS:")
    print(az.summary(az.from_numpyro(digs), var_names=["x"]))
    print("\nArviZ summary, NUTS (all draws of the same-gradients run):")
    print(az.summary(az.from_dict(posterior=nuts.samples), var_names=["x"]))
    print(
        f"\nmog40 ({num_modes} modes). MMD on {NUM_COMPARISON_POINTS} evenly thinned draws vs "
        "exact samples; gradient evaluations after warmup; wall time includes compilation.\n"
    )
    print(
        format_table(
            ["sampler", "modes visited", "weight error", "MMD", "gradient evals", "wall time (s)"],
            rows,
        )
    )

    out_dir.mkdir(parents=True, exist_ok=True)
    plot_path = out_dir / "mog40_digs_vs_nuts.png"
    plot_scatter(
        {"DiGS": digs_samples["x"], "NUTS, same gradients": nuts.samples["x"]},
        np.asarray(target.modes),
        results,
        plot_path,
    )
    print(f"\nPlot written to {plot_path}")
    return results


def plot_scatter(samples: dict, modes: np.ndarray, results: dict, path: Path) -> None:
    figure = new_figure((6 * len(samples), 6))
    axes = figure.subplots(1, len(samples), sharex=True, sharey=True, squeeze=False)[0]
    for ax, (name, draws) in zip(axes, samples.items(), strict=True):
        points = thin_to(draws, 4000)
        ax.scatter(points[:, 0], points[:, 1], s=2, alpha=0.4, label="samples")
        ax.scatter(modes[:, 0], modes[:, 1], marker="x", color="red", s=30, label="true modes")
        r = results[name]
        ax.set_title(
            f"{name}: {r['modes_visited']}/{len(modes)} modes, MMD {r['mmd']:.3f}, "
            f"{r['gradient_evaluations']} grads"
        )
        ax.set_xlim(-50, 50)
        ax.set_ylim(-50, 50)
        ax.set_aspect("equal")
    axes[0].legend(loc="lower left")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
