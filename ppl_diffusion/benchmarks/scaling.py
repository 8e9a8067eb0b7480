"""Throughput of DiGS chains on one device against all local devices (CPU host devices or GPUs).

Used by ``benchmarks/scaling.py`` (CPU with forced host devices) and ``benchmarks/gpu.py``.
Both timed runs load the programs compiled by a first run from a temporary persistent
compilation cache, so the timings exclude compilation (a callable ``chain_method`` recompiles
on every ``MCMC.run``).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import jax
import numpy as np
from numpyro.infer import MCMC

from ppl_diffusion.benchmarks.baselines import time_compiled_run
from ppl_diffusion.benchmarks.report import format_table, new_figure, write_report
from ppl_diffusion.compile_cache import compile_cache
from ppl_diffusion.inference.digs import DiGS
from ppl_diffusion.models import get_model
from ppl_diffusion.parallel import sharded_chains


def _timed_run(chain_method, num_chains, num_warmup, num_samples):
    mcmc = MCMC(
        DiGS(get_model("mog40").model),
        num_warmup=num_warmup,
        num_samples=num_samples,
        num_chains=num_chains,
        chain_method=chain_method,
        progress_bar=False,
    )
    seconds = time_compiled_run(mcmc, jax.random.PRNGKey(0))
    return seconds, np.asarray(mcmc.get_samples()["x"])


def measure_scaling(
    num_chains: int = 8,
    num_warmup: int = 1000,
    num_samples: int = 20000,
    out_dir: Path | None = None,
    label: str = "scaling",
) -> dict:
    """Wall time (after compilation) of the same DiGS run on one device and sharded over all."""
    with tempfile.TemporaryDirectory() as cache_dir, compile_cache(Path(cache_dir)):
        return _measure(num_chains, num_warmup, num_samples, out_dir, label)


def _measure(num_chains, num_warmup, num_samples, out_dir, label):
    devices = jax.devices()
    one_time, one_draws = _timed_run(
        sharded_chains(devices[:1]), num_chains, num_warmup, num_samples
    )
    all_time, all_draws = _timed_run(sharded_chains(devices), num_chains, num_warmup, num_samples)
    total_draws = num_chains * num_samples
    result = {
        "platform": devices[0].platform,
        "device_kind": devices[0].device_kind,
        "num_devices": len(devices),
        "num_chains": num_chains,
        "iterations_per_chain": num_warmup + num_samples,
        "one_device_s": one_time,
        "all_devices_s": all_time,
        "speedup": one_time / all_time,
        "draws_per_s_one_device": total_draws / one_time,
        "draws_per_s_all_devices": total_draws / all_time,
        "draws_per_s_per_device": total_draws / all_time / len(devices),
        "same_draws_max_abs_diff": float(np.max(np.abs(one_draws - all_draws))),
    }
    rows = [
        ["1", f"{one_time:.2f}", f"{result['draws_per_s_one_device']:.0f}", "1.00"],
        [
            str(len(devices)),
            f"{all_time:.2f}",
            f"{result['draws_per_s_all_devices']:.0f}",
            f"{result['speedup']:.2f}",
        ],
    ]
    print(
        f"DiGS on mog40, {num_chains} chains × {num_warmup + num_samples} iterations, "
        f"{devices[0].platform} ({devices[0].device_kind}), after compilation\n"
    )
    table = format_table(["devices", "wall time (s)", "draws/s", "speedup"], rows)
    print(table)
    if out_dir is not None:
        write_report(out_dir, label, result, table, _plot(result))
    return result


def _plot(result: dict):
    figure = new_figure((4, 3.5))
    ax = figure.subplots()
    ax.bar(
        ["1 device", f"{result['num_devices']} devices"],
        [result["draws_per_s_one_device"], result["draws_per_s_all_devices"]],
    )
    ax.set_ylabel("DiGS draws per second")
    ax.set_title(f"{result['platform']}: speed-up {result['speedup']:.2f}×")
    return figure
