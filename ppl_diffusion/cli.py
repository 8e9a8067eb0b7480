"""The ``ppl-diffusion`` command: the demo and the benchmark suites."""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from ppl_diffusion import __version__
from ppl_diffusion.compile_cache import DEFAULT_CACHE_DIR, enable_compile_cache

SUITES = ("samplers", "posteriors", "multimodal", "amortized", "noisy-score", "pseudo-gibbs")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, got {value}")
    return value


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
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo",
        help="DiGS vs NUTS on the 40-mode Gaussian mixture: diagnostics table and a plot",
    )
    _add_common(demo)
    demo.add_argument(
        "--chains", type=_positive_int, default=8, help="chains per sampler (default 8)"
    )
    demo.add_argument(
        "--warmup",
        type=_non_negative_int,
        default=500,
        help="warmup iterations per chain (default 500)",
    )
    demo.add_argument(
        "--samples",
        type=_positive_int,
        default=2000,
        help="draws per chain after warmup (default 2000)",
    )
    demo.add_argument("--out", type=Path, default=Path("demo_output"), help="output folder")
    bench = commands.add_parser(
        "bench", help="DiGS vs parallel tempering, NUTS and tempered SMC at equal gradient budgets"
    )
    _add_common(bench)
    bench.add_argument(
        "--suite",
        choices=SUITES,
        default="samplers",
        help="samplers: DiGS vs peers on the built-in targets (default); posteriors: "
        "ordinary Bayesian posteriors against reference moments; multimodal: mode weights on "
        "posteriors with exact answers; amortized: the DiKL one-step "
        "sampler vs DiGS and NUTS; noisy-score: the amortized samplers' noisy-score estimate "
        "vs the exact one per noise level (mog40); pseudo-gibbs: clean samples from noisy "
        "energy models",
    )
    bench.add_argument("--quick", action="store_true", help="small budgets, fewer cases, one seed")
    bench.add_argument(
        "--seeds",
        type=_positive_int,
        default=None,
        help="seeds per case (default 3; 1 with --quick)",
    )
    bench.add_argument("--only", nargs="+", default=None, help="run only these cases")
    bench.add_argument("--out", type=Path, default=Path("benchmarks/results"), help="output folder")
    return parser


def _run(args) -> None:
    if args.command == "demo":
        from ppl_diffusion.benchmarks.demo import run_demo

        run_demo(
            num_chains=args.chains,
            num_warmup=args.warmup,
            num_samples=args.samples,
            seed=args.seed,
            out_dir=args.out,
        )
    elif args.suite == "amortized":
        from ppl_diffusion.benchmarks.amortized import run_amortized_benchmarks

        run_amortized_benchmarks(quick=args.quick, seed=args.seed, out_dir=args.out, only=args.only)
    elif args.suite == "noisy-score":
        from ppl_diffusion.benchmarks.noisy_score import run_noisy_score_benchmark

        run_noisy_score_benchmark(quick=args.quick, seed=args.seed, out_dir=args.out)
    elif args.suite == "pseudo-gibbs":
        from ppl_diffusion.benchmarks.pseudo_gibbs import run_pseudo_gibbs_benchmarks

        run_pseudo_gibbs_benchmarks(
            quick=args.quick, seed=args.seed, num_seeds=args.seeds, out_dir=args.out
        )
    elif args.suite == "posteriors":
        from ppl_diffusion.benchmarks.posteriors import run_posterior_benchmarks

        run_posterior_benchmarks(quick=args.quick, seed=args.seed, out_dir=args.out, only=args.only)
    elif args.suite == "multimodal":
        from ppl_diffusion.benchmarks.multimodal import run_multimodal_benchmarks

        run_multimodal_benchmarks(
            quick=args.quick, seed=args.seed, num_seeds=args.seeds, out_dir=args.out, only=args.only
        )
    else:
        from ppl_diffusion.benchmarks.samplers import run_benchmarks

        run_benchmarks(
            quick=args.quick, seed=args.seed, num_seeds=args.seeds, out_dir=args.out, only=args.only
        )


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # ArviZ 0.23 announces its coming refactor on import; it says nothing about this run.
    warnings.filterwarnings("ignore", category=FutureWarning, module="arviz")
    if not args.no_compile_cache:
        enable_compile_cache(args.compile_cache)
    from ppl_diffusion.benchmarks.report import UnknownCaseError

    try:
        _run(args)
    except UnknownCaseError as err:
        parser.error(str(err))
    return 0


if __name__ == "__main__":
    sys.exit(main())
