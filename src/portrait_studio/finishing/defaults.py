"""Per-model inpaint defaults for region fixes, and the repair cue added to each region's prompt.

Why FLUX strengths are so much higher than SD "detailer" strengths (ADetailer's default is
0.4; a portrait guide's "0.15" is an SD number):

Measured (`bench/bench_fix_strength.py`: diffusers 0.42.1 FluxInpaintPipeline schedule at
28 steps, against SD1.5's scaled-linear schedule; SNR of the starting latent in dB):

    strength   FLUX 1024 px: steps run  start sigma  SNR       SD1.5: SNR
    0.15        5/28                    0.41         +3.3 dB   +6.9 dB
    0.30        9/28                    0.60         -3.5 dB   +1.6 dB
    0.50       14/28                    0.76        -10.0 dB   -4.2 dB
    0.70       20/28                    0.89        -17.9 dB  -10.4 dB
    0.85       24/28                    0.95        -25.6 dB  -16.2 dB
    0.95       27/28                    0.99        -38.6 dB  -20.8 dB

Per latent value FLUX already starts *noisier* than SD at the same strength, yet it changes
far less: its 16-channel latents, packed 2x2 into 64-value tokens, are so redundant that the
picture survives the noise (the redundancy argument behind SD3's and FLUX's shifted
schedules), and the guidance-distilled [dev] model pulls hard towards its input. Users report
the same threshold: FLUX detailer/inpaint passes barely change a region below ~0.8
(Bing-su/adetailer#707: 0.7 "almost no diff"; lllyasviel/stable-diffusion-webui-forge#2567:
"barely changed if below 0.80"). Hence 0.85 for a light FLUX.1 [dev] repair, more for hands,
whose shape must change, and a warning below `min_effective`.

FLUX Fill was trained to repaint the masked area from pure noise; the hosted Fill endpoints
(BFL, fal) take no strength at all, so the mask alone bounds the change. Locally diffusers
accepts a strength for FluxFillPipeline (huggingface/diffusers#10603), but 1.0 is the trained
behaviour.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["CUES", "DEFAULT_FIX_MODEL", "FIX_DEFAULTS", "FixDefaults", "cue_for"]


class FixDefaults(BaseModel):
    """How one model repairs a region: its provider, default denoise, and where it stops working."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    provider: str
    denoise: float | None = None
    """None: the model takes no denoise (hosted Fill: the mask alone bounds the change)."""
    min_effective: float | None = None
    """Below this the model barely changes the region; a fix warns."""
    regions: dict[str, float] = Field(default_factory=dict)
    """Per-region denoise overrides (hands need their shape changed)."""

    def denoise_for(self, region: str) -> float | None:
        key = "hands" if region.startswith("hand") else region
        return self.regions.get(key, self.denoise)


FIX_DEFAULTS: dict[str, FixDefaults] = {
    "flux-fill-pro": FixDefaults(provider="bfl"),
    "flux-1-fill-dev": FixDefaults(provider="local", denoise=1.0),
    "flux-1-dev": FixDefaults(provider="local", denoise=0.85, min_effective=0.75, regions={"hands": 0.95, "skin": 0.8}),
    # 4 steps: 0.75 runs 3 of them; below 0.5 only 1-2 steps run and little changes
    "flux-1-schnell": FixDefaults(provider="local", denoise=0.75, min_effective=0.5, regions={"hands": 1.0}),
}
DEFAULT_FIX_MODEL = "flux-fill-pro"

CUES: dict[str, str] = {
    "mouth": "natural relaxed lips, even natural teeth, natural tooth shade",
    "teeth": "even, natural teeth with a natural shade, no gaps",
    "eyes": "sharp symmetrical eyes, round pupils, matching irises, natural catchlights",
    "eye": "a sharp natural eye, round pupil, natural catchlight",
    "face": "a natural, symmetrical face with natural skin texture",
    "skin": "natural skin texture with fine pores, even natural tone",
    "hands": "a natural relaxed hand with five fingers, correct anatomy",
}


def cue_for(region: str) -> str:
    """The repair cue for a region name (eye_left -> eye, hand_1 -> hands)."""
    if region.startswith("eye_"):
        return CUES["eye"]
    if region.startswith("hand"):
        return CUES["hands"]
    return CUES[region]
