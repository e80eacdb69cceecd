"""Benchmark 3: how long from "the learner pushes new weights" to "the actor has loaded them"?

The learner runs in one process, the actor in another (this one), on loopback. Three paths move the same
trainable weights:

- `pirl-grpc`: our runtime. `app.learner.service.PIRLLearnerService` on a server from
  `app.transport.channel.make_server`; the push is `publish_weights` (the live weights cast into the
  service's reused `pirl/params/v2` buffer, optionally bf16), exactly what `app.learner.loop` does after
  an update. The actor side is `app.actor.client.LearnerClient` (Ready with a deadline,
  StreamParameters, LeRobot's 2 MB chunks copied into its reused staging buffer, tensors as views of
  it), then the actor's in-place load (copy with cast to the actor's dtype, what
  `PIRLModel.load_trainable_state` does) and `release(version)`, as `app.actor.loop` does. The buffers
  on both sides are allocated by the first push and reused afterwards, so the first trial of a row
  also pays for their page faults.
- `lerobot-grpc`: LeRobot's own `lerobot.rl.learner_service.LearnerService.StreamParameters` fed through
  its parameters queue with `state_to_bytes`, received with `receive_bytes_in_chunks`, loaded with
  `bytes_to_state_dict` + `load_state_dict`. LeRobot has no bf16 option; for the bf16 rows it is handed
  the same bf16 tensors ours sends, so both move the same bytes.
- `raw-socket`: the already-serialized payload written to a plain loopback TCP socket and read into a
  preallocated buffer, no serialization and no load: the floor any socket-based transport can reach here.

The learner's weights are fp32 (training weights); `--dtype bf16` halves what travels and the actor casts
back into its fp32 model. Each trial first changes the weights (a stand-in for a training step, untimed);
after each gRPC trial the actor's weights are checked against the pushed ones (a checksum, untimed).

Timing: `time.monotonic()` is one system-wide clock on Linux, so the learner's "push starts" stamp (before
serialization) and the actor's "loaded" stamp (after the copy into the model) are comparable across
processes. The pirl path polls `latest_parameters()` every 1 ms, as the actor's loop polls between
chunks; that adds at most 1 ms.

Sizes are synthetic stacks of 4096-wide linear weights (`1e6`, `50e6`, `450e6`) or real policies
(`native`: the sim demo's native flow policy from configs/sim_pirl_reach.json; `tiny_smolvla`: the
offline tiny SmolVLA of `app.rl.adapters.tiny` with PI-RL heads); for those only the trainable subset
travels, as in a run.

    .venv/bin/python benchmarks/weight_sync.py                       # 1M, 50M, 450M; fp32 and bf16
    .venv/bin/python benchmarks/weight_sync.py --sizes native,tiny_smolvla --paths pirl-grpc,raw-socket

The 450M fp32 rows hold about 8 GB of RAM at peak across the two processes.
"""

from __future__ import annotations

import argparse
import gc
import multiprocessing as mp
import os
import queue
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

if __package__ in (None, ""):  # run as a script: make `benchmarks` and `app` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import report

_WIDTH = 4096  # a transformer-ish layer width: tensors of 4096 x n, like an action expert's linears
WIRE_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
PATHS = ("raw-socket", "lerobot-grpc", "pirl-grpc")
POLICIES = ("native", "tiny_smolvla")
_REPO = Path(__file__).resolve().parents[1]
_START_TIMEOUT_S = 300.0  # building a 450M model and its first payload on a busy 2-core machine is slow


# ------------------------------------------------------------------------------------- what is pushed


class Weights:
    """Trainable weights on one side of the link: read them (learner), load them in place (actor)."""

    def __init__(
        self,
        module: nn.Module,
        get: Callable[[], dict[str, torch.Tensor]],
        load: Callable[[dict[str, torch.Tensor]], None],
        keep: object = None,
    ):
        self.module, self._get, self._load, self._keep = module, get, load, keep

    def state(self) -> dict[str, torch.Tensor]:
        return self._get()

    def load(self, state: dict[str, torch.Tensor]) -> None:
        self._load(state)

    @property
    def n_params(self) -> int:
        return sum(v.numel() for v in self.state().values())

    @torch.no_grad()
    def train_step(self) -> None:
        """Change every trainable weight (what an update does), so each push carries new values."""
        for p in self.module.parameters():
            if p.requires_grad:
                p.add_(1e-3)


