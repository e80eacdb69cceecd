"""Parameter payloads (learner -> actor), format `pirl/params/v2`: a JSON header, then raw tensor bytes.

    b"PIRLPRM2" | header length (u32, little-endian) | header (UTF-8 JSON) | zero padding | tensor bytes

    header = {"format": "pirl/params/v2", "version": int, "run_id": str, "dtype": "float32"|"bfloat16",
              "base_digest": str, "byteorder": "little", "nbytes": <payload bytes>,
              "tensors": [{"name": str, "dtype": str, "shape": [int, ...], "offset": int, "nbytes": int}]}

Every offset counts from the start of the payload; each tensor starts at the first multiple of 64 after
the previous one ends (the first after the header), and the payload ends with the last tensor, so the
layout is fully determined by the header and checked against it.

Why not `torch.save` (v1, before 2026-11): it is a pickle, decoded by a restricted unpickler
(`torch.load(weights_only=True)`), and each push made about four fresh payload-sized allocations (the
save into a growing buffer, the join of the chunks, the load, the cast): on the 2-core dev VM first-touch
page faults cost 0.3 to 3 s per GB, a warm copy about 0.1 s per GB. Here the learner writes (and casts) each tensor straight into a reused
buffer (`write_parameters`), the actor copies each chunk straight into a reused staging buffer at its
offset (`ParameterAssembler`) and the tensors are views of that buffer (`torch.frombuffer`): nothing is
unpickled, nothing payload-sized is allocated per push once the buffers exist, and no byte is read as a
tensor before the whole header has been validated (known dtypes only, exact offsets, sizes that match
the shapes, everything inside the payload).
"""

from __future__ import annotations

import json
import math
import struct
import sys
from collections.abc import Callable
from dataclasses import dataclass

import torch

from app.transport.chunks import Buffer, DecodeError, TransferState

PARAMS_FORMAT = "pirl/params/v2"
MAGIC = b"PIRLPRM2"
ALIGN = 64  # tensor offsets: cache-line aligned views on the actor
MAX_HEADER_BYTES = 64 << 20  # ~100 bytes per tensor: room for far more tensors than any policy has
_PRELUDE = struct.Struct("<8sI")  # magic, header length
_HEADER_KEYS = {"format", "version", "run_id", "dtype", "base_digest", "byteorder", "nbytes", "tensors"}
_TENSOR_KEYS = {"name", "dtype", "shape", "offset", "nbytes"}
#: Dtypes that travel. No bool (a byte other than 0/1 is not a valid bool tensor) and no complex.
DTYPES: dict[str, torch.dtype] = {
    str(dt).removeprefix("torch."): dt
    for dt in (
        torch.float32,
        torch.float64,
        torch.float16,
        torch.bfloat16,
        torch.int64,
        torch.int32,
        torch.int16,
        torch.int8,
        torch.uint8,
    )
}
_WIRE_DTYPES = ("float32", "bfloat16")


@dataclass
class Parameters:
    """A versioned set of policy weights as pushed by the learner.

    On the actor `state` holds views of the client's staging buffer: valid until the client's
    `release(version)`, copy them to keep them longer (see `LearnerClient.latest_parameters`).
    """

    version: int
    state: dict[str, torch.Tensor]
    run_id: str = ""
    dtype: str = "float32"
    base_digest: str = ""  # hash of the weights that do NOT travel (frozen encoder, buffers)


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: torch.dtype
    shape: tuple[int, ...]
    offset: int
    nbytes: int


@dataclass(frozen=True)
class Header:
    """A validated header: what the payload holds and where."""

    version: int
    run_id: str
    dtype: str
    base_digest: str
    nbytes: int  # the whole payload, header included
    tensors: tuple[TensorSpec, ...]


