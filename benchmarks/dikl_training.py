"""What holds a DiKL generator back on many_well or mog40: its training curve with the target's
noisy score estimated (as the amortized suite trains) or exact (`--score exact`), under other
level weights, generator-score pools, schedules, weight averages, networks and batch sizes;
`--objective vardiu` trains the same generator by VarDiU instead (VE noise from `--sigma-min`
to `--sigma-max`).

python benchmarks/dikl_training.py [--case mog40] --score exact [--weight-exponent 2] [--steps 3000]

The amortized suite's settings and keys for the case at a constant generator rate (but a
generator without Fourier features unless `--fourier-features` says how many); its mode
metric (many_well's well-occupancy error, mog40's mode-weight error) every 200 steps, W2, MMD
and, on mog40, the fraction of draws farther than 3 mode standard deviations from every mode
(exact draws: 0.8%) at the end. Writes results/dikl_training/<case>/<the settings changed from
the defaults>.{json,txt,png}.
"""

import argparse
import inspect
import time
from pathlib import Path

import jax
import numpy as np

from ppl_diffusion.benchmarks.amortized import (
    METRIC_NAMES,
    NUM_POINTS,
    ExactNoisyScore,
    cases,
    train_and_assess,
)
from ppl_diffusion.benchmarks.noisy_score import noisy_mog40_score
from ppl_diffusion.benchmarks.report import (
    changed_settings_label,
    format_table,
    new_figure,
    select_cases,
    write_report,
)
from ppl_diffusion.inference.amortized import DiffusiveSampler
from ppl_diffusion.models import get_model, many_well

NOISY_SCORES = {
    "many_well": many_well.noisy_score,
    "mog40": noisy_mog40_score,
}

case_parser = argparse.ArgumentParser(add_help=False)
case_parser.add_argument("--case", choices=tuple(NOISY_SCORES), default="many_well")
(case,) = select_cases(cases(quick=False), [case_parser.parse_known_args()[0].case])
SAMPLER_DEFAULTS = inspect.signature(DiffusiveSampler).parameters


def sampler_default(name: str):
    """The case's setting of ``name``, else the library's default: what the suite trains with."""
    return case.sampler.get(name, SAMPLER_DEFAULTS[name].default)


parser = argparse.ArgumentParser(parents=[case_parser])
parser.set_defaults(case=case.name)  # the folder names the case, not the file
parser.add_argument("--objective", choices=("dikl", "vardiu"), default="dikl")
parser.add_argument("--score", choices=("estimate", "exact"), default="estimate")
parser.add_argument("--weight-exponent", type=float, default=sampler_default("weight_exponent"))
parser.add_argument("--steps", type=int, default=3000)
parser.add_argument("--learning-rate", type=float, default=case.fit["learning_rate"])
parser.add_argument("--score-steps", type=int, default=case.fit["score_steps"])
parser.add_argument("--batch-size", type=int, default=case.fit["batch_size"])
parser.add_argument(
    "--ema-decay",
    type=float,
    default=inspect.signature(DiffusiveSampler.fit).parameters["ema_decay"].default,
)
# VarDiU's encoder trains at the rate the case gives DiKL's score network.
parser.add_argument("--encoder-learning-rate", type=float, default=case.fit["score_learning_rate"])
parser.add_argument("--width", type=int, default=sampler_default("width"))
parser.add_argument("--depth", type=int, default=sampler_default("depth"))
parser.add_argument("--latent-dim", type=int, default=sampler_default("latent_dim"))
# Without features unless asked: the mog40 runs before the suite gave its generator Fourier
# features keep their commands.
parser.add_argument("--fourier-features", type=int, default=0)
parser.add_argument("--fourier-scale", type=float, default=sampler_default("fourier_scale"))
parser.add_argument("--beta-min", type=float, default=sampler_default("beta_min"))
parser.add_argument("--beta-max", type=float, default=sampler_default("beta_max"))
parser.add_argument("--pool-size", type=int, default=sampler_default("pool_size"))
parser.add_argument("--particles", type=int, default=sampler_default("num_particles"))
parser.add_argument("--bridges", type=int, default=sampler_default("num_bridges"))
parser.add_argument("--mala-steps", type=int, default=sampler_default("num_mala_steps"))
parser.add_argument("--sigma-min", type=float, default=sampler_default("sigma_min"))
parser.add_argument("--sigma-max", type=float, default=sampler_default("sigma_max"))
args = parser.parse_args()
ONLY_FOR = {
    "dikl": ("score_steps", "weight_exponent", "beta_min", "beta_max", "pool_size"),
    "vardiu": ("encoder_learning_rate", "sigma_min", "sigma_max"),
}
other_objective = "vardiu" if args.objective == "dikl" else "dikl"
if misplaced := [
    name for name in ONLY_FOR[other_objective] if getattr(args, name) != parser.get_default(name)
]:
    parser.error(f"{', '.join(misplaced)}: only for --objective {other_objective}")


