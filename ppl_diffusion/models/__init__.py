"""Built-in target models with ground truth (exact samples or exact moments)."""

from __future__ import annotations

from ppl_diffusion.models import dw4, eight_schools, funnel, logistic_regression, many_well, mog40
from ppl_diffusion.models.base import BuiltinModel

_REGISTRY = {
    "mog40": mog40.builtin,
    "eight_schools": eight_schools.builtin,
    "many_well": many_well.builtin,
    "funnel": funnel.builtin,
    "logistic_regression": logistic_regression.builtin,
    "dw4": dw4.builtin,
}


def available() -> list[str]:
    return sorted(_REGISTRY)


def get_model(name: str) -> BuiltinModel:
    """Look up a built-in model by name."""
    try:
        return _REGISTRY[name]()
    except KeyError:
        raise ValueError(f"Unknown model {name!r}; available: {available()}.") from None


__all__ = [
    "BuiltinModel",
    "available",
    "get_model",
    "dw4",
    "eight_schools",
    "funnel",
    "logistic_regression",
    "many_well",
    "mog40",
]
