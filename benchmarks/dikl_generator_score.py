"""Why DiKL's mog40 modes stay wide, level by level: how well the score network knows the
generator's own noisy score, and what reaches the generator.

python benchmarks/dikl_generator_score.py [--steps 1500] [--network standard|fourier]

Trains the amortized suite's mog40 generator (its settings and keys, a constant rate; without
Fourier features of its own unless `--fourier-features` says how many) with the
library's score network (`standard`) or with the Fourier-feature network below in its place,
then, at the trained state and at every VP level:
- the score network's error against the generator's noisy score, computed exactly enough from
  400,000 generator draws (a self-normalised average over them, at levels where its effective
  sample size reaches 32 for most points): relative RMSE, and the steepness <s_net, s>/<s, s>,
  1 when the network is right and 0 when it has learnt nothing of the score;
- the push w·α·(s_model − s_target) that one noisy draw gives the generator (RMS over 256
  draws): as training computes it, as it would be with both scores right (the pooled generator
  score, the exact target score), and the two errors in it;
- the same error for fresh networks fitted by denoising score matching alone to the frozen
  generator (4000 steps, batch 256, Adam 1e-3): the library's network, one that sees x_t
  standardised, and one that sees it standardised with Fourier features.
Writes results/dikl_generator_score/<the settings changed from the defaults>.{json,txt,png}.
"""

import argparse
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ppl_diffusion.benchmarks.amortized import NUM_POINTS, cases, train_and_assess
from ppl_diffusion.benchmarks.noisy_score import noisy_mog40_score
from ppl_diffusion.benchmarks.report import (
    changed_settings_label,
    format_table,
    new_figure,
    select_cases,
    write_report,
)
from ppl_diffusion.inference.amortized import (
    ConditionalMLP,
    DiffusiveSampler,
    pooled_noisy_score,
    score_matching_loss,
)
from ppl_diffusion.inference.optim import apply_optimizer, make_optimizer
from ppl_diffusion.models import get_model

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, default=1500)
parser.add_argument("--network", choices=("standard", "fourier"), default="standard")
parser.add_argument("--fourier-features", type=int, default=0, help="the generator's")
args = parser.parse_args()

POOL_SIZE, NUM_QUERIES, MIN_ESS = 400_000, 1000, 32
FIT_STEPS, FIT_BATCH = 4000, 256


class StandardisedScoreNetwork(eqx.Module):
    """Predicts the noise in x_t, called as the library's score network is (x_t, level index /
    number of levels), but sees x_t in units of its spread at that level, x_t / √(α²c² + σ²)
    with c the generator's output scale, the level as log(σ/α), and with ``num_features`` > 0
    also sin and cos of random projections F x̂ (F ~ N(0, feature_scale² I)): features that
    vary on the modes' scale, which a plain MLP of x̂ learns last."""

    mlp: eqx.nn.MLP
    frequencies: jax.Array
    alphas: jax.Array
    sigmas: jax.Array
    data_scale: float = eqx.field(static=True)

    def __init__(self, sampler, num_features, feature_scale, width, depth, key):
        key_mlp, key_features = jax.random.split(key)
        dim = sampler.dim
        self.frequencies = feature_scale * jax.random.normal(key_features, (num_features, dim))
        self.mlp = eqx.nn.MLP(
            dim + 2 * num_features + 1, dim, width, depth, activation=jax.nn.silu, key=key_mlp
        )
        self.alphas, self.sigmas = sampler.alphas, sampler.sigmas
        self.data_scale = sampler.generator.output_scale

    def __call__(self, noisy, level_feature):
        # The schedule and the projections are fixed: gradients must not move them.
        alphas, sigmas, frequencies = jax.lax.stop_gradient(
            (self.alphas, self.sigmas, self.frequencies)
        )
        level = jnp.round(level_feature * alphas.shape[0]).astype(int)
        alpha, sigma = alphas[level], sigmas[level]
        standardised = noisy / jnp.sqrt(alpha**2 * self.data_scale**2 + sigma**2)
        projected = frequencies @ standardised
        return self.mlp(
            jnp.concatenate(
                [
                    standardised,
                    jnp.sin(projected),
                    jnp.cos(projected),
                    jnp.log(sigma / alpha)[None] / 4,
                ]
            )
        )


