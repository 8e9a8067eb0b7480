"""The ``ppl-diffusion`` command."""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

DEFAULT_CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / (
    "ppl_diffusion/jax"
)


def enable_compile_cache(cache_dir: Path) -> None:
    """Turn on JAX's persistent compilation cache: on CPU, compiling dominates short runs."""
    import jax

    cache_dir.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(cache_dir))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, default=0, help="PRNG seed (default 0)")
    parser.add_argument(
        "--compile-cache",
        type=Path,
        default=DEFAULT_CACHE_DIR,
        help=f"JAX persistent compilation cache folder (default {DEFAULT_CACHE_DIR})",
    )
    parser.add_argument(
        "--no-compile-cache", action="store_true", help="do not use the compilation cache"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ppl-diffusion", description="Diffusion-based inference for NumPyro models."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo",
        help="DiGS vs NUTS on the 40-mode Gaussian mixture: diagnostics table and a plot",
    )
    _add_common(demo)
    demo.add_argument("--chains", type=int, default=8)
    demo.add_argument("--warmup", type=int, default=500)
    demo.add_argument("--samples", type=int, default=2000)
    demo.add_argument("--out", type=Path, default=Path("demo_output"), help="output folder")
    bench = commands.add_parser(
        "bench", help="DiGS vs parallel tempering, NUTS and tempered SMC at equal gradient budgets"
    )
    _add_common(bench)
    bench.add_argument(
        "--suite",
        choices=["samplers", "amortized", "pseudo-gibbs"],
        default="samplers",
        help="samplers: DiGS vs peers (default); amortized: the DiKL one-step sampler vs DiGS "
        "and NUTS; pseudo-gibbs: clean samples from noisy energy models",
    )
    bench.add_argument("--quick", action="store_true", help="small budgets, fewer cases, one seed")
    bench.add_argument("--seeds", type=int, default=None, help="seeds per case (default 3; 1 quick)")
    bench.add_argument("--only", nargs="+", default=None, help="run only these cases")
    bench.add_argument("--out", type=Path, default=Path("benchmarks/results"), help="output folder")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # ArviZ 0.23 announces its coming refactor on import; it says nothing about this run.
    warnings.filterwarnings("ignore", category=FutureWarning, module="arviz")
    if not args.no_compile_cache:
        enable_compile_cache(args.compile_cache)
    if args.command == "demo":
        from ppl_diffusion.demo import run_demo

        run_demo(
            num_chains=args.chains,
            num_warmup=args.warmup,
            num_samples=args.samples,
            seed=args.seed,
            out_dir=args.out,
        )
    elif args.command == "bench" and args.suite == "amortized":
        from ppl_diffusion.bench_amortized import run_amortized_benchmarks

        run_amortized_benchmarks(quick=args.quick, seed=args.seed, out_dir=args.out, only=args.only)
    elif args.command == "bench" and args.suite == "pseudo-gibbs":
        from ppl_diffusion.bench_pseudo_gibbs import run_pseudo_gibbs_benchmarks

        run_pseudo_gibbs_benchmarks(quick=args.quick, seed=args.seed, out_dir=args.out)
    elif args.command == "bench":
        from ppl_diffusion.bench import run_benchmarks

        run_benchmarks(
            quick=args.quick, seed=args.seed, num_seeds=args.seeds, out_dir=args.out, only=args.only
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
