"""NumPyro's own example models run with only ``NUTS(`` swapped for one of our kernels: 1 and 4
chains, raw and typed PRNG keys. The default suite runs two of them (a reparametrised model
with a deterministic site, a custom distribution) once each with DiGS on vectorized chains and
a typed key, the combination users of current NumPyro hit first; the rest of the grid is
marked slow."""

import itertools

import jax
import numpy as np
import pytest
from numpyro import handlers
from numpyro.infer import MCMC

from ppl_diffusion import DiGS, ParallelTempering
from ppl_diffusion.models.numpyro_examples import numpyro_examples

EXAMPLES = numpyro_examples()
KERNELS = {"DiGS": DiGS, "ParallelTempering": ParallelTempering}
KEYS = {"typed": jax.random.key, "raw": jax.random.PRNGKey}
NUM_DRAWS = 20


def reported_sites(example):
    """The sites ``MCMC.get_samples()`` reports for NUTS: latent and deterministic ones."""
    trace = handlers.trace(handlers.seed(example.model, 0)).get_trace(*example.model_args)
    return {
        name: np.shape(site["value"])
        for name, site in trace.items()
        if (site["type"] == "sample" and not site["is_observed"]) or site["type"] == "deterministic"
    }


FIRST = ("DiGS", 4, "typed")
IN_DEFAULT_SUITE = ("funnel_reparam", "neutra")
GRID = [
    pytest.param(
        name,
        *config,
        marks=() if config == FIRST and name in IN_DEFAULT_SUITE else pytest.mark.slow,
        id=f"{name}-{config[0]}-{config[1]}chains-{config[2]}",
    )
    for name, config in itertools.product(EXAMPLES, itertools.product(KERNELS, (1, 4), KEYS))
]


# The scripts run as users run them: warnings our kernels give on short runs (non-finite
# rejections before the metric has settled, jumps never accepted) are allowed, and so is
# NumPyro's own division warning in `print_summary` for the LKJ factor's constant entries.
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.filterwarnings("ignore::ppl_diffusion.JumpsNeverAcceptedWarning")
@pytest.mark.parametrize("name, kernel_name, num_chains, key_style", GRID)
def test_example_runs_with_only_the_kernel_swapped(
    name, kernel_name, num_chains, key_style, capsys
):
    example = EXAMPLES[name]
    kernel = KERNELS[kernel_name](example.model, init_strategy=example.init_strategy)
    mcmc = MCMC(
        kernel,
        num_warmup=NUM_DRAWS,
        num_samples=NUM_DRAWS,
        num_chains=num_chains,
        chain_method="vectorized",
        progress_bar=False,
    )
    mcmc.run(KEYS[key_style](0), *example.model_args)
    samples = mcmc.get_samples(group_by_chain=True)
    expected = reported_sites(example)
    assert set(samples) == set(expected)
    for site, shape in expected.items():
        assert samples[site].shape == (num_chains, NUM_DRAWS, *shape), site
        assert np.all(np.isfinite(samples[site])), site
    assert mcmc.get_extra_fields(group_by_chain=True)["diverging"].shape == (
        num_chains,
        NUM_DRAWS,
    )
    mcmc.print_summary()
    assert "mean" in capsys.readouterr().out