def make_synthetic(n_params: int, seed: int = 0) -> nn.Module:
    """fp32 linear weights holding exactly `n_params` parameters (the last tensor trimmed to fit)."""
    if n_params < 1:
        raise ValueError(f"a weight sync of {n_params} parameters means nothing; give >= 1")
    g = torch.Generator().manual_seed(seed)
    model = nn.Module()
    remaining, i = n_params, 0
    while remaining > 0:
        chunk = min(remaining, _WIDTH * _WIDTH)
        shape = (chunk // _WIDTH, _WIDTH) if chunk >= _WIDTH else (chunk,)
        t = torch.randn(shape, generator=g)
        model.register_parameter(f"w{i}", nn.Parameter(t))
        remaining -= t.numel()
        i += 1
    return model


def make_weights(size: str, seed: int = 0) -> Weights:
    """`size` is a parameter count ("50e6") or a policy name in POLICIES."""
    if size == "native":
        from app.rl.algorithm import pirl_model_of
        from app.run.parse import parse_run_config

        cfg = parse_run_config(["--config", str(_REPO / "configs" / "sim_pirl_reach.json")])
        model = pirl_model_of(cfg.make_policy())
        return Weights(model, model.get_trainable_state, model.load_trainable_state)
    if size == "tiny_smolvla":
        from app.rl.adapters.smolvla import SmolVLAAdapter
        from app.rl.adapters.tiny import build_tiny_smolvla
        from app.rl.config import PIRLConfig
        from app.rl.model import PIRLModel

        folder = tempfile.TemporaryDirectory(prefix="pirl-bench-smolvla-")
        torch.manual_seed(seed)
        model = PIRLModel(SmolVLAAdapter(build_tiny_smolvla(folder.name, seed=seed)), PIRLConfig())
        return Weights(model, model.get_trainable_state, model.load_trainable_state, keep=folder)
    model = make_synthetic(parse_size(size), seed)

    def get() -> dict[str, torch.Tensor]:
        return {k: v.detach() for k, v in model.state_dict().items()}

    def load(state: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            model.load_state_dict(state)  # copy_ casts a bf16 wire tensor into the fp32 parameter

    return Weights(model, get, load)


def parse_size(size: str) -> int:
    try:
        n = int(float(size))
    except ValueError:
        raise ValueError(
            f"size {size!r} is neither a parameter count (e.g. 50e6) nor one of {POLICIES}"
        ) from None
    if n < 1:
        raise ValueError(f"size {size!r}: need at least one parameter")
    return n


def wire_state(state: dict[str, torch.Tensor], wire: str) -> dict[str, torch.Tensor]:
    dtype = WIRE_DTYPES[wire]
    return {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in state.items()}


def checksum(state: dict[str, torch.Tensor]) -> float:
    """Sum of every floating weight in float64: the actor's copy must match what the learner pushed."""
    return float(sum(float(v.double().sum()) for v in state.values() if v.is_floating_point()))


def pirl_payload(weights: Weights, version: int, wire: str) -> bytearray:
    from app.transport.codec import Parameters, encode_parameters

    return encode_parameters(Parameters(version=version, state=weights.state()), bf16=wire == "bf16")


# ------------------------------------------------------------------------------ learner process (pushes)


def _learner(path, size, wire, port, go, pushed, ready, trials):  # pragma: no cover - runs in a subprocess
    """Build the weights, serve them by `path`, push once per `go` message; report (t_push, bytes), and at
    the end this process's peak resident memory. Sampled, not `ru_maxrss`: a spawned child inherits its
    parent's high-water mark through fork + exec."""
    rss = PeakRSS()
    try:
        with rss:
            _learner_pushes(path, size, wire, port, go, pushed, ready, trials)
    finally:
        ready.put(("peak_rss", rss.peak))


def _learner_pushes(path, size, wire, port, go, pushed, ready, trials):  # pragma: no cover - subprocess
    torch.set_num_threads(1)
    weights = make_weights(size, seed=0)
    if path == "raw-socket":
        payload = pirl_payload(weights, 0, wire)
        srv = socket.create_server(("127.0.0.1", port))
        ready.put((weights.n_params, len(payload)))
        conn, _ = srv.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for _ in range(trials):
            go.get()
            t0 = time.monotonic()
            conn.sendall(payload)
            pushed.put((t0, len(payload), None))
        go.get()
        conn.close()
        srv.close()
        return

    import grpc

    shutdown = threading.Event()
    if path == "lerobot-grpc":
        from lerobot.rl.learner_service import LearnerService
        from lerobot.transport import services_pb2_grpc
        from lerobot.transport.utils import MAX_MESSAGE_SIZE, state_to_bytes

        params_q: queue.Queue = queue.Queue()
        service = LearnerService(
            shutdown_event=shutdown,
            parameters_queue=params_q,
            seconds_between_pushes=0.0,
            transition_queue=queue.Queue(),
            interaction_message_queue=queue.Queue(),
            queue_get_timeout=0.001,
        )
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=3),  # LeRobot's learner uses 3 workers
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE_SIZE),
                ("grpc.max_send_message_length", MAX_MESSAGE_SIZE),
            ],
        )
        services_pb2_grpc.add_LearnerServiceServicer_to_server(service, server)
        server.add_insecure_port(f"127.0.0.1:{port}")

        def push(_version: int) -> int:
            payload = state_to_bytes(wire_state(weights.state(), wire))
            params_q.put(payload)
            return len(payload)

    else:
        from app.learner.service import PIRLLearnerService
        from app.transport.channel import make_server
        from app.transport.codec import Parameters
        from app.transport.config import TransportConfig

        service = PIRLLearnerService(shutdown)
        server, _ = make_server(TransportConfig(port=port))
        service.add_to_server(server)

        def push(version: int) -> int:
            # what app.learner.loop does: the live weights, cast into the service's reused buffer
            return service.publish_weights(
                Parameters(version=version, state=weights.state()), bf16=wire == "bf16"
            )

    server.start()
    ready.put((weights.n_params, 0))
    for version in range(1, trials + 1):
        go.get()
        weights.train_step()
        expected = checksum(wire_state(weights.state(), wire))  # before the clock starts
        t0 = time.monotonic()
        n = push(version)
        pushed.put((t0, n, expected))
    go.get()  # stop
    shutdown.set()
    server.stop(grace=1).wait(5)


