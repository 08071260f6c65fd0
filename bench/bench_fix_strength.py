"""How much of the denoising a FLUX inpaint actually runs at a given strength, against SD1.5.

    python bench/bench_fix_strength.py

Prints, per strength: the steps FluxInpaintPipeline runs out of 28, the starting sigma after
FLUX's resolution-dependent shift (512 px and 1024 px), the starting latent's SNR in dB, and
SD1.5's SNR at the same strength; then, on the tiny random FLUX.1 [dev] pipeline at 128 px,
the transformer calls and the mean change inside the mask. With random weights that change
(~45 levels at every strength) is the VAE round trip itself, which is why a fix composites
the original back outside the mask rather than trusting the model's output. The numbers behind
`finishing/defaults.py` (the perceptual threshold itself needs real weights; see the sources
cited there).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

STRENGTHS = (0.15, 0.3, 0.5, 0.7, 0.85, 0.95)
STEPS = 28


def schedule_table() -> None:
    from diffusers import DDIMScheduler, FlowMatchEulerDiscreteScheduler
    from diffusers.pipelines.flux.pipeline_flux import calculate_shift

    sd = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000)
    alphas = sd.alphas_cumprod.numpy()
    for side in (512, 1024):
        mu = calculate_shift((side // 16) ** 2, 256, 4096, 0.5, 1.15)
        flow = FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
                                               base_image_seq_len=256, max_image_seq_len=4096)
        flow.set_timesteps(sigmas=np.linspace(1.0, 1 / STEPS, STEPS), mu=mu)
        sigmas = flow.sigmas.numpy()
        print(f"\n{side} px (mu {mu:.2f})  strength  steps  start-sigma  FLUX SNR   SD1.5 SNR")
        for s in STRENGTHS:
            start = int(max(STEPS - min(STEPS * s, STEPS), 0))
            sigma = float(sigmas[start])
            a = float(alphas[int(s * 1000) - 1])
            print(f"{'':18s}{s:8.2f}  {STEPS - start:3d}/{STEPS}  {sigma:11.3f}  {20 * np.log10((1 - sigma) / sigma):+7.1f} dB"
                  f"  {10 * np.log10(a / (1 - a)):+7.1f} dB")


def tiny_pipeline_table() -> None:
    import asyncio

    from PIL import Image

    from portrait_studio.finishing.fix import plan_fix
    from portrait_studio.providers.local import LocalProvider
    from portrait_studio.testing import photos
    from portrait_studio.testing.tiny import save_tiny_pipeline

    folder = Path(tempfile.mkdtemp())
    weights = save_tiny_pipeline("flux1-dev", folder / "tiny")
    image = folder / "face.png"
    photos.astronaut().resize((128, 128), Image.Resampling.LANCZOS).save(image)
    provider = LocalProvider({"weights": str(weights)})
    provider.accept_licence("flux-1-dev")
    original = np.asarray(Image.open(image).convert("RGB"), np.float32)
    print("\ntiny FLUX.1 [dev] inpaint, 128 px, mouth mask: strength  calls  mean|d| in mask  seconds")
    for s in STRENGTHS:
        request, mask = plan_fix(image, "mouth", model="flux-1-dev", strength=s, mask_dir=folder)
        t = time.perf_counter()
        result = asyncio.run(provider.submit(request))
        seconds = time.perf_counter() - t
        out = np.asarray(Image.open(__import__("io").BytesIO(result.image)).convert("RGB").resize((128, 128)), np.float32)
        inside = np.asarray(mask.mask) > 0
        delta = float(np.abs(out - original)[inside].mean())
        print(f"{'':49s}{s:5.2f}  {result.metadata['transformer_calls']:5d}  {delta:15.1f}  {seconds:7.2f}")


if __name__ == "__main__":
    schedule_table()
    tiny_pipeline_table()