class ExactScoreSampler(DiffusiveSampler):
    @property
    def target_score(self):
        return ExactNoisyScore(NOISY_SCORES[args.case])


builtin = get_model(args.case)
keys = jax.random.split(jax.random.PRNGKey(0), 7)  # the amortized suite's keys for seed 0
reference = np.asarray(builtin.sample_exact(keys[0], NUM_POINTS)["x"])
sampler_class = ExactScoreSampler if args.score == "exact" else DiffusiveSampler
sampler = sampler_class(
    builtin.model,
    seed=0,
    **case.sampler
    | {
        "width": args.width,
        "depth": args.depth,
        "latent_dim": args.latent_dim,
        "fourier_features": args.fourier_features,
        "fourier_scale": args.fourier_scale,
        "weight_exponent": args.weight_exponent,
        "beta_min": args.beta_min,
        "beta_max": args.beta_max,
        "pool_size": args.pool_size,
        "num_particles": args.particles,
        "num_bridges": args.bridges,
        "num_mala_steps": args.mala_steps,
        "objective": args.objective,
        "sigma_min": args.sigma_min,
        "sigma_max": args.sigma_max,
    },
)
fit_settings = case.fit | {
    "num_steps": args.steps,
    "learning_rate": args.learning_rate,
    "batch_size": args.batch_size,
    "ema_decay": args.ema_decay,
}
if args.objective == "dikl":
    fit_settings["score_steps"] = args.score_steps
else:
    fit_settings = {k: v for k, v in fit_settings.items() if not k.startswith("score_")}
    fit_settings["encoder_learning_rate"] = args.encoder_learning_rate
wall_start = time.time()
train_time_s, draws, final = train_and_assess(
    sampler, builtin, reference, keys, eval_every=200, **fit_settings
)
metric = METRIC_NAMES[args.case].replace("-", "_").replace(" ", "_")
results = {"settings": vars(args), "train_time_s": train_time_s, "final": final}
if args.case == "many_well":
    results |= {
        "right_well_occupancy": (draws[:, 0::2] > 0).mean(0).round(3).tolist(),
        "exact_right_well_probability": many_well.right_well_probability(),
    }
results["curve"] = [
    {"step": h["step"], "time_s": h["time"] - wall_start, metric: h["metric"]}
    | ({"pooled_fraction": h["pooled_fraction"]} if "pooled_fraction" in h else {})
    for h in sampler.history
]
columns = list(results["curve"][0])
table = format_table(
    columns,
    [
        [str(c["step"])] + [f"{c[k]:.0f}" if k == "time_s" else f"{c[k]:.4f}" for k in columns[1:]]
        for c in results["curve"]
    ],
)
table += "\nfinal: " + ", ".join(f"{k} {v:.4f}" for k, v in final.items())
table += f"\ntraining: {train_time_s:.0f} s (evaluations included)"
print(table)
figure = new_figure((5, 3.5))
axis = figure.subplots()
axis.plot([c["step"] for c in results["curve"]], [c[metric] for c in results["curve"]], "o-")
if args.case == "many_well":
    axis.axhline(
        1 - many_well.right_well_probability(),
        color="gray",
        ls=":",
        label="every pair in its right well",
    )
    axis.legend()
axis.set_xlabel("generator step")
axis.set_ylabel(METRIC_NAMES[args.case])
write_report(
    Path("benchmarks/results/dikl_training") / args.case,
    changed_settings_label(parser, args),
    results,
    table,
    figure,
)
