"""The VideoCrafter2 UNet: checkpoint-compatible keys, config round trip, and the fps conditioning law."""

from __future__ import annotations

import json

import pytest
import torch
from diffusers import UNet3DConditionModel
from diffusers.models.embeddings import get_timestep_embedding
from safetensors.torch import load_file

from ivmixed_videocrafter2 import VideoCrafter2UNet
from ivmixed_videocrafter2.unet import FPS_STATE_DICT_KEYS

# The fps parameters of the public diffusers-format checkpoint (adamdad/videocrafterv2_diffusers), named as
# in ViCo's port, Adamdad/vico: vico/video_crafter_diffusers/unet_3d_videocrafter.py (``self.fps_embedding =
# TimestepEmbedding(...)``; ``fps_proj`` is a parameter-free ``Timesteps``).
PUBLIC_FPS_KEYS = [
    "fps_embedding.linear_1.weight",
    "fps_embedding.linear_1.bias",
    "fps_embedding.linear_2.weight",
    "fps_embedding.linear_2.bias",
]

TINY = dict(
    sample_size=8,
    in_channels=4,
    out_channels=4,
    down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"),
    up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"),
    block_out_channels=(32, 64),
    layers_per_block=1,
    cross_attention_dim=32,
    attention_head_dim=8,
    norm_num_groups=32,
)


def tiny_unet(**overrides) -> VideoCrafter2UNet:
    torch.manual_seed(0)
    return VideoCrafter2UNet(**{**TINY, **overrides}).eval()


def inputs(batch: int = 1, frames: int = 3, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    sample = torch.randn(batch, 4, frames, 8, 8, generator=g)
    text = torch.randn(batch, 5, 32, generator=g)
    return sample, torch.tensor(500), text


@torch.no_grad()
def run(unet, *, fps=24, batch=1):
    sample, t, text = inputs(batch)
    if isinstance(unet, VideoCrafter2UNet):
        return unet(sample, t, text, fps=fps).sample
    return unet(sample, t, text).sample


def assert_same_model_output(loaded, original, **run_options):
    """A reloaded model computes what the original does, up to float32 summation order.

    ``from_pretrained`` keeps the weights where safetensors maps them: views into the file, 8-byte aligned
    (the format's guarantee) where a fresh model's weights are 64-byte aligned. MKL's matrix-vector kernel
    sums in a different order for a weight that is not 16-byte aligned, so the outputs may differ by a few
    float32 ulps (1.3e-6 measured on outputs of size 1.3). The weights themselves are bit-identical, and
    copied into fresh memory the reloaded model's output is too. The tolerance is torch's float32 default
    for ``assert_close``, about 80 ulps at 1.0.
    """
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), original.state_dict().values()))
    assert list(loaded.state_dict()) == list(original.state_dict())
    torch.testing.assert_close(run(loaded, **run_options), run(original, **run_options), rtol=1.3e-6, atol=1e-5)


def test_save_pretrained_from_pretrained_round_trip(tmp_path):
    unet = tiny_unet()
    unet.save_pretrained(tmp_path)
    loaded = VideoCrafter2UNet.from_pretrained(tmp_path).eval()
    assert loaded.config.fps_cond is True
    assert json.loads((tmp_path / "config.json").read_text())["fps_cond"] is True
    assert_same_model_output(loaded, unet)


def test_reloaded_weights_in_fresh_memory_compute_bit_identically(tmp_path):
    """The only difference a reload makes is where the weights lie: copied into fresh memory, the output is equal."""
    unet = tiny_unet()
    unet.save_pretrained(tmp_path)
    loaded = VideoCrafter2UNet.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        for parameter in loaded.parameters():
            parameter.data = parameter.data.clone()
    assert torch.equal(run(loaded), run(unet))


def test_saved_safetensors_load_strictly_into_a_fresh_model(tmp_path):
    tiny_unet().save_pretrained(tmp_path)
    state = load_file(tmp_path / "diffusion_pytorch_model.safetensors")
    assert set(PUBLIC_FPS_KEYS) <= set(state)
    fresh = VideoCrafter2UNet(**TINY)
    result = fresh.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys


