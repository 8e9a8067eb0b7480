import json

import numpy as np
import pytest

from ppl_diffusion.benchmarks.report import UnknownCaseError
from ppl_diffusion.benchmarks.samplers import run_benchmarks
from ppl_diffusion.cli import main


@pytest.mark.slow
def test_quick_benchmark_writes_table_json_and_plot(tmp_path, capsys):
    results = run_benchmarks(quick=True, out_dir=tmp_path, only=["eight_schools"])
    saved = json.loads((tmp_path / "bench_quick.json").read_text())
    assert (tmp_path / "bench_quick.png").stat().st_size > 0
    samplers = saved["eight_schools"]["samplers"]
    assert set(samplers) == {"DiGS", "PT", "NUTS"}
    budget = saved["eight_schools"]["budget_per_chain"] * saved["eight_schools"]["num_chains"]
    for row in samplers.values():
        # Equal budgets: every sampler used up the budget, none much more.
        assert budget <= row["gradient_evaluations"]["mean"] <= budget * 1.1
        assert row["max_rhat"]["mean"] < 1.1
    assert results == saved
    assert "ess_per_grad_vs_nuts" in capsys.readouterr().out


def test_unknown_case_is_rejected(tmp_path):
    with pytest.raises(UnknownCaseError, match="Unknown benchmark case"):
        run_benchmarks(quick=True, out_dir=tmp_path, only=["nonexistent"])


@pytest.mark.parametrize(
    "argv, message",
    [
        (["demo", "--chains", "0"], "must be a positive integer"),
        (["demo", "--samples", "-5"], "must be a positive integer"),
        (["bench", "--only", "bogus"], "Unknown benchmark case"),
        (["bench", "--suite", "bogus"], "invalid choice"),
    ],
)
def test_cli_rejects_bad_arguments_with_a_usage_error(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv + ["--no-compile-cache"])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.slow
def test_quick_pseudo_gibbs_benchmark_writes_results(tmp_path):
    from ppl_diffusion.benchmarks.pseudo_gibbs import run_pseudo_gibbs_benchmarks

    results = run_pseudo_gibbs_benchmarks(quick=True, out_dir=tmp_path)
    mmds = results["mog4"]["mmd"]
    assert set(mmds) == {
        "pseudo-Gibbs full",
        "pseudo-Gibbs diag (8 probes)",
        "pseudo-Gibbs diag (1 probe)",
        "pseudo-Gibbs diag-OCM",
        "pseudo-Gibbs iso",
        "Langevin + Tweedie",
        "clean data (2nd set)",
    }
    # Even a quick fit lands every sampler within 3× the clean-vs-clean MMD floor.
    floor = mmds["clean data (2nd set)"]["mean"]
    assert all(row["mean"] < 3 * floor for row in mmds.values())
    # Chains started 50 units away end as close to the data as the data's own neighbours.
    assert results["mog4"]["return_from_afar"]["mean"] < 2
    assert (tmp_path / "pseudo_gibbs_quick.png").stat().st_size > 0
    assert json.loads((tmp_path / "pseudo_gibbs_quick.json").read_text())["mog4"]


@pytest.mark.slow
def test_quick_amortized_benchmark_compares_generator_with_mcmc(tmp_path, capsys):
    from ppl_diffusion.benchmarks.amortized import run_amortized_benchmarks

    results = run_amortized_benchmarks(quick=True, out_dir=tmp_path)
    rows = results["mog40"]["rows"]
    assert set(rows) == {"exact (2nd set)", "DiKL generator", "DiGS", "NUTS"}
    assert rows["exact (2nd set)"]["modes_visited"] == 40
    # The exact-vs-exact floor is below every sampler's distance to the exact samples.
    assert all(
        rows["exact (2nd set)"]["w2"] < r["w2"] for n, r in rows.items() if n != "exact (2nd set)"
    )
    # One batched call beats a Markov chain's draw rate by far, even for a tiny generator.
    assert rows["DiKL generator"]["samples_per_s_vs_digs"] > 10
    assert len(results["mog40"]["short_warmup_rows"]) == 4
    assert [c["step"] for c in results["mog40"]["training_curve"]][-1] == 30
    assert json.loads((tmp_path / "amortized_quick.json").read_text()) == results
    assert (tmp_path / "amortized_quick.png").stat().st_size > 0
    assert "samples_per_s_vs_nuts" in capsys.readouterr().out


def test_amortized_case_anneal_holds_the_rate_then_falls_to_zero_over_its_fraction():
    from ppl_diffusion.benchmarks.amortized import AmortizedCase

    fit = {"num_steps": 400, "learning_rate": 1e-4}
    case = AmortizedCase("many_well", sampler={}, fit=fit, anneal_fraction=0.25)
    schedule = case.fit_arguments()["learning_rate"]
    rates = [float(schedule(step)) for step in (0, 299, 300, 350, 400)]
    assert rates[:3] == pytest.approx([1e-4] * 3)
    assert rates[3] == pytest.approx(0.5e-4)
    assert rates[4] == 0.0
    assert AmortizedCase("many_well", sampler={}, fit=fit).fit_arguments() == fit


@pytest.mark.slow
def test_quick_noisy_score_benchmark_writes_results(tmp_path):
    from ppl_diffusion.benchmarks.noisy_score import run_noisy_score_benchmark

    results = run_noisy_score_benchmark(quick=True, out_dir=tmp_path)
    for rows in results.values():
        # At the smallest noise the posterior is a narrow Gaussian around x_t/α: the estimate
        # is within a few percent of the exact score.
        assert rows[0]["noise_to_signal"] < 0.05 and rows[0]["relative_rmse"] < 0.05
        assert all(np.isfinite(row["relative_sd"]) for row in rows)
    assert json.loads((tmp_path / "noisy_score_quick.json").read_text()) == results
    assert (tmp_path / "noisy_score_quick.png").stat().st_size > 0


def test_disjoint_sets_split_the_draws_evenly_into_at_most_the_set_count():
    from ppl_diffusion.benchmarks.amortized import DW4_SETS, disjoint_sets

    # 16 chains' worth of draws in chain order: every set must reach the first and last chains.
    draws = np.arange(16_000)
    sets = disjoint_sets(draws, 1000)
    assert len(sets) == DW4_SETS and all(len(s) == 1000 for s in sets)
    together = np.concatenate(sets)
    assert len(np.unique(together)) == len(together)
    assert all(s.min() < 20 and s.max() > 16_000 - 20 for s in sets)
    assert len(disjoint_sets(draws[:2500], 1000)) == 2
