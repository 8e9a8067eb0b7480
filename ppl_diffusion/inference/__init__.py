"""Inference algorithms; each module holds one algorithm, on the shared kernel template
(:mod:`~ppl_diffusion.inference.kernel`) and denoising-posterior machinery
(:mod:`~ppl_diffusion.inference.denoising`)."""

from ppl_diffusion.inference.amortized import DiffusiveSampler
from ppl_diffusion.inference.digs import (
    DiGS,
    JumpsNeverAcceptedWarning,
    NoiseSchedule,
    default_schedule,
    moment_matched_gibbs,
    noise_schedule,
    ve_schedule,
    vp_schedule,
)
from ppl_diffusion.inference.pseudo_gibbs import PseudoGibbs, fit_noisy_energy, fit_ocm_diagonal
from ppl_diffusion.inference.tempering import ParallelTempering, geometric_ladder

__all__ = [
    "DiGS",
    "DiffusiveSampler",
    "JumpsNeverAcceptedWarning",
    "NoiseSchedule",
    "ParallelTempering",
    "PseudoGibbs",
    "default_schedule",
    "fit_noisy_energy",
    "fit_ocm_diagonal",
    "geometric_ladder",
    "moment_matched_gibbs",
    "noise_schedule",
    "ve_schedule",
    "vp_schedule",
]
