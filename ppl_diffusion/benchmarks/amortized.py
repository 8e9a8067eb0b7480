"""``ppl-diffusion bench --suite amortized``: the one-step DiKL sampler against DiGS and NUTS.

For each target (mog40, many_well, DW-4) a :class:`DiffusiveSampler` is trained within a
wall-time budget on this machine, then its draws are compared with exact samples (W2 by optimal
assignment on 2000 points, MMD on 4000, mode coverage or well occupancy), next to the same
metrics for two exact-sample sets (the floor) and for DiGS and NUTS runs. DW-4 follows the
published protocol instead: 1,000 draws against 1,000 configurations of the shared test split
(the floor: the validation split), W2 of centred configurations, the same up to rotation,
reflection and particle permutation, and W2 of the energies, each the mean over ten disjoint
sets of 1,000 draws, with the energy W2's spread over the sets. Throughput is samples
per second: 10⁶ generator draws in one call against post-warmup MCMC draws per second of the
same process (compilation excluded for all three), reported as ratios to DiGS and NUTS. Each
MCMC row's ``run_time_s`` (warmup and draws) sets it beside the generator's ``train_time_s``:
given the generator's wall time instead, an MCMC run only gets more draws.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import equinox as eqx
import jax
import numpy as np
import optax
from numpyro.infer import MCMC, NUTS

from ppl_diffusion.benchmarks.baselines import thin_to, time_compiled_run
from ppl_diffusion.benchmarks.report import format_table, new_figure, select_cases, write_report
from ppl_diffusion.benchmarks.samplers import NUM_POINTS, NUM_W2_POINTS
from ppl_diffusion.diagnostics import default_bandwidths, mmd, mode_coverage, wasserstein2
from ppl_diffusion.inference.amortized import DiffusiveSampler
from ppl_diffusion.inference.digs import DiGS
from ppl_diffusion.models import dw4, get_model, many_well
from ppl_diffusion.target import Symmetry

NUM_THROUGHPUT_DRAWS = 1_000_000


@dataclass
class AmortizedCase:
    name: str
    sampler: dict
    """``DiffusiveSampler`` arguments."""
    fit: dict
    """``DiffusiveSampler.fit`` arguments (``num_steps`` included)."""
    num_chains: int = 8
    num_mcmc_draws: int = 2000
    """Post-warmup draws per chain for DiGS (default settings) and NUTS."""
    symmetry: Symmetry | None = None
    """The target's symmetry, given to the generator."""
    anneal_fraction: float = 0.0
    """The generator's learning rate stays constant, then falls to zero on a cosine over this
    fraction of the steps."""

    def fit_arguments(self) -> dict:
        if not self.anneal_fraction:
            return self.fit
        num_steps, rate = self.fit["num_steps"], self.fit["learning_rate"]
        annealed = round(self.anneal_fraction * num_steps)
        schedule = optax.join_schedules(
            [optax.constant_schedule(rate), optax.cosine_decay_schedule(rate, annealed)],
            [num_steps - annealed],
        )
        return self.fit | {"learning_rate": schedule}


