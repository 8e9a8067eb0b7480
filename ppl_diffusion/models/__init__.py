"""Built-in target models with ground truth (exact samples or exact moments)."""

from __future__ import annotations

from ppl_diffusion.models import eight_schools, mog40
from ppl_diffusion.models.base import BuiltinModel

_REGISTRY = {
    "mog40": mog40.builtin,
    "eight_schools": eight_schools.builtin,
}


def available() -> list[str]:
    return sorted(_REGISTRY)


def get_model(name: str) -> BuiltinModel:
    """Look up a built-in model by name."""
    try:
        return _REGISTRY[name]()
    except KeyError:
        raise ValueError(f"Unknown model {name!r}; available: {available()}.") from None


__all__ = ["BuiltinModel", "available", "get_model", "eight_schools", "mog40"]
