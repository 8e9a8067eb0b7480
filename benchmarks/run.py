"""Run the sampler benchmarks (same as `ppl-diffusion bench`); see benchmarks/README.md.

python benchmarks/run.py            # full: 7 cases, 3 seeds, about 15 minutes on 2 CPU cores
python benchmarks/run.py --quick    # two cases, small budgets, one seed
"""

import sys

from ppl_diffusion.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
