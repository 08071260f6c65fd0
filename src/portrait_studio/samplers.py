"""The samplers a brief can name, and how each maps onto a diffusers scheduler for FLUX.

FLUX is a flow-matching model: its native sampler is FlowMatch Euler. The portrait guide's
"DPM++ 2M Karras" comes from Stable Diffusion; for FLUX it maps onto diffusers'
`DPMSolverMultistepScheduler` (solver order 2, `dpmsolver++`) run on *flow* sigmas
(`use_flow_sigmas=True`, `prediction_type="flow_prediction"`), with the same resolution-
dependent shift as the Euler schedule it replaces. Karras spacing of those sigmas is used
only where the installed diffusers computes it on the flow schedule: 0.42.1 computes Karras
sigmas from the DDPM betas even with flow sigmas (σ_max ≈ 157 instead of 1), which a flow
model cannot sample, so the local provider probes for it and records what it ran.

Hosted APIs take no sampler at all; the compiler says so instead of dropping it silently.
Nothing here imports torch: the table is read by the brief and the compiler too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["DEFAULT_SAMPLER", "SAMPLERS", "Sampler", "sampler_id"]


@dataclass(frozen=True)
class Sampler:
    id: str
    label: str
    scheduler: str
    """The diffusers scheduler class that runs it on FLUX."""
    karras: bool = False
    """Karras-spaced sigmas asked for (used where the scheduler supports them on flow sigmas)."""


SAMPLERS: dict[str, Sampler] = {
    "euler": Sampler("euler", "Euler (FlowMatch)", "FlowMatchEulerDiscreteScheduler"),
    "dpm++ 2m": Sampler("dpm++ 2m", "DPM++ 2M", "DPMSolverMultistepScheduler"),
    "dpm++ 2m karras": Sampler("dpm++ 2m karras", "DPM++ 2M Karras", "DPMSolverMultistepScheduler", karras=True),
}
DEFAULT_SAMPLER = "euler"

_ALIASES = {
    "flowmatch euler": "euler",
    "flow match euler": "euler",
    "flowmatch": "euler",
    "euler flowmatch": "euler",
    "euler flow matching": "euler",
    "default": "euler",
}


def sampler_id(name: str) -> str:
    """'DPM++ 2M Karras', 'dpmpp_2m_karras', 'DPM++2M (Karras)' → 'dpm++ 2m karras'; ValueError otherwise."""
    text = name.strip().lower().replace("(", " ").replace(")", " ")
    text = re.sub(r"[_\-,]+", " ", text).replace("dpmpp", "dpm++")
    text = re.sub(r"dpm\+\+\s*2\s*m", "dpm++ 2m", text)
    text = " ".join(text.split())
    text = _ALIASES.get(text, text)
    if text not in SAMPLERS:
        known = ", ".join(repr(s.label) for s in SAMPLERS.values())
        raise ValueError(f"unknown sampler '{name}'; choose one of: {known}")
    return text
