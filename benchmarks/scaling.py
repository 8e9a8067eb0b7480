"""DiGS with 8 chains on one CPU device vs sharded over forced host devices.

    python benchmarks/scaling.py [--devices 2]
"""

import argparse
from pathlib import Path

parser = argparse.ArgumentParser()
parser.add_argument("--devices", type=int, default=2, help="host (CPU) devices to create")
parser.add_argument("--chains", type=int, default=8)
args = parser.parse_args()

import numpyro  # noqa: E402

numpyro.set_host_device_count(args.devices)  # must precede JAX's backend start

from ppl_diffusion.bench_scaling import measure_scaling  # noqa: E402

measure_scaling(num_chains=args.chains, out_dir=Path("benchmarks/results"), label="scaling_cpu")
