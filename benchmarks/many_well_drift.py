"""Why the many_well DiKL generator drifts into one well per pair: its training curve with the
target's noisy score estimated (as the amortized suite trains) or exact (`--score exact`).

python benchmarks/many_well_drift.py --score exact [--weight-exponent 2] [--steps 3000]

The suite's many_well settings and keys at a constant generator rate; the well-occupancy error
every 200 steps, W2 and MMD at the end. Writes results/many_well_drift/<the settings changed
from the defaults>.{json,txt,png}.
"""

import argparse
from pathlib import Path

import jax
import numpy as np

from ppl_diffusion.benchmarks.amortized import (
    NUM_POINTS,
    ExactNoisyScore,
    cases,
    mode_metric,
    quality,
)
from ppl_diffusion.benchmarks.report import (
    changed_settings_label,
    format_table,
    new_figure,
    select_cases,
    write_report,
)
from ppl_diffusion.inference.amortized import DiffusiveSampler
from ppl_diffusion.models import get_model, many_well

(case,) = select_cases(cases(quick=False), ["many_well"])
parser = argparse.ArgumentParser()
parser.add_argument("--score", choices=("estimate", "exact"), default="estimate")
parser.add_argument("--weight-exponent", type=float, default=2.0)
parser.add_argument("--steps", type=int, default=3000)
parser.add_argument("--learning-rate", type=float, default=case.fit["learning_rate"])
parser.add_argument("--score-steps", type=int, default=case.fit["score_steps"])
parser.add_argument("--width", type=int, default=case.sampler["width"])
parser.add_argument("--beta-min", type=float, default=1e-4)
parser.add_argument("--particles", type=int, default=10)
parser.add_argument("--bridges", type=int, default=15)
parser.add_argument("--mala-steps", type=int, default=5)
args = parser.parse_args()


class ExactScoreSampler(DiffusiveSampler):
    @property
    def target_score(self):
        return ExactNoisyScore(many_well.noisy_score)


builtin = get_model("many_well")
keys = jax.random.split(jax.random.PRNGKey(0), 7)  # the amortized suite's keys for seed 0
reference = np.asarray(builtin.sample_exact(keys[0], NUM_POINTS)["x"])
sampler_class = ExactScoreSampler if args.score == "exact" else DiffusiveSampler
sampler = sampler_class(
    builtin.model,
    seed=0,
    **case.sampler | {"width": args.width},
    weight_exponent=args.weight_exponent,
    beta_min=args.beta_min,
    num_particles=args.particles,
    num_bridges=args.bridges,
    num_mala_steps=args.mala_steps,
)
history = sampler.fit(
    keys[2],
    **case.fit
    | {
        "num_steps": args.steps,
        "score_steps": args.score_steps,
        "learning_rate": args.learning_rate,
    },
    eval_every=200,
    eval_fn=lambda draws: mode_metric(np.asarray(draws), reference, builtin),
    progress_bar=False,
)
draws = np.asarray(sampler.sample_unconstrained(keys[3], NUM_POINTS))
final = quality(draws, reference, builtin)
results = {
    "settings": vars(args),
    "final": final,
    "right_well_occupancy": (draws[:, 0::2] > 0).mean(0).round(3).tolist(),
    "exact_right_well_probability": many_well.right_well_probability(),
    "curve": [{"step": h["step"], "well_occupancy_error": h["metric"]} for h in history],
}
table = format_table(
    ["step", "well_occupancy_error"],
    [[str(c["step"]), f"{c['well_occupancy_error']:.4f}"] for c in results["curve"]],
)
table += "\nfinal: " + ", ".join(f"{k} {v:.4f}" for k, v in final.items())
print(table)
figure = new_figure((5, 3.5))
axis = figure.subplots()
axis.plot(
    [c["step"] for c in results["curve"]],
    [c["well_occupancy_error"] for c in results["curve"]],
    "o-",
)
axis.axhline(
    1 - many_well.right_well_probability(),
    color="gray",
    ls=":",
    label="every pair in its right well",
)
axis.set_xlabel("generator step")
axis.set_ylabel("well-occupancy error")
axis.legend()
write_report(
    Path("benchmarks/results/many_well_drift"),
    changed_settings_label(parser, args),
    results,
    table,
    figure,
)