def _align(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


# ------------------------------------------------------------------------------------------- encoding


@dataclass(frozen=True)
class Layout:
    """Where each tensor goes in the payload, computed before anything is written."""

    prelude: bytes  # magic + header length + header
    sources: tuple[torch.Tensor, ...]  # in the order of `header.tensors`
    header: Header

    @property
    def nbytes(self) -> int:
        return self.header.nbytes


def layout_parameters(params: Parameters, bf16: bool = False) -> Layout:
    """Plan the payload; `bf16=True` sends floating tensors as bfloat16 (half the bytes; the actor casts
    back), integer tensors always travel as they are."""
    if sys.byteorder != "little":
        raise RuntimeError("pirl/params/v2 is little-endian; this learner runs on a big-endian machine")
    items = []
    for name, tensor in params.state.items():
        dtype = torch.bfloat16 if bf16 and tensor.is_floating_point() else tensor.dtype
        if _dtype_name(dtype) not in DTYPES:
            raise TypeError(f"parameter {name!r} is {dtype}; only {sorted(DTYPES)} travel")
        items.append((str(name), dtype, tuple(tensor.shape), tensor.numel() * dtype.itemsize, tensor))
    # The header's length depends on the offsets and the offsets on the header's length: iterate to the
    # fixed point (the first tensor right after the header). Each step only grows, so this ends quickly.
    data_start = _align(_PRELUDE.size)
    for _ in range(16):
        offset, specs = data_start, []
        for name, dtype, shape, nbytes, _ in items:
            specs.append(TensorSpec(name, dtype, shape, offset, nbytes))
            offset = _align(offset + nbytes)
        header = Header(
            version=int(params.version),
            run_id=str(params.run_id),
            dtype="bfloat16" if bf16 else "float32",
            base_digest=str(params.base_digest),
            nbytes=(specs[-1].offset + specs[-1].nbytes) if specs else data_start,
            tensors=tuple(specs),
        )
        text = _header_json(header)
        if _align(_PRELUDE.size + len(text)) == data_start:
            break
        data_start = _align(_PRELUDE.size + len(text))
    else:  # pragma: no cover - the sequence is non-decreasing and bounded
        raise RuntimeError("parameter header layout did not converge")
    prelude = _PRELUDE.pack(MAGIC, len(text)) + text
    return Layout(prelude, tuple(t for *_, t in items), header)


def _header_json(header: Header) -> bytes:
    obj = {
        "format": PARAMS_FORMAT,
        "version": header.version,
        "run_id": header.run_id,
        "dtype": header.dtype,
        "base_digest": header.base_digest,
        "byteorder": "little",
        "nbytes": header.nbytes,
        "tensors": [
            {
                "name": t.name,
                "dtype": _dtype_name(t.dtype),
                "shape": list(t.shape),
                "offset": t.offset,
                "nbytes": t.nbytes,
            }
            for t in header.tensors
        ],
    }
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


@torch.no_grad()
def write_parameters(layout: Layout, buf: bytearray) -> memoryview:
    """Write the payload into `buf` (at least `layout.nbytes` long, e.g. a reused one); return its view.

    Each tensor is copied (and cast, and moved off the GPU) straight into place: no intermediate copy.
    """
    if len(buf) < layout.nbytes:
        raise ValueError(f"buffer of {len(buf)} bytes for a {layout.nbytes}-byte payload")
    view = memoryview(buf)
    end = len(layout.prelude)
    view[:end] = layout.prelude
    for spec, src in zip(layout.header.tensors, layout.sources, strict=True):
        view[end : spec.offset] = bytes(spec.offset - end)  # padding: a reused buffer holds old bytes
        if spec.nbytes:
            dst = torch.frombuffer(
                buf, dtype=spec.dtype, count=spec.nbytes // spec.dtype.itemsize, offset=spec.offset
            )
            dst.view(spec.shape).copy_(src.detach())
        end = spec.offset + spec.nbytes
    view[end : layout.nbytes] = bytes(layout.nbytes - end)
    return view[: layout.nbytes]


def encode_parameters(params: Parameters, bf16: bool = False) -> bytearray:
    """The whole payload in a new buffer (tests, tools, one-off pushes; the learner reuses its buffers)."""
    layout = layout_parameters(params, bf16)
    buf = bytearray(layout.nbytes)
    write_parameters(layout, buf)
    return buf


# ------------------------------------------------------------------------------------------- decoding


def _not_v2(prefix: memoryview) -> DecodeError:
    if bytes(prefix[:2]) == b"PK":  # a zip archive: torch.save
        return DecodeError(
            f"parameters: got a torch.save payload, not {PARAMS_FORMAT}. Either the learner runs an older "
            "pirl (pirl/params/v1: run the same pirl version on the learner and every actor) or it is a "
            "LeRobot SAC learner (start both sides with the same --algorithm.type). Nothing was unpickled."
        )
    return DecodeError(
        f"parameters: not a pirl parameter message ({PARAMS_FORMAT}). Is the actor talking to a LeRobot "
        "SAC learner, or to an older pirl? Start both sides from the same pirl, with the same "
        "--algorithm.type."
    )


def read_header(prefix: Buffer) -> Header | None:
    """The validated header, if `prefix` (the first bytes of a payload) holds all of it; None if more
    bytes are needed. Raises `DecodeError` as soon as the bytes seen cannot start a valid payload."""
    view = memoryview(prefix).cast("B")
    if bytes(view[: len(MAGIC)]) != MAGIC[: len(view)]:
        raise _not_v2(view)
    if len(view) < _PRELUDE.size:
        return None
    _, length = _PRELUDE.unpack(view[: _PRELUDE.size])
    if length > MAX_HEADER_BYTES:
        raise DecodeError(f"parameters: header of {length} bytes (more than {MAX_HEADER_BYTES})")
    if len(view) < _PRELUDE.size + length:
        return None
    try:
        obj = json.loads(bytes(view[_PRELUDE.size : _PRELUDE.size + length]).decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as err:
        raise DecodeError(f"parameters: header is not UTF-8 JSON ({err})") from err
    return _validate(obj, _PRELUDE.size + length)


def _int(value: object, what: str, minimum: int | None = 0) -> int:
    if type(value) is not int or (minimum is not None and value < minimum):
        raise DecodeError(f"parameters: {what} must be an integer >= {minimum}, got {value!r}")
    return value


def _str(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise DecodeError(f"parameters: {what} must be a string, got {value!r}")
    return value


def _validate(obj: object, header_end: int) -> Header:
    if not isinstance(obj, dict):
        raise DecodeError(f"parameters: header must be a JSON object, got {type(obj).__name__}")
    if obj.get("format") != PARAMS_FORMAT:
        raise DecodeError(
            f"parameters: format {obj.get('format')!r}, this actor reads {PARAMS_FORMAT}: run the same "
            "pirl version on the learner and every actor"
        )
    if set(obj) != _HEADER_KEYS:
        raise DecodeError(
            f"parameters: header keys {sorted(obj)}, expected {sorted(_HEADER_KEYS)} (mixed pirl versions?)"
        )
    if obj["dtype"] not in _WIRE_DTYPES:
        raise DecodeError(f"parameters: dtype {obj['dtype']!r}, expected one of {_WIRE_DTYPES}")
    if obj["byteorder"] != sys.byteorder:
        raise DecodeError(
            f"parameters: {obj['byteorder']!r}-endian tensors, this actor is {sys.byteorder}-endian"
        )
    total = _int(obj["nbytes"], "nbytes")
    if not isinstance(obj["tensors"], list):
        raise DecodeError("parameters: 'tensors' must be a list")
    specs, names, end = [], set(), header_end
    for i, entry in enumerate(obj["tensors"]):
        if not isinstance(entry, dict) or set(entry) != _TENSOR_KEYS:
            raise DecodeError(f"parameters: tensor {i} must be an object with keys {sorted(_TENSOR_KEYS)}")
        name = _str(entry["name"], f"tensor {i} name")
        if not name or name in names:
            raise DecodeError(f"parameters: tensor {i} name {name!r} is empty or repeated")
        names.add(name)
        dtype = DTYPES.get(entry["dtype"]) if isinstance(entry["dtype"], str) else None
        if dtype is None:
            raise DecodeError(
                f"parameters: tensor {name!r} has dtype {entry['dtype']!r}; allowed: {sorted(DTYPES)}"
            )
        shape = entry["shape"]
        if not isinstance(shape, list) or len(shape) > 32:
            raise DecodeError(f"parameters: tensor {name!r} shape must be a list of at most 32 sizes")
        shape = tuple(_int(d, f"tensor {name!r} shape entry") for d in shape)
        nbytes = _int(entry["nbytes"], f"tensor {name!r} nbytes")
        if nbytes != math.prod(shape) * dtype.itemsize:
            raise DecodeError(
                f"parameters: tensor {name!r} is {nbytes} bytes, but shape {list(shape)} of "
                f"{entry['dtype']} is {math.prod(shape) * dtype.itemsize}"
            )
        offset = _int(entry["offset"], f"tensor {name!r} offset")
        if offset != _align(end):
            raise DecodeError(f"parameters: tensor {name!r} at offset {offset}, expected {_align(end)}")
        end = offset + nbytes
        if end > total:
            raise DecodeError(f"parameters: tensor {name!r} ends at {end}, past the payload's {total} bytes")
        specs.append(TensorSpec(name, dtype, shape, offset, nbytes))
    if total != (end if specs else _align(header_end)):
        raise DecodeError(f"parameters: payload of {total} bytes, but its tensors end at {end}")
    return Header(
        version=_int(obj["version"], "version", minimum=None),
        run_id=_str(obj["run_id"], "run_id"),
        dtype=obj["dtype"],
        base_digest=_str(obj["base_digest"], "base_digest"),
        nbytes=total,
        tensors=tuple(specs),
    )


def tensor_views(header: Header, buf: bytearray | memoryview) -> dict[str, torch.Tensor]:
    """The tensors of a complete, validated payload in `buf`, as views (no copy; empty ones are new)."""
    out = {}
    for t in header.tensors:
        if t.nbytes == 0:
            out[t.name] = torch.empty(t.shape, dtype=t.dtype)
        else:
            flat = torch.frombuffer(buf, dtype=t.dtype, count=t.nbytes // t.dtype.itemsize, offset=t.offset)
            out[t.name] = flat.view(t.shape)
    return out


def _parameters(header: Header, buf: bytearray | memoryview) -> Parameters:
    return Parameters(
        version=header.version,
        state=tensor_views(header, buf),
        run_id=header.run_id,
        dtype=header.dtype,
        base_digest=header.base_digest,
    )


def decode_parameters(buf: Buffer) -> Parameters:
    """A whole payload -> Parameters. The tensors are views of `buf` if it is writable (a bytearray),
    else of a private copy (`torch.frombuffer` needs writable memory)."""
    view = memoryview(buf).cast("B")
    header = read_header(view)
    if header is None:
        raise DecodeError(f"parameters: truncated payload ({len(view)} bytes, the header is not complete)")
    if len(view) != header.nbytes:
        raise DecodeError(f"parameters: payload of {len(view)} bytes, its header says {header.nbytes}")
    if view.readonly:
        view = memoryview(bytearray(view))
    return _parameters(header, view)


# ------------------------------------------------------------------------------- against the model

#: Floating dtypes a floating parameter may arrive in (the actor casts): its own, float32 or bfloat16
#: (`algorithm.push_bf16`). Anything else (float64, float16, an integer type) is a different model.
_FLOAT_WIRE = (torch.float32, torch.bfloat16)
_FINITE_SLICE = 1 << 24  # elements per isfinite() pass: bounds the temporary mask to 16 MB


def _show(names: list[str], limit: int = 4) -> str:
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(repr(n) for n in names[:limit]) + more


def _non_finite(t: torch.Tensor) -> int:
    """How many NaN/inf values a floating tensor holds (0 for the common case, without a full-size mask)."""
    flat = t.reshape(-1)
    for i in range(0, flat.numel(), _FINITE_SLICE):
        if not bool(torch.isfinite(flat[i : i + _FINITE_SLICE]).all()):
            return int((~torch.isfinite(flat)).sum())
    return 0


def check_parameters(
    params: Parameters,
    expected: dict[str, tuple[tuple[int, ...], torch.dtype]],
    *,
    finite: bool = True,
) -> None:
    """Refuse (`DecodeError`) weights that must not replace the running ones: `expected` maps every name
    the model takes to its (shape, dtype). The push must hold exactly those names, each with that shape,
    in that dtype (a floating one may also travel as float32 or bfloat16), and, with `finite`, only finite
    values. The message names every kind of difference found (a few names of each)."""
    problems = []
    missing = [n for n in expected if n not in params.state]
    extra = [n for n in params.state if n not in expected]
    if missing:
        problems.append(f"missing {len(missing)} tensor(s) the model has: {_show(missing)}")
    if extra:
        problems.append(f"{len(extra)} tensor(s) the model does not have: {_show(extra)}")
    shapes, dtypes, bad = [], [], []
    for name, t in params.state.items():
        if name not in expected:
            continue
        shape, dtype = expected[name]
        if tuple(t.shape) != tuple(shape):
            shapes.append(f"{name!r} is {list(t.shape)}, the model's {list(shape)}")
        ok = (t.dtype == dtype or t.dtype in _FLOAT_WIRE) if dtype.is_floating_point else t.dtype == dtype
        if not ok:
            dtypes.append(f"{name!r} is {_dtype_name(t.dtype)}, the model's {_dtype_name(dtype)}")
        elif finite and t.is_floating_point():
            n = _non_finite(t)
            if n:
                bad.append(f"{name!r} ({n} of {t.numel()})")
    if shapes:
        problems.append("wrong shape: " + "; ".join(shapes[:4]) + ("; ..." if len(shapes) > 4 else ""))
    if dtypes:
        problems.append("wrong dtype: " + "; ".join(dtypes[:4]) + ("; ..." if len(dtypes) > 4 else ""))
    if bad:
        problems.append("NaN/inf values in " + ", ".join(bad[:4]) + (", ..." if len(bad) > 4 else ""))
    if problems:
        raise DecodeError(
            f"parameters v{params.version} do not fit this actor's policy: " + "; ".join(problems)
        )


# ----------------------------------------------------------------------------------------- reassembly


class ParameterAssembler[B: bytearray]:
    """Rebuilds `pirl/params/v2` payloads from LeRobot chunks, each chunk copied straight into a buffer.

    `acquire(nbytes)` hands out a writable buffer of at least `nbytes` once the header says how big the
    payload is (the first chunk holds it unless the header is over 2 MB: until then the first bytes are
    kept aside); `discard(buf)` takes back a buffer whose payload was abandoned (a new BEGIN, an error, a
    closed stream). `feed` returns (Parameters viewing the buffer, the buffer) when a payload is complete.
    Only `DecodeError` escapes `feed`, and after one the assembler is ready for the next payload.
    """

    def __init__(self, acquire: Callable[[int], B], discard: Callable[[B], None]):
        self._acquire, self._discard = acquire, discard
        self._active = False
        self._prefix = bytearray()
        self._header: Header | None = None
        self._buf: B | None = None
        self._pos = 0

    def feed(self, state: int, data: Buffer) -> tuple[Parameters, B] | None:
        if state not in (
            TransferState.TRANSFER_BEGIN,
            TransferState.TRANSFER_MIDDLE,
            TransferState.TRANSFER_END,
        ):
            self.abort()
            raise DecodeError(f"parameters: unknown transfer state {state}")
        if state == TransferState.TRANSFER_BEGIN or not self._active:
            self.abort()  # LeRobot's receiver starts over on BEGIN (and on anything after an END)
            self._active = True
        try:
            self._append(memoryview(data).cast("B"))
            if state != TransferState.TRANSFER_END:
                return None
            return self._finish()
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        """Drop a partial payload (its buffer goes back through `discard`)."""
        buf, self._buf = self._buf, None
        self._active, self._header, self._pos = False, None, 0
        self._prefix = bytearray()
        if buf is not None:
            self._discard(buf)

    def _append(self, data: memoryview) -> None:
        if self._buf is None:
            self._prefix += data
            self._header = read_header(self._prefix)
            if self._header is None:
                return
            try:
                self._buf = self._acquire(self._header.nbytes)
            except MemoryError as err:
                raise DecodeError(f"parameters: cannot allocate {self._header.nbytes} bytes") from err
            data, self._prefix = memoryview(self._prefix), bytearray()
        end = self._pos + len(data)
        if self._header is not None and end > self._header.nbytes:
            raise DecodeError(
                f"parameters: payload longer than the {self._header.nbytes} bytes its header says"
            )
        memoryview(self._buf)[self._pos : end] = data
        self._pos = end

    def _finish(self) -> tuple[Parameters, B]:
        header, buf = self._header, self._buf
        if header is None or buf is None:
            raise DecodeError(
                f"parameters: truncated payload ({len(self._prefix)} bytes, no complete header)"
            )
        if self._pos != header.nbytes:
            raise DecodeError(f"parameters: truncated payload ({self._pos} of {header.nbytes} bytes)")
        params = _parameters(header, memoryview(buf)[: header.nbytes])
        self._buf = None  # handed over: abort() must not discard it
        self.abort()
        return params, buf
