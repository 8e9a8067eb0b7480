"""``ppl-diffusion bench``: DiGS against its peers at equal gradient budgets, in one process.

Every sampler gets the same number of post-warmup target-gradient evaluations per case: DiGS,
parallel tempering and NUTS continue their chains until they have used the budget (the cost
per draw of NUTS, alone or inside DiGS, is adaptive), and BlackJAX's adaptive tempered SMC gets
as many particles as the budget buys at the number of tempering steps a pilot run needed.
DiGS runs with its default settings on every case.
Quality cases compare draws with exact (or long-run reference) samples; efficiency cases report
ESS per gradient evaluation as a ratio to NUTS.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.infer import MCMC, NUTS

from ppl_diffusion.benchmarks.baselines import run_tempered_smc, run_with_budget, thin_to
from ppl_diffusion.benchmarks.report import (
    aggregate_seeds,
    format_mean_sd,
    format_table,
    new_figure,
    select_cases,
    write_report,
)
from ppl_diffusion.diagnostics import (
    default_bandwidths,
    ess_summary,
    histogram_tvd,
    mmd,
    mode_coverage,
    wasserstein2,
)
from ppl_diffusion.inference.digs import DiGS
from ppl_diffusion.inference.tempering import ParallelTempering
from ppl_diffusion.models import dw4, get_model, many_well
from ppl_diffusion.target import make_target

NUM_POINTS = 4000
"""Points compared with the reference by MMD, thinned evenly from all chains: enough that the
exact-vs-exact floor (about 0.02 on mog40) sits well below the differences between samplers."""
NUM_W2_POINTS = 2000
"""Points for the exact W2 (an assignment problem, cubic in the number of points)."""


@dataclass
class BenchCase:
    name: str
    kind: str
    """"quality" (compare with reference samples) or "efficiency" (ESS per gradient)."""
    budget_per_chain: int
    num_chains: int = 8
    num_warmup: int = 500
    tempering: dict = field(default_factory=dict)
    smc: dict | None = None
    """Reference scale, MALA step size and steps for tempered SMC; None: SMC not run."""
    extra_metrics: Callable[[np.ndarray, np.ndarray], dict] | None = None
    """``(all flat draws, reference) -> metrics`` specific to the target."""


def _mog40_metrics(draws, reference):
    target = get_model("mog40")
    coverage = mode_coverage(draws, target.modes, 4 * target.mode_std)
    return {"modes_visited": coverage.num_visited, "mode_weight_error": coverage.weight_error}


def _many_well_metrics(draws, reference):
    occupancy = (draws[:, 0::2] > 0).mean(0)
    return {
        "well_occupancy_error": float(np.abs(occupancy - many_well.right_well_probability()).mean())
    }


def _funnel_metrics(draws, reference):
    return {"v_sd_error": float(abs(draws[:, 0].std() - 3.0))}


def _dw4_metrics(draws, reference):
    energies = np.asarray(dw4.energy(jnp.asarray(draws)))
    return {"energy_tvd": histogram_tvd(energies, np.asarray(dw4.energy(jnp.asarray(reference))))}


def cases(quick: bool) -> list[BenchCase]:
    scale = 0.25 if quick else 1.0
    mog = BenchCase(
        "mog40",
        "quality",
        budget_per_chain=int(12000 * scale),
        tempering={"num_temperatures": 5, "min_beta": 0.01},
        smc={"reference_scale": 25.0, "step_size": 1.0, "num_mcmc_steps": 10},
        extra_metrics=_mog40_metrics,
    )
    schools = BenchCase(
        "eight_schools",
        "efficiency",
        budget_per_chain=int(20000 * scale),
        num_chains=4,
        tempering={"num_temperatures": 3, "min_beta": 0.3},
    )
    if quick:
        return [mog, schools]
    return [
        mog,
        BenchCase(
            "many_well",
            "quality",
            budget_per_chain=20000,
            tempering={"num_temperatures": 5, "min_beta": 0.1},
            smc={"reference_scale": 2.0, "step_size": 0.05, "num_mcmc_steps": 10},
            extra_metrics=_many_well_metrics,
        ),
        BenchCase(
            "funnel",
            "quality",
            budget_per_chain=20000,
            tempering={"num_temperatures": 5, "min_beta": 0.1},
            smc={"reference_scale": 3.0, "step_size": 0.05, "num_mcmc_steps": 10},
            extra_metrics=_funnel_metrics,
        ),
        BenchCase(
            "dw4",
            "quality",
            budget_per_chain=20000,
            tempering={"num_temperatures": 5, "min_beta": 0.1},
            smc={"reference_scale": 3.0, "step_size": 0.05, "num_mcmc_steps": 10},
            extra_metrics=_dw4_metrics,
        ),
        schools,
        BenchCase(
            "logistic_regression",
            "efficiency",
            budget_per_chain=20000,
            num_chains=4,
            tempering={"num_temperatures": 3, "min_beta": 0.3},
        ),
    ]


def _flat_draws(samples: dict, names: list[str]) -> np.ndarray:
    """Constrained latent sites of ``(chains, draws, ...)`` samples as ``(chains, draws, d)``."""
    parts = [np.asarray(samples[n]).reshape(samples[n].shape[:2] + (-1,)) for n in names]
    return np.concatenate(parts, axis=-1)


def run_samplers(case: BenchCase, builtin, key) -> dict:
    keys = jax.random.split(key, 4)
    budget = case.budget_per_chain * case.num_chains
    kernels = {
        "DiGS": DiGS(builtin.model),
        "PT": ParallelTempering(builtin.model, **case.tempering),
        "NUTS": NUTS(builtin.model),
    }
    runs = {}
    for (name, kernel), run_key in zip(kernels.items(), keys, strict=False):
        run = run_with_budget(
            run_key,
            kernel,
            budget,
            num_chains=case.num_chains,
            num_warmup=case.num_warmup,
            min_draws=200,
            model_args=builtin.model_args,
            model_kwargs=builtin.model_kwargs,
        )
        runs[name] = {
            "samples": run.samples,
            "gradient_evaluations": run.gradient_evaluations,
            "wall_time_s": run.wall_time,
        }
    if case.smc is not None:
        runs["SMC"] = _run_smc(case, builtin, keys[3], budget)
    return runs


def _run_smc(case: BenchCase, builtin, key, budget: int) -> dict:
    target, _ = make_target(
        jax.random.PRNGKey(0),
        model=builtin.model,
        model_args=builtin.model_args,
        model_kwargs=builtin.model_kwargs,
    )
    key_pilot, key_run = jax.random.split(key)
    smc_args = dict(case.smc)
    pilot = run_tempered_smc(key_pilot, target.logdensity_fn, target.dim, 256, **smc_args)
    per_particle = pilot.num_tempering_steps * smc_args["num_mcmc_steps"]
    num_particles = max(64, budget // per_particle)
    run = run_tempered_smc(key_run, target.logdensity_fn, target.dim, num_particles, **smc_args)
    samples = jax.tree.map(lambda v: v[None], target.constrain(run.positions))
    return {
        "samples": samples,
        "gradient_evaluations": run.gradient_evaluations,
        "wall_time_s": run.wall_time + pilot.wall_time,
        "num_particles": num_particles,
    }


def reference_samples(name: str, builtin, key) -> np.ndarray:
    if builtin.sample_exact is not None:
        exact = builtin.sample_exact(key, NUM_POINTS)
        return np.concatenate(
            [np.asarray(exact[n]).reshape(NUM_POINTS, -1) for n in sorted(exact)], axis=-1
        )
    # DW-4 has no exact sampler: a long, many-chain tempering run stands in for it.
    kernel = ParallelTempering(
        builtin.model, num_temperatures=6, min_beta=0.05, local_move="mala", num_mala_steps=2
    )
    mcmc = MCMC(
        kernel,
        num_warmup=1000,
        num_samples=10000,
        num_chains=16,
        chain_method="vectorized",
        progress_bar=False,
    )
    mcmc.run(key)
    draws = _flat_draws(mcmc.get_samples(group_by_chain=True), builtin.latent_sites)
    return thin_to(draws, NUM_POINTS)


def evaluate(case: BenchCase, builtin, runs: dict, reference: np.ndarray | None) -> dict:
    results = {}
    nuts_ess_per_grad = None
    latent_sites = builtin.latent_sites
    for name, run in runs.items():
        draws = _flat_draws(run["samples"], latent_sites)
        row = {
            "gradient_evaluations": int(run["gradient_evaluations"]),
            "wall_time_s": float(run["wall_time_s"]),
        }
        if case.kind == "quality":
            bandwidths = default_bandwidths(reference)
            row["mmd"] = mmd(thin_to(draws, NUM_POINTS), reference, bandwidths)
            row["w2"] = wasserstein2(thin_to(draws, NUM_W2_POINTS), reference[:NUM_W2_POINTS])
            row.update(case.extra_metrics(draws.reshape(-1, draws.shape[-1]), reference))
        else:
            ess = ess_summary(run["samples"])
            row.update(ess)
            row["ess_per_1k_grads"] = 1000 * ess["min_ess_bulk"] / row["gradient_evaluations"]
            row["ess_per_s"] = ess["min_ess_bulk"] / row["wall_time_s"]
            if name == "NUTS":
                nuts_ess_per_grad = row["ess_per_1k_grads"]
        results[name] = row
    if case.kind == "efficiency":
        for row in results.values():
            row["ess_per_grad_vs_nuts"] = row["ess_per_1k_grads"] / nuts_ess_per_grad
    return results


QUALITY_COLUMNS = [("mmd", 4), ("w2", 3)]
EXTRA_COLUMNS = {
    "modes_visited": 1,
    "mode_weight_error": 3,
    "well_occupancy_error": 3,
    "v_sd_error": 3,
    "energy_tvd": 3,
}
EFFICIENCY_COLUMNS = [
    ("min_ess_bulk", 0),
    ("ess_per_1k_grads", 2),
    ("ess_per_grad_vs_nuts", 2),
    ("ess_per_s", 1),
    ("max_rhat", 3),
]


def format_results(results: dict) -> str:
    blocks = []
    for case_name, case in results.items():
        samplers = case["samplers"]
        first = next(iter(samplers.values()))
        if case["kind"] == "quality":
            columns = QUALITY_COLUMNS + [(m, d) for m, d in EXTRA_COLUMNS.items() if m in first]
        else:
            columns = EFFICIENCY_COLUMNS
        columns = columns + [("gradient_evaluations", 0), ("wall_time_s", 1)]
        rows = [
            [name] + [format_mean_sd(stats[m], d) for m, d in columns]
            for name, stats in samplers.items()
        ]
        title = f"{case_name} ({case['kind']}, {case['num_seeds']} seed(s), mean ± sd)"
        blocks.append(title + "\n" + format_table(["sampler"] + [m for m, _ in columns], rows))
    return "\n\n".join(blocks)


def plot_results(results: dict):
    figure = new_figure((3.6 * len(results), 3.6))
    axes = figure.subplots(1, len(results), squeeze=False)[0]
    for ax, (case_name, case) in zip(axes, results.items(), strict=True):
        metric = "mmd" if case["kind"] == "quality" else "ess_per_1k_grads"
        names = list(case["samplers"])
        means = [case["samplers"][n][metric]["mean"] for n in names]
        sds = [case["samplers"][n][metric]["sd"] for n in names]
        ax.bar(names, means, yerr=sds, color=["C0", "C1", "C2", "C3"][: len(names)])
        ax.set_title(
            f"{case_name}\n{'MMD (lower is better)' if metric == 'mmd' else 'ESS per 1k grads'}"
        )
        ax.tick_params(axis="x", rotation=30)
    return figure


def run_benchmarks(
    quick: bool = False,
    seed: int = 0,
    num_seeds: int | None = None,
    out_dir: Path = Path("benchmarks/results"),
    only: list[str] | None = None,
) -> dict:
    num_seeds = (1 if quick else 3) if num_seeds is None else num_seeds
    selected = select_cases(cases(quick), only)
    results = {}
    for case in selected:
        builtin = get_model(case.name)
        per_seed = []
        for s in range(num_seeds):
            key_run, key_ref = jax.random.split(jax.random.PRNGKey(seed + s))
            peers = "PT, NUTS, SMC" if case.smc else "PT, NUTS"
            print(f"[{case.name}] seed {seed + s}: running DiGS, {peers}", flush=True)
            reference = (
                reference_samples(case.name, builtin, key_ref) if case.kind == "quality" else None
            )
            runs = run_samplers(case, builtin, key_run)
            per_seed.append(evaluate(case, builtin, runs, reference))
            # Every run compiles new programs; dropping them between runs keeps a long suite
            # from exhausting the process's memory mappings.
            jax.clear_caches()
        results[case.name] = {
            "kind": case.kind,
            "num_seeds": num_seeds,
            "num_chains": case.num_chains,
            "budget_per_chain": case.budget_per_chain,
            "samplers": aggregate_seeds(per_seed),
        }
    table = format_results(results)
    print()
    print(table)
    write_report(
        out_dir, "bench_quick" if quick else "bench", results, table, plot_results(results)
    )
    return results
