"""The offline builders: deterministic, hub-free, and the size they claim."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch


def test_smolvlm_folder_is_deterministic(tmp_path: Path) -> None:
    from app.rl.adapters.tiny import write_smolvlm_folder

    a, b = write_smolvlm_folder(tmp_path / "a"), write_smolvlm_folder(tmp_path / "b")
    names = sorted(p.name for p in a.iterdir())
    assert {"config.json", "tokenizer.json", "processor_config.json"} <= set(names)
    assert names == sorted(p.name for p in b.iterdir())
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_tiny_smolvla_is_deterministic_and_small(tmp_path: Path) -> None:
    from app.rl.adapters.tiny import build_tiny_smolvla

    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    p1 = build_tiny_smolvla(tmp_path / "one", seed=5)
    assert torch.equal(torch.rand(1), before), "the builder must not consume the caller's RNG"
    p2 = build_tiny_smolvla(tmp_path / "two", seed=5)
    s1, s2 = p1.state_dict(), p2.state_dict()
    assert s1.keys() == s2.keys() and all(torch.equal(s1[k], s2[k]) for k in s1)
    n = sum(p.numel() for p in p1.parameters())
    assert 100_000 < n < 500_000
    # The tokenizer written into the folder knows the image tokens SmolVLA reads.
    tok = p1.model.vlm_with_expert.processor.tokenizer
    assert tok.fake_image_token_id != tok.unk_token_id and tok.global_image_token_id != tok.unk_token_id


@pytest.mark.parametrize("variant", ["pi0", "pi05"])
def test_tiny_pi_is_deterministic_and_small(variant: str) -> None:
    from app.rl.adapters.tiny import build_tiny_pi0

    (p1, tok), (p2, _) = build_tiny_pi0(variant, seed=2), build_tiny_pi0(variant, seed=2)
    s1, s2 = p1.state_dict(), p2.state_dict()
    assert all(torch.equal(s1[k], s2[k]) for k in s1)
    assert sum(p.numel() for p in p1.parameters()) < 500_000
    # The vocabulary was shrunk to the tokenizer's, so every token id is valid.
    emb = p1.model.paligemma_with_expert.paligemma.model.language_model.embed_tokens
    assert emb.num_embeddings == len(tok)
    assert type(p1.model).__name__ == ("PI0Pytorch" if variant == "pi0" else "PI05Pytorch")


def test_unknown_variant_is_refused() -> None:
    from app.rl.adapters.tiny import build_tiny_pi0

    with pytest.raises(ValueError, match="'pi0' or 'pi05'"):
        build_tiny_pi0("pi1")


@pytest.mark.parametrize("name", ["smolvla", "pi0", "pi05"])
def test_full_size_builders_have_the_real_shapes(name: str, tmp_path: Path) -> None:
    """Built on the meta device (no memory, no weights): the parameter counts of the real models."""
    from app.rl.adapters.pi0 import PI0Adapter
    from app.rl.adapters.smolvla import SmolVLAAdapter
    from app.rl.adapters.tiny import build_pi0_random, build_smolvla_random

    if name == "smolvla":
        adapter = SmolVLAAdapter(build_smolvla_random(tmp_path, device="meta"))
        want_total, want_expert = 450e6, 99.8e6
    else:
        adapter = PI0Adapter(build_pi0_random(name, device="meta")[0])
        want_total, want_expert = (4.03e9, 314.7e6) if name == "pi0" else (4.14e9, 430.1e6)
    counts = adapter.parameter_count()
    assert counts["total"] == pytest.approx(want_total, rel=0.01)
    assert counts["expert"] == pytest.approx(want_expert, rel=0.01)
    assert (adapter.chunk_size, adapter.model_action_dim) == (50, 32)
    assert adapter.noise_feature_dim == (720 if name == "smolvla" else 1024)
