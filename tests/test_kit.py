"""The public backbone kit (``ivmixed.backbones.diffusers``): the README's complete backbone, per-row conditioning, no private imports."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import ivmixed
from ivmixed.backbones.diffusers import UNetCond, UNetScore
from ivmixed.guidance import ImageOnVideo
from ivmixed.testing import BackboneContract, MissingWeightsContract  # noqa: F401 - the README's contract class uses them

pytestmark = pytest.mark.usefixtures("torch_single_thread")

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _guide_blocks() -> list[str]:
    start = README.index("\n## Write a backbone plugin\n")
    end = README.find("\n## ", start + 1)
    guide = README[start:end]
    return [re.sub(r"^ {3}", "", b, flags=re.M) for b in re.findall(r"```python\n(.*?)```", guide, flags=re.S)]


BACKBONE_CODE, SPEC_CODE, CONTRACT_CODE = _guide_blocks()

# the README's own conformance test class, collected here and run against the README's backbone
exec(compile(CONTRACT_CODE, "README: contract", "exec"), globals())


@pytest.fixture(scope="module", autouse=True)
def readme_backbone(tmp_path_factory):
    """The README's ``my_package`` (spec.py and backbone.py as printed), importable and registered as ``my-backbone``."""
    root = tmp_path_factory.mktemp("readme_plugin")
    package = root / "my_package"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "spec.py").write_text(SPEC_CODE)
    (package / "backbone.py").write_text(BACKBONE_CODE)
    sys.path.insert(0, str(root))
    from my_package.spec import SPEC

    ivmixed.register_backbone("my-backbone", SPEC)
    yield SPEC
    ivmixed.unregister_backbone("my-backbone")
    sys.path.remove(str(root))
    for name in [m for m in sys.modules if m == "my_package" or m.startswith("my_package.")]:
        del sys.modules[name]


def test_the_readme_backbone_is_well_under_100_lines():
    lines = [line for line in (BACKBONE_CODE + SPEC_CODE).splitlines() if line.strip()]
    print(f"README backbone + spec: {len(lines)} non-blank lines")
    assert len(lines) < 80


def test_the_readme_spec_is_light_and_carries_the_defaults(readme_backbone):
    assert readme_backbone.default_steps == 50 and readme_backbone.presets == ()
    from my_package.backbone import MyBackbone

    assert MyBackbone.defaults is readme_backbone.defaults


def test_the_loader_keywords_passed_on_with_double_star_show_in_the_signature(readme_backbone):
    import inspect

    from my_package.backbone import MyBackbone

    params = inspect.signature(MyBackbone).parameters
    assert list(params) == ["model", "image_model", "device", "dtype", "allow_pickle", "image_loras", "decode_chunk_size"]
    with pytest.raises(ValueError, match="does not take option.* decode_chunk; it takes: model, image_model, device"):
        ivmixed.load("my-backbone", decode_chunk=4)


@pytest.fixture(scope="module")
def mine(tiny_models):
    return ivmixed.load("my-backbone", model=str(tiny_models.modelscope), image_model=str(tiny_models.sd15_ms), device="cpu")


def test_the_readme_backbone_origin_equals_the_stock_pipeline(tiny_models, mine):
    from diffusers import DDIMScheduler, TextToVideoSDPipeline

    small = dict(frames=3, height=32, width=40, steps=4)
    video = mine.generate(["a red car", "a horse"], program="origin", seed=5, negative_prompt="blurry", progress=False, **small)
    stock = TextToVideoSDPipeline.from_pretrained(str(tiny_models.modelscope))
    stock.scheduler = DDIMScheduler.from_config(stock.scheduler.config, clip_sample=False, timestep_spacing="linspace", steps_offset=1)
    stock.set_progress_bar_config(disable=True)
    expected = stock(
        ["a red car", "a horse"],
        num_frames=3,
        height=32,
        width=40,
        num_inference_steps=4,
        guidance_scale=7.5,
        negative_prompt=["blurry"] * 2,
        generator=torch.Generator("cpu").manual_seed(5),
        output_type="np",
    ).frames
    difference = float(np.abs(np.asarray(expected) - video.frames).max())
    print(f"README backbone origin vs stock TextToVideoSDPipeline: max |Δ| = {difference:.3g}")
    assert video.frames.shape == np.asarray(expected).shape
    assert difference <= 1e-4