def make_network(kind: str, sampler, width: int, depth: int, key):
    if kind == "standard":
        return ConditionalMLP(sampler.dim, sampler.dim, width, depth, key)
    num_features = 64 if kind == "fourier" else 0
    return StandardisedScoreNetwork(sampler, num_features, 10.0, width, depth, key)


(case,) = select_cases(cases(quick=False), ["mog40"])
builtin = get_model("mog40")
keys = jax.random.split(jax.random.PRNGKey(0), 7)  # the amortized suite's keys for seed 0
reference = np.asarray(builtin.sample_exact(keys[0], NUM_POINTS)["x"])
sampler = DiffusiveSampler(
    builtin.model, seed=0, **case.sampler | {"fourier_features": args.fourier_features}
)
width, depth = case.sampler["width"], case.sampler["depth"]
if args.network != "standard":
    sampler.score_network = make_network(args.network, sampler, width, depth, keys[4])
train_time_s, _, final = train_and_assess(
    sampler, builtin, reference, keys, eval_every=250, **case.fit | {"num_steps": args.steps}
)

state = sampler._state
generator = state.generator  # the weights training moves, which the score network follows
num_levels = sampler.alphas.shape[0]
key_pool, key_queries, key_noise, key_target, key_fit = jax.random.split(keys[5], 5)
pool = jax.vmap(generator)(jax.random.normal(key_pool, (POOL_SIZE, sampler.dim)))
queries = jax.vmap(generator)(jax.random.normal(key_queries, (NUM_QUERIES, sampler.dim)))


@jax.jit
def pooled_score(noisy, alpha, sigma):
    """The generator's noisy score at each row of ``noisy`` and the effective sample size."""
    return jax.lax.map(
        lambda x_t: pooled_noisy_score(x_t, alpha, sigma, pool), noisy, batch_size=50
    )


def network_score(network, noisy, level):
    feature = jnp.full(noisy.shape[0], level / num_levels)
    return -jax.vmap(network)(noisy, feature) / sampler.sigmas[level]


def rms(values) -> float:
    return float(jnp.sqrt(jnp.mean(jnp.sum(values**2, -1))))


noisy_by_level, truth_by_level = [], []
for level in range(num_levels):
    alpha, sigma = sampler.alphas[level], sampler.sigmas[level]
    noisy = alpha * queries + sigma * jax.random.normal(
        jax.random.fold_in(key_noise, level), queries.shape
    )
    noisy_by_level.append(noisy)
    truth_by_level.append(pooled_score(noisy, alpha, sigma))


def network_errors(network) -> list[dict]:
    """Per level: relative RMSE and steepness against the pooled score, where it is reliable."""
    rows = []
    for level, (noisy, (truth, ess)) in enumerate(zip(noisy_by_level, truth_by_level, strict=True)):
        reliable = np.asarray(ess) >= MIN_ESS
        if reliable.mean() < 0.5:
            rows.append({"relative_rmse": None, "steepness": None})
            continue
        truth = np.asarray(truth)[reliable]
        predicted = np.asarray(network_score(network, noisy, level))[reliable]
        rows.append(
            {
                "relative_rmse": rms(predicted - truth) / rms(truth),
                "steepness": float(np.sum(predicted * truth) / np.sum(truth * truth)),
            }
        )
    return rows


# The settings DiKL's score-matching loss reads: the levels and a batch of FIT_BATCH.
fit_config, _ = sampler.training_config(
    batch_size=FIT_BATCH,
    learning_rate=case.fit["learning_rate"],
    score_learning_rate=case.fit["score_learning_rate"],
    score_steps=1,
    encoder_learning_rate=None,
    ema_decay=0.0,
    clip_norm=10.0,
)


