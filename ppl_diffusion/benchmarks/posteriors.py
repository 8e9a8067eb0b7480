"""``ppl-diffusion bench --suite posteriors``: ordinary Bayesian posteriors, default settings.

Every sampler runs as a user would run it: library defaults, 4 vectorized chains, 1000 warmup
and 1000 draws, float64. Per model and sampler the table says whether it passed (every scalar
parameter's mean within 4 Monte-Carlo standard errors of the reference, the reference's own
error included; its sd within [0.8, 1.25] of the reference's; R-hat at most 1.01), the worst
of each, the smallest bulk ESS per 1000 gradient evaluations, and that as a ratio to NUTS.
A reference sd may be NaN where no sampler of this length could estimate it (the funnel's x).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import arviz as az
import jax
import numpy as np
from numpyro.infer import MCMC, NUTS

from ppl_diffusion.benchmarks.baselines import gradient_cost_field
from ppl_diffusion.benchmarks.report import (
    format_table,
    grouped_bar_figure,
    select_cases,
    write_report,
)
from ppl_diffusion.inference.digs import DiGS
from ppl_diffusion.inference.tempering import ParallelTempering
from ppl_diffusion.models.posteriors import POSTERIORS, posterior

MEAN_TOLERANCE_MCSE = 4.0
SD_RATIO_RANGE = (0.8, 1.25)
MAX_RHAT = 1.01
SAMPLERS = {"DiGS": DiGS, "PT": ParallelTempering, "NUTS": NUTS}


@dataclass
class PosteriorCase:
    name: str


def site_moments(samples_by_chain: dict, sites) -> dict:
    """Per site: mean, sd, MCSE of the mean, bulk ESS and R-hat of every scalar component."""
    idata = az.from_dict(posterior={s: np.asarray(samples_by_chain[s]) for s in sites})
    summary = az.summary(idata, kind="all", round_to="none")
    out = {}
    for site in sites:
        shape = np.shape(samples_by_chain[site])[2:]
        rows = summary.loc[[i for i in summary.index if i == site or i.startswith(site + "[")]]
        out[site] = {
            column: rows[key].to_numpy().reshape(shape).tolist()
            for column, key in (
                ("mean", "mean"),
                ("sd", "sd"),
                ("mcse", "mcse_mean"),
                ("ess_bulk", "ess_bulk"),
                ("rhat", "r_hat"),
            )
        }
    return out


def run_sampler(kernel, builtin, key, num_warmup: int, num_samples: int, num_chains: int):
    cost_field = gradient_cost_field(kernel)
    mcmc = MCMC(
        kernel,
        num_warmup=num_warmup,
        num_samples=num_samples,
        num_chains=num_chains,
        chain_method="vectorized",
        progress_bar=False,
    )
    mcmc.run(key, *builtin.model_args, extra_fields=(cost_field,), **builtin.model_kwargs)
    return mcmc.get_samples(group_by_chain=True), int(mcmc.get_extra_fields()[cost_field].sum())


def judge(moments: dict, reference: dict, gradient_evaluations: int) -> dict:
    """Pass/fail against the reference and the efficiency of one run."""
    z, sd_ratio, rhat, ess = [], [], [], []
    for site, ref in reference.items():
        got = {k: np.asarray(v, float).ravel() for k, v in moments[site].items()}
        ref = {k: np.asarray(v, float).ravel() for k, v in ref.items()}
        z.append(np.abs(got["mean"] - ref["mean"]) / np.sqrt(got["mcse"] ** 2 + ref["mcse"] ** 2))
        sd_ratio.append(got["sd"] / ref["sd"])
        rhat.append(got["rhat"])
        ess.append(got["ess_bulk"])
    z, sd_ratio, rhat, ess = (np.concatenate(v) for v in (z, sd_ratio, rhat, ess))
    sd_ratio = sd_ratio[~np.isnan(sd_ratio)]  # a NaN reference sd is not judged
    worst_sd = sd_ratio[np.argmax(np.abs(np.log(sd_ratio)))]
    passed = bool(
        np.all(z <= MEAN_TOLERANCE_MCSE)
        and np.all((sd_ratio >= SD_RATIO_RANGE[0]) & (sd_ratio <= SD_RATIO_RANGE[1]))
        and np.all(rhat <= MAX_RHAT)
    )
    return {
        "passed": passed,
        "max_mean_error_mcse": float(z.max()),
        "worst_sd_ratio": float(worst_sd),
        "max_rhat": float(rhat.max()),
        "min_ess_bulk": float(ess.min()),
        "gradient_evaluations": gradient_evaluations,
        "min_ess_per_1k_grads": float(1000 * ess.min() / gradient_evaluations),
    }


def run_case(name: str, key, num_warmup=1000, num_samples=1000, num_chains=4) -> dict:
    builtin = posterior(name)
    rows = {}
    for (sampler, kernel_cls), run_key in zip(
        SAMPLERS.items(), jax.random.split(key, len(SAMPLERS)), strict=True
    ):
        samples, grads = run_sampler(
            kernel_cls(builtin.model), builtin, run_key, num_warmup, num_samples, num_chains
        )
        rows[sampler] = judge(site_moments(samples, builtin.reference), builtin.reference, grads)
        jax.clear_caches()  # see `samplers.run_benchmarks`
    for row in rows.values():
        row["ess_per_grad_vs_nuts"] = (
            row["min_ess_per_1k_grads"] / rows["NUTS"]["min_ess_per_1k_grads"]
        )
    return rows


COLUMNS = [
    ("passed", None),
    ("max_mean_error_mcse", 1),
    ("worst_sd_ratio", 2),
    ("max_rhat", 3),
    ("min_ess_per_1k_grads", 1),
    ("ess_per_grad_vs_nuts", 2),
    ("gradient_evaluations", 0),
]


def format_results(results: dict) -> str:
    rows = []
    for case, by_sampler in results.items():
        for sampler, row in by_sampler.items():
            cells = [case, sampler]
            for column, digits in COLUMNS:
                value = row[column]
                cells.append(
                    ("yes" if value else "NO") if digits is None else f"{value:.{digits}f}"
                )
            rows.append(cells)
    return format_table(["model", "sampler"] + [c for c, _ in COLUMNS], rows)


def plot_results(results: dict):
    names = list(results)
    groups = {
        sampler: {
            "values": [results[n][sampler]["min_ess_per_1k_grads"] for n in names],
            "colors": [f"C{k}" if results[n][sampler]["passed"] else "lightgrey" for n in names],
        }
        for k, sampler in enumerate(SAMPLERS)
    }
    figure, _ = grouped_bar_figure(
        names,
        groups,
        "min bulk ESS per 1000 gradients",
        "Posterior suite (grey: failed the reference check)",
        log=True,
    )
    return figure


def run_posterior_benchmarks(
    quick: bool = False,
    seed: int = 0,
    out_dir: Path = Path("benchmarks/results"),
    only: list[str] | None = None,
) -> dict:
    cases = [PosteriorCase(name) for name in POSTERIORS]
    selected = select_cases(cases[:2] if quick else cases, only)
    num_warmup, num_samples = (300, 300) if quick else (1000, 1000)
    results = {}
    with jax.enable_x64(True):
        for case in selected:
            print(
                f"[{case.name}] DiGS, PT, NUTS: 4 chains, {num_warmup} warmup + "
                f"{num_samples} draws",
                flush=True,
            )
            results[case.name] = run_case(
                case.name, jax.random.PRNGKey(seed), num_warmup, num_samples
            )
    table = format_results(results)
    print()
    print(table)
    write_report(
        out_dir,
        "posteriors_quick" if quick else "posteriors",
        results,
        table,
        plot_results(results),
    )
    return results
