"""SmolVLA (LeRobot `SmolVLAPolicy` / `VLAFlowMatching`) as a FlowPolicy.

Prefix = images + language + state (SmolVLA puts the state token in the VLM prefix, through
`state_proj`); the action expert cross/self-attends to the prefix KV cache. `encode` runs the prefix
exactly as `VLAFlowMatching.sample_actions` does; `velocity` calls `VLAFlowMatching.denoise_step`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from app.rl.adapters.base import LeRobotVLAAdapter, NoiseFeatures, ValueSource, VLAContext, params_of

LANG_TOKENS = "observation.language.tokens"
LANG_MASK = "observation.language.attention_mask"


def _fresh_cache(cache: Any) -> Any:
    """A new DynamicCache over the same prefix K/V tensors (no copy).

    SmolVLA's self-attention layers append the suffix K/V to the cache and crop it back afterwards, which
    mutates the cache object. Giving every velocity call its own object keeps calls independent (each one
    builds its own autograd graph, so with a frozen prefix callers may backward per step) and makes a
    context reusable."""
    from transformers import DynamicCache

    return DynamicCache(tuple((k, v, sw) for k, v, sw in cache))


class SmolVLAAdapter(LeRobotVLAAdapter):
    """FlowPolicy over a LeRobot SmolVLAPolicy.

    Groups: "expert" (action expert + action/time projections), "state_proj" (prefix-side: training it
    needs gradients through the frozen VLM forward, so it is separate), "vlm" (vision + connector + text
    model; frozen by default).
    """

    def __init__(
        self,
        policy: nn.Module,
        *,
        noise_features: NoiseFeatures = "token",
        value_source: ValueSource = "expert",
    ) -> None:
        if not policy.config.use_cache:
            raise ValueError("SmolVLAAdapter needs SmolVLAConfig.use_cache=True (the prefix KV cache)")
        super().__init__(policy, noise_features=noise_features, value_source=value_source)

    @property
    def vlm_width(self) -> int:
        return self.model.vlm_with_expert.config.text_config.hidden_size

    def encode(self, obs: dict[str, Any]) -> VLAContext:
        missing = [k for k in (LANG_TOKENS, LANG_MASK, "observation.state") if k not in obs]
        if missing:
            raise KeyError(
                f"SmolVLA observation batch lacks {missing}; run LeRobot's SmolVLA pre-processor (it tokenizes "
                f"the task) or add the tokens yourself (app.rl.adapters.tiny.tokenize)"
            )
        batch = self.policy._prepare_batch(dict(obs))  # noqa: SLF001 (aloha state decoding, if configured)
        images, img_masks = self.policy.prepare_images(batch)
        state = self.policy.prepare_state(batch)
        m = self.model
        from lerobot.policies.common.vla_utils import make_att_2d_masks

        prefix_embs, prefix_pad_masks, prefix_att_masks = m.embed_prefix(
            images, img_masks, batch[LANG_TOKENS], batch[LANG_MASK], state=state
        )
        prefix_att_2d_masks = make_att_2d_masks(prefix_pad_masks, prefix_att_masks)
        prefix_position_ids = torch.cumsum(prefix_pad_masks, dim=1) - 1
        (prefix_out, _), past_key_values = m.vlm_with_expert.forward(
            attention_mask=prefix_att_2d_masks,
            position_ids=prefix_position_ids,
            past_key_values=None,
            inputs_embeds=[prefix_embs, None],
            use_cache=m.config.use_cache,
        )
        return VLAContext(prefix_pad_masks, past_key_values, prefix_out)

    def _denoise(self, ctx: VLAContext, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.model.denoise_step(
            prefix_pad_masks=ctx.prefix_pad_masks,
            past_key_values=_fresh_cache(ctx.past_key_values),
            x_t=x_t,
            timestep=t,
        )

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        m = self.model
        vwe = m.vlm_with_expert
        expert_params = [p for n, p in vwe.lm_expert.named_parameters() if "lm_head" not in n]
        return {
            "expert": expert_params
            + params_of(m.action_in_proj, m.action_out_proj, m.action_time_mlp_in, m.action_time_mlp_out),
            "state_proj": params_of(m.state_proj),
            "vlm": params_of(vwe.vlm),
        }
