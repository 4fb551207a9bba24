"""Tiny random diffusers components, saved in the exact folder layouts the real models use.

Everything is built in code (no download): a CLIP tokenizer from a vocab.json/merges.txt written here,
tiny CLIP text encoders, VAEs, 2-D / motion / 3-D UNets and motion adapters. The builders write the
same layouts as the hub repositories, so tests load them through the backbones' real ``--model`` /
``--image-model`` path:

- an SD1.5 pipeline folder (``model_index.json``, ``unet/``, ``vae/``, ``text_encoder/``, ``tokenizer/``, ``scheduler/``);
- a motion-adapter folder (``config.json`` + ``diffusion_pytorch_model.safetensors``);
- a saved ``AnimateDiffPipeline`` folder (SD base and motion adapter in one);
- a ``TextToVideoSDPipeline`` folder (ModelScope layout);
- a bare UNet folder, a single-file ``.safetensors`` UNet and a pickled (``.bin``) UNet folder.

Sizes: 32×32 pixels → 4×4 latents (the VAE down-samples by 8, like the real one), 4 latent channels.
"""

from __future__ import annotations

import json
import string
from dataclasses import dataclass
from pathlib import Path

import torch

TEXT_DIM = 32  # hidden size of the tiny "CLIP-L" text encoders (768 in SD1.5)
MS_TEXT_DIM = 24  # hidden size of the tiny ModelScope text encoder (1024 in the real one)
MAX_TOKENS = 77

#: the SD1.5 noise table (scaled_linear 0.00085 → 0.012); DDIM conventions of the released configs
SD_SCHEDULER = dict(
    num_train_timesteps=1000,
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    clip_sample=False,
    set_alpha_to_one=False,
    steps_offset=1,
)


# -- tokenizer and text encoder ------------------------------------------------------------------------


def write_tiny_tokenizer(folder: Path) -> Path:
    """A CLIP BPE tokenizer over single characters plus a few merges, written as vocab.json + merges.txt."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab: dict[str, int] = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for ch in string.ascii_lowercase + string.digits + ".,!?'-":
        vocab.setdefault(ch, len(vocab))
        vocab.setdefault(ch + "</w>", len(vocab))
    merges = ["t h", "th e</w>", "a n", "an d</w>", "o r", "s e", "e s</w>"]
    for pair in merges:
        vocab.setdefault(pair.replace(" ", ""), len(vocab))
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    (folder / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "CLIPTokenizer",
                "model_max_length": MAX_TOKENS,
                "bos_token": "<|startoftext|>",
                "eos_token": "<|endoftext|>",
                "unk_token": "<|endoftext|>",
                "pad_token": "<|endoftext|>",
            }
        )
    )
    return folder


def tiny_tokenizer():
    """The tokenizer object (its files are written again, as vocab.json/merges.txt, by :func:`_use_legacy_tokenizer_files`)."""
    import tempfile

    from transformers import CLIPTokenizer

    with tempfile.TemporaryDirectory() as tmp:
        return CLIPTokenizer.from_pretrained(str(write_tiny_tokenizer(Path(tmp))))


def _use_legacy_tokenizer_files(pipeline_folder: Path) -> None:
    """Hub SD repositories ship vocab.json + merges.txt (no tokenizer.json): write the tokenizer folder that way."""
    import shutil

    shutil.rmtree(pipeline_folder / "tokenizer")
    write_tiny_tokenizer(pipeline_folder / "tokenizer")


def tiny_text_encoder(hidden: int = TEXT_DIM, seed: int = 0, vocab_size: int = 128):
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    config = CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=MAX_TOKENS,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
        projection_dim=hidden,
    )
    return CLIPTextModel(config).eval()


# -- VAE and UNets ----------------------------------------------------------------------------------------


def tiny_vae(seed: int = 0, **overrides):
    """Four blocks, so the VAE factor is 8 like SD's (32 px → 4 latents); ``overrides`` change config values."""
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 8, 8, 8),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=32,
        **overrides,
    ).eval()


