import os

import numpyro

# Compiling sampler programs dominates the suite, and on CPU LLVM's optimisation passes dominate
# compiling. The tests' programs are small and run briefly, so unoptimised machine code costs
# them less than it saves: the suite took 626 s instead of 727 s on 2 cores. XLA reads its
# flags when JAX initialises its backend, so this too must come first.
if "--xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0"
    ).strip()

# Two host devices so chain_method="parallel" and sharded chains really run on separate
# devices. This must happen before JAX initialises its backend.
numpyro.set_host_device_count(2)

import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

import arviz as az  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from ppl_diffusion.compile_cache import compile_cache  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def session_compile_cache():
    """Many tests compile the same sampler programs; a compilation cache for the session
    loads the repeats instead of compiling them again, and is removed afterwards."""
    with tempfile.TemporaryDirectory() as folder, compile_cache(Path(folder)):
        yield


def check_expectations(values_by_chain, expected, n_sigma: float = 4.0) -> None:
    """Check E[f] of (chains, draws, k) MCMC values against exact values within MCSE.

    The Monte-Carlo standard error comes from ArviZ (it accounts for autocorrelation).
    """
    values_by_chain = np.asarray(values_by_chain, dtype=float)
    expected = np.asarray(expected, dtype=float)
    summary = az.summary(
        az.from_dict(posterior={"f": values_by_chain}), kind="all", round_to="none"
    )
    means = summary["mean"].to_numpy()
    mcse = summary["mcse_mean"].to_numpy()
    assert np.all(np.isfinite(mcse)) and np.all(mcse > 0)
    z = np.abs(means - expected) / mcse
    assert np.all(z < n_sigma), (
        f"expectations off by {np.round(z, 2)} MCSE: got {means}, expected {expected}"
    )


@pytest.fixture
def assert_expectations_match():
    """``assert_expectations_match(values_by_chain, expected)``: see :func:`check_expectations`."""
    return check_expectations
