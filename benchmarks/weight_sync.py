"""Benchmark 3: how long from "the learner pushes new weights" to "the actor has loaded them"?

Three paths move the same trainable weights (1M, 50M, 450M parameters, bf16 by default) over loopback
between two processes:

- `lerobot-grpc`: LeRobot's own `LearnerService.StreamParameters` (torch.save bytes, 2 MB chunks) served
  from the learner process, received by a gRPC client in the actor process with
  `receive_bytes_in_chunks`, then `torch.load(weights_only=True)` and `load_state_dict`.
- `raw-socket`: the same serialized bytes written to a plain loopback TCP socket and read into a
  preallocated buffer: the floor any transport built on sockets can reach on this machine.
- `pirl-runtime` (when `app.learner` provides `weight_sync_probe`): our learner's push and actor's load.

Timing uses `time.monotonic()`, which on Linux is one system-wide clock, so a timestamp taken in the
learner process and one taken in the actor process are comparable. Push time includes serialization;
load time includes deserialization and `load_state_dict`.

Run: `.venv/bin/python benchmarks/weight_sync.py` (about 2 min; 450M bf16 needs ~6 GB RAM).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import queue
import socket
import statistics
import threading
import time
from concurrent import futures
from dataclasses import dataclass

import torch
from torch import nn

from benchmarks.common import report

_WIDTH = 4096  # a transformer-ish layer width: tensors of 4096 x n, like an action expert's linears
_DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32, "fp16": torch.float16}


def make_model(n_params: int, dtype: torch.dtype, seed: int = 0) -> nn.Module:
    """A stack of linear weights holding exactly `n_params` parameters (last one trimmed to fit)."""
    g = torch.Generator().manual_seed(seed)
    model = nn.Module()
    remaining, i = n_params, 0
    while remaining > 0:
        chunk = min(remaining, _WIDTH * _WIDTH)
        shape = (chunk // _WIDTH, _WIDTH) if chunk >= _WIDTH else (chunk,)
        t = torch.randn(shape, generator=g, dtype=dtype)
        model.register_parameter(f"w{i}", nn.Parameter(t))
        remaining -= t.numel()
        i += 1
    return model


def n_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def serialize(model: nn.Module) -> bytes:
    from lerobot.transport.utils import state_to_bytes

    return state_to_bytes({k: v.detach() for k, v in model.state_dict().items()})


# ---------------------------------------------------------------- LeRobot gRPC path (learner process)


def _lerobot_learner(n_params, dtype_name, port, go, t_push, ready, trials):  # pragma: no cover - subprocess
    import grpc
    from lerobot.rl.learner_service import LearnerService
    from lerobot.transport import services_pb2_grpc
    from lerobot.transport.utils import MAX_MESSAGE_SIZE

    model = make_model(n_params, _DTYPES[dtype_name])
    params_q: queue.Queue = queue.Queue()
    shutdown = mp.Event()
    service = LearnerService(
        shutdown_event=shutdown,
        parameters_queue=params_q,
        seconds_between_pushes=0.0,
        transition_queue=queue.Queue(),
        interaction_message_queue=queue.Queue(),
        queue_get_timeout=0.001,
    )
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=3),
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_SIZE),
            ("grpc.max_send_message_length", MAX_MESSAGE_SIZE),
        ],
    )
    services_pb2_grpc.add_LearnerServiceServicer_to_server(service, server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    ready.set()
    for _ in range(trials):
        go.get()
        with torch.no_grad():  # a "training step": new weights each push
            for p in model.parameters():
                p.add_(1)
        t0 = time.monotonic()
        params_q.put(serialize(model))
        t_push.put(t0)
    go.get()  # stop
    shutdown.set()
    server.stop(grace=1)


def run_lerobot_grpc(n_params: int, dtype_name: str, trials: int) -> list[float]:
    import grpc
    from lerobot.transport import services_pb2, services_pb2_grpc
    from lerobot.transport.utils import bytes_to_state_dict, grpc_channel_options, receive_bytes_in_chunks

    ctx = mp.get_context("spawn")
    port = _free_port()
    go, t_push, ready = ctx.Queue(), ctx.Queue(), ctx.Event()
    proc = ctx.Process(
        target=_lerobot_learner, args=(n_params, dtype_name, port, go, t_push, ready, trials), daemon=True
    )
    proc.start()
    actor_model = make_model(n_params, _DTYPES[dtype_name], seed=1)
    if not ready.wait(120):
        proc.kill()
        raise RuntimeError("learner process did not start its gRPC server within 120 s")
    channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=grpc_channel_options())
    stub = services_pb2_grpc.LearnerServiceStub(channel)
    stub.Ready(services_pb2.Empty(), timeout=30)
    stream = stub.StreamParameters(services_pb2.Empty())
    never = threading.Event()
    out = []
    try:
        for _ in range(trials):
            go.put(1)
            data = receive_bytes_in_chunks(stream, None, never)
            state = bytes_to_state_dict(data)
            actor_model.load_state_dict(state)
            t1 = time.monotonic()
            out.append(t1 - t_push.get(timeout=60))
            del data, state
    finally:
        go.put(0)
        stream.cancel()
        channel.close()
        proc.join(30)
        if proc.is_alive():
            proc.kill()
    return out


# ---------------------------------------------------------------- raw loopback socket (same bytes)


def _raw_sender(n_params, dtype_name, port, go, t_push, ready, trials):  # pragma: no cover - subprocess
    model = make_model(n_params, _DTYPES[dtype_name])
    payload = serialize(model)
    srv = socket.create_server(("127.0.0.1", port))
    ready.put(len(payload))
    conn, _ = srv.accept()
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for _ in range(trials):
        go.get()
        t0 = time.monotonic()
        conn.sendall(payload)
        t_push.put(t0)
    conn.close()
    srv.close()


def run_raw_socket(n_params: int, dtype_name: str, trials: int) -> list[float]:
    ctx = mp.get_context("spawn")
    port = _free_port()
    go, t_push, ready = ctx.Queue(), ctx.Queue(), ctx.Queue()
    proc = ctx.Process(
        target=_raw_sender, args=(n_params, dtype_name, port, go, t_push, ready, trials), daemon=True
    )
    proc.start()
    size = ready.get(timeout=120)
    buf = bytearray(size)
    view = memoryview(buf)
    sock = socket.create_connection(("127.0.0.1", port), timeout=60)
    out = []
    try:
        for _ in range(trials):
            go.put(1)
            got = 0
            while got < size:
                n = sock.recv_into(view[got:], size - got)
                if n == 0:
                    raise ConnectionError("sender closed early")
                got += n
            t1 = time.monotonic()
            out.append(t1 - t_push.get(timeout=60))
    finally:
        sock.close()
        proc.join(30)
        if proc.is_alive():
            proc.kill()
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------- pirl runtime (if it exposes a probe)


def run_pirl_runtime(n_params: int, dtype_name: str, trials: int) -> list[float] | None:
    """Our learner->actor weight path, if `app.learner` exposes `weight_sync_probe` (else None)."""
    try:
        from app.learner import weight_sync_probe  # type: ignore[attr-defined]
    except ImportError:
        return None
    return list(weight_sync_probe(make_model(n_params, _DTYPES[dtype_name]), trials=trials))


@dataclass
class Row:
    params: int
    dtype: str
    path: str
    seconds: list[float]

    @property
    def mb(self) -> float:
        return self.params * torch.empty(0, dtype=_DTYPES[self.dtype]).element_size() / 1e6


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="1e6,50e6,450e6", help="comma-separated trainable parameter counts")
    ap.add_argument("--dtype", default="bf16", choices=sorted(_DTYPES), help="weight dtype on the wire")
    ap.add_argument("--trials", type=int, default=3, help="pushes per size and path (median reported)")
    ap.add_argument("--target_s", type=float, default=1.0, help="target push->load time for the largest")
    args = ap.parse_args(argv)
    sizes = [int(float(x)) for x in args.params.split(",")]
    torch.set_num_threads(1)
    rows: list[Row] = []
    for n in sizes:
        rows.append(Row(n, args.dtype, "raw-socket", run_raw_socket(n, args.dtype, args.trials)))
        rows.append(Row(n, args.dtype, "lerobot-grpc", run_lerobot_grpc(n, args.dtype, args.trials)))
        ours = run_pirl_runtime(n, args.dtype, args.trials)
        if ours is not None:
            rows.append(Row(n, args.dtype, "pirl-runtime", ours))
    table = []
    for r in rows:
        med = statistics.median(r.seconds)
        table.append(
            [
                f"{r.params / 1e6:g}M",
                r.dtype,
                f"{r.mb:.0f}",
                r.path,
                f"{med:.3f}",
                f"{min(r.seconds):.3f}",
                f"{max(r.seconds):.3f}",
                f"{r.mb / med:.0f}",
            ]
        )
    largest = max(sizes)
    verdicts = []
    for r in rows:
        if r.params == largest and r.path != "raw-socket":
            med = statistics.median(r.seconds)
            ok = "meets" if med <= args.target_s else "misses"
            verdicts.append(
                f"{r.path}: {med:.2f} s for {largest / 1e6:g}M {r.dtype} ({ok} <= {args.target_s} s)"
            )
    print(
        report(
            "Weight sync: learner push -> actor loaded, loopback",
            ["params", "dtype", "MB", "path", "median s", "min s", "max s", "MB/s"],
            table,
            notes=f"{args.trials} pushes per row. " + "; ".join(verdicts),
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