def fit_to_frozen_generator(kind: str):
    network = make_network(kind, sampler, width, depth, jax.random.fold_in(key_fit, 1))
    optimizer = make_optimizer(case.fit["score_learning_rate"])
    opt_state = optimizer.init(eqx.filter(network, eqx.is_array))

    @eqx.filter_jit
    def step(network, opt_state, key):
        grads = eqx.filter_grad(score_matching_loss)(network, generator, key, fit_config)
        return apply_optimizer(optimizer, network, grads, opt_state)

    for i in range(FIT_STEPS):
        network, opt_state = step(network, opt_state, jax.random.fold_in(key_fit, 100 + i))
    return network_errors(network)


errors = {f"trained ({args.network})": network_errors(state.score_network)}
for kind in ("standard", "standardised", "fourier"):
    errors[f"fitted alone ({kind})"] = fit_to_frozen_generator(kind)

weights = sampler.alphas ** (1 - sampler.weight_exponent)  # w·α: what reaches the generator
push = []
for level in range(num_levels):
    alpha, sigma = sampler.alphas[level], sampler.sigmas[level]
    noisy = noisy_by_level[level][:256]
    rows = jnp.full(noisy.shape[0], 1.0)
    model_score = network_score(state.score_network, noisy, level)
    generator_score = truth_by_level[level][0][:256]
    target_estimate = sampler.target_score(
        jax.random.fold_in(key_target, level), noisy, alpha * rows, sigma * rows, queries
    )
    target_exact = noisy_mog40_score(noisy, alpha * rows, sigma * rows)
    weight = float(weights[level])
    # Where the pool's effective size is too small, its score is no reference.
    pool_reliable = errors[f"trained ({args.network})"][level]["steepness"] is not None
    push.append(
        {
            "as_trained": weight * rms(model_score - target_estimate),
            "both_scores_right": weight * rms(generator_score - target_exact)
            if pool_reliable
            else None,
            "network_error": weight * rms(model_score - generator_score) if pool_reliable else None,
            "target_estimate_error": weight * rms(target_estimate - target_exact),
        }
    )

noise_to_signal = np.asarray(sampler.sigmas / sampler.alphas)
results = {
    "settings": vars(args),
    "train_time_s": train_time_s,
    "final": final,
    "curve": [{"step": h["step"], "mode_weight_error": h["metric"]} for h in sampler.history],
    "noise_to_signal": noise_to_signal.tolist(),
    "network_errors": errors,
    "push": push,
}


def cell(value, digits=2):
    return "" if value is None else f"{value:.{digits}f}"


names = list(errors)
table = format_table(
    ["level", "sigma/alpha"] + [f"{name} rmse/steep" for name in names] + list(push[0]),
    [
        [str(level), f"{noise_to_signal[level]:.2f}"]
        + [
            f"{cell(errors[n][level]['relative_rmse'])} / {cell(errors[n][level]['steepness'])}"
            for n in names
        ]
        + [cell(v) for v in push[level].values()]
        for level in range(num_levels)
    ],
)
table += "\nfinal: " + ", ".join(f"{k} {v:.4f}" for k, v in final.items())
table += f"\ntraining: {args.steps} steps, {train_time_s:.0f} s (evaluations included)"
print(table)

figure = new_figure((10, 3.8))
left, right = figure.subplots(1, 2)
for name in names:
    steepness = [row["steepness"] for row in errors[name]]
    shown = [i for i, s in enumerate(steepness) if s is not None]
    left.plot(noise_to_signal[shown], [steepness[i] for i in shown], "o-", ms=3, label=name)
left.axhline(1.0, color="gray", ls=":")
left.set_xscale("log")
left.set_xlabel("σ/α")
left.set_ylabel("steepness of the generator-score model")
left.legend(fontsize=7)
for part in push[0]:
    shown = [i for i, row in enumerate(push) if row[part] is not None]
    right.plot(noise_to_signal[shown], [push[i][part] for i in shown], "o-", ms=3, label=part)
right.set_xscale("log")
right.set_yscale("log")
right.set_xlabel("σ/α")
right.set_ylabel("push on the generator (RMS per draw)")
right.legend(fontsize=7)
write_report(
    Path("benchmarks/results/dikl_generator_score"),
    changed_settings_label(parser, args),
    results,
    table,
    figure,
)
