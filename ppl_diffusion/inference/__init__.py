"""Inference algorithms; each module holds one algorithm."""

from ppl_diffusion.inference.amortized import DiffusiveSampler
from ppl_diffusion.inference.digs import (
    DiGS,
    NoiseSchedule,
    default_schedule,
    noise_schedule,
    ve_schedule,
    vp_schedule,
)
from ppl_diffusion.inference.tempering import ParallelTempering, geometric_ladder

__all__ = [
    "DiGS",
    "DiffusiveSampler",
    "NoiseSchedule",
    "ParallelTempering",
    "default_schedule",
    "geometric_ladder",
    "noise_schedule",
    "ve_schedule",
    "vp_schedule",
]