def tiny_unet2d(*, cross_attention_dim: int = TEXT_DIM, in_channels: int = 4, sample_size: int = 4, seed: int = 0):
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    return UNet2DConditionModel(
        sample_size=sample_size,
        in_channels=in_channels,
        out_channels=in_channels,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        block_out_channels=(8, 16),
        layers_per_block=1,
        cross_attention_dim=cross_attention_dim,
        attention_head_dim=4,
        norm_num_groups=4,
    ).eval()


def tiny_motion_adapter(seed: int = 0, **overrides):
    from diffusers import MotionAdapter

    torch.manual_seed(seed)
    return MotionAdapter(
        block_out_channels=(8, 16),
        motion_layers_per_block=1,
        motion_num_attention_heads=2,
        motion_norm_num_groups=4,
        motion_max_seq_length=32,
        **overrides,
    ).eval()


def tiny_unet3d(*, cross_attention_dim: int = MS_TEXT_DIM, seed: int = 0):
    from diffusers import UNet3DConditionModel

    torch.manual_seed(seed)
    return UNet3DConditionModel(
        sample_size=4,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"),
        up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"),
        block_out_channels=(8, 16),
        layers_per_block=1,
        cross_attention_dim=cross_attention_dim,
        attention_head_dim=4,
        norm_num_groups=4,
    ).eval()


def _scheduler(kind: str = "pndm", **overrides):
    from diffusers import DDIMScheduler, PNDMScheduler

    config = {**SD_SCHEDULER, **overrides}
    if kind == "pndm":  # SD1.5 repositories ship a PNDM config; the backbones build DDIM from it
        config.pop("clip_sample")
        return PNDMScheduler(skip_prk_steps=True, **config)
    return DDIMScheduler(**config)


# -- folders -------------------------------------------------------------------------------------------------


