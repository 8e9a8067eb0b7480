"""Throughput of DiGS per GPU: the same run on one GPU and sharded over every visible GPU.

python benchmarks/gpu.py [--chains 4096]
"""

import argparse
from pathlib import Path

import jax

from ppl_diffusion.benchmarks.scaling import measure_scaling

parser = argparse.ArgumentParser()
parser.add_argument("--chains", type=int, default=4096)
parser.add_argument("--samples", type=int, default=2000)
args = parser.parse_args()

if jax.devices()[0].platform != "gpu":
    raise SystemExit(f"No GPU visible to JAX (devices: {jax.devices()}); install jax[cuda12].")
measure_scaling(
    num_chains=args.chains,
    num_samples=args.samples,
    out_dir=Path("benchmarks/results"),
    label="scaling_gpu",
)
