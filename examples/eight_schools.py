"""Swap NUTS for DiGS in a NumPyro workflow and diagnose the result with ArviZ.

python examples/eight_schools.py
"""

import arviz as az
import jax
from numpyro.infer import MCMC

from ppl_diffusion import DiGS
from ppl_diffusion.models import eight_schools

mcmc = MCMC(
    DiGS(eight_schools.model),
    num_warmup=500,
    num_samples=1000,
    num_chains=4,
    chain_method="vectorized",
)
mcmc.run(
    jax.random.PRNGKey(0),
    eight_schools.SIGMA,
    y=eight_schools.Y,
    extra_fields=("jump_accept_prob", "num_grad_evals"),
)
mcmc.print_summary()

idata = az.from_numpyro(mcmc)
print(az.summary(idata, var_names=["mu", "tau"]))
reference = eight_schools.reference_moments()
print("exact posterior mean of mu, tau:", float(reference["mu"][0]), float(reference["tau"][0]))
extra = mcmc.get_extra_fields()
print("jump acceptance per noise level:", extra["jump_accept_prob"].mean(0))
print("noise levels (posterior sds):", mcmc.last_state.warmup.parameters.sigmas[0])
print("gradient evaluations per iteration:", float(extra["num_grad_evals"].mean()))
