"""zero1's sharded AdamW (app/rl/sharding.py) on 2 gloo ranks: each rank holds about half the optimiser
state, steps like one plain AdamW, and gives back the whole state (single-process format) only when
gathered and current."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from app.run.launch import free_port


def _model_and_adamw() -> tuple[torch.nn.Module, torch.optim.AdamW]:
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(8, 16), torch.nn.Linear(16, 16), torch.nn.Linear(16, 4), torch.nn.Linear(16, 1)
    )
    actor = [p for m in list(net)[:3] for p in m.parameters()]
    opt = torch.optim.AdamW(
        [
            {"params": actor, "lr": 1e-2, "name": "actor"},
            {"params": list(net[3].parameters()), "lr": 3e-2, "name": "value"},
        ],
        betas=(0.9, 0.99),
        weight_decay=0.01,
    )
    return net, opt


def _grads(net: torch.nn.Module, step: int) -> None:
    gen = torch.Generator().manual_seed(100 + step)  # the same "all-reduced" gradients on every rank
    for p in net.parameters():
        p.grad = torch.randn(p.shape, generator=gen)


def _worker(rank: int, world: int, port: int, tmp: str) -> None:
    from app.rl.sharding import ShardedAdamW, optimizer_state_bytes, shard_optimizer

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
    ref_net, ref = _model_and_adamw()
    net, opt = _model_and_adamw()
    for o, n in ((ref, ref_net), (opt, net)):  # one plain step each: the state a resumed run carries over
        _grads(n, 0)
        o.step()
    whole = optimizer_state_bytes(opt)
    sharded = shard_optimizer(opt)
    assert isinstance(sharded, ShardedAdamW) and [g["name"] for g in sharded.param_groups] == [
        "actor",
        "value",
    ]
    for step in (1, 2):
        for o, n in ((ref, ref_net), (sharded, net)):
            _grads(n, step)
            o.step()
            o.zero_grad(set_to_none=True)
    for a, b in zip(net.parameters(), ref_net.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    with pytest.raises(RuntimeError, match="not gathered"):
        sharded.state_dict()
    sharded.consolidate()
    out = {"numel": sharded.local_state_numel(), "bytes": sharded.local_state_bytes(), "whole": whole}
    if rank == 0:
        got, want = sharded.state_dict(), ref.state_dict()
        assert got["param_groups"] == want["param_groups"]
        assert sorted(got["state"]) == sorted(want["state"])
        for i, st in want["state"].items():
            for key in ("exp_avg", "exp_avg_sq", "step"):
                torch.testing.assert_close(got["state"][i][key], st[key], rtol=1e-5, atol=1e-9)
        # a whole state loads into a fresh sharded AdamW: this rank keeps its shard, the dict is untouched
        fresh = shard_optimizer(_model_and_adamw()[1])
        fresh.load_state_dict(got)
        assert all(v is not None for v in got["state"].values())
        assert fresh.local_state_numel() == out["numel"] and not fresh.state
        _grads(net, 3)
        sharded.step()
        with pytest.raises(RuntimeError, match="not gathered"):  # stale after a step: never saved
            sharded.state_dict()
    else:
        with pytest.raises(RuntimeError, match="not gathered"):  # only rank 0 holds the whole state
            sharded.state_dict()
        fresh = shard_optimizer(_model_and_adamw()[1])  # rank 0's load above is local: no collective
        _grads(net, 3)
        sharded.step()
    torch.save(out, Path(tmp) / f"rank{rank}.pt")
    torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_two_ranks_each_hold_about_half_the_optimiser_state_and_step_like_one_adamw(tmp_path):
    mp.start_processes(
        _worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True, start_method="spawn"
    )
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1)]
    net, _ = _model_and_adamw()
    total = 2 * sum(p.numel() for p in net.parameters())  # exp_avg + exp_avg_sq per weight
    largest = 2 * max(p.numel() for p in net.parameters())  # a parameter is never split
    assert sum(r["numel"] for r in ranks) == total
    for r in ranks:
        assert 0 < r["numel"] <= total / 2 + largest
        assert r["bytes"] == 4 * r["numel"] and r["whole"] == 4 * total  # fp32 moments


def test_zero1_refuses_trainable_parameters_of_two_dtypes_in_one_line() -> None:
    from app.rl.sharding import check_shardable

    _, opt = _model_and_adamw()
    check_shardable(opt)  # one dtype: fine (no process group needed to check)
    opt.param_groups[1]["params"][0].data = opt.param_groups[1]["params"][0].data.bfloat16()
    with pytest.raises(
        ValueError, match=r"zero1 needs every trainable parameter in one dtype.*use strategy=ddp"
    ):
        check_shardable(opt)
    with pytest.raises(ValueError, match=r"zero1 shards an AdamW"):
        check_shardable(torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=0.1))
