"""``ppl-diffusion bench --suite pseudo-gibbs``: sampling clean 2-D toys from noisy energy models.

For each toy (a 4-mode mixture, two rings, a swiss roll; 10k points) a noisy energy model is
fitted by DSM at σ = 0.2, then clean samples are drawn four ways: pseudo-Gibbs with full,
diagonal and isotropic Tweedie covariances, and Langevin (MALA) on the noisy model followed by
Tweedie denoising, each with the same number of steps. Reported: MMD to held-out clean data,
with the MMD between two clean sets as the floor. A last check times diagonal pseudo-Gibbs in
784 dimensions against MALA.
"""

from __future__ import annotations

import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from blackjax.mcmc import mala

from ppl_diffusion.benchmarks.report import format_table, new_figure, write_report
from ppl_diffusion.diagnostics import default_bandwidths, mmd
from ppl_diffusion.inference.denoising import run_mala
from ppl_diffusion.inference.pseudo_gibbs import (
    COVARIANCES,
    EnergyMLP,
    NoisyEnergyModel,
    fit_noisy_energy,
    pseudo_gibbs_step,
)

SIGMA = 0.2
NUM_DATA = 10_000


def make_toy(name: str, rng_key, n: int) -> jax.Array:
    key_a, key_b = jax.random.split(rng_key)
    if name == "mog4":
        centres = jnp.array([[-1.0, -1.0], [-1.0, 1.0], [1.0, -1.0], [1.0, 1.0]])
        index = jax.random.randint(key_a, (n,), 0, 4)
        return centres[index] + 0.2 * jax.random.normal(key_b, (n, 2))
    if name == "rings":
        radius = jnp.where(jax.random.bernoulli(key_a, 0.5, (n,)), 1.0, 2.0)
        key_angle, key_noise = jax.random.split(key_b)
        angle = jax.random.uniform(key_angle, (n,), maxval=2 * jnp.pi)
        points = radius[:, None] * jnp.stack([jnp.cos(angle), jnp.sin(angle)], -1)
        return points + 0.05 * jax.random.normal(key_noise, (n, 2))
    if name == "swiss_roll":
        t = 1.5 * jnp.pi * (1 + 2 * jax.random.uniform(key_a, (n,)))
        points = jnp.stack([t * jnp.cos(t), t * jnp.sin(t)], -1) / 7.0
        return points + 0.05 * jax.random.normal(key_b, (n, 2))
    raise ValueError(f"Unknown toy {name!r}; choose from mog4, rings, swiss_roll.")


TOYS = ("mog4", "rings", "swiss_roll")
METHODS = tuple(f"pseudo-Gibbs {c}" for c in COVARIANCES) + ("Langevin + Tweedie",)


def sample_all(rng_key, model, num_chains: int, num_steps: int, data: jax.Array) -> dict:
    """Final states of ``num_chains`` independent chains for every method.

    Chains start at noisy training points: a DSM-trained energy is only shaped where the noisy
    data lie, and chains started far outside drift along the network's unconstrained tails,
    which would measure the tails rather than the covariance choices compared here.
    """
    key_index, key_noise, key_run = jax.random.split(rng_key, 3)
    index = jax.random.randint(key_index, (num_chains,), 0, data.shape[0])
    start = data[index] + model.sigma * jax.random.normal(key_noise, (num_chains, data.shape[1]))
    score_fn = model.score
    keys = jax.random.split(key_run, num_chains)
    out = {}
    for covariance in COVARIANCES:

        def chain(key, x, covariance=covariance):
            def step(x, key):
                return pseudo_gibbs_step(
                    key, x, score_fn, model.sigma, covariance, 8, model.iso_variance
                ), None

            x, _ = jax.lax.scan(step, x, jax.random.split(key, num_steps))
            return x

        out[f"pseudo-Gibbs {covariance}"] = jax.jit(jax.vmap(chain))(keys, start)

    def langevin(key, x):
        state = mala.init(x, model.logdensity)
        state, _, _ = run_mala(key, state, model.logdensity, 0.1 * model.sigma**2, num_steps)
        return state.position + model.sigma**2 * score_fn(state.position)

    out["Langevin + Tweedie"] = jax.jit(jax.vmap(langevin))(keys, start)
    return out


def _steps_per_second(step, state, num_steps: int) -> float:
    state = jax.block_until_ready(step(jax.random.PRNGKey(0), state))  # compile
    start = time.perf_counter()
    for i in range(num_steps):
        state = step(jax.random.PRNGKey(i + 1), state)
    jax.block_until_ready(state)
    return num_steps / (time.perf_counter() - start)


