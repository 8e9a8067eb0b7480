"""Is many_well's drift into the heavier wells DiKL's own dynamics, or its learned scores'?
One of many_well's double-well coordinates alone (1-D), trained by `dikl_step` with the target's
exact noisy score and the generator's noisy score either learned (`--generator-score learned`,
as the library trains by default), exact (`--generator-score exact`) or from a pool of 4096
fresh generator draws per step wherever their effective size reaches 32, learned elsewhere
(`--generator-score pooled`: the sampler's `pool_size=4096`).

python benchmarks/double_well_dikl.py --generator-score exact [--weight-exponent 2] [--steps 2000]

In 1-D the generator's noisy score has a closed form up to quadrature: q_t(x_t) = ∫ N(z)
N(x_t; α g(z), σ²) dz, integrated exactly over each of 4000 latent intervals on [−6, 6] with g
linear between their ends. The suite's many_well networks and rates (the generator 256×3 from
N(0, 2²), batch 256, 10 score-network steps at 1e-3, a constant generator rate of 1e-4). Every
200 steps: the right-well occupancy error of the latest generator and of its moving average
(the one that draws samples), on 20,000 draws. Writes
results/double_well_dikl/<the settings changed from the defaults>.{json,txt,png}.
"""

import argparse
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist

from ppl_diffusion.benchmarks import report
from ppl_diffusion.benchmarks.amortized import ExactNoisyScore, cases
from ppl_diffusion.inference.amortized import DiffusiveSampler, DiKLState, Generator
from ppl_diffusion.models import many_well

(case,) = report.select_cases(cases(quick=False), ["many_well"])
parser = argparse.ArgumentParser()
parser.add_argument("--generator-score", choices=("learned", "exact", "pooled"), default="learned")
parser.add_argument("--weight-exponent", type=float, default=2.0)
parser.add_argument("--steps", type=int, default=2000)
args = parser.parse_args()

LATENT_NODES = jnp.linspace(-6.0, 6.0, 4001)
LATENT_WEIGHTS = jax.scipy.stats.norm.pdf(0.5 * (LATENT_NODES[1:] + LATENT_NODES[:-1])) * (
    LATENT_NODES[1] - LATENT_NODES[0]
)


class ExactGeneratorScore(eqx.Module):
    """Takes the score network's place: the noise prediction −σ ∇log q_t(x_t) of a 1-D
    generator, exact up to the latent quadrature. Its arrays are held out of the gradient, so
    the score-network steps leave it as it is."""

    generator: Generator
    alphas: jax.Array
    sigmas: jax.Array

    def __call__(self, noisy, level_feature):
        generator, alphas, sigmas = jax.tree_util.tree_map(
            lambda leaf: jax.lax.stop_gradient(leaf) if eqx.is_array(leaf) else leaf,
            (self.generator, self.alphas, self.sigmas),
        )
        level = jnp.round(level_feature * alphas.shape[0]).astype(int)
        alpha, sigma = alphas[level], sigmas[level]
        nodes = alpha * jax.vmap(generator)(LATENT_NODES[:, None])[:, 0]

        def log_noisy_density(x):
            upper, lower = (x - nodes[:-1]) / sigma, (x - nodes[1:]) / sigma
            # Φ(u) − Φ(l) from the tail on the side where it does not cancel.
            mass = jnp.where(
                upper + lower > 0,
                jax.scipy.special.ndtr(-lower) - jax.scipy.special.ndtr(-upper),
                jax.scipy.special.ndtr(upper) - jax.scipy.special.ndtr(lower),
            )
            slope = (nodes[1:] - nodes[:-1]) / sigma
            flat = jnp.abs(slope) < 1e-3
            density = jnp.where(
                flat, jax.scipy.stats.norm.pdf(upper), mass / jnp.where(flat, 1.0, slope)
            )
            return jnp.log(jnp.sum(LATENT_WEIGHTS * jnp.maximum(density, 0.0)) + 1e-30)

        return -sigma * jax.grad(log_noisy_density)(noisy[0])[None]


def model():
    x = numpyro.sample("x", dist.ImproperUniform(dist.constraints.real_vector, (), (1,)))
    numpyro.factor("log_density", many_well.log_density(x))


sampler = DiffusiveSampler(
    model,
    seed=0,
    **case.sampler,
    weight_exponent=args.weight_exponent,
    pool_size=4096 if args.generator_score == "pooled" else 0,
)
score_steps = 1 if args.generator_score == "exact" else case.fit["score_steps"]
config, train_step = sampler.training_config(
    case.fit["batch_size"],
    case.fit["learning_rate"],
    case.fit["score_learning_rate"],
    score_steps,
    None,
    0.999,
    10.0,
)
config = eqx.tree_at(lambda c: c.target_score, config, ExactNoisyScore(many_well.noisy_score))


def with_exact_generator_score(state):
    network = ExactGeneratorScore(state.generator, sampler.alphas, sampler.sigmas)
    return state._replace(
        score_network=network,
        score_network_opt=config.score_optimizer.init(eqx.filter(network, eqx.is_array)),
    )


state = DiKLState(
    sampler.generator,
    sampler.score_network,
    sampler.generator,
    config.generator_optimizer.init(eqx.filter(sampler.generator, eqx.is_array)),
    config.score_optimizer.init(eqx.filter(sampler.score_network, eqx.is_array)),
    jnp.array(0),
    jax.random.PRNGKey(0),
)
right = many_well.right_well_probability()
latent = jax.random.normal(jax.random.PRNGKey(1), (20_000, 1))


def right_occupancy(generator) -> float:
    return float((jax.vmap(generator)(latent) > 0).mean())


curve = []
for step in range(args.steps):
    if args.generator_score == "exact":
        state = with_exact_generator_score(state)
    state, _ = train_step(state, jax.random.fold_in(state.rng_key, step), config)
    if (step + 1) % 200 == 0:
        latest, averaged = (
            right_occupancy(state.generator),
            right_occupancy(state.averaged_generator),
        )
        curve.append(
            {
                "step": step + 1,
                "latest_right_occupancy": latest,
                "averaged_right_occupancy": averaged,
                "latest_occupancy_error": abs(latest - right),
                "averaged_occupancy_error": abs(averaged - right),
            }
        )
results = {"settings": vars(args), "exact_right_well_probability": right, "curve": curve}
columns = list(curve[0])
table = report.format_table(
    columns, [[str(c["step"])] + [f"{c[k]:.3f}" for k in columns[1:]] for c in curve]
)
print(table)
figure = report.new_figure((5, 3.5))
axis = figure.subplots()
steps = [c["step"] for c in curve]
axis.plot(steps, [c["latest_right_occupancy"] for c in curve], "o-", label="latest generator")
axis.plot(steps, [c["averaged_right_occupancy"] for c in curve], "s-", label="moving average")
axis.axhline(right, color="gray", ls=":", label="exact")
axis.set_xlabel("generator step")
axis.set_ylabel("right-well occupancy")
axis.set_ylim(0, 1.02)
axis.legend()
report.write_report(
    Path("benchmarks/results/double_well_dikl"),
    report.changed_settings_label(parser, args),
    results,
    table,
    figure,
)
