"""``ppl-diffusion bench --suite pseudo-gibbs``: sampling clean 2-D toys from noisy energy models.

For each toy (a 4-mode mixture, two rings, a swiss roll; 10k points) and seed a noisy energy
model is fitted by DSM at σ = 0.2 and its OCM diagonal network after it; then clean samples are
drawn six ways with the same number of steps: pseudo-Gibbs with the full Tweedie covariance,
the diagonal from 8 or 1 Hutchinson probes or from the OCM network, the isotropic one, and
Langevin (MALA) on the noisy model followed by Tweedie denoising. Reported, as mean ± sd over
seeds: MMD to held-out clean data (the MMD between two clean sets is the floor) with each
method's cost per step; the error of each estimate of diag ∇s against the exact one; how close
to the data chains started 50 units away end up; and, last, the step rate of diagonal
pseudo-Gibbs in 784 dimensions against MALA.
"""

from __future__ import annotations

import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from blackjax.mcmc import mala

from ppl_diffusion.benchmarks.report import (
    aggregate_seeds,
    format_mean_sd,
    format_table,
    new_figure,
    write_report,
)
from ppl_diffusion.diagnostics import default_bandwidths, mmd
from ppl_diffusion.inference.denoising import hutchinson_diagonal, run_mala
from ppl_diffusion.inference.pseudo_gibbs import (
    EnergyMLP,
    NoisyEnergyModel,
    fit_noisy_energy,
    fit_ocm_diagonal,
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
PSEUDO_GIBBS = {
    # name: (covariance, Hutchinson probes)
    "pseudo-Gibbs full": ("full", 8),
    "pseudo-Gibbs diag (8 probes)": ("diag", 8),
    "pseudo-Gibbs diag (1 probe)": ("diag", 1),
    "pseudo-Gibbs diag-OCM": ("ocm", 8),
    "pseudo-Gibbs iso": ("iso", 8),
}
METHODS = tuple(PSEUDO_GIBBS) + ("Langevin + Tweedie",)
FAR = 50.0
"""Chains of the tails check start this far from the data's mean."""


def evaluations_per_step(name: str, dim: int) -> int:
    """Network evaluations one step of ``name`` costs: score gradients plus Jacobian-vector
    products, or the OCM network's one call."""
    if name == "Langevin + Tweedie":
        return 1
    covariance, probes = PSEUDO_GIBBS[name]
    return {"full": 1 + dim, "diag": 1 + probes, "ocm": 2, "iso": 1}[covariance]


def run_chains(rng_key, model, start: jax.Array, num_steps: int, method: str) -> jax.Array:
    """Final states of chains of ``method`` from each row of ``start``."""
    keys = jax.random.split(rng_key, start.shape[0])
    if method == "Langevin + Tweedie":

        def langevin(key, x):
            state = mala.init(x, model.logdensity)
            state, _, _ = run_mala(key, state, model.logdensity, 0.1 * model.sigma**2, num_steps)
            return state.position + model.sigma**2 * model.score(state.position)

        return jax.jit(jax.vmap(langevin))(keys, start)
    covariance, probes = PSEUDO_GIBBS[method]

    def chain(key, x):
        def step(x, key):
            return pseudo_gibbs_step(
                key,
                x,
                model.score,
                model.sigma,
                covariance,
                probes,
                model.iso_variance,
                model.curvature,
            ), None

        return jax.lax.scan(step, x, jax.random.split(key, num_steps))[0]

    return jax.jit(jax.vmap(chain))(keys, start)


def sample_all(rng_key, model, start: jax.Array, num_steps: dict[str, int]) -> dict:
    """Final states of chains from each row of ``start`` for every method (``num_steps``
    each)."""
    return {
        method: run_chains(rng_key, model, start, num_steps[method], method) for method in METHODS
    }


def noisy_training_points(rng_key, data: jax.Array, sigma: float, num: int) -> jax.Array:
    key_index, key_noise = jax.random.split(rng_key)
    index = jax.random.randint(key_index, (num,), 0, data.shape[0])
    return data[index] + sigma * jax.random.normal(key_noise, (num, data.shape[1]))


def nearest_distances(points: jax.Array, data: jax.Array, exclude_self: bool = False):
    def one(i, point):
        distances = jnp.sqrt(jnp.sum((data - point) ** 2, -1))
        return jnp.min(
            jnp.where(exclude_self & (jnp.arange(data.shape[0]) == i), jnp.inf, distances)
        )

    return jax.lax.map(lambda args: one(*args), (jnp.arange(points.shape[0]), points))


def return_from_afar(rng_key, model, data: jax.Array, num_chains: int, num_steps: int) -> float:
    """Chains of full-covariance pseudo-Gibbs started :data:`FAR` from the data's mean in
    random directions: the median distance of their final states to the nearest datum, over
    the data's own median nearest-neighbour distance (1 for draws as close as the data)."""
    key_direction, key_run = jax.random.split(rng_key)
    direction = jax.random.normal(key_direction, (num_chains, data.shape[1]))
    start = data.mean(0) + FAR * direction / jnp.linalg.norm(direction, axis=1, keepdims=True)
    end = run_chains(key_run, model, start, num_steps, "pseudo-Gibbs full")
    reference = nearest_distances(data[:num_chains], data, exclude_self=True)
    return float(jnp.median(nearest_distances(end, data)) / jnp.median(reference))


def diagonal_errors(rng_key, model, data: jax.Array, num_points: int = 2000) -> dict:
    """Relative RMS error of each estimate of diag ∇s against the exact one (jacfwd) at noisy
    data points."""
    key_noise, key_probes = jax.random.split(rng_key)
    noisy = data[:num_points] + model.sigma * jax.random.normal(key_noise, data[:num_points].shape)
    exact = jax.vmap(lambda x: jnp.diag(jax.jacfwd(model.score)(x)))(noisy)
    keys = jax.random.split(key_probes, num_points)
    estimates = {
        f"Hutchinson, {probes} probe{'s' if probes > 1 else ''}": jax.vmap(
            lambda key, x, probes=probes: hutchinson_diagonal(key, model.score, x, probes)
        )(keys, noisy)
        for probes in (8, 1)
    }
    estimates["OCM network"] = jax.vmap(model.curvature)(noisy)
    scale = jnp.sqrt(jnp.mean(exact**2))
    return {
        name: float(jnp.sqrt(jnp.mean((value - exact) ** 2)) / scale)
        for name, value in estimates.items()
    }


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


def toy_chains_and_steps(quick: bool) -> tuple[int, int]:
    return (500, 100) if quick else (2000, 200)


def run_toy(toy: str, seed: int, quick: bool) -> tuple[dict, dict]:
    """One toy and seed: the results row and the draws to plot."""
    num_train, width, depth = (800, 64, 2) if quick else (10_000, 400, 4)
    num_ocm_train = 800 if quick else 3000
    num_chains, num_steps = toy_chains_and_steps(quick)
    keys = jax.random.split(jax.random.PRNGKey(seed), 9)
    data = make_toy(toy, keys[0], NUM_DATA)
    test = make_toy(toy, keys[1], num_chains)
    start = time.perf_counter()
    model = fit_noisy_energy(
        keys[3], data, SIGMA, num_steps=num_train, width=width, depth=depth, progress_bar=False
    )
    fit_time = time.perf_counter() - start
    start = time.perf_counter()
    model = fit_ocm_diagonal(keys[4], model, data, num_steps=num_ocm_train, progress_bar=False)
    ocm_fit_time = time.perf_counter() - start
    # Chains start at noisy training points: on these 2-D toys every method mixes within the
    # 200 steps, so the comparison measures the samplers' stationary quality, not how they
    # find the data (return_from_afar checks that).
    start = noisy_training_points(keys[8], data, SIGMA, num_chains)
    samples = sample_all(keys[5], model, start, dict.fromkeys(METHODS, num_steps))
    bandwidths = default_bandwidths(test)
    mmds = {name: mmd(x, test, bandwidths) for name, x in samples.items()}
    mmds["clean data (2nd set)"] = mmd(make_toy(toy, keys[2], num_chains), test, bandwidths)
    row = {
        "fit_time_s": fit_time,
        "ocm_fit_time_s": ocm_fit_time,
        "mmd": mmds,
        "diagonal_relative_rmse": diagonal_errors(keys[6], model, data),
        "return_from_afar": return_from_afar(keys[7], model, data, 500, num_steps),
    }
    return row, {"data": np.asarray(test), **{k: np.asarray(v) for k, v in samples.items()}}


DIGITS_SIGMA = 0.1
DIGITS_BUDGET = 1300
"""Network evaluations per chain for every method on the digits (20 full-covariance steps)."""


def load_digits() -> np.ndarray:
    """scikit-learn's 1797 8×8 handwritten digits as 64-D vectors in [0, 1]."""
    try:
        from sklearn.datasets import load_digits as sklearn_digits
    except ImportError as err:
        raise ImportError(
            "The digits comparison reads scikit-learn's digits data set; install it with "
            "`pip install -e .[bench]`."
        ) from err
    return (sklearn_digits().data / 16.0).astype(np.float32)


def run_digits(seed: int, quick: bool) -> dict:
    """Every method on the 64-D digits at an equal budget of network evaluations per chain:
    a full-covariance step costs 65 (the score and 64 jvps), so it takes the fewest steps."""
    num_train, width, depth = (500, 64, 2) if quick else (10_000, 400, 4)
    num_ocm_train = 500 if quick else 3000
    budget = 130 if quick else DIGITS_BUDGET
    keys = jax.random.split(jax.random.PRNGKey(seed), 6)
    digits = jnp.asarray(load_digits())[jax.random.permutation(keys[0], 1797)]
    train, test = digits[:1297], digits[1297:]
    start = time.perf_counter()
    model = fit_noisy_energy(
        keys[1],
        train,
        DIGITS_SIGMA,
        num_steps=num_train,
        width=width,
        depth=depth,
        progress_bar=False,
    )
    model = fit_ocm_diagonal(keys[2], model, train, num_steps=num_ocm_train, progress_bar=False)
    fit_time = time.perf_counter() - start
    dim = train.shape[1]
    num_steps = {m: max(1, budget // evaluations_per_step(m, dim)) for m in METHODS}
    # Chains start from a Gaussian with the pixels' means and variances, not at training
    # images: a full-covariance chain takes only 20 steps, and from a noisy training image it
    # would return that image rather than a sample.
    start = train.mean(0) + train.std(0) * jax.random.normal(keys[5], test.shape)
    samples = sample_all(keys[3], model, start, num_steps)
    bandwidths = default_bandwidths(test)
    mmds = {name: mmd(x, test, bandwidths) for name, x in samples.items()}
    mmds["clean data (training set)"] = mmd(train[: test.shape[0]], test, bandwidths)
    return {
        "fit_time_s": fit_time,
        "budget": budget,
        "num_steps": num_steps,
        "mmd": mmds,
        "diagonal_relative_rmse": diagonal_errors(keys[4], model, train, num_points=200),
    }


def run_pseudo_gibbs_benchmarks(
    quick: bool = False,
    seed: int = 0,
    num_seeds: int | None = None,
    out_dir: Path = Path("benchmarks/results"),
) -> dict:
    num_seeds = num_seeds or (1 if quick else 3)
    toys = TOYS[:1] if quick else TOYS
    per_toy, samples_for_plot = {}, {}
    for t, toy in enumerate(toys):
        per_toy[toy] = []
        for s in range(num_seeds):
            print(f"[{toy}, seed {s}] DSM fit (σ = {SIGMA}), OCM fit, sampling", flush=True)
            row, draws = run_toy(toy, seed + 100 * t + s, quick)
            per_toy[toy].append(row)
            if s == 0:
                samples_for_plot[toy] = draws

    results = {}
    for toy, rows in per_toy.items():
        ratios = [row["return_from_afar"] for row in rows]
        results[toy] = aggregate_seeds(
            [{k: row[k] for k in ("mmd", "diagonal_relative_rmse")} for row in rows]
        ) | {
            "return_from_afar": {"mean": float(np.mean(ratios)), "sd": float(np.std(ratios))},
            "full_beats_iso": sum(
                row["mmd"]["pseudo-Gibbs full"] < row["mmd"]["pseudo-Gibbs iso"] for row in rows
            ),
            "per_seed": rows,
        }
    num_chains, num_steps = toy_chains_and_steps(quick)
    header = ["method", "evaluations per step"] + list(toys)
    names = list(METHODS) + ["clean data (2nd set)"]
    rows = [
        [name, evaluations_per_step(name, 2) if name in METHODS else ""]
        + [format_mean_sd(results[toy]["mmd"][name], 4) for toy in toys]
        for name in names
    ]
    table = (
        f"MMD to held-out clean data ({num_chains} chains × {num_steps} steps, σ = {SIGMA}, "
        f"{num_seeds} seed{'s' if num_seeds > 1 else ''})\n" + format_table(header, rows)
    )
    estimators = list(results[toys[0]]["diagonal_relative_rmse"])
    table += "\n\nRelative RMS error of diag ∇s at noisy data points\n" + format_table(
        ["estimator"] + list(toys),
        [
            [name] + [format_mean_sd(results[t]["diagonal_relative_rmse"][name], 3) for t in toys]
            for name in estimators
        ],
    )
    table += (
        f"\n\nChains started {FAR:.0f} from the data (full covariance, {num_steps} steps): "
        "median distance to the nearest datum over the data's own nearest-neighbour distance\n"
        + format_table(
            list(toys), [[format_mean_sd(results[t]["return_from_afar"], 2) for t in toys]]
        )
    )
    table += "\n\nFull covariance beats iso in " + ", ".join(
        f"{toy} {results[toy]['full_beats_iso']}/{num_seeds}" for toy in toys
    )
    print("[digits] DSM fit, OCM fit, sampling at equal network evaluations", flush=True)
    digits = run_digits(seed, quick)
    results["digits"] = digits
    table += (
        f"\n\nDigits (64-D, σ = {DIGITS_SIGMA}, 500 held-out images, {digits['budget']} network "
        "evaluations per chain)\n"
        + format_table(
            ["method", "evaluations per step", "steps", "MMD"],
            [
                [m, evaluations_per_step(m, 64), digits["num_steps"][m], f"{digits['mmd'][m]:.4f}"]
                for m in METHODS
            ]
            + [
                [
                    "clean data (training set)",
                    "",
                    "",
                    f"{digits['mmd']['clean data (training set)']:.4f}",
                ]
            ],
        )
        + "\ndiag ∇s relative RMS error: "
        + ", ".join(f"{k} {v:.3f}" for k, v in digits["diagonal_relative_rmse"].items())
    )
    throughput = high_dimensional_throughput(num_steps=10 if quick else 50)
    results["throughput"] = throughput
    table += (
        f"\n\nd = {throughput['dim']}, {throughput['num_chains']} chains: diagonal pseudo-Gibbs "
        f"({throughput['num_probes']} probes) {throughput['diag_steps_per_s']:.0f} steps/s, "
        f"{throughput['diag_vs_mala']:.2f}× the step rate of MALA on the same energy"
    )
    print()
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