def high_dimensional_throughput(
    dim: int = 784, num_chains: int = 64, num_probes: int = 8, num_steps: int = 50
) -> dict:
    """Steps per second of diagonal pseudo-Gibbs on a ``dim``-dimensional MLP energy (width 400,
    2 hidden layers), against MALA on the same energy in the same process."""
    energy = EnergyMLP(dim, 400, 2, jax.random.PRNGKey(0))
    model = NoisyEnergyModel(energy, SIGMA, SIGMA**2)
    positions = jnp.zeros((num_chains, dim))

    @jax.jit
    def pseudo_gibbs(key, x):
        keys = jax.random.split(key, num_chains)
        return jax.vmap(
            lambda k, x: pseudo_gibbs_step(k, x, model.score, SIGMA, "diag", num_probes)
        )(keys, x)

    @jax.jit
    def langevin(key, state):
        keys = jax.random.split(key, num_chains)
        return jax.vmap(lambda k, s: run_mala(k, s, model.logdensity, 0.01, 1)[0])(keys, state)

    mala_state = jax.vmap(lambda x: mala.init(x, model.logdensity))(positions)
    diag_rate = _steps_per_second(pseudo_gibbs, positions, num_steps)
    mala_rate = _steps_per_second(langevin, mala_state, num_steps)
    return {
        "dim": dim,
        "num_chains": num_chains,
        "num_probes": num_probes,
        "diag_steps_per_s": diag_rate,
        "mala_steps_per_s": mala_rate,
        "diag_vs_mala": diag_rate / mala_rate,
    }


def run_pseudo_gibbs_benchmarks(
    quick: bool = False, seed: int = 0, out_dir: Path = Path("benchmarks/results")
) -> dict:
    num_train, width, depth = (800, 64, 2) if quick else (10_000, 400, 4)
    num_chains, num_steps = (500, 100) if quick else (2000, 200)
    toys = TOYS[:1] if quick else TOYS
    results = {}
    samples_for_plot = {}
    for t, toy in enumerate(toys):
        key_data, key_test, key_floor, key_fit, key_sample = jax.random.split(
            jax.random.PRNGKey(seed + 100 * t), 5
        )
        data = make_toy(toy, key_data, NUM_DATA)
        test = make_toy(toy, key_test, num_chains)
        start = time.perf_counter()
        print(f"[{toy}] fitting the noisy energy model (DSM, σ = {SIGMA})", flush=True)
        model = fit_noisy_energy(
            key_fit, data, SIGMA, num_steps=num_train, width=width, depth=depth, progress_bar=False
        )
        fit_time = time.perf_counter() - start
        samples = sample_all(key_sample, model, num_chains, num_steps, data)
        bandwidths = default_bandwidths(test)
        row = {name: {"mmd": mmd(x, test, bandwidths)} for name, x in samples.items()}
        row["clean data (2nd set)"] = {
            "mmd": mmd(make_toy(toy, key_floor, num_chains), test, bandwidths)
        }
        results[toy] = {"fit_time_s": fit_time, "methods": row}
        samples_for_plot[toy] = {
            "data": np.asarray(test),
            **{k: np.asarray(v) for k, v in samples.items()},
        }

    header = ["method"] + list(toys)
    names = list(next(iter(results.values()))["methods"])
    rows = [[n] + [f"{results[t]['methods'][n]['mmd']:.4f}" for t in toys] for n in names]
    table = format_table(header, rows)
    throughput = high_dimensional_throughput(num_steps=10 if quick else 50)
    results["throughput"] = throughput
    table += (
        f"\n\nd = {throughput['dim']}, {throughput['num_chains']} chains: diagonal pseudo-Gibbs "
        f"({throughput['num_probes']} probes) {throughput['diag_steps_per_s']:.0f} steps/s, "
        f"{throughput['diag_vs_mala']:.2f}× the step rate of MALA on the same energy"
    )
    print(f"\nMMD to held-out clean data ({num_chains} chains × {num_steps} steps, σ = {SIGMA})\n")
    print(table)
    write_report(
        out_dir,
        "pseudo_gibbs_quick" if quick else "pseudo_gibbs",
        results,
        table,
        _plot(samples_for_plot),
    )
    return results


def _plot(samples: dict):
    columns = ["data"] + list(METHODS)
    figure = new_figure((3 * len(columns), 3 * len(samples)))
    axes = figure.subplots(len(samples), len(columns), squeeze=False)
    for row, (toy, by_method) in zip(axes, samples.items(), strict=True):
        for ax, name in zip(row, columns, strict=True):
            x = by_method[name]
            ax.scatter(x[:, 0], x[:, 1], s=1, alpha=0.5)
            ax.set_title(f"{toy}: {name}", fontsize=8)
            ax.set_aspect("equal")
    return figure