def save_sd15(folder: Path, *, seed: int = 0, unet_sample_size: int = 4, scheduler_overrides: dict | None = None) -> Path:
    """An SD1.5-layout pipeline folder (what ``stable-diffusion-v1-5/stable-diffusion-v1-5`` looks like)."""
    from diffusers import StableDiffusionPipeline

    folder = Path(folder)
    pipe = StableDiffusionPipeline(
        vae=tiny_vae(seed),
        text_encoder=tiny_text_encoder(TEXT_DIM, seed),
        tokenizer=tiny_tokenizer(),
        unet=tiny_unet2d(sample_size=unet_sample_size, seed=seed),
        scheduler=_scheduler("pndm", **(scheduler_overrides or {})),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(str(folder))
    _use_legacy_tokenizer_files(folder)
    return folder


def save_motion_adapter(folder: Path, *, seed: int = 1) -> Path:
    tiny_motion_adapter(seed).save_pretrained(str(folder))
    return Path(folder)


def save_animatediff_pipeline(folder: Path, *, seed: int = 2) -> Path:
    """A saved ``AnimateDiffPipeline`` (SD base with the motion adapter, one folder)."""
    from diffusers import AnimateDiffPipeline

    folder = Path(folder)
    pipe = AnimateDiffPipeline(
        vae=tiny_vae(seed),
        text_encoder=tiny_text_encoder(TEXT_DIM, seed),
        tokenizer=tiny_tokenizer(),
        unet=tiny_unet2d(seed=seed),
        motion_adapter=tiny_motion_adapter(seed),
        scheduler=_scheduler("ddim"),
    )
    pipe.save_pretrained(str(folder))
    _use_legacy_tokenizer_files(folder)
    return folder


def save_modelscope(folder: Path, *, seed: int = 3) -> Path:
    """A ``TextToVideoSDPipeline`` folder (the layout of ``ali-vilab/text-to-video-ms-1.7b``)."""
    from diffusers import TextToVideoSDPipeline

    folder = Path(folder)
    pipe = TextToVideoSDPipeline(
        vae=tiny_vae(seed),
        text_encoder=tiny_text_encoder(MS_TEXT_DIM, seed),
        tokenizer=tiny_tokenizer(),
        unet=tiny_unet3d(seed=seed),
        scheduler=_scheduler("ddim"),
    )
    pipe.save_pretrained(str(folder))
    _use_legacy_tokenizer_files(folder)
    return folder


def save_unet_folder(
    folder: Path, *, seed: int = 4, in_channels: int = 4, cross_attention_dim: int = TEXT_DIM, safe: bool = True
) -> Path:
    """A bare UNet folder (``config.json`` + weights); ``safe=False`` writes pickled ``.bin`` weights."""
    unet = tiny_unet2d(in_channels=in_channels, cross_attention_dim=cross_attention_dim, seed=seed)
    unet.save_pretrained(str(folder), safe_serialization=safe)
    return Path(folder)


def save_unet_single_file(path: Path, *, seed: int = 5) -> Path:
    """A UNet as one ``.safetensors`` file with diffusers key names (no config beside it)."""
    from safetensors.torch import save_file

    unet = tiny_unet2d(seed=seed)
    save_file({k: v.contiguous() for k, v in unet.state_dict().items()}, str(path))
    return Path(path)


def save_peft_lora(path: Path, unet_folder: Path, *, seed: int = 6, rank: int = 4) -> Path:
    """A LoRA for the tiny image UNet, trained nowhere: peft adapters with random (non-zero) weights.

    Written with diffusers' ``save_lora_weights`` as one ``.safetensors`` file (diffusers key names).
    """
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    unet = UNet2DConditionModel.from_pretrained(str(unet_folder), subfolder="unet")
    torch.manual_seed(seed)
    config = LoraConfig(r=rank, lora_alpha=rank, target_modules=["to_q", "to_k", "to_v", "to_out.0"], init_lora_weights=False)
    unet.add_adapter(config)
    layers = get_peft_model_state_dict(unet)
    path = Path(path)
    StableDiffusionPipeline.save_lora_weights(str(path.parent), unet_lora_layers=layers, weight_name=path.name, safe_serialization=True)
    return path


def save_kohya_lora(path: Path, peft_lora: Path) -> Path:
    """The same LoRA as :func:`save_peft_lora`, renamed to the kohya / civitai key layout (``lora_unet_…``)."""
    from safetensors.torch import load_file, save_file

    out = {}
    for key, value in load_file(str(peft_lora)).items():
        # unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora_A.weight
        module, _, kind = key.removeprefix("unet.").rpartition(".lora_")
        name = "lora_unet_" + module.replace(".", "_")
        out[f"{name}.lora_{'down' if kind.startswith('A') else 'up'}.weight"] = value
        out[f"{name}.alpha"] = torch.tensor(float(value.shape[0] if kind.startswith("A") else value.shape[1]))
    save_file(out, str(path))
    return Path(path)


@dataclass(frozen=True)
class TinyModels:
    """Paths of every tiny model folder (see the module docstring)."""

    root: Path
    sd15: Path  # SD1.5 pipeline folder: the image model of both backbones, and an AnimateDiff base
    sd15_ms: Path  # SD1.5 folder whose UNet's sample_size (8) differs from the video latents (4): the ModelScope IDM
    motion_adapter: Path
    animatediff: Path  # saved AnimateDiffPipeline folder
    modelscope: Path  # TextToVideoSDPipeline folder
    image_unet: Path  # bare UNet folder
    image_unet_file: Path  # single .safetensors UNet
    image_unet_pickle: Path  # UNet folder with .bin weights only
    image_unet_8ch: Path  # UNet folder with 8 latent channels (incompatible)
    image_unet_wide: Path  # UNet folder expecting 24-wide text embeddings (incompatible with AnimateDiff's 32)
    sd15_other_betas: Path  # SD folder with a different noise table (incompatible)
    lora: Path  # peft LoRA for the image UNet (diffusers keys)
    lora_kohya: Path  # the same LoRA with kohya keys


def build_all(root: Path) -> TinyModels:
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    sd15 = save_sd15(root / "sd15", seed=10)
    models = TinyModels(
        root=root,
        sd15=sd15,
        sd15_ms=save_sd15(root / "sd15_ms", seed=11, unet_sample_size=8),
        motion_adapter=save_motion_adapter(root / "motion_adapter", seed=12),
        animatediff=save_animatediff_pipeline(root / "animatediff", seed=13),
        modelscope=save_modelscope(root / "modelscope", seed=14),
        image_unet=save_unet_folder(root / "image_unet", seed=15),
        image_unet_file=save_unet_single_file(root / "image_unet.safetensors", seed=16),
        image_unet_pickle=save_unet_folder(root / "image_unet_pickle", seed=17, safe=False),
        image_unet_8ch=save_unet_folder(root / "image_unet_8ch", seed=18, in_channels=8),
        image_unet_wide=save_unet_folder(root / "image_unet_wide", seed=21, cross_attention_dim=MS_TEXT_DIM),
        sd15_other_betas=save_sd15(root / "sd15_other_betas", seed=19, scheduler_overrides={"beta_end": 0.02}),
        lora=save_peft_lora(root / "loras" / "tiny_lora.safetensors", sd15, seed=20),
        lora_kohya=root / "loras" / "tiny_lora_kohya.safetensors",
    )
    save_kohya_lora(models.lora_kohya, models.lora)
    return models


if __name__ == "__main__":  # build the folders for a manual look: python tests/tiny_models.py OUT
    import sys

    print(build_all(Path(sys.argv[1] if len(sys.argv) > 1 else "tiny_models")))


# -- full-size random UNets (for the CUDA tests) -------------------------------------------------------------


def save_full_size(root: Path) -> dict[str, Path]:
    """Folders with the real architectures' UNets (SD1.5 2-D UNet, AnimateDiff motion adapter, ModelScope 3-D UNet)
    at full size and random fp16 weights; text encoders and VAEs stay tiny (with the real embedding widths).

    About 4 GB on disk. Returns ``{"sd15": …, "motion_adapter": …, "modelscope": …}``.
    """
    from diffusers import MotionAdapter, StableDiffusionPipeline, TextToVideoSDPipeline, UNet2DConditionModel, UNet3DConditionModel

    root = Path(root)
    torch.manual_seed(0)
    sd15 = StableDiffusionPipeline(
        vae=tiny_vae(0),
        text_encoder=tiny_text_encoder(768, 0),
        tokenizer=tiny_tokenizer(),
        unet=UNet2DConditionModel(sample_size=64, cross_attention_dim=768),  # the SD1.5 configuration
        scheduler=_scheduler("pndm"),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    ).to(torch.float16)
    sd15.save_pretrained(str(root / "sd15_full"))
    del sd15
    MotionAdapter().to(torch.float16).save_pretrained(str(root / "motion_adapter_full"))  # AnimateDiff v1-5 layout
    ms = TextToVideoSDPipeline(
        vae=tiny_vae(1),
        text_encoder=tiny_text_encoder(1024, 1),
        tokenizer=tiny_tokenizer(),
        unet=UNet3DConditionModel(sample_size=32),  # the ModelScope 1.7B configuration
        scheduler=_scheduler("ddim"),
    ).to(torch.float16)
    ms.save_pretrained(str(root / "modelscope_full"))
    for folder in ("sd15_full", "modelscope_full"):
        _use_legacy_tokenizer_files(root / folder)
    return {"sd15": root / "sd15_full", "motion_adapter": root / "motion_adapter_full", "modelscope": root / "modelscope_full"}


# -- flow-matching models: Wan 2.1 (and its image model) -----------------------------------------------------

WAN_TEXT_DIM = 32  # width of the tiny UMT5 encoder (4096 in Wan 2.1)

#: Wan 2.1's released scheduler configuration (UniPC on shifted flow sigmas)
WAN_SCHEDULER = dict(
    num_train_timesteps=1000,
    prediction_type="flow_prediction",
    use_flow_sigmas=True,
    flow_shift=3.0,
    solver_order=2,
)


def tiny_wan_transformer(*, seed: int = 0, num_layers: int = 2):
    from diffusers import WanTransformer3DModel

    torch.manual_seed(seed)
    return WanTransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=8,
        in_channels=16,
        out_channels=16,
        text_dim=WAN_TEXT_DIM,
        freq_dim=32,
        ffn_dim=32,
        num_layers=num_layers,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        rope_max_seq_len=32,
    )