def test_the_readme_backbone_mixes_with_its_image_model(mine):
    kw = dict(seed=3, frames=2, height=32, width=32, steps=3, progress=False, decode=False)
    origin = mine.generate("a red car", program="origin", **kw).latents
    mixed = mine.generate("a red car", program="IV-IV", **kw).latents
    assert torch.isfinite(mixed).all() and (mixed - origin).abs().max() > 1e-4
    cond = mine.encode(["a red car"], [""])
    assert cond.idm.shape[-1] == 32 and cond.vdm.shape[-1] == 24  # each model reads its own text encoder
    assert mine.describe()["models"] == {"model": mine.locations["model"].source, "image_model": mine.locations["image_model"].source}


# -- per-row conditioning ----------------------------------------------------------------------------------


def _tiny_unet2d(**extra):
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    return UNet2DConditionModel(
        sample_size=4,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        block_out_channels=(8, 16),
        layers_per_block=1,
        cross_attention_dim=32,
        attention_head_dim=4,
        norm_num_groups=4,
        **extra,
    ).eval()


def _video(clips: int = 2, frames: int = 3) -> torch.Tensor:
    return torch.randn(clips, 4, frames, 4, 4, generator=torch.Generator().manual_seed(1))


def test_plain_embeddings_and_a_unet_cond_holding_them_give_the_same_bits(tiny_models):
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(str(tiny_models.image_unet)).eval()
    x, embeds = _video(), torch.randn(2, 77, 32, generator=torch.Generator().manual_seed(2))
    plain = ImageOnVideo(UNetScore(unet, repeat_cond=True))(x, 500, embeds)
    wrapped = ImageOnVideo(UNetScore(unet, repeat_cond=True))(x, 500, UNetCond(embeds))
    assert torch.equal(plain, wrapped)


def test_added_cond_kwargs_reach_the_unet_one_row_per_frame():
    """SDXL's pooled text embeddings and time ids: (2B, ·) rows repeated for every frame, as with the embeddings."""
    unet = _tiny_unet2d(addition_embed_type="text_time", addition_time_embed_dim=4, projection_class_embeddings_input_dim=8 + 6 * 4)
    gen = torch.Generator().manual_seed(3)
    x, embeds = _video(), torch.randn(2, 77, 32, generator=gen)
    pooled, time_ids = torch.randn(2, 8, generator=gen), torch.tensor([[32.0, 32, 0, 0, 32, 32], [64.0, 64, 0, 0, 64, 64]])
    cond = UNetCond(embeds, added_cond_kwargs={"text_embeds": pooled, "time_ids": time_ids})
    ours = ImageOnVideo(UNetScore(unet, repeat_cond=True))(x, 500, cond)

    frames = x.shape[2]
    images = x.permute(0, 2, 1, 3, 4).reshape(-1, 4, 4, 4)  # (B·F, C, h, w), frame index fastest
    with torch.no_grad():
        direct = unet(
            images,
            500,
            encoder_hidden_states=embeds.repeat_interleave(frames, 0),
            added_cond_kwargs={"text_embeds": pooled.repeat_interleave(frames, 0), "time_ids": time_ids.repeat_interleave(frames, 0)},
        ).sample
    assert torch.equal(ours, direct.reshape(2, frames, 4, 4, 4).permute(0, 2, 1, 3, 4))

    other = UNetCond(embeds, added_cond_kwargs={"text_embeds": pooled, "time_ids": time_ids.flip(0)})
    assert (ImageOnVideo(UNetScore(unet, repeat_cond=True))(x, 500, other) - ours).abs().max() > 1e-6  # the ids are read


