"""The conformance suite every backbone passes (see :mod:`ivmixed.testing`).

Subclass :class:`BackboneContract` in your plugin's tests, name your backbone and provide two pytest
fixtures::

    from ivmixed.testing import BackboneContract

    class TestMyBackbone(BackboneContract):
        name = "my-backbone"
        size = dict(frames=2, height=32, width=32, steps=3)   # small, so the suite runs in seconds

        @pytest.fixture(scope="class")
        @classmethod
        def options(cls, tmp_path_factory):
            # build_tiny_weights: your helper that saves tiny random weights (see ivmixed.testing.tiny)
            return {"model": build_tiny_weights(tmp_path_factory.mktemp("w")), "device": "cpu"}

pytest then runs every ``test_*`` method below against your backbone, through the registry, exactly as
users load it. A backbone that loads weights also subclasses :class:`MissingWeightsContract` and provides
a ``missing_options`` fixture: options pointing at weights that are not available here, and the model ids
the error must name::

    class TestMyBackbone(BackboneContract, MissingWeightsContract):
        ...
        @pytest.fixture(scope="class")
        @classmethod
        def missing_options(cls):
            return {"model": "someone/not-downloaded"}, ["someone/not-downloaded"]
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

import ivmixed
from ivmixed.backbones.base import Backbone

__all__ = ["BackboneContract", "MissingWeightsContract", "CountingScoreModel"]


class CountingScoreModel:
    """Wraps a score model and counts the network rows it evaluates (images for the IDM, clips for the VDM)."""

    def __init__(self, model, per_frame: bool):
        self.model, self.per_frame, self.rows = model, per_frame, 0

    def __call__(self, x: torch.Tensor, t: int, cond: Any) -> torch.Tensor:
        self.rows += x.shape[0] * (x.shape[2] if self.per_frame else 1)
        return self.model(x, t, cond)


def _is_stochastic(make_scheduler) -> bool:
    """Whether a scheduler's step draws noise: two generators, same input, different outputs."""
    outs = []
    for seed in (0, 1):
        scheduler = make_scheduler()
        scheduler.set_timesteps(3)
        t = scheduler.timesteps[0]
        x = torch.zeros(1, 4, 2, 2)
        outs.append(scheduler.step(torch.zeros_like(x), t, x, generator=torch.Generator().manual_seed(seed)).prev_sample)
    return not torch.equal(outs[0], outs[1])