def tiny_wan_vae(*, seed: int = 0):
    """A tiny ``AutoencoderKLWan``: 16 latent channels, ×8 in space, 4 frames per latent frame after the first."""
    from diffusers import AutoencoderKLWan

    torch.manual_seed(seed)
    return AutoencoderKLWan(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True])


def tiny_umt5(*, seed: int = 0, vocab_size: int = 128):
    from transformers import UMT5Config, UMT5EncoderModel

    torch.manual_seed(seed)
    config = UMT5Config(
        vocab_size=vocab_size, d_model=WAN_TEXT_DIM, d_kv=8, d_ff=32, num_layers=1, num_heads=2,
        relative_attention_num_buckets=8, relative_attention_max_distance=16, pad_token_id=1, eos_token_id=1,
    )
    return UMT5EncoderModel(config).eval()


def save_wan(folder: Path, *, seed: int = 30, scheduler: dict | None = None, num_layers: int = 2) -> Path:
    """A ``WanPipeline`` folder in the layout of ``Wan-AI/Wan2.1-T2V-1.3B-Diffusers`` with tiny random components
    (the tokenizer is the tiny CLIP one: the pipeline reads any tokenizer)."""
    from diffusers import UniPCMultistepScheduler, WanPipeline

    pipe = WanPipeline(
        tokenizer=tiny_tokenizer(),
        text_encoder=tiny_umt5(seed=seed),
        vae=tiny_wan_vae(seed=seed + 1),
        transformer=tiny_wan_transformer(seed=seed + 2, num_layers=num_layers),
        scheduler=UniPCMultistepScheduler(**(WAN_SCHEDULER if scheduler is None else scheduler)),
    )
    pipe.save_pretrained(str(folder))
    return Path(folder)


