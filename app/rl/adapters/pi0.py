"""pi0 and pi0.5 (LeRobot `PI0Policy` / `PI05Policy`) as FlowPolicies.

Prefix = images + language (pi0.5 also has the discretised state inside its language tokens, written by
its pre-processor); pi0 feeds the continuous state to the action expert as a suffix token through
`state_proj`. `encode` runs the prefix exactly as `sample_actions` does; `velocity` calls the model's
`denoise_step` (which clones the prefix KV cache itself, so a context is reusable and differentiable).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from app.rl.adapters.base import LeRobotVLAAdapter, NoiseFeatures, ValueSource, VLAContext, params_of

LANG_TOKENS = "observation.language.tokens"
LANG_MASK = "observation.language.attention_mask"


class PI0Adapter(LeRobotVLAAdapter):
    """FlowPolicy over a LeRobot PI0Policy or PI05Policy (`is_pi05` is read from the inner model).

    Groups: "expert" (Gemma action expert without its unused LM head, action/time projections, and for
    pi0 `state_proj`), "vlm" (PaliGemma: SigLIP + projector + Gemma; frozen by default). The expert's
    `lm_head` (vocabulary-sized, never used by the flow) is in no group, so PI-RL keeps it frozen.

    Value features default to the reference's choice: the action expert for pi0, the VLM prefix for pi0.5.
    """

    def __init__(
        self,
        policy: nn.Module,
        *,
        noise_features: NoiseFeatures = "token",
        value_source: ValueSource | None = None,
    ) -> None:
        self.is_pi05 = type(policy.model).__name__ == "PI05Pytorch"
        if value_source is None:
            value_source = "prefix" if self.is_pi05 else "expert"
        super().__init__(policy, noise_features=noise_features, value_source=value_source)

    @property
    def vlm_width(self) -> int:
        return self.model.paligemma_with_expert.paligemma.config.text_config.hidden_size

    def encode(self, obs: dict[str, Any]) -> VLAContext:
        need = [LANG_TOKENS, LANG_MASK] + ([] if self.is_pi05 else ["observation.state"])
        missing = [k for k in need if k not in obs]
        if missing:
            raise KeyError(
                f"{'pi05' if self.is_pi05 else 'pi0'} observation batch lacks {missing}; run the policy's "
                f"pre-processor (with a tokenizer object) or add the tokens yourself (tiny.tokenize)"
            )
        from lerobot.policies.common.vla_utils import make_att_2d_masks, prepare_attention_masks_4d

        images, img_masks = self.policy._preprocess_images(obs)  # noqa: SLF001
        state = None if self.is_pi05 else self.policy.prepare_state(obs)
        m = self.model
        pwe = m.paligemma_with_expert
        prefix_embs, prefix_pad_masks, prefix_att_masks = m.embed_prefix(
            images, img_masks, obs[LANG_TOKENS], obs[LANG_MASK]
        )
        prefix_att_2d_masks = make_att_2d_masks(prefix_pad_masks, prefix_att_masks)
        prefix_position_ids = torch.cumsum(prefix_pad_masks, dim=1) - 1
        prefix_att_2d_masks_4d = prepare_attention_masks_4d(prefix_att_2d_masks)
        pwe.paligemma.model.language_model.config._attn_implementation = "eager"  # noqa: SLF001 (as LeRobot)
        lm = pwe.paligemma.model.language_model
        # With gradient checkpointing on (LeRobot's pi0 memory option) HF drops use_cache in training
        # mode, which would lose the prefix cache; checkpointing only matters for the expert anyway.
        ckpt, lm.gradient_checkpointing = getattr(lm, "gradient_checkpointing", False), False
        try:
            (prefix_out, _), past_key_values = pwe.forward(
                attention_mask=prefix_att_2d_masks_4d,
                position_ids=prefix_position_ids,
                past_key_values=None,
                inputs_embeds=[prefix_embs, None],
                use_cache=True,
            )
        finally:
            lm.gradient_checkpointing = ckpt
        return VLAContext(prefix_pad_masks, past_key_values, prefix_out, state=state)

    def _denoise(self, ctx: VLAContext, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        kwargs = dict(
            prefix_pad_masks=ctx.prefix_pad_masks, past_key_values=ctx.past_key_values, x_t=x_t, timestep=t
        )
        if not self.is_pi05:
            kwargs["state"] = ctx.state
        return self.model.denoise_step(**kwargs)

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        m = self.model
        pwe = m.paligemma_with_expert
        heads = [m.action_in_proj, m.action_out_proj]
        heads += (
            [m.time_mlp_in, m.time_mlp_out]
            if self.is_pi05
            else [m.state_proj, m.action_time_mlp_in, m.action_time_mlp_out]
        )
        return {
            "expert": params_of(pwe.gemma_expert.model, *heads),
            "vlm": params_of(pwe.paligemma),
        }
