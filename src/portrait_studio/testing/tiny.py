"""Tiny, random-weight FLUX pipelines built offline, for tests and for trying the local provider.

Every model is built from a config and every tokenizer from an in-memory vocabulary, so
nothing touches the Hugging Face hub. The pipelines are real diffusers pipelines: same
classes, same code paths, same `save_pretrained` / `from_pretrained` layout as the real
weights, only a few hundred thousand parameters. Their pictures are noise; what they pin
is plumbing (which pipeline, which arguments, seeds, LoRA, CFG, cancellation).

    from portrait_studio.testing.tiny import save_tiny_pipeline
    save_tiny_pipeline("flux1-dev", "/tmp/tiny-dev")   # then: --weights /tmp/tiny-dev

Pitfalls this module handles (see shared notes): models built from a config start in
train mode (T5 dropout breaks determinism), so everything is `.eval()`ed; the CLIP
tokenizer needs `model_max_length`; FLUX.2 [dev]'s real processor (Pixtral) needs
torchvision, so a plain fast tokenizer with a list-of-parts chat template stands in.
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "TINY_KINDS",
    "TinyKind",
    "build_tiny_pipeline",
    "save_tiny_lora",
    "save_tiny_pipeline",
]

TinyKind = Literal[
    "flux1-dev", "flux1-schnell", "flux1-fill", "flux1-kontext", "flux1-redux", "flux2-klein", "flux2-dev"
]
TINY_KINDS: tuple[str, ...] = (
    "flux1-dev", "flux1-schnell", "flux1-fill", "flux1-kontext", "flux1-redux", "flux2-klein", "flux2-dev",
)

_WORDS = ["a", "the", "of", "and", "with", "in", "portrait", "photo", "woman", "man", "face", "smiling", "studio", "light"]


# ---------------------------------------------------------------- tokenizers
def _byte_chars() -> list[str]:
    from tokenizers import pre_tokenizers

    return sorted(pre_tokenizers.ByteLevel.alphabet())


def tiny_clip_tokenizer() -> Any:
    """Byte-level BPE with no merges: every byte is a token, so any text encodes."""
    from transformers import CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in _byte_chars():
        vocab.setdefault(c, len(vocab))
    for c in _byte_chars():
        vocab.setdefault(c + "</w>", len(vocab))
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)  # 1e30 default overflows


def tiny_t5_tokenizer() -> Any:
    """Unigram vocabulary; ids 0/1/2 must be <pad>/</s>/<unk> (T5Tokenizer hard-codes unk_id=2)."""
    from transformers import T5Tokenizer

    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    for c in string.ascii_letters + string.digits + string.punctuation:
        vocab += [(c, -5.0), ("\u2581" + c, -5.5)]
    vocab += [("\u2581" + w, -3.0) for w in _WORDS]
    return T5Tokenizer(vocab=vocab, extra_ids=0, model_max_length=512)


_QWEN_CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n{% endif %}{% endif %}"
)

# FLUX.2 [dev] sends list-of-parts content ([{"type": "text", "text": ...}]).
_PARTS_CHAT_TEMPLATE = (
    "{% for m in messages %}[{{ m['role'] }}]"
    "{% if m['content'] is string %}{{ m['content'] }}"
    "{% else %}{% for p in m['content'] %}{% if p['type'] == 'text' %}{{ p['text'] }}{% endif %}{% endfor %}"
    "{% endif %}[/{{ m['role'] }}]{% endfor %}"
)


def tiny_qwen_tokenizer() -> Any:
    from transformers import Qwen2Tokenizer

    vocab = {c: i for i, c in enumerate(_byte_chars())}
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"]
    for s in specials:
        vocab[s] = len(vocab)
    tok = Qwen2Tokenizer(vocab=vocab, merges=[], model_max_length=512, chat_template=_QWEN_CHAT_TEMPLATE)
    tok.add_special_tokens({"additional_special_tokens": specials[1:]})
    return tok


def tiny_mistral_tokenizer() -> Any:
    """A byte-level fast tokenizer standing in for FLUX.2 [dev]'s PixtralProcessor.

    The real processor needs torchvision; the text path only calls
    `apply_chat_template(..., tokenize=True, return_dict=True, padding="max_length")`.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3}
    for c in _byte_chars():
        vocab.setdefault(c, len(vocab))
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>",
        model_max_length=512, chat_template=_PARTS_CHAT_TEMPLATE,
    )


# ---------------------------------------------------------------- models
def _eval(*models: Any) -> None:
    # Built from a config, models start in train mode: T5's dropout would break same-seed output.
    for m in models:
        m.eval()