QWEN_TEXT_DIM = 16  # width of the tiny Qwen2.5-VL text model (3584 in Qwen-Image)

#: Qwen-Image's released scheduler configuration (flow matching with a resolution-dependent shift)
QWEN_IMAGE_SCHEDULER = dict(
    num_train_timesteps=1000,
    shift=1.0,
    use_dynamic_shifting=True,
    base_shift=0.5,
    max_shift=0.9,
    base_image_seq_len=256,
    max_image_seq_len=8192,
    time_shift_type="exponential",
)


def tiny_qwen_text_encoder(*, seed: int = 0, vocab_size: int = 128):
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    torch.manual_seed(seed)
    config = Qwen2_5_VLConfig(
        text_config={
            "hidden_size": QWEN_TEXT_DIM,
            "intermediate_size": 16,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "num_key_value_heads": 2,
            "rope_scaling": {"mrope_section": [1, 1, 2], "rope_type": "default", "type": "default"},
            "rope_theta": 1000000.0,
            "vocab_size": vocab_size,
            "bos_token_id": 0,
            "eos_token_id": 1,
        },
        vision_config={"depth": 1, "hidden_size": 16, "intermediate_size": 16, "num_heads": 2, "out_hidden_size": QWEN_TEXT_DIM},
        hidden_size=QWEN_TEXT_DIM,
        vocab_size=vocab_size,
        vision_start_token_id=vocab_size - 3,
        vision_end_token_id=vocab_size - 2,
        vision_token_id=vocab_size - 1,
        bos_token_id=0,
        eos_token_id=1,
    )
    return Qwen2_5_VLForConditionalGeneration(config).eval()


def save_qwen_image(folder: Path, *, seed: int = 40, vae_overrides: dict | None = None) -> Path:
    """A ``QwenImagePipeline`` folder in the layout of ``Qwen/Qwen-Image`` with tiny random components; its VAE has the
    Wan 2.1 latent normalisation unless ``vae_overrides`` changes it."""
    from diffusers import AutoencoderKLQwenImage, FlowMatchEulerDiscreteScheduler, QwenImagePipeline, QwenImageTransformer2DModel

    torch.manual_seed(seed)
    transformer = QwenImageTransformer2DModel(
        patch_size=2,
        in_channels=64,
        out_channels=16,
        num_layers=2,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=QWEN_TEXT_DIM,
        guidance_embeds=False,
        axes_dims_rope=(8, 4, 4),
    )
    torch.manual_seed(seed + 1)
    vae = AutoencoderKLQwenImage(
        base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True], **(vae_overrides or {})
    )
    pipe = QwenImagePipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(**QWEN_IMAGE_SCHEDULER),
        vae=vae,
        text_encoder=tiny_qwen_text_encoder(seed=seed + 2),
        tokenizer=tiny_tokenizer(),
        transformer=transformer,
    )
    pipe.save_pretrained(str(folder))
    return Path(folder)