def test_timestep_cond_and_extra_keywords_are_passed_on():
    """An LCM-style ``timestep_cond`` (one row per prompt) and a keyword that is not a row tensor (passed as it is)."""
    unet = _tiny_unet2d(time_cond_proj_dim=6)
    gen = torch.Generator().manual_seed(4)
    x, embeds, w = _video(), torch.randn(2, 77, 32, generator=gen), torch.randn(2, 6, generator=gen)
    score = ImageOnVideo(UNetScore(unet, repeat_cond=True))
    with_w = score(x, 400, UNetCond(embeds, timestep_cond=w, extra={"cross_attention_kwargs": None}))
    without = score(x, 400, UNetCond(embeds))
    frames = x.shape[2]
    images = x.permute(0, 2, 1, 3, 4).reshape(-1, 4, 4, 4)
    with torch.no_grad():
        direct = unet(images, 400, encoder_hidden_states=embeds.repeat_interleave(frames, 0), timestep_cond=w.repeat_interleave(frames, 0)).sample
    assert torch.equal(with_w, direct.reshape(2, frames, 4, 4, 4).permute(0, 2, 1, 3, 4))
    assert (with_w - without).abs().max() > 1e-6


def test_rows_that_do_not_pair_with_the_frames_are_refused():
    unet = _tiny_unet2d()
    with pytest.raises(ValueError, match="cannot pair 4 text embeddings with 6 network rows"):
        ImageOnVideo(UNetScore(unet, repeat_cond=True))(_video(2, 3), 500, UNetCond(torch.zeros(4, 77, 32)))


# -- one public kit: no private imports across packages ----------------------------------------------------------


def _imports(path: Path, package: str):
    """(imported module, imported names) of every import statement, the module made absolute."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, []
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            yield module, [alias.name for alias in node.names]


def _within(package: str, prefix: str) -> bool:
    return package == prefix or package.startswith(prefix + ".")


def _may_see(package: str, owner: str) -> bool:
    """A private module or name of package ``owner`` is for ``owner``'s own tree and the packages above it."""
    return _within(package, owner) or _within(owner, package)


def _private_imports(root: Path) -> list[str]:
    """Imports of a private module or name from a package that may not see it: a sibling, another distribution, a
    library (diffusers' private helpers change without notice)."""
    found = []
    for path in sorted(root.rglob("*.py")):
        package = ".".join(path.relative_to(root.parent).parts[:-1])
        for module, names in _imports(path, package):
            pieces = module.split(".")
            for i, piece in enumerate(pieces):  # a private module may be imported from its own package only
                if piece.startswith("_") and not piece.startswith("__") and not _may_see(package, ".".join(pieces[:i])):
                    found.append(f"{path.relative_to(root.parent)}: {module}")
            if not _may_see(package, module):  # likewise a private name
                found += [f"{path.relative_to(root.parent)}: {module}.{n}" for n in names if n.startswith("_") and not n.startswith("__")]
    return found


def test_no_module_imports_a_private_name_of_another_package():
    found = _private_imports(ROOT / "ivmixed") + _private_imports(ROOT / "plugins" / "ivmixed-videocrafter2" / "src" / "ivmixed_videocrafter2")
    found += _private_imports(ROOT / "benchmarks") + _private_imports(ROOT / "tools")  # the scripts too
    assert found == []


def test_the_private_import_check_can_fail(tmp_path):
    bad = tmp_path / "ivmixed_videocrafter2"
    bad.mkdir()
    (bad / "backbone.py").write_text(
        "from ivmixed.backbones._modelscope_impl import ModelScopeBackbone\nfrom ivmixed.backbones.base import _x\n"
        "from diffusers.utils.deprecation_utils import _resolve_dtype\nimport torch._dynamo\n"
    )
    assert len(_private_imports(bad)) == 4


def test_the_dtype_keyword_follows_the_diffusers_release(monkeypatch):
    import importlib.metadata

    from ivmixed.backbones.diffusers import dtype_keyword

    assert dtype_keyword() == "dtype"  # the pinned diffusers (constraints.txt) is 0.40 or later
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "0.39.0")
    assert dtype_keyword() == "torch_dtype"
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "0.40.0.dev0")
    assert dtype_keyword() == "torch_dtype"  # a pre-release of 0.40 is not yet 0.40


def test_every_public_name_of_the_kit_is_exported():
    import ivmixed.backbones.diffusers as kit

    for name in kit.__all__:
        assert getattr(kit, name) is not None
    assert {"DiffusersBackbone", "PairConfigs", "UNetCond", "UNetScore", "ModelRequest", "resolve_models", "load_text_encoder"} <= set(kit.__all__)
