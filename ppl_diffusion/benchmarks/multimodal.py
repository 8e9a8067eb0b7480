"""``ppl-diffusion bench --suite multimodal``: mode weights on posteriors with exact answers.

DiGS, parallel tempering and NUTS, each with library defaults (4 vectorized chains, 1000
warmup + 2000 draws), on posteriors whose mode weights are known by symmetry
(:mod:`ppl_diffusion.models.multimodal`). Reported per model and sampler, as mean ± sd over
seeds: the total-variation error of the pooled mode occupancy, the worst single chain's, the
modes visited, mode switches per 1000 draws and per 1000 gradient evaluations.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import jax
import numpy as np

from ppl_diffusion.benchmarks.posteriors import SAMPLERS, run_sampler
from ppl_diffusion.benchmarks.report import (
    aggregate_seeds,
    format_mean_sd,
    format_table,
    grouped_bar_figure,
    select_cases,
    write_report,
)
from ppl_diffusion.models.multimodal import posteriors

NUM_CHAINS, NUM_WARMUP, NUM_DRAWS = 4, 1000, 2000


@dataclass
class MultimodalCase:
    name: str


def occupancy_error(labels: np.ndarray, weights: np.ndarray) -> float:
    """Total variation between label frequencies and ``weights``; for factorised labels
    ``(draws, k)``, the mean over the k factors."""
    labels = labels.reshape(labels.shape[0], -1)
    errors = [
        0.5 * np.abs(np.bincount(column, minlength=len(weights)) / len(column) - weights).sum()
        for column in labels.T
    ]
    return float(np.mean(errors))


def mode_metrics(labels: np.ndarray, weights: np.ndarray, gradient_evaluations: int) -> dict:
    """``labels`` of shape (chains, draws) or (chains, draws, k)."""
    chains, draws = labels.shape[:2]
    switches = (labels[:, 1:] != labels[:, :-1]).reshape(chains, draws - 1, -1).mean(-1).sum()
    return {
        "weight_error": occupancy_error(labels.reshape((-1,) + labels.shape[2:]), weights),
        "worst_chain_weight_error": max(occupancy_error(chain, weights) for chain in labels),
        "modes_visited": int(len(np.unique(labels))) if labels.ndim == 2 else len(weights),
        "switches_per_1k_draws": float(1000 * switches / (chains * draws)),
        "switches_per_1k_grads": float(1000 * switches / gradient_evaluations),
        "gradient_evaluations": gradient_evaluations,
    }


def run_case(name: str, seed: int, num_draws: int) -> dict:
    target = posteriors()[name]
    rows = {}
    keys = jax.random.split(jax.random.PRNGKey(seed), len(SAMPLERS))
    for (sampler, kernel_cls), key in zip(SAMPLERS.items(), keys, strict=True):
        samples, grads = run_sampler(
            kernel_cls(target.model), target, key, NUM_WARMUP, num_draws, NUM_CHAINS
        )
        rows[sampler] = mode_metrics(target.mode_of(samples), target.weights, grads)
        jax.clear_caches()  # see `samplers.run_benchmarks`
    return rows


COLUMNS = [
    ("weight_error", 3),
    ("worst_chain_weight_error", 3),
    ("modes_visited", 1),
    ("switches_per_1k_draws", 1),
    ("switches_per_1k_grads", 2),
    ("gradient_evaluations", 0),
]


def format_results(results: dict) -> str:
    rows = [
        [case, sampler] + [format_mean_sd(row[m], d) for m, d in COLUMNS]
        for case, by_sampler in results.items()
        for sampler, row in by_sampler.items()
    ]
    return format_table(["model", "sampler"] + [m for m, _ in COLUMNS], rows)


def plot_results(results: dict):
    names = list(results)
    groups = {
        sampler: {
            "values": [results[n][sampler]["weight_error"]["mean"] for n in names],
            "errors": [results[n][sampler]["weight_error"]["sd"] for n in names],
        }
        for sampler in SAMPLERS
    }
    figure, ax = grouped_bar_figure(
        names, groups, "mode-weight error (TV, pooled chains)", "Multimodal suite (dashed: 0.05)"
    )
    ax.axhline(0.05, color="grey", linestyle="--", linewidth=1)
    return figure


def run_multimodal_benchmarks(
    quick: bool = False,
    seed: int = 0,
    num_seeds: int | None = None,
    out_dir: Path = Path("benchmarks/results"),
    only: list[str] | None = None,
) -> dict:
    cases = [MultimodalCase(name) for name in posteriors()]
    selected = select_cases(cases[:1] if quick else cases, only)
    num_seeds = (1 if quick else 3) if num_seeds is None else num_seeds
    num_draws = 300 if quick else NUM_DRAWS
    results = {}
    for case in selected:
        print(f"[{case.name}] DiGS, PT, NUTS × {num_seeds} seed(s)", flush=True)
        per_seed = [run_case(case.name, seed + s, num_draws) for s in range(num_seeds)]
        results[case.name] = aggregate_seeds(per_seed)
    table = format_results(results)
    print()
    print(table)
    write_report(
        out_dir,
        "multimodal_quick" if quick else "multimodal",
        results,
        table,
        plot_results(results),
    )
    return results
