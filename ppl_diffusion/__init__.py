"""Diffusion-based inference for NumPyro models."""

from ppl_diffusion.inference import (
    DiffusiveSampler,
    DiGS,
    NoiseSchedule,
    ParallelTempering,
    default_schedule,
    geometric_ladder,
    noise_schedule,
    ve_schedule,
    vp_schedule,
)
from ppl_diffusion.target import Target, make_target

__version__ = "0.1.0"

__all__ = [
    "DiGS",
    "DiffusiveSampler",
    "NoiseSchedule",
    "ParallelTempering",
    "Target",
    "default_schedule",
    "geometric_ladder",
    "make_target",
    "noise_schedule",
    "ve_schedule",
    "vp_schedule",
]
