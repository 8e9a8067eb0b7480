"""Inference algorithms; each module holds one algorithm."""

from ppl_diffusion.inference.digs import (
    DiGS,
    NoiseSchedule,
    default_schedule,
    noise_schedule,
    ve_schedule,
    vp_schedule,
)

__all__ = ["DiGS", "NoiseSchedule", "default_schedule", "noise_schedule", "ve_schedule", "vp_schedule"]
