"""What a built-in target provides beyond its NumPyro model: ways to check a sampler on it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import jax

from ppl_diffusion.target import check_model


@dataclass(frozen=True)
class BuiltinModel:
    """A NumPyro model with ground truth for testing and benchmarking.

    Attributes:
        name: registry name.
        model: the NumPyro model; call as ``model(*model_args, **model_kwargs)``.
        model_args, model_kwargs: data the model is conditioned on.
        sample_exact: ``(rng_key, n) -> dict`` of exact posterior samples of the latent sites,
            where exact sampling is possible.
        modes: ``(num_modes, dim)`` locations of well-separated modes of a flat latent site.
        mode_std: per-mode standard deviation (for mode-visit radii).
        reference: site -> ``(mean, sd)`` arrays of exact posterior moments.
    """

    name: str
    model: Callable
    model_args: tuple = ()
    model_kwargs: dict = field(default_factory=dict)
    sample_exact: Callable[[jax.Array, int], dict] | None = None
    modes: jax.Array | None = None
    mode_std: float | None = None
    reference: dict | None = None

    @property
    def latent_sites(self) -> list[str]:
        """Names of the model's latent sample sites, sorted."""
        trace = check_model(self.model, self.model_args, self.model_kwargs)
        return sorted(n for n, s in trace.items() if s["type"] == "sample" and not s["is_observed"])
