"""Offline builders for SmolVLA, pi0 and pi0.5: tiny ones for tests, full-size random ones for benchmarks.

Nothing here touches a model hub. LeRobot insists on a few hub assets even without weights (SmolVLA reads
a SmolVLM config and processor from `vlm_model_name`; pi0/pi05 processors load the PaliGemma tokenizer),
so we write or build those ourselves (docs/vla_adapters.md, "Offline builders", lists sizes and timings):

- a word-level tokenizer with SmolVLM's image special tokens (serves SmolVLA and, as a plain object, pi0);
- a SmolVLM config + processor folder that `SmolVLAConfig.vlm_model_name` points at;
- pi0/pi05 with a shrunk Gemma (the variant table is patched while the model is built) and a shrunk
  SigLIP and vocabulary (the PaliGemma/Gemma classes are wrapped while the model is built).

Every builder is deterministic for a given seed and leaves the global RNG as it found it.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from unittest import mock

import torch

from app.rl.native import STATE_KEY

ACTION_KEY = "action"
DEFAULT_IMAGE_KEYS = ("observation.images.front",)

#: Special tokens every tokenizer we build carries. SmolVLA reads `fake_image_token_id` and
#: `global_image_token_id` from its processor's tokenizer.
SPECIAL_TOKENS = ("<pad>", "<unk>", "<bos>", "<eos>")
SMOLVLM_EXTRA_SPECIAL = {
    "fake_image_token": "<fake_token_around_image>",
    "global_image_token": "<global-img>",
    "image_token": "<image>",
    "end_of_utterance_token": "<end_of_utterance>",
}
#: Words a tiny tokenizer knows (anything else maps to <unk>): enough for pick-and-place instructions.
TASK_WORDS = [
    "pick",
    "place",
    "put",
    "move",
    "push",
    "lift",
    "grasp",
    "release",
    "open",
    "close",
    "stack",
    "the",
    "a",
    "an",
    "up",
    "down",
    "left",
    "right",
    "on",
    "in",
    "to",
    "of",
    "and",
    "cube",
    "block",
    "box",
    "bowl",
    "plate",
    "cup",
    "red",
    "green",
    "blue",
    "yellow",
    "white",
    "black",
    "table",
    "bin",
    "target",
    "gripper",
    "arm",
    "into",
    "onto",
    "from",
    "top",
    "bottom",
    "front",
    "back",
    "small",
    "large",
    "first",
    "then",
]


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Deterministic init without disturbing the caller's RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


# -- tokenizer ----------------------------------------------------------------------------------------


def build_word_tokenizer(words: Sequence[str] = TASK_WORDS, image_tokens: bool = True) -> Any:
    """A deterministic word-level `PreTrainedTokenizerFast` (lower-cased, split on whitespace and
    punctuation). With `image_tokens` it also knows SmolVLM's image special tokens."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = list(SPECIAL_TOKENS) + (list(SMOLVLM_EXTRA_SPECIAL.values()) if image_tokens else [])
    vocab: dict[str, int] = {}
    for tok in [*specials, *words]:
        vocab.setdefault(tok, len(vocab))
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.normalizer = normalizers.Lowercase()
    core.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()]
    )
    kwargs: dict[str, Any] = dict(
        tokenizer_object=core, pad_token="<pad>", unk_token="<unk>", bos_token="<bos>", eos_token="<eos>"
    )
    if image_tokens:
        kwargs["extra_special_tokens"] = dict(SMOLVLM_EXTRA_SPECIAL)
    return PreTrainedTokenizerFast(**kwargs)


# -- SmolVLA --------------------------------------------------------------------------------------------