def cases(quick: bool) -> list[AmortizedCase]:
    if quick:
        return [
            AmortizedCase(
                "mog40",
                sampler={"width": 64, "depth": 2, "output_scale": 20.0},
                fit={"num_steps": 30, "batch_size": 64, "score_steps": 2},
                num_mcmc_draws=200,
            )
        ]
    return [
        AmortizedCase(
            "mog40",
            # Many particles and few bridges: at equal cost the noisy-score estimate is less
            # biased toward the outer modes than with 10 particles and 15 bridges.
            sampler={
                "width": 256,
                "depth": 3,
                "output_scale": 20.0,
                "num_particles": 50,
                "num_bridges": 3,
                "num_mala_steps": 1,
            },
            # At 1e-4 the mode-weight error stopped falling after 1500 of 10,000 steps (0.21 to
            # 0.25 from there on); at 3e-4 it gets there by step 450, and at 1e-3 it ends lower
            # still after 3000 steps (0.151 against 0.199 at 3e-4; benchmarks/README.md).
            fit={
                "num_steps": 3000,
                "batch_size": 256,
                "score_steps": 10,
                "learning_rate": 1e-3,
                "score_learning_rate": 1e-3,
            },
            anneal_fraction=0.25,
        ),
        AmortizedCase(
            "many_well",
            sampler={"width": 256, "depth": 3, "output_scale": 2.0},
            # At a constant rate the occupancy error fell to 0.036 by step 3600, then drifted
            # up to 0.155 (every pair in its heavier well) by step 5200 and stayed. The exact
            # noisy score drifts the same way, faster, and so does one double well with both
            # noisy scores exact (benchmarks/README.md): the anneal stops training on its way
            # through the right occupancy.
            fit={
                "num_steps": 4000,
                "batch_size": 256,
                "score_steps": 10,
                "learning_rate": 1e-4,
                "score_learning_rate": 1e-3,
            },
            anneal_fraction=0.25,
        ),
        AmortizedCase(
            "dw4",
            # Noise only down to α ≈ 0.69: at larger noise the posterior sampling behind the
            # target's noisy score starts far outside the quartic wells and its estimate
            # explodes (benchmarks/README.md).
            # No skip: over the last 3000 steps the generator's energy W2 had a median of
            # 1.04 with it and 0.34 without (one 6000-step run each).
            sampler={
                "width": 256,
                "depth": 3,
                "output_scale": 2.0,
                "beta_max": 0.05,
                "skip": False,
            },
            fit={
                "num_steps": 6000,
                "batch_size": 256,
                "score_steps": 10,
                "learning_rate": 3e-4,
                "score_learning_rate": 1e-3,
            },
            symmetry=dw4.SYMMETRY,
        ),
    ]


DW4_POINTS = 1000
"""Configurations per set in the published DW-4 comparison."""
DW4_SETS = 10
"""Disjoint sets of ``DW4_POINTS`` draws whose DW-4 metrics are averaged: one set's energy W2
is decided mostly by whether it holds one of a generator's rare high-energy draws."""


class ExactNoisyScore(eqx.Module):
    """Stands in for a sampler's estimate of the target's noisy score (``target_score`` in a
    DiKL config), given the target's exact ``noisy_score(noisy, alpha, sigma)``."""

    noisy_score: Callable = eqx.field(static=True)

    def __call__(self, key, noisy, alpha, sigma, draws=None):
        return self.noisy_score(noisy, alpha, sigma)


def _num_draws(builtin) -> int:
    """Draws each sampler's row is computed from: for DW-4, ``DW4_SETS`` sets."""
    return DW4_SETS * DW4_POINTS if builtin.name == "dw4" else NUM_POINTS


def _exact(builtin, key, n, split="test") -> np.ndarray:
    """Exact samples; for DW-4 the first ``n`` configurations of a shared split."""
    if builtin.name == "dw4":
        return dw4.load_configurations(split)[:n]
    return np.asarray(builtin.sample_exact(key, n)["x"]).reshape(n, -1)