# ------------------------------------------------------------------------------ actor side (this process)


@dataclass
class Trial:
    seconds: float
    nbytes: int


class PeakRSS:
    """Peak resident memory of this process while a row runs (actor or learner side), sampled every 5 ms from
    /proc/self/statm: ru_maxrss cannot be reset between rows. Linux only; 0 elsewhere."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _read(self) -> int:
        try:
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * self._page
        except (OSError, ValueError, IndexError):
            return 0

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._read())
            self._stop.wait(0.005)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._read())


@dataclass
class PathResult:
    params: int  # trainable parameters that travelled
    trials: list[Trial]
    actor_peak_rss: int  # bytes, this process during the row (includes torch/gRPC baseline)
    learner_peak_rss: int  # bytes, the learner process over its whole life


def run_path(path: str, size: str, wire: str, trials: int) -> PathResult:
    """One row: the learner in a spawned process, the actor in this one."""
    if path not in PATHS:
        raise ValueError(f"unknown path {path!r}; choose from {PATHS}")
    ctx = mp.get_context("spawn")
    port = _free_port()
    go, pushed, ready = ctx.Queue(), ctx.Queue(), ctx.Queue()
    proc = ctx.Process(target=_learner, args=(path, size, wire, port, go, pushed, ready, trials), daemon=True)
    proc.start()
    out: list[Trial] = []
    learner_rss = 0
    gc.collect()
    try:
        n_params, payload_bytes = _get(ready, proc, "start")
        with PeakRSS() as actor_rss:
            if path == "raw-socket":
                _actor_raw(port, payload_bytes, go, pushed, proc, trials, out)
            else:
                weights = make_weights(size, seed=1)
                if path == "lerobot-grpc":
                    _actor_lerobot(port, weights, go, pushed, proc, trials, out)
                else:
                    _actor_pirl(port, weights, go, pushed, proc, trials, out)
                del weights
        go.put(0)
        tag, learner_rss = _get(ready, proc, "report its memory", timeout=60)
    finally:
        go.put(0)
        proc.join(30)
        if proc.is_alive():
            proc.kill()
            proc.join(5)
        gc.collect()
    return PathResult(n_params, out, actor_rss.peak, learner_rss)


def _get(q, proc, what: str, timeout: float = _START_TIMEOUT_S):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            return q.get(timeout=0.5)
        except queue.Empty:
            if not proc.is_alive():
                raise RuntimeError(
                    f"learner process died before {what} (exit code {proc.exitcode})"
                ) from None
    raise TimeoutError(f"learner process did not {what} within {timeout:.0f} s")


def _actor_raw(port, size, go, pushed, proc, trials, out) -> None:
    buf = bytearray(size)
    view = memoryview(buf)
    with socket.create_connection(("127.0.0.1", port), timeout=120) as sock:
        for _ in range(trials):
            go.put(1)
            got = 0
            while got < size:
                n = sock.recv_into(view[got:], size - got)
                if n == 0:
                    raise ConnectionError("learner closed the socket early")
                got += n
            t1 = time.monotonic()
            t0, nbytes, _ = _get(pushed, proc, "report its push")
            out.append(Trial(t1 - t0, nbytes))


def _actor_lerobot(port, weights: Weights, go, pushed, proc, trials, out) -> None:
    import grpc
    from lerobot.transport import services_pb2, services_pb2_grpc
    from lerobot.transport.utils import bytes_to_state_dict, grpc_channel_options, receive_bytes_in_chunks

    channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=grpc_channel_options())
    stream = None
    try:
        stub = services_pb2_grpc.LearnerServiceStub(channel)
        stub.Ready(services_pb2.Empty(), timeout=60)
        stream = stub.StreamParameters(services_pb2.Empty())
        never = threading.Event()
        for _ in range(trials):
            go.put(1)
            data = receive_bytes_in_chunks(stream, None, never)
            weights.load(bytes_to_state_dict(data))
            t1 = time.monotonic()
            t0, nbytes, expected = _get(pushed, proc, "report its push")
            _verify(weights, expected)
            out.append(Trial(t1 - t0, nbytes))
            del data
    finally:
        if stream is not None:
            stream.cancel()
        channel.close()


def _actor_pirl(port, weights: Weights, go, pushed, proc, trials, out) -> None:
    from app.actor.client import LearnerClient
    from app.transport.config import TransportConfig

    client = LearnerClient(TransportConfig(port=port, ready_timeout_s=60.0), "bench").start()
    try:
        deadline = time.monotonic() + 60
        while not client.status.connected:
            if time.monotonic() > deadline:
                raise TimeoutError(f"LearnerClient did not connect: {client.status.last_error}")
            time.sleep(0.01)
        version = None
        for _ in range(trials):
            go.put(1)
            deadline = time.monotonic() + _START_TIMEOUT_S
            while (params := client.latest_parameters(newer_than=version)) is None:
                if time.monotonic() > deadline or not proc.is_alive():
                    raise TimeoutError(f"no new parameters arrived ({client.status.last_error})")
                time.sleep(0.001)
            weights.load(params.state)
            t1 = time.monotonic()
            version = params.version
            client.release(version)  # as the actor does after loading: one copy of the weights held
            t0, nbytes, expected = _get(pushed, proc, "report its push")
            _verify(weights, expected)
            out.append(Trial(t1 - t0, nbytes))
            del params
    finally:
        client.close()


def _verify(weights: Weights, expected: float) -> None:
    """After the clock stopped: the actor must hold exactly the pushed values (a fast wrong load is no win)."""
    got = checksum(weights.state())
    if not abs(got - expected) <= 1e-9 * max(1.0, abs(expected)):
        raise RuntimeError(
            f"the actor loaded different weights than were pushed (sum {got!r} != {expected!r})"
        )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------------------------------------ report


@dataclass
class Row:
    size: str
    params: int
    dtype: str
    path: str
    trials: list[Trial]
    actor_peak_rss: int = 0  # bytes
    learner_peak_rss: int = 0  # bytes

    @property
    def median_s(self) -> float:
        return statistics.median(t.seconds for t in self.trials)

    @property
    def mb(self) -> float:
        return self.trials[0].nbytes / 1e6


def size_label(size: str, params: int) -> str:
    if size in POLICIES:
        return f"{size} ({params / 1e6:.3g}M)"
    return f"{params / 1e6:g}M"


def table(rows: list[Row]) -> list[list[str]]:
    out = []
    for r in rows:
        secs = [t.seconds for t in r.trials]
        med = r.median_s
        out.append(
            [
                size_label(r.size, r.params),
                r.dtype,
                f"{r.mb:.3g}",
                r.path,
                f"{med * 1e3:.1f}",
                f"{min(secs) * 1e3:.1f}",
                f"{max(secs) * 1e3:.1f}",
                f"{r.mb / med:.0f}",
                f"{r.actor_peak_rss / 2**30:.1f}",
                f"{r.learner_peak_rss / 2**30:.1f}",
            ]
        )
    return out


HEADER = [
    "trainable params", "wire", "MB", "path", "median ms", "min ms", "max ms", "MB/s",
    "actor peak GiB", "learner peak GiB",
]  # fmt: skip


def verdicts(rows: list[Row], target_s: float) -> str:
    """The target (issue 9): the largest synthetic size in bf16 within `target_s`, per gRPC path."""
    synthetic = [r for r in rows if r.size not in POLICIES and r.dtype == "bf16" and r.path != "raw-socket"]
    if not synthetic:
        return "No bf16 synthetic rows: the <= target check needs --dtype bf16 and a numeric size."
    largest = max(r.params for r in synthetic)
    parts = []
    for r in synthetic:
        if r.params == largest:
            ok = "meets" if r.median_s <= target_s else "misses"
            parts.append(f"{r.path} {r.median_s:.3f} s ({ok} <= {target_s:g} s)")
    return f"Target for {largest / 1e6:g}M bf16: " + "; ".join(parts) + "."


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--sizes",
        default="1e6,50e6,450e6",
        help=f"comma-separated trainable parameter counts and/or policies {','.join(POLICIES)}",
    )
    ap.add_argument("--dtype", default="fp32,bf16", help="comma-separated wire dtypes: fp32, bf16")
    ap.add_argument("--paths", default=",".join(PATHS), help=f"comma-separated paths from {PATHS}")
    ap.add_argument("--trials", type=int, default=3, help="pushes per row (median reported)")
    ap.add_argument("--target_s", type=float, default=1.0, help="target push->load for the largest in bf16")
    args = ap.parse_args(argv)
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    dtypes = [d.strip() for d in args.dtype.split(",") if d.strip()]
    paths = [p.strip() for p in args.paths.split(",") if p.strip()]
    for s in sizes:
        if s not in POLICIES:
            parse_size(s)
    if bad := [d for d in dtypes if d not in WIRE_DTYPES]:
        ap.error(f"--dtype {bad}: choose from {sorted(WIRE_DTYPES)}")
    if bad := [p for p in paths if p not in PATHS]:
        ap.error(f"--paths {bad}: choose from {PATHS}")
    if args.trials < 1:
        ap.error("--trials must be >= 1")
    torch.set_num_threads(1)
    rows: list[Row] = []
    for size in sizes:
        for wire in dtypes:
            for path in paths:
                res = run_path(path, size, wire, args.trials)
                rows.append(
                    Row(size, res.params, wire, path, res.trials, res.actor_peak_rss, res.learner_peak_rss)
                )
                r = rows[-1]
                print(
                    f"# {size_label(size, res.params)} {wire} {path}: median {r.median_s:.3f} s", flush=True
                )
    print()
    print(
        report(
            "Weight sync: learner push -> actor loaded, loopback",
            HEADER,
            table(rows),
            notes=f"{args.trials} pushes per row; time from the start of serialization in the learner process "
            "to the end of the in-place load in the actor process (raw-socket: bytes copy only); peak GiB = "
            "resident memory of each process during the row. " + verdicts(rows, args.target_s),
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
