"""The VideoCrafter2 video UNet: diffusers' ``UNet3DConditionModel`` plus frame-rate conditioning.

The public diffusers-format VideoCrafter2 weights (``adamdad/videocrafterv2_diffusers``, the port made for
ViCo) use the ModelScope/zeroscope UNet layout with one addition, and this class is that addition composed
onto the stock diffusers model, so the released state dict loads strictly and everything else (blocks,
attention processors, LoRA loading, offloading) is diffusers' own code.

Frame-rate conditioning. With ``C = block_out_channels[0]``, the clip's frame rate ``fps`` goes through the
same parameter-free sinusoidal projection as the timestep (``flip_sin_to_cos=True``, shift 0, width ``C``)
and through its own two-layer MLP ``fps_embedding`` (``Linear(C, 4C) -> SiLU -> Linear(4C, 4C)``, the
only new parameters). The result is added to the timestep embedding of each clip:

    emb = time_embedding(sinusoid(t)) + fps_embedding(sinusoid(fps))

and ``emb`` is then repeated for every frame, as in the stock model. ViCo adds the fps term after that
per-frame repeat instead; both orders give bit-identical results because the same per-clip vector is added
to every frame. The released runs pass ``fps=24``. With ``fps_cond=False`` the model is exactly
``UNet3DConditionModel``.
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers import UNet3DConditionModel
from diffusers.configuration_utils import register_to_config
from diffusers.models.embeddings import TimestepEmbedding, Timesteps

__all__ = ["DEFAULT_FPS", "FPS_STATE_DICT_KEYS", "VideoCrafter2UNet"]

from .spec import DEFAULT_FPS  # the frame rate the released VideoCrafter2 sampling runs condition on

FPS_STATE_DICT_KEYS = (
    "fps_embedding.linear_1.weight",
    "fps_embedding.linear_1.bias",
    "fps_embedding.linear_2.weight",
    "fps_embedding.linear_2.bias",
)
"""The state-dict keys the fps conditioning adds to ``UNet3DConditionModel`` (the projection has none)."""


class VideoCrafter2UNet(UNet3DConditionModel):
    r"""``UNet3DConditionModel`` with VideoCrafter2's frame-rate conditioning (see the module docstring).

    Every argument but ``fps_cond`` is passed to :class:`~diffusers.UNet3DConditionModel` unchanged; the
    defaults are VideoCrafter2's (which are also diffusers' defaults).

    Args:
        fps_cond (`bool`, defaults to `True`):
            Whether the model has the ``fps_proj``/``fps_embedding`` branch. ``False`` gives the stock model.
    """

    # Like ``time_embedding``, the fps MLP stays in the compute dtype under layerwise casting.
    _skip_layerwise_casting_patterns = [*UNet3DConditionModel._skip_layerwise_casting_patterns, "fps_embedding"]

    @register_to_config
    def __init__(
        self,
        sample_size: int | None = None,
        in_channels: int = 4,
        out_channels: int = 4,
        down_block_types: tuple[str, ...] = (
            "CrossAttnDownBlock3D",
            "CrossAttnDownBlock3D",
            "CrossAttnDownBlock3D",
            "DownBlock3D",
        ),
        up_block_types: tuple[str, ...] = (
            "UpBlock3D",
            "CrossAttnUpBlock3D",
            "CrossAttnUpBlock3D",
            "CrossAttnUpBlock3D",
        ),
        block_out_channels: tuple[int, ...] = (320, 640, 1280, 1280),
        layers_per_block: int = 2,
        downsample_padding: int = 1,
        mid_block_scale_factor: float = 1,
        act_fn: str = "silu",
        norm_num_groups: int | None = 32,
        norm_eps: float = 1e-5,
        cross_attention_dim: int = 1024,
        attention_head_dim: int | tuple[int] = 64,
        num_attention_heads: int | tuple[int] | None = None,
        time_cond_proj_dim: int | None = None,
        fps_cond: bool = True,
    ):
        super().__init__(
            sample_size=sample_size,
            in_channels=in_channels,
            out_channels=out_channels,
            down_block_types=down_block_types,
            up_block_types=up_block_types,
            block_out_channels=block_out_channels,
            layers_per_block=layers_per_block,
            downsample_padding=downsample_padding,
            mid_block_scale_factor=mid_block_scale_factor,
            act_fn=act_fn,
            norm_num_groups=norm_num_groups,
            norm_eps=norm_eps,
            cross_attention_dim=cross_attention_dim,
            attention_head_dim=attention_head_dim,
            num_attention_heads=num_attention_heads,
            time_cond_proj_dim=time_cond_proj_dim,
        )
        if fps_cond:
            width = block_out_channels[0]
            # Same construction as the parent's ``time_proj``/``time_embedding``; the names are the checkpoint's.
            self.fps_proj = Timesteps(width, flip_sin_to_cos=True, downscale_freq_shift=0)
            self.fps_embedding = TimestepEmbedding(width, 4 * width, act_fn=act_fn)
        else:
            self.fps_proj = None
            self.fps_embedding = None

    def embed_fps(self, fps: int | float | torch.Tensor, batch_size: int, device: torch.device) -> torch.Tensor:
        """The per-clip fps embedding, shape ``(batch_size, 4 * block_out_channels[0])``.

        ``fps`` is a number, a 0-d tensor, or a 1-d tensor of length 1 or ``batch_size``.
        """
        if self.fps_embedding is None:
            raise ValueError("embed_fps needs a model built with fps_cond=True; this one has fps_cond=False.")
        fps = torch.as_tensor(fps, device=device)
        if fps.ndim == 0:
            fps = fps[None]
        if fps.ndim != 1 or fps.shape[0] not in (1, batch_size):
            raise ValueError(
                f"fps must be a number or a tensor of shape (1,) or ({batch_size},) for a batch of "
                f"{batch_size} clips, got shape {tuple(fps.shape)}."
            )
        # The sinusoid is computed in float32 whatever the model dtype, as the parent does for timesteps.
        fps_emb = self.fps_proj(fps.expand(batch_size)).to(dtype=self.dtype)
        return self.fps_embedding(fps_emb)

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float | int,
        encoder_hidden_states: torch.Tensor,
        fps: int | float | torch.Tensor | None = DEFAULT_FPS,
        class_labels: torch.Tensor | None = None,
        timestep_cond: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        cross_attention_kwargs: dict[str, Any] | None = None,
        down_block_additional_residuals: tuple[torch.Tensor] | None = None,
        mid_block_additional_residual: torch.Tensor | None = None,
        return_dict: bool = True,
    ):
        """:meth:`UNet3DConditionModel.forward` with the clip frame rate ``fps`` (ignored if ``fps_cond=False``).

        ``fps`` is a number (the released runs use 24), a 0-d tensor, or one value per clip. The parent's
        forward runs unchanged; a forward hook on ``time_embedding`` adds :meth:`embed_fps` to the per-clip
        timestep embedding before the parent repeats it for every frame.
        """
        parent_kwargs = dict(
            class_labels=class_labels,
            timestep_cond=timestep_cond,
            attention_mask=attention_mask,
            cross_attention_kwargs=cross_attention_kwargs,
            down_block_additional_residuals=down_block_additional_residuals,
            mid_block_additional_residual=mid_block_additional_residual,
            return_dict=return_dict,
        )
        if not self.config.fps_cond:
            return super().forward(sample, timestep, encoder_hidden_states, **parent_kwargs)
        if fps is None:
            raise ValueError(
                "fps=None, but this UNet is conditioned on the frame rate (fps_cond=True); pass the clip's "
                f"frame rate, e.g. fps={DEFAULT_FPS} as in the released VideoCrafter2 runs."
            )
        fps_emb = self.embed_fps(fps, batch_size=sample.shape[0], device=sample.device)
        # Hooking the embedding keeps the parent's 150-line forward in diffusers instead of in a copy here.
        handle = self.time_embedding.register_forward_hook(lambda _module, _args, emb: emb + fps_emb)
        try:
            return super().forward(sample, timestep, encoder_hidden_states, **parent_kwargs)
        finally:
            handle.remove()