def test_only_extra_keys_are_the_public_fps_keys():
    ours = tiny_unet().state_dict()
    plain = UNet3DConditionModel(**TINY).state_dict()
    assert set(PUBLIC_FPS_KEYS) <= set(ours)
    assert set(ours) - set(plain) == set(PUBLIC_FPS_KEYS) == set(FPS_STATE_DICT_KEYS)
    assert set(plain) <= set(ours)
    # Same widths as time_embedding: Linear(C, 4C) then Linear(4C, 4C), C = block_out_channels[0].
    assert ours["fps_embedding.linear_1.weight"].shape == (128, 32)
    assert ours["fps_embedding.linear_2.weight"].shape == (128, 128)


def test_released_style_config_loads(tmp_path):
    """A config naming ViCo's class and without ``fps_cond``/``time_cond_proj_dim`` loads with fps on."""
    unet = tiny_unet()
    unet.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["_class_name"] = "UNet3DVideoCrafterConditionModel"
    del config["fps_cond"], config["time_cond_proj_dim"]
    (tmp_path / "config.json").write_text(json.dumps(config))
    loaded = VideoCrafter2UNet.from_pretrained(tmp_path).eval()
    assert loaded.config.fps_cond is True
    assert_same_model_output(loaded, unet)


def test_fps_changes_the_output():
    unet = tiny_unet()
    assert not torch.allclose(run(unet, fps=8), run(unet, fps=24))


@pytest.mark.parametrize(
    "fps", [24.0, torch.tensor(24), torch.tensor([24]), torch.tensor([24.0]), torch.tensor([24, 24])]
)
def test_fps_int_and_tensor_forms_agree(fps):
    unet = tiny_unet()
    assert torch.equal(run(unet, fps=fps, batch=2), run(unet, fps=24, batch=2))


def test_per_clip_fps_equals_clips_run_separately():
    unet = tiny_unet()
    sample, t, text = inputs(batch=2)
    with torch.no_grad():
        both = unet(sample, t, text, fps=torch.tensor([8, 24])).sample
        first = unet(sample[:1], t, text[:1], fps=8).sample
        second = unet(sample[1:], t, text[1:], fps=24).sample
    torch.testing.assert_close(both, torch.cat([first, second]))


def test_fps_embedding_is_added_to_the_time_embedding():
    """emb = time_embedding(sin(t)) + fps_embedding(sin(fps)): same as shifting time_embedding's last bias."""
    unet = tiny_unet()
    sinusoid = get_timestep_embedding(torch.tensor([12.0]), 32, flip_sin_to_cos=True, downscale_freq_shift=0)
    with torch.no_grad():
        shift = unet.fps_embedding(sinusoid)[0]
    plain = UNet3DConditionModel(**TINY).eval()
    plain.load_state_dict({k: v for k, v in unet.state_dict().items() if not k.startswith("fps_")})
    with torch.no_grad():
        plain.time_embedding.linear_2.bias += shift
    torch.testing.assert_close(run(unet, fps=12), run(plain), rtol=1e-5, atol=1e-5)


def test_fps_cond_false_is_the_stock_model(tmp_path):
    plain = UNet3DConditionModel(**TINY).eval()
    plain.save_pretrained(tmp_path)
    ours = VideoCrafter2UNet.from_pretrained(tmp_path, fps_cond=False).eval()
    assert ours.fps_embedding is None
    assert set(ours.state_dict()) == set(plain.state_dict())
    assert_same_model_output(ours, plain, fps=8)  # fps is ignored; a reload: equal up to summation order (see assert_same_model_output)

    fresh = VideoCrafter2UNet(**TINY, fps_cond=False)
    fresh.load_state_dict(plain.state_dict(), strict=True)
    assert torch.equal(run(fresh.eval()), run(plain))


def test_fps_none_is_refused_when_conditioned():
    with pytest.raises(ValueError, match=r"fps=None, but this UNet is conditioned on the frame rate"):
        run(tiny_unet(), fps=None)


def test_fps_of_the_wrong_length_is_refused():
    with pytest.raises(ValueError, match=r"fps must be a number or a tensor of shape \(1,\) or \(2,\)"):
        run(tiny_unet(), fps=torch.tensor([8, 16, 24]), batch=2)


def test_no_hook_is_left_behind():
    unet = tiny_unet()
    run(unet, fps=8)
    with pytest.raises(ValueError):
        run(unet, fps=None)
    assert not unet.time_embedding._forward_hooks
