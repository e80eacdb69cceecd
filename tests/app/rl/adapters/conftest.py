"""Tiny SmolVLA / pi0 / pi0.5 built offline once per test session, plus matching observation batches."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
import torch

TASKS = ["pick the red cube", "put the block in the bowl", "push the green box left"]


@dataclass
class Built:
    """One adapter under test with a batch it accepts and LeRobot's own sampler for comparison."""

    name: str
    adapter: Any
    obs: dict[str, torch.Tensor]

    def lerobot_sample(self, noise: torch.Tensor, num_steps: int) -> torch.Tensor:
        """LeRobot's own `sample_actions` (its ODE) for the same batch and noise."""
        pol, o = self.adapter.policy, self.obs
        tokens, mask = o["observation.language.tokens"], o["observation.language.attention_mask"]
        if self.name == "smolvla":
            old, pol.config.num_steps = pol.config.num_steps, num_steps
            try:
                imgs, masks = pol.prepare_images(o)
                return pol.model.sample_actions(imgs, masks, tokens, mask, pol.prepare_state(o), noise=noise)
            finally:
                pol.config.num_steps = old
        imgs, masks = pol._preprocess_images(o)  # noqa: SLF001
        if self.name == "pi0":
            return pol.model.sample_actions(
                imgs, masks, tokens, mask, pol.prepare_state(o), noise=noise, num_steps=num_steps
            )
        return pol.model.sample_actions(imgs, masks, tokens, mask, noise=noise, num_steps=num_steps)


def make_obs(policy: Any, tokenizer: Any, batch: int, seed: int = 1) -> dict[str, torch.Tensor]:
    from app.rl.adapters.tiny import tokenize

    g = torch.Generator().manual_seed(seed)
    obs: dict[str, torch.Tensor] = {"observation.state": torch.randn(batch, 6, generator=g)}
    for key, feat in policy.config.image_features.items():
        obs[key] = torch.rand(batch, *feat.shape, generator=g)
    obs.update(
        tokenize(tokenizer, [TASKS[i % len(TASKS)] for i in range(batch)], policy.config.tokenizer_max_length)
    )
    return obs


@pytest.fixture(scope="session", autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def smolvla_folder(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return tmp_path_factory.mktemp("smolvlm")


@pytest.fixture(scope="session", params=["smolvla", "pi0", "pi05"])
def built(request: pytest.FixtureRequest, smolvla_folder: Any) -> Built:
    from app.rl.adapters.pi0 import PI0Adapter
    from app.rl.adapters.smolvla import SmolVLAAdapter
    from app.rl.adapters.tiny import build_tiny_pi0, build_tiny_smolvla

    if request.param == "smolvla":
        from transformers import AutoProcessor

        policy = build_tiny_smolvla(smolvla_folder)
        tok = AutoProcessor.from_pretrained(smolvla_folder).tokenizer
        adapter = SmolVLAAdapter(policy)
    else:
        policy, tok = build_tiny_pi0(request.param)
        adapter = PI0Adapter(policy)
    return Built(request.param, adapter, make_obs(policy, tok, batch=3))
