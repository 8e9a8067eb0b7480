"""Reference moments for the posterior suite's models without an exact answer: long NUTS runs
in float64 (8 chains, 2000 warmup + 5000 draws, target acceptance 0.95), written to
ppl_diffusion/models/posterior_references.json with each mean's Monte-Carlo standard error.

    python benchmarks/make_references.py [model ...]
"""

import json
import sys

import jax
from numpyro.infer import MCMC, NUTS

from ppl_diffusion.benchmarks.posteriors import site_moments
from ppl_diffusion.models.posteriors import REFERENCE_FILE, posterior

LONG_RUN_MODELS = [
    "logistic_unscaled",
    "gp_poisson",
    "stochastic_volatility",
    "irt_2pl",
    "ordered_mixture",
]

if __name__ == "__main__":
    names = sys.argv[1:] or LONG_RUN_MODELS
    references = json.loads(REFERENCE_FILE.read_text()) if REFERENCE_FILE.exists() else {}
    with jax.enable_x64(True):
        for name in names:
            builtin = posterior(name)
            mcmc = MCMC(
                NUTS(builtin.model, target_accept_prob=0.95),
                num_warmup=2000,
                num_samples=5000,
                num_chains=8,
                chain_method="vectorized",
                progress_bar=False,
            )
            mcmc.run(jax.random.PRNGKey(20261123), *builtin.model_args, **builtin.model_kwargs)
            samples = mcmc.get_samples(group_by_chain=True)
            moments = site_moments(samples, builtin.latent_sites)
            worst_rhat = max(max(jax.tree.leaves(m["rhat"])) for m in moments.values())
            print(f"{name}: max R-hat {worst_rhat:.4f}", flush=True)
            references[name] = {
                site: {k: m[k] for k in ("mean", "sd", "mcse")} for site, m in moments.items()
            }
            REFERENCE_FILE.write_text(json.dumps(references, indent=1))