def _flux1_text_parts(tok: Any, tok2: Any) -> tuple[Any, Any]:
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    clip = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
        projection_dim=32, max_position_embeddings=77,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id))
    t5 = T5EncoderModel(T5Config(  # type: ignore[call-arg]
        vocab_size=len(tok2), d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4,
        relative_attention_num_buckets=8, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0))
    return clip, t5


def _flux1_vae() -> Any:
    from diffusers import AutoencoderKL

    # 4 blocks -> vae_scale_factor 8 as in the real model; latent 4 channels -> packed 2x2 -> 16.
    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 8, 8, 8), layers_per_block=1,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        norm_num_groups=4, sample_size=64, use_quant_conv=False, use_post_quant_conv=False,
        shift_factor=0.0609, scaling_factor=1.5035)


def tiny_flux1_transformer(
    *, guidance: bool = True, in_channels: int = 16, out_channels: int | None = None,
    layers: int = 1, single_layers: int = 1, heads: int = 2, head_dim: int = 16,
) -> Any:
    """A FluxTransformer2DModel with FLUX.1's structure and toy sizes (joint/pooled dim 32)."""
    from diffusers import FluxTransformer2DModel

    rope = [head_dim // 4, head_dim // 4, head_dim // 2]  # must sum to head_dim
    return FluxTransformer2DModel(
        patch_size=1, in_channels=in_channels, out_channels=out_channels, num_layers=layers,
        num_single_layers=single_layers, attention_head_dim=head_dim, num_attention_heads=heads,
        joint_attention_dim=32, pooled_projection_dim=32, guidance_embeds=guidance, axes_dims_rope=rope)


def flux_scheduler() -> Any:
    """FLUX's own scheduler config (dev, Kontext, Fill, FLUX.2): resolution-dependent ("dynamic") shift."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    return FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
                                           base_image_seq_len=256, max_image_seq_len=4096)


def _flux1(kind: str) -> Any:
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxFillPipeline, FluxKontextPipeline, FluxPipeline

    tok, tok2 = tiny_clip_tokenizer(), tiny_t5_tokenizer()
    clip, t5 = _flux1_text_parts(tok, tok2)
    vae = _flux1_vae()
    if kind == "flux1-fill":
        # latents 16 + masked-image latents 16 + mask (8x8 pixels per latent, packed 2x2) 256
        transformer = tiny_flux1_transformer(in_channels=288, out_channels=16)
    else:
        transformer = tiny_flux1_transformer(guidance=kind != "flux1-schnell")
    _eval(clip, t5, vae, transformer)
    scheduler = flux_scheduler()
    if kind == "flux1-schnell":
        scheduler = FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=False, shift=1.0)
    parts = dict(scheduler=scheduler, vae=vae, text_encoder=clip, tokenizer=tok,
                 text_encoder_2=t5, tokenizer_2=tok2, transformer=transformer)
    if kind == "flux1-fill":
        return FluxFillPipeline(**parts)
    pipe = FluxPipeline(**parts)
    return FluxKontextPipeline.from_pipe(pipe) if kind == "flux1-kontext" else pipe


def _flux1_redux() -> Any:
    """FluxPriorReduxPipeline: a tiny SigLIP vision tower + ReduxImageEncoder, no text parts."""
    from diffusers import FluxPriorReduxPipeline
    from diffusers.pipelines.flux.modeling_flux import ReduxImageEncoder
    from transformers import SiglipVisionConfig, SiglipVisionModel
    from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil

    encoder = SiglipVisionModel(SiglipVisionConfig(
        hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        image_size=32, patch_size=8))
    embedder = ReduxImageEncoder(redux_dim=16, txt_in_features=32)  # = FLUX.1 tiny joint dim
    _eval(encoder, embedder)
    processor = SiglipImageProcessorPil(size={"height": 32, "width": 32})
    return FluxPriorReduxPipeline(image_encoder=encoder, feature_extractor=processor, image_embedder=embedder)


def _flux2_vae() -> Any:
    from diffusers import AutoencoderKLFlux2

    return AutoencoderKLFlux2(
        block_out_channels=(8, 8, 8, 8), layers_per_block=1, latent_channels=4, norm_num_groups=4,
        sample_size=64, use_quant_conv=False, use_post_quant_conv=False)


def _flux2_transformer(text_hidden: int, guidance: bool) -> Any:
    from diffusers import Flux2Transformer2DModel

    return Flux2Transformer2DModel(
        patch_size=1, in_channels=16, num_layers=1, num_single_layers=1, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=3 * text_hidden,  # 3 stacked hidden-state layers
        timestep_guidance_channels=256, axes_dims_rope=[4, 4, 4, 4], guidance_embeds=guidance)


def _flux2_klein() -> Any:
    from diffusers import Flux2KleinPipeline
    from transformers import Qwen3Config, Qwen3ForCausalLM

    tok = tiny_qwen_tokenizer()
    hidden = 16
    # 27 layers so the default text_encoder_out_layers=(9, 18, 27) work unchanged.
    text_encoder = Qwen3ForCausalLM(Qwen3Config(
        vocab_size=len(tok), hidden_size=hidden, intermediate_size=32, num_hidden_layers=27,
        num_attention_heads=2, num_key_value_heads=2, head_dim=8, max_position_embeddings=512,
        pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, tie_word_embeddings=True))
    transformer = _flux2_transformer(hidden, guidance=False)
    vae = _flux2_vae()
    _eval(text_encoder, transformer, vae)
    return Flux2KleinPipeline(scheduler=flux_scheduler(), vae=vae, text_encoder=text_encoder,
                              tokenizer=tok, transformer=transformer, is_distilled=False)


def _flux2_dev() -> Any:
    from diffusers import Flux2Pipeline
    from transformers import (
        Mistral3Config,
        Mistral3ForConditionalGeneration,
        MistralConfig,
        PixtralVisionConfig,
    )

    tok = tiny_mistral_tokenizer()
    hidden = 16
    text_config = MistralConfig(
        vocab_size=len(tok), hidden_size=hidden, intermediate_size=32, num_hidden_layers=30,
        num_attention_heads=2, num_key_value_heads=2, head_dim=8, max_position_embeddings=1024,
        pad_token_id=0, bos_token_id=1, eos_token_id=2)
    vision_config = PixtralVisionConfig(  # type: ignore[call-arg]
        hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, head_dim=8,
        image_size=32, patch_size=8)
    text_encoder = Mistral3ForConditionalGeneration(Mistral3Config(
        text_config=text_config, vision_config=vision_config, tie_word_embeddings=False))
    transformer = _flux2_transformer(hidden, guidance=True)
    vae = _flux2_vae()
    _eval(text_encoder, transformer, vae)
    return Flux2Pipeline(scheduler=flux_scheduler(), vae=vae, text_encoder=text_encoder,
                         tokenizer=tok, transformer=transformer)


def build_tiny_pipeline(kind: str, seed: int = 0) -> Any:
    """A tiny random-weight pipeline of `kind` (see TINY_KINDS); same seed, same weights."""
    import torch

    if kind not in TINY_KINDS:
        raise ValueError(f"unknown tiny pipeline kind {kind!r}; choose one of {', '.join(TINY_KINDS)}")
    torch.manual_seed(seed)
    if kind == "flux1-redux":
        pipe = _flux1_redux()
    elif kind == "flux2-klein":
        pipe = _flux2_klein()
    elif kind == "flux2-dev":
        pipe = _flux2_dev()
    else:
        pipe = _flux1(kind)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def save_tiny_pipeline(kind: str, path: str | Path, seed: int = 0) -> Path:
    """Build a tiny pipeline and `save_pretrained` it, so it loads like real downloaded weights."""
    path = Path(path)
    build_tiny_pipeline(kind, seed).save_pretrained(str(path))
    return path


def save_tiny_lora(
    path: str | Path, *, kind: str = "flux1-dev", rank: int = 4, seed: int = 1, weight_name: str | None = None
) -> Path:
    """Write a random LoRA (safetensors, keys `transformer.*`) that fits the tiny `kind` transformer.

    Returns the path of the .safetensors file. With `init_lora_weights=False` the adapter is
    non-zero, so loading it visibly changes the output.
    """
    import torch
    from diffusers import FluxPipeline
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    path = Path(path)
    folder, name = (path.parent, path.name) if path.suffix == ".safetensors" else (path, weight_name)
    name = name or "tiny_lora.safetensors"
    pipe = build_tiny_pipeline(kind)
    torch.manual_seed(seed)
    pipe.transformer.add_adapter(LoraConfig(
        r=rank, lora_alpha=rank, target_modules=["to_q", "to_k", "to_v", "to_out.0"], init_lora_weights=False))
    layers = get_peft_model_state_dict(pipe.transformer)
    folder.mkdir(parents=True, exist_ok=True)
    FluxPipeline.save_lora_weights(str(folder), transformer_lora_layers=layers, weight_name=name)
    return folder / name