class BackboneContract:
    """The conformance suite of a backbone (see the module docstring for how to use it)."""

    name: str = ""
    size: dict[str, int] = dict(frames=2, height=32, width=32, steps=3)
    prompts: tuple[str, str] | None = None  # two different prompts; default: the backbone's example prompt twice

    @pytest.fixture(scope="class")
    @classmethod
    def options(cls) -> dict[str, Any]:
        return {}

    @pytest.fixture(scope="class")
    @classmethod
    def backbone(cls, options) -> Backbone:
        if not cls.name:
            pytest.fail(f"{cls.__name__}: set `name = \"...\"` on the test class to the name your backbone is registered under")
        return ivmixed.load(cls.name, **options)

    def _prompts(self, backbone) -> tuple[str, str]:
        if self.prompts:
            return self.prompts
        example = getattr(backbone, "example_prompt", None) or "a video"
        return example, example

    def _generate(self, backbone, program="IV-IV", **kw):
        args = {**self.size, "program": program, "progress": False, "seed": 0, **kw}
        prompt = args.pop("prompt", self._prompts(backbone)[0])
        return backbone.generate(prompt, **args)

    # -- the contract --------------------------------------------------------------------------------

    def test_loads_through_the_registry(self, backbone):
        assert isinstance(backbone, Backbone)
        spec = ivmixed.registry.get_spec(self.name)
        assert spec.name == self.name
        assert backbone.name == self.name, (
            f"{type(backbone).__name__}.name is {backbone.name!r}, not {self.name!r}: set the class attribute "
            f"`name = {self.name!r}` on your Backbone subclass (manifests, messages and `ivmixed list` use it)"
        )

    def test_output_shape_and_dtype(self, backbone):
        video = self._generate(backbone)
        f, h, w = self.size["frames"], self.size["height"], self.size["width"]
        assert video.frames.shape == (1, f, h, w, 3)
        assert video.frames.dtype == np.float32
        assert np.isfinite(video.frames).all()
        assert video.frames.min() >= 0.0 and video.frames.max() <= 1.0
        assert video.latents.shape[0] == 1 and video.latents.shape[2] == f

    def test_deterministic_for_a_fixed_seed(self, backbone):
        a = self._generate(backbone, seed=11)
        b = self._generate(backbone, seed=11)
        c = self._generate(backbone, seed=12)
        assert torch.equal(a.latents, b.latents)
        assert not torch.equal(a.latents, c.latents)

    def test_batch_rows_are_independent(self, backbone, monkeypatch):
        """Two prompts in one batch give what each gives alone (no cross-talk in encoding, models or zigzag).

        A stochastic standard step (SDE solvers) draws its noise for the whole batch, so its rows cannot match
        single runs; for such backbones the check runs with a deterministic DDIM standard step on the same config.
        """
        if _is_stochastic(backbone.make_scheduler):
            from diffusers import DDIMScheduler

            config = backbone.make_scheduler().config
            monkeypatch.setattr(backbone, "make_scheduler", lambda: DDIMScheduler.from_config(config))
        p1, p2 = self._prompts(backbone)
        f, h, w = self.size["frames"], self.size["height"], self.size["width"]
        latents = backbone.initial_latents(2, f, h, w, torch.Generator("cpu").manual_seed(3))
        both = self._generate(backbone, prompt=[p1, p2], latents=latents, decode=False)
        alone = self._generate(backbone, prompt=p2, latents=latents[1:], decode=False)
        assert both.latents.shape[0] == 2
        torch.testing.assert_close(both.latents[1:].float(), alone.latents.float(), atol=2e-4, rtol=1e-3)

    def test_zigzag_changes_the_result(self, backbone):
        origin = self._generate(backbone, program="origin", decode=False)
        mixed = self._generate(backbone, program="IV-IV", decode=False)
        assert origin.latents.shape == mixed.latents.shape
        assert (origin.latents.float() - mixed.latents.float()).abs().max().item() > 1e-4

    @pytest.mark.parametrize("program", ["origin", "IV-IV", "RR-II", "VV-VV:nf", "IV-IV+VV-VV@i%3=2"])
    def test_cost_equals_counted_calls(self, backbone, program, monkeypatch):
        idm = CountingScoreModel(backbone.idm, per_frame=True)
        vdm = CountingScoreModel(backbone.vdm, per_frame=False)
        monkeypatch.setattr(backbone, "idm", idm)
        monkeypatch.setattr(backbone, "vdm", vdm)
        video = self._generate(backbone, program=program, decode=False)
        assert video.cost == {"idm_image_evals": idm.rows, "vdm_clip_evals": vdm.rows}

    def test_unknown_option_is_refused_before_loading(self):
        with pytest.raises(ValueError, match="does not take option"):
            ivmixed.load(self.name, no_such_option_anywhere=1)


class MissingWeightsContract:
    """For backbones that load weights: a clear error naming every missing model, before anything heavy loads.

    Provide a ``missing_options`` fixture returning ``(options, model_ids)``: options that point at weights
    that are not available here, and the model ids the error must name.
    """

    name: str = ""

    def test_clear_error_when_weights_are_missing(self, missing_options):
        options, model_ids = missing_options
        with pytest.raises(Exception) as info:
            ivmixed.load(self.name, **options)
        message = str(info.value)
        for model_id in model_ids:
            assert model_id in message, message