# SDXL
# Tiny SDXL components in the layouts of ``stabilityai/stable-diffusion-xl-base-1.0`` and
# ``guoyww/animatediff-motion-adapter-sdxl-beta``: two text encoders (the second with a projection, giving the
# pooled embedding), a UNet with ``addition_embed_type="text_time"``, a VAE with SDXL's scaling factor and
# ``force_upcast``, an Euler scheduler config with SDXL's keys. The widths differ on purpose (16 + 24 = 40-wide
# text embeddings, a 20-wide pooled one) so that a mixed-up tensor cannot pass by accident.

SDXL_TEXT_DIM = 16  # hidden size of the tiny "CLIP-L" encoder (768 in SDXL)
SDXL_TEXT_2_DIM = 24  # hidden size of the tiny "OpenCLIP-bigG" encoder (1280 in SDXL)
SDXL_POOLED_DIM = 20  # projection size of the second encoder: the pooled embedding (1280 in SDXL)
SDXL_TIME_EMBED_DIM = 8  # addition_time_embed_dim (256 in SDXL)

#: the scheduler_config.json of the SDXL base repository (an Euler config with DDIM's leftover keys)
SDXL_SCHEDULER = dict(
    _class_name="EulerDiscreteScheduler",
    beta_end=0.012,
    beta_schedule="scaled_linear",
    beta_start=0.00085,
    clip_sample=False,
    interpolation_type="linear",
    num_train_timesteps=1000,
    prediction_type="epsilon",
    sample_max_value=1.0,
    set_alpha_to_one=False,
    skip_prk_steps=True,
    steps_offset=1,
    timestep_spacing="leading",
    trained_betas=None,
    use_karras_sigmas=False,
)


def tiny_sdxl_text_encoders(seed: int = 0):
    """``(text_encoder, text_encoder_2)``: a ``CLIPTextModel`` and a ``CLIPTextModelWithProjection``, as in SDXL."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    def config(hidden: int, projection: int) -> CLIPTextConfig:
        return CLIPTextConfig(
            vocab_size=128,
            hidden_size=hidden,
            intermediate_size=2 * hidden,
            num_hidden_layers=3,  # SDXL reads the penultimate hidden state
            num_attention_heads=4,
            max_position_embeddings=MAX_TOKENS,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
            projection_dim=projection,
        )

    torch.manual_seed(seed)
    first = CLIPTextModel(config(SDXL_TEXT_DIM, SDXL_TEXT_DIM)).eval()
    torch.manual_seed(seed + 1)
    second = CLIPTextModelWithProjection(config(SDXL_TEXT_2_DIM, SDXL_POOLED_DIM)).eval()
    return first, second


def tiny_sdxl_unet(*, seed: int = 0, in_channels: int = 4, cross_attention_dim: int = SDXL_TEXT_DIM + SDXL_TEXT_2_DIM):
    """An SDXL-architecture UNet: a plain block then a cross-attention block with two transformer layers,
    linear projections, and the ``text_time`` added embedding (6 time ids + the pooled text embedding)."""
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    return UNet2DConditionModel(
        sample_size=4,
        in_channels=in_channels,
        out_channels=in_channels,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        block_out_channels=(8, 16),
        layers_per_block=1,
        transformer_layers_per_block=(1, 2),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        cross_attention_dim=cross_attention_dim,
        addition_embed_type="text_time",
        addition_time_embed_dim=SDXL_TIME_EMBED_DIM,
        projection_class_embeddings_input_dim=6 * SDXL_TIME_EMBED_DIM + SDXL_POOLED_DIM,
        norm_num_groups=4,
    ).eval()


def tiny_sdxl_vae(seed: int = 0):
    """The tiny VAE with SDXL's scaling factor and ``force_upcast`` (the real SDXL VAE overflows in fp16)."""
    return tiny_vae(seed, scaling_factor=0.13025, force_upcast=True)