def disjoint_sets(draws: np.ndarray, size: int) -> list[np.ndarray]:
    """As many disjoint sets of ``size`` draws as there are (at most ``DW4_SETS``), each spread
    evenly over all of ``draws`` (chains pooled in order)."""
    num_sets = min(DW4_SETS, len(draws) // size)
    if num_sets == 0:
        raise ValueError(f"Need at least {size} draws for one set, got {len(draws)}.")
    spread = np.linspace(0, len(draws) - 1, num_sets * size).round().astype(int)
    return [draws[spread[k::num_sets]] for k in range(num_sets)]


METRIC_NAMES = {
    "mog40": "mode-weight error",
    "many_well": "well-occupancy error",
    "dw4": "energy W2",
}
"""What :func:`mode_metric` measures on each target."""


def mode_metric(draws: np.ndarray, reference: np.ndarray, builtin) -> float:
    """Mode-weight error (mog40), well-occupancy error (many_well) or energy W2 against
    ``reference`` (DW-4: the test split) of flat draws: what the training curve follows."""
    if builtin.name == "dw4":
        sets = disjoint_sets(draws, len(reference))
        return float(np.mean([dw4.energy_wasserstein2(s, reference) for s in sets]))
    if builtin.modes is not None:
        return mode_coverage(draws, builtin.modes, 4 * builtin.mode_std).weight_error
    occupancy = (draws[:, 0::2] > 0).mean(0)
    return float(np.abs(occupancy - many_well.right_well_probability()).mean())


def quality(draws: np.ndarray, reference: np.ndarray, builtin) -> dict:
    """W2, MMD and the target's mode metric of flat draws against exact samples; for DW-4
    the published metrics, means over disjoint sets of ``len(reference)`` draws."""
    if builtin.name == "dw4":
        per_set = [
            {
                "w2": wasserstein2(dw4.centred(s), dw4.centred(reference)),
                "w2_up_to_symmetry": wasserstein2(
                    s, reference, squared_distances=dw4.aligned_squared_distances
                ),
                "energy_w2": dw4.energy_wasserstein2(s, reference),
            }
            for s in disjoint_sets(draws, len(reference))
        ]
        row = {name: float(np.mean([m[name] for m in per_set])) for name in per_set[0]}
        energies = [m["energy_w2"] for m in per_set]
        return row | {"energy_w2_sd": float(np.std(energies)), "num_sets": len(per_set)}
    pooled = draws[None]  # thin_to thins (chains, draws, dim); these are pooled already
    row = {
        "w2": wasserstein2(thin_to(pooled, NUM_W2_POINTS), reference[:NUM_W2_POINTS]),
        "mmd": mmd(thin_to(pooled, NUM_POINTS), reference, default_bandwidths(reference)),
    }
    if builtin.modes is not None:
        coverage = mode_coverage(draws, builtin.modes, 4 * builtin.mode_std)
        row["modes_visited"] = coverage.num_visited
        row["mode_weight_error"] = coverage.weight_error
    else:
        row["well_occupancy_error"] = mode_metric(draws, reference, builtin)
    return row


def train_and_assess(
    sampler: DiffusiveSampler, builtin, reference: np.ndarray, keys, eval_every: int, **fit
) -> tuple[float, np.ndarray, dict]:
    """Train ``sampler`` (``fit`` settings) with the suite's keys for one seed, following the
    target's mode metric every ``eval_every`` steps; return the training time, ``NUM_POINTS``
    draws and their :func:`quality`, on a target with modes also the fraction of draws farther
    than 3 mode standard deviations from every mode (``beyond_3_sd``): what the diagnostic
    training scripts in ``benchmarks/`` report."""
    start = time.perf_counter()
    sampler.fit(
        keys[2],
        **fit,
        eval_every=eval_every,
        eval_fn=lambda draws: mode_metric(np.asarray(draws), reference, builtin),
        progress_bar=False,
    )
    train_time_s = time.perf_counter() - start
    draws = np.asarray(sampler.sample_unconstrained(keys[3], NUM_POINTS))
    final = quality(draws, reference, builtin)
    if builtin.modes is not None:
        modes = np.asarray(builtin.modes)
        nearest = np.min(np.linalg.norm(draws[:, None] - modes, axis=-1), 1)
        final["beyond_3_sd"] = float(np.mean(nearest > 3 * builtin.mode_std))
    return train_time_s, draws, final


MCMC_WARMUP = 500
SHORT_WARMUPS = (50, 150)
"""Warmup lengths at which DiGS runs from default and from generator starts."""


def _mcmc(kernel, case: AmortizedCase, num_warmup: int) -> MCMC:
    return MCMC(
        kernel,
        num_warmup=num_warmup,
        num_samples=case.num_mcmc_draws,
        num_chains=case.num_chains,
        chain_method="vectorized",
        progress_bar=False,
    )


def _flat_draws(mcmc: MCMC) -> np.ndarray:
    draws = np.asarray(mcmc.get_samples()["x"])
    return draws.reshape(-1, draws.shape[-1])


def _timed_mcmc(kernel, case: AmortizedCase, key) -> tuple[np.ndarray, dict]:
    """Flat draws, the run's wall time (warmup included, compilation excluded) and its
    post-warmup draws per second of that time."""
    mcmc = _mcmc(kernel, case, MCMC_WARMUP)
    seconds = time_compiled_run(mcmc, key)
    rate = case.num_chains * case.num_mcmc_draws / seconds
    return _flat_draws(mcmc), {"run_time_s": seconds, "samples_per_s": rate}


def generator_started_digs(sampler, builtin, case: AmortizedCase, reference, key) -> dict:
    """DiGS (default settings) with short warmups, its chains started by default and from
    generator draws, against the default DiGS run of the main table."""
    rows = {}
    for num_warmup in SHORT_WARMUPS:
        key_default, key_generator, key_init = jax.random.split(
            jax.random.fold_in(key, num_warmup), 3
        )
        starts = sampler.init_params(key_init, case.num_chains)
        for label, init_params, run_key in (
            ("default start", None, key_default),
            ("generator start", starts, key_generator),
        ):
            mcmc = _mcmc(DiGS(builtin.model), case, num_warmup)
            mcmc.run(run_key, init_params=init_params)
            rows[f"DiGS, {num_warmup} warmup, {label}"] = quality(
                _flat_draws(mcmc), reference, builtin
            )
    return rows


def _generator_throughput(sampler: DiffusiveSampler, key) -> float:
    key_compile, key_run = jax.random.split(key)
    jax.block_until_ready(sampler.sample(key_compile, NUM_THROUGHPUT_DRAWS))
    start = time.perf_counter()
    jax.block_until_ready(sampler.sample(key_run, NUM_THROUGHPUT_DRAWS))
    return NUM_THROUGHPUT_DRAWS / (time.perf_counter() - start)


def run_case(case: AmortizedCase, seed: int, progress_bar: bool = True) -> dict:
    builtin = get_model(case.name)
    keys = jax.random.split(jax.random.PRNGKey(seed), 7)
    reference = _exact(builtin, keys[0], DW4_POINTS if builtin.name == "dw4" else NUM_POINTS)
    second_set = _exact(builtin, keys[1], _num_draws(builtin), split="val")
    rows = {"exact (2nd set)": quality(second_set, reference, builtin)}

    sampler = DiffusiveSampler(builtin.model, seed=seed, symmetry=case.symmetry, **case.sampler)
    start, wall_start = time.perf_counter(), time.time()
    history = sampler.fit(
        keys[2],
        progress_bar=progress_bar,
        eval_every=max(1, case.fit["num_steps"] // 20),
        eval_fn=lambda draws: mode_metric(np.asarray(draws), reference, builtin),
        **case.fit_arguments(),
    )
    train_time = time.perf_counter() - start
    draws = np.asarray(sampler.sample_unconstrained(keys[3], _num_draws(builtin)))
    generator_rate = _generator_throughput(sampler, keys[4])
    rows["DiKL generator"] = quality(draws, reference, builtin) | {
        "train_time_s": train_time,
        "samples_per_s": generator_rate,
    }

    for name, kernel, key in (
        ("DiGS", DiGS(builtin.model), keys[5]),
        ("NUTS", NUTS(builtin.model), keys[6]),
    ):
        mcmc_draws, timing = _timed_mcmc(kernel, case, key)
        rows[name] = quality(mcmc_draws, reference, builtin) | timing
    for row in rows.values():
        if "samples_per_s" in row:
            row["samples_per_s_vs_digs"] = row["samples_per_s"] / rows["DiGS"]["samples_per_s"]
            row["samples_per_s_vs_nuts"] = row["samples_per_s"] / rows["NUTS"]["samples_per_s"]
    return {
        "num_steps": case.fit["num_steps"],
        "sampler": case.sampler | {"symmetry": case.symmetry and case.symmetry.name},
        "fit": case.fit | {"anneal_fraction": case.anneal_fraction},
        "mcmc_chains_x_draws": [case.num_chains, case.num_mcmc_draws],
        "rows": rows,
        "short_warmup_rows": generator_started_digs(
            sampler, builtin, case, reference, jax.random.fold_in(keys[5], 1)
        ),
        "metric_name": METRIC_NAMES[case.name],
        "training_curve": [
            {"step": h["step"], "time": h["time"] - wall_start, "metric": h["metric"]}
            for h in history
        ],
    }


COLUMNS = [
    ("w2", 3),
    ("w2_up_to_symmetry", 3),
    ("energy_w2", 3),
    ("energy_w2_sd", 3),
    ("mmd", 4),
    ("modes_visited", 0),
    ("mode_weight_error", 3),
    ("well_occupancy_error", 3),
    ("train_time_s", 0),
    ("run_time_s", 1),
    ("samples_per_s", 0),
    ("samples_per_s_vs_digs", 1),
    ("samples_per_s_vs_nuts", 1),
]


def format_results(results: dict) -> str:
    blocks = []
    for case_name, case in results.items():
        rows = case["rows"] | case["short_warmup_rows"]
        columns = [(m, d) for m, d in COLUMNS if any(m in r for r in rows.values())]
        table = [
            [name] + [f"{r[m]:.{d}f}" if m in r else "" for m, d in columns]
            for name, r in rows.items()
        ]
        blocks.append(
            f"{case_name} (DiKL {case['num_steps']} steps; MCMC "
            f"{case['mcmc_chains_x_draws'][0]} chains × {case['mcmc_chains_x_draws'][1]} "
            "draws)\n" + format_table(["sampler"] + [m for m, _ in columns], table)
        )
    return "\n\n".join(blocks)


def plot_results(results: dict):
    figure = new_figure((4 * len(results), 10))
    axes = figure.subplots(3, len(results), squeeze=False)
    for column, (case_name, case) in enumerate(results.items()):
        names = list(case["rows"])
        w2 = "w2_up_to_symmetry" if "w2_up_to_symmetry" in case["rows"][names[0]] else "w2"
        axes[0, column].bar(names, [case["rows"][n][w2] for n in names], color="C0")
        axes[0, column].set_title(f"{case_name}: {w2.replace('_', ' ')} (lower is better)")
        timed = [n for n in names if "samples_per_s" in case["rows"][n]]
        axes[1, column].bar(timed, [case["rows"][n]["samples_per_s"] for n in timed], color="C1")
        axes[1, column].set_yscale("log")
        axes[1, column].set_title("samples per second")
        for ax in axes[:2, column]:
            ax.tick_params(axis="x", rotation=20)
        curve = case["training_curve"]
        axes[2, column].plot([c["time"] for c in curve], [c["metric"] for c in curve], "o-")
        axes[2, column].set_xlabel("training time (s)")
        axes[2, column].set_ylabel(case["metric_name"])
        axes[2, column].set_title(f"{case_name}: generator during training")
    return figure


def run_amortized_benchmarks(
    quick: bool = False,
    seed: int = 0,
    out_dir: Path = Path("benchmarks/results"),
    only: list[str] | None = None,
) -> dict:
    selected = select_cases(cases(quick), only)
    results = {}
    for case in selected:
        print(
            f"[{case.name}] training the DiKL generator ({case.fit['num_steps']} steps), "
            "then DiGS and NUTS",
            flush=True,
        )
        results[case.name] = run_case(case, seed, progress_bar=not quick)
    table = format_results(results)
    print()
    print(table)
    stem = "amortized_quick" if quick else "amortized"
    write_report(out_dir, stem, results, table, plot_results(results))
    return results
