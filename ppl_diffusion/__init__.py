"""Diffusion-based inference for NumPyro models."""

from ppl_diffusion.inference import (
    DiffusiveSampler,
    DiGS,
    JumpsNeverAcceptedWarning,
    NoiseSchedule,
    ParallelTempering,
    PseudoGibbs,
    default_schedule,
    fit_noisy_energy,
    fit_ocm_diagonal,
    geometric_ladder,
    moment_matched_gibbs,
    noise_schedule,
    ve_schedule,
    vp_schedule,
)
from ppl_diffusion.parallel import sharded_chains
from ppl_diffusion.target import Symmetry, Target, make_target

__version__ = "0.1.0"

__all__ = [
    "DiGS",
    "DiffusiveSampler",
    "JumpsNeverAcceptedWarning",
    "NoiseSchedule",
    "ParallelTempering",
    "PseudoGibbs",
    "Symmetry",
    "Target",
    "default_schedule",
    "fit_noisy_energy",
    "fit_ocm_diagonal",
    "geometric_ladder",
    "make_target",
    "moment_matched_gibbs",
    "noise_schedule",
    "sharded_chains",
    "ve_schedule",
    "vp_schedule",
]
