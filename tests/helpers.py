import arviz as az
import numpy as np


def assert_expectations_match(values_by_chain: np.ndarray, expected: np.ndarray, n_sigma=4.0):
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
