"""Diffusion-based inference for NumPyro models."""

from ppl_diffusion.inference import (
    DiGS,
    NoiseSchedule,
    default_schedule,
    noise_schedule,
    ve_schedule,
    vp_schedule,
)
from ppl_diffusion.target import Target, make_target

__version__ = "0.1.0"

__all__ = [
    "DiGS",
    "NoiseSchedule",
    "Target",
    "default_schedule",
    "make_target",
    "noise_schedule",
    "ve_schedule",
    "vp_schedule",
]