def write_smolvlm_folder(
    folder: str | Path,
    *,
    text: dict[str, Any] | None = None,
    vision: dict[str, Any] | None = None,
    scale_factor: int = 2,
    vocab_size: int | None = None,
) -> Path:
    """Write a SmolVLM config, tokenizer and processor into `folder` (what `vlm_model_name` points at).

    `text` / `vision` override the tiny defaults (llama text 64 wide, 4 layers; SigLIP 32 wide, 2 layers,
    patch 16, image 64). `vocab_size` defaults to the tokenizer's size.
    """
    from transformers import (
        SmolVLMConfig,
        SmolVLMImageProcessor,
        SmolVLMProcessor,
        SmolVLMVideoProcessor,
    )

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tok = build_word_tokenizer()
    image_token_id = tok.convert_tokens_to_ids(SMOLVLM_EXTRA_SPECIAL["image_token"])
    text_cfg = dict(
        model_type="llama",
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        vocab_size=vocab_size or len(tok),
        max_position_embeddings=512,
        rms_norm_eps=1e-5,
        pad_token_id=tok.pad_token_id,
    )
    text_cfg.update(text or {})
    vision_cfg = dict(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, patch_size=16,
        image_size=64,
    )  # fmt: skip
    vision_cfg.update(vision or {})
    cfg = SmolVLMConfig(
        text_config=text_cfg,
        vision_config=vision_cfg,
        scale_factor=scale_factor,
        image_token_id=image_token_id,
        pad_token_id=tok.pad_token_id,
    )
    cfg.save_pretrained(folder)
    size = vision_cfg["image_size"]
    image_processor = SmolVLMImageProcessor(
        do_resize=False, do_image_splitting=False, max_image_size={"longest_edge": size}
    )
    video_processor = SmolVLMVideoProcessor(max_image_size={"longest_edge": size})
    seq_len = (size // vision_cfg["patch_size"]) ** 2 // scale_factor**2
    SmolVLMProcessor(
        image_processor=image_processor,
        tokenizer=tok,
        video_processor=video_processor,
        image_seq_len=seq_len,
    ).save_pretrained(folder)
    # Keep the folder byte-for-byte deterministic: drop fields that record versions or paths.
    for name in ("config.json",):
        path = folder / name
        data = json.loads(path.read_text())
        data.pop("transformers_version", None)
        path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return folder


def _config_device(device: str) -> str:
    """LeRobot configs refuse "meta" (used to count parameters without allocating them)."""
    return "cpu" if torch.device(device).type == "meta" else device


def _features(
    state_dim: int, action_dim: int, image_keys: Sequence[str], image_size: int
) -> tuple[dict, dict]:
    from lerobot.configs.types import FeatureType, PolicyFeature

    inputs = {STATE_KEY: PolicyFeature(type=FeatureType.STATE, shape=(state_dim,))}
    for key in image_keys:
        inputs[key] = PolicyFeature(type=FeatureType.VISUAL, shape=(3, image_size, image_size))
    outputs = {ACTION_KEY: PolicyFeature(type=FeatureType.ACTION, shape=(action_dim,))}
    return inputs, outputs


def build_tiny_smolvla(
    folder: str | Path,
    *,
    state_dim: int = 6,
    action_dim: int = 6,
    image_keys: Sequence[str] = DEFAULT_IMAGE_KEYS,
    chunk_size: int = 10,
    num_steps: int = 4,
    seed: int = 0,
) -> Any:
    """A ~0.2M-parameter SmolVLAPolicy built offline; writes its SmolVLM folder into `folder`."""
    from lerobot.policies.smolvla.configuration_smolvla import SmolVLAConfig
    from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy

    write_smolvlm_folder(folder)
    inputs, outputs = _features(state_dim, action_dim, image_keys, 64)
    cfg = SmolVLAConfig(
        vlm_model_name=str(folder),
        load_vlm_weights=False,
        num_vlm_layers=2,
        resize_imgs_with_padding=(64, 64),
        chunk_size=chunk_size,
        n_action_steps=chunk_size,
        num_steps=num_steps,
        tokenizer_max_length=16,
        device="cpu",
        input_features=inputs,
        output_features=outputs,
    )
    with _seeded(seed), contextlib.redirect_stdout(None):
        policy = SmolVLAPolicy(cfg)
    return policy.eval()


#: SmolVLM2-500M-Video-Instruct's shape (the VLM SmolVLA-base fine-tunes), for random-init benchmarks.
SMOLVLM2_500M_TEXT = dict(
    hidden_size=960, intermediate_size=2560, num_hidden_layers=32, num_attention_heads=15,
    num_key_value_heads=5, head_dim=64, vocab_size=49280, max_position_embeddings=8192, rope_theta=100000.0,
)  # fmt: skip
SMOLVLM2_500M_VISION = dict(
    hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12, patch_size=16,
    image_size=512,
)  # fmt: skip


def build_smolvla_random(
    folder: str | Path,
    *,
    state_dim: int = 6,
    action_dim: int = 6,
    image_keys: Sequence[str] = DEFAULT_IMAGE_KEYS,
    chunk_size: int = 50,
    num_steps: int = 10,
    device: str = "cpu",
    seed: int = 0,
) -> Any:
    """SmolVLA at its real size (SmolVLM2-500M shape, 16 VLM layers, ~450M parameters) with random weights:
    for memory and speed measurements, never for acting. Built directly on `device`."""
    from lerobot.policies.smolvla.configuration_smolvla import SmolVLAConfig
    from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy

    write_smolvlm_folder(folder, text=SMOLVLM2_500M_TEXT, vision=SMOLVLM2_500M_VISION, scale_factor=4)
    inputs, outputs = _features(state_dim, action_dim, image_keys, 512)
    cfg = SmolVLAConfig(
        vlm_model_name=str(folder),
        load_vlm_weights=False,
        chunk_size=chunk_size,
        n_action_steps=chunk_size,
        num_steps=num_steps,
        device=_config_device(device),
        input_features=inputs,
        output_features=outputs,
    )
    with _seeded(seed), torch.device(device), contextlib.redirect_stdout(None):
        policy = SmolVLAPolicy(cfg)
    return policy.to(device).eval()


# -- pi0 / pi05 -------------------------------------------------------------------------------------------


def _pi_modules(variant: str) -> tuple[Any, Any, Any]:
    """(modeling module, config class, policy class) for "pi0" or "pi05"."""
    if variant == "pi0":
        from lerobot.policies.pi0 import modeling_pi0 as mod
        from lerobot.policies.pi0.configuration_pi0 import PI0Config as cfg_cls

        return mod, cfg_cls, mod.PI0Policy
    if variant == "pi05":
        from lerobot.policies.pi05 import modeling_pi05 as mod
        from lerobot.policies.pi05.configuration_pi05 import PI05Config as cfg_cls

        return mod, cfg_cls, mod.PI05Policy
    raise ValueError(f"variant must be 'pi0' or 'pi05', got {variant!r}")


@contextlib.contextmanager
def _shrunk_paligemma(
    mod: Any, *, width: int, depth: int, vocab: int, vision: dict[str, Any]
) -> Iterator[None]:
    """While active, `mod` (modeling_pi0 or modeling_pi05) builds a tiny PaliGemma + Gemma expert.

    LeRobot hard-codes the Gemma variants, the 257152-token vocabulary and SigLIP's size/projection (2048);
    we patch the variant table and wrap the two HF classes so their configs are shrunk just before init.
    """
    gemma = mod.GemmaConfig(
        width=width, depth=depth, mlp_dim=2 * width, num_heads=8, num_kv_heads=1, head_dim=width // 4
    )
    pali_cls, expert_cls = mod.PaliGemmaForConditionalGenerationWithPiGemma, mod.PiGemmaForCausalLM

    def tiny_pali(config: Any) -> Any:
        config.text_config.vocab_size = vocab
        config._vocab_size = vocab  # noqa: SLF001
        config.image_token_index = vocab - 1
        vc = config.vision_config
        for k, v in vision.items():
            setattr(vc, k, v)
        vc.projection_dim = config.text_config.hidden_size
        return pali_cls(config=config)

    def tiny_expert(config: Any) -> Any:
        config.vocab_size = vocab
        return expert_cls(config=config)

    with (
        mock.patch.object(mod, "get_gemma_config", lambda variant: gemma),
        mock.patch.object(mod, "PaliGemmaForConditionalGenerationWithPiGemma", tiny_pali),
        mock.patch.object(mod, "PiGemmaForCausalLM", tiny_expert),
    ):
        yield


def build_tiny_pi0(
    variant: str = "pi0",
    *,
    state_dim: int = 6,
    action_dim: int = 6,
    image_keys: Sequence[str] = DEFAULT_IMAGE_KEYS,
    chunk_size: int = 10,
    num_steps: int = 4,
    width: int = 64,
    depth: int = 2,
    image_size: int = 32,
    dtype: str = "float32",
    seed: int = 0,
) -> tuple[Any, Any]:
    """A tiny PI0Policy / PI05Policy (Gemma `width` wide, `depth` deep, 8 heads; SigLIP 32 wide, 1 layer,
    patch 16; vocabulary = the tokenizer's) and the word-level tokenizer that feeds it. `dtype` is LeRobot's
    precision ("bfloat16" casts the language models, keeping vision and norms in float32).

    Returns (policy, tokenizer). Pass the tokenizer to `TokenizerProcessorStep(tokenizer=...)` or use
    `tokenize` below; LeRobot's own pi0 processor would fetch PaliGemma's tokenizer from the hub.
    """
    mod, cfg_cls, policy_cls = _pi_modules(variant)
    tok = build_word_tokenizer(image_tokens=False)
    inputs, outputs = _features(state_dim, action_dim, image_keys, image_size)
    cfg = cfg_cls(
        chunk_size=chunk_size,
        n_action_steps=chunk_size,
        num_inference_steps=num_steps,
        image_resolution=(image_size, image_size),
        tokenizer_max_length=16,
        dtype=dtype,
        device="cpu",
        input_features=inputs,
        output_features=outputs,
    )
    vision = dict(
        hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, patch_size=16
    )
    with _seeded(seed), _shrunk_paligemma(mod, width=width, depth=depth, vocab=len(tok), vision=vision):
        policy = policy_cls(cfg)
    return policy.eval(), tok


def build_pi0_random(
    variant: str = "pi0",
    *,
    state_dim: int = 6,
    action_dim: int = 6,
    image_keys: Sequence[str] = DEFAULT_IMAGE_KEYS,
    chunk_size: int = 50,
    num_steps: int = 10,
    dtype: str = "bfloat16",
    device: str = "cpu",
    seed: int = 0,
) -> tuple[Any, Any]:
    """pi0 / pi0.5 at full size (PaliGemma gemma_2b + SigLIP-So400m, gemma_300m expert, ~3.5-4B
    parameters) with random weights, built directly on `device`; for memory/speed benchmarks only.
    `dtype` is LeRobot's precision ("bfloat16" keeps vision and norms in float32, as LeRobot does).
    Returns (policy, word tokenizer); the tokenizer's ids are valid (all < 257152)."""
    _, cfg_cls, policy_cls = _pi_modules(variant)
    inputs, outputs = _features(state_dim, action_dim, image_keys, 224)
    cfg = cfg_cls(
        chunk_size=chunk_size,
        n_action_steps=chunk_size,
        num_inference_steps=num_steps,
        dtype=dtype,
        device=_config_device(device),
        input_features=inputs,
        output_features=outputs,
    )
    cfg.device = device  # after validation: PI0Policy moves itself to cfg.device ("meta" counts for free)
    with _seeded(seed), torch.device(device):
        policy = policy_cls(cfg)
    return policy.to(device).eval(), build_word_tokenizer(image_tokens=False)


def tokenize(
    tokenizer: Any, tasks: Sequence[str], max_length: int, device: str | torch.device = "cpu"
) -> dict:
    """Language tokens and mask for a batch of task strings, padded right to `max_length` (what LeRobot's
    TokenizerProcessorStep puts in the batch): {"observation.language.tokens", "...attention_mask"}."""
    from lerobot.utils.constants import OBS_LANGUAGE_ATTENTION_MASK, OBS_LANGUAGE_TOKENS

    enc = tokenizer(
        [t if t.endswith("\n") else t + "\n" for t in tasks],
        max_length=max_length,
        padding="max_length",
        truncation=True,
        return_tensors="pt",
    )
    return {
        OBS_LANGUAGE_TOKENS: enc["input_ids"].to(device),
        OBS_LANGUAGE_ATTENTION_MASK: enc["attention_mask"].to(device=device, dtype=torch.bool),
    }
