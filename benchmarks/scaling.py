"""DiGS with 8 chains on one CPU device vs sharded over forced host devices.

python benchmarks/scaling.py [--devices 2] [--chains 8] [--warmup 1000] [--samples 20000]
"""

import argparse
from pathlib import Path

parser = argparse.ArgumentParser()
parser.add_argument("--devices", type=int, default=2, help="host (CPU) devices to create")
parser.add_argument("--chains", type=int, default=8)
parser.add_argument("--warmup", type=int, default=1000)
parser.add_argument("--samples", type=int, default=20000)
args = parser.parse_args()

import numpyro  # noqa: E402

numpyro.set_host_device_count(args.devices)  # must precede JAX's backend start

from ppl_diffusion.benchmarks.scaling import measure_scaling  # noqa: E402

measure_scaling(
    num_chains=args.chains,
    num_warmup=args.warmup,
    num_samples=args.samples,
    out_dir=Path("benchmarks/results"),
    label=f"scaling_cpu_{args.chains}chains",
)