def tiny_sdxl_motion_adapter(seed: int = 0):
    """A motion adapter for :func:`tiny_sdxl_unet` (two blocks, no motion mid block, like the SDXL beta adapter)."""
    return tiny_motion_adapter(seed, use_motion_mid_block=False)


def _write_sdxl_tokenizers(folder: Path) -> None:
    """Both tokenizer folders as the SDXL repository ships them (vocab.json + merges.txt); the second pads with ``!``."""
    import shutil

    for name in ("tokenizer", "tokenizer_2"):
        shutil.rmtree(folder / name, ignore_errors=True)
        write_tiny_tokenizer(folder / name)
    config_file = folder / "tokenizer_2" / "tokenizer_config.json"
    config_file.write_text(json.dumps({**json.loads(config_file.read_text()), "pad_token": "!"}))


def save_sdxl(folder: Path, *, seed: int = 50, unet_overrides: dict | None = None, scheduler_overrides: dict | None = None) -> Path:
    """An SDXL pipeline folder (``model_index.json``, ``unet/``, ``vae/``, ``text_encoder/``, ``text_encoder_2/``,
    ``tokenizer/``, ``tokenizer_2/``, ``scheduler/``): the base, or a fine-tune when saved with another seed."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline

    folder = Path(folder)
    text_encoder, text_encoder_2 = tiny_sdxl_text_encoders(seed)
    pipe = StableDiffusionXLPipeline(
        vae=tiny_sdxl_vae(seed),
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tiny_tokenizer(),
        tokenizer_2=tiny_tokenizer(),
        unet=tiny_sdxl_unet(seed=seed, **(unet_overrides or {})),
        scheduler=EulerDiscreteScheduler.from_config({k: v for k, v in SDXL_SCHEDULER.items() if not k.startswith("_")}),
    )
    pipe.save_pretrained(str(folder))
    _write_sdxl_tokenizers(folder)
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps({**SDXL_SCHEDULER, **(scheduler_overrides or {})}, indent=2))
    return folder


def save_sdxl_motion_adapter(folder: Path, *, seed: int = 51) -> Path:
    tiny_sdxl_motion_adapter(seed).save_pretrained(str(folder))
    return Path(folder)


def save_sdxl_unet_folder(folder: Path, *, seed: int = 52, **overrides) -> Path:
    """A bare SDXL UNet folder (``config.json`` + ``diffusion_pytorch_model.safetensors``)."""
    tiny_sdxl_unet(seed=seed, **overrides).save_pretrained(str(folder))
    return Path(folder)


def save_sdxl_unet_single_file(path: Path, *, seed: int = 53) -> Path:
    """An SDXL UNet as one ``.safetensors`` file with diffusers key names (no config beside it)."""
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in tiny_sdxl_unet(seed=seed).state_dict().items()}, str(path))
    return Path(path)


def save_animatediff_sdxl_pipeline(folder: Path, *, seed: int = 58) -> Path:
    """A saved ``AnimateDiffSDXLPipeline`` (SDXL base with the motion modules in its UNet, and the adapter, one folder)."""
    from diffusers import AnimateDiffSDXLPipeline, EulerDiscreteScheduler, UNetMotionModel

    folder = Path(folder)
    base_unet, adapter = tiny_sdxl_unet(seed=seed), tiny_sdxl_motion_adapter(seed + 1)
    unet = UNetMotionModel.from_unet2d(base_unet, adapter)
    unet.add_embedding.load_state_dict(base_unet.add_embedding.state_dict())  # from_unet2d leaves it random
    text_encoder, text_encoder_2 = tiny_sdxl_text_encoders(seed)
    pipe = AnimateDiffSDXLPipeline(
        vae=tiny_sdxl_vae(seed),
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tiny_tokenizer(),
        tokenizer_2=tiny_tokenizer(),
        unet=unet,
        motion_adapter=adapter,
        scheduler=EulerDiscreteScheduler.from_config({k: v for k, v in SDXL_SCHEDULER.items() if not k.startswith("_")}),
    )
    pipe.save_pretrained(str(folder))
    _write_sdxl_tokenizers(folder)
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps(SDXL_SCHEDULER, indent=2))
    return folder


@dataclass(frozen=True)
class TinySDXLModels:
    """Paths of the tiny SDXL folders."""

    root: Path
    base: Path  # SDXL pipeline folder: the video model's base
    motion_adapter: Path  # SDXL motion adapter folder
    pipeline: Path  # saved AnimateDiffSDXLPipeline folder
    finetune: Path  # another SDXL pipeline folder (other weights): an image model
    image_unet: Path  # bare SDXL UNet folder
    image_unet_file: Path  # single .safetensors SDXL UNet
    image_unet_8ch: Path  # SDXL UNet folder with 8 latent channels (incompatible)
    image_unet_narrow: Path  # SDXL UNet folder expecting 32-wide text embeddings (incompatible with the 40-wide ones)
    other_betas: Path  # SDXL folder with another noise table (incompatible)


def build_sdxl(root: Path) -> TinySDXLModels:
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    return TinySDXLModels(
        root=root,
        base=save_sdxl(root / "sdxl_base", seed=50),
        motion_adapter=save_sdxl_motion_adapter(root / "sdxl_motion_adapter", seed=51),
        pipeline=save_animatediff_sdxl_pipeline(root / "animatediff_sdxl", seed=58),
        finetune=save_sdxl(root / "sdxl_finetune", seed=54),
        image_unet=save_sdxl_unet_folder(root / "sdxl_image_unet", seed=52),
        image_unet_file=save_sdxl_unet_single_file(root / "sdxl_image_unet.safetensors", seed=53),
        image_unet_8ch=save_sdxl_unet_folder(root / "sdxl_image_unet_8ch", seed=55, in_channels=8),
        image_unet_narrow=save_sdxl_unet_folder(root / "sdxl_image_unet_narrow", seed=56, cross_attention_dim=32),
        other_betas=save_sdxl(root / "sdxl_other_betas", seed=57, scheduler_overrides={"beta_end": 0.02}),
    )


# few-step
# AnimateDiff-Lightning and AnimateLCM in their repositories' layouts: Lightning publishes bare MotionAdapter state
# dicts, one file per step count; AnimateLCM a motion-adapter folder with its LCM LoRA of the base beside it.


def save_motion_adapter_config(folder: Path, *, seed: int = 0) -> Path:
    """Only the ``config.json`` of the tiny motion adapter (the architecture a Lightning file is loaded into)."""
    tiny_motion_adapter(seed).save_config(str(folder))
    return Path(folder)


def save_lightning(folder: Path, *, seed: int = 50, steps: tuple[int, ...] = (4,)) -> Path:
    """A folder laid out like ``ByteDance/AnimateDiff-Lightning``: ``animatediff_lightning_{N}step_diffusers.safetensors``
    for each N in ``steps``, each a tiny motion adapter's state dict (another random draw per N)."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for offset, n in enumerate(steps):
        adapter = tiny_motion_adapter(seed + offset)
        save_file({k: v.contiguous() for k, v in adapter.state_dict().items()}, str(folder / f"animatediff_lightning_{n}step_diffusers.safetensors"))
    return folder


def save_animatelcm(folder: Path, base: Path, *, seed: int = 60) -> Path:
    """A folder laid out like ``wangfuyun/AnimateLCM``: a motion adapter at the root and
    ``AnimateLCM_sd15_t2v_lora.safetensors``, a random LoRA of the SD1.5 ``base``'s UNet, beside it."""
    folder = save_motion_adapter(folder, seed=seed)
    save_peft_lora(folder / "AnimateLCM_sd15_t2v_lora.safetensors", base, seed=seed + 1)
    return folder
