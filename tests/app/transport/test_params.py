"""pirl/params/v2: exact round trips, zero-copy views, a strict header, and chunk-wise reassembly."""

from __future__ import annotations

import io
import json
import os
import pickle
import struct

import pytest
import torch

from app.transport.chunks import DecodeError, TransferState, chunk_spans
from app.transport.params import (
    ALIGN,
    MAGIC,
    ParameterAssembler,
    Parameters,
    decode_parameters,
    encode_parameters,
    layout_parameters,
    read_header,
    write_parameters,
)

BEGIN, MIDDLE, END = (
    TransferState.TRANSFER_BEGIN,
    TransferState.TRANSFER_MIDDLE,
    TransferState.TRANSFER_END,
)


def odd_state() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "w": torch.randn(7, 13, generator=g),
        "scalar": torch.tensor(2.5),
        "empty": torch.empty(0, 3),
        "cube": torch.randn(3, 5, 2, generator=g, dtype=torch.float64),
        "half": torch.randn(9, generator=g).half(),
        "strided": torch.randn(6, 4, generator=g).t(),  # not contiguous
        "steps": torch.tensor([3, -1, 2**40]),
        "i8": torch.tensor([-128, 0, 127], dtype=torch.int8),
        "u8": torch.arange(5, dtype=torch.uint8),
        "ünïcode/名前": torch.ones(1),
    }


def header_of(payload: bytes | bytearray) -> dict:
    (length,) = struct.unpack_from("<I", payload, len(MAGIC))
    return json.loads(bytes(payload[len(MAGIC) + 4 : len(MAGIC) + 4 + length]))


def with_header(payload: bytes | bytearray, header: dict) -> bytearray:
    """`payload` with its header replaced, padded with JSON whitespace so the tensor data stays in place
    (only the mutation under test is wrong)."""
    (length,) = struct.unpack_from("<I", payload, len(MAGIC))
    data_start = -(-(len(MAGIC) + 4 + length) // ALIGN) * ALIGN
    text = json.dumps(header, separators=(",", ":")).encode()
    room = data_start - len(MAGIC) - 4
    assert len(text) <= room, "the mutated header no longer fits before the data"
    text += b" " * (room - len(text))
    return bytearray(MAGIC + struct.pack("<I", len(text)) + text + payload[data_start:])


def test_round_trip_keeps_every_dtype_shape_and_value():
    state = odd_state()
    p = Parameters(version=-3, state=state, run_id="r1", base_digest="abc")
    back = decode_parameters(encode_parameters(p))
    assert (back.version, back.run_id, back.dtype, back.base_digest) == (-3, "r1", "float32", "abc")
    assert list(back.state) == list(state)
    for name, t in state.items():
        assert back.state[name].dtype == t.dtype and back.state[name].shape == t.shape, name
        assert torch.equal(back.state[name], t), name


def test_bf16_casts_floating_tensors_only_and_halves_the_bytes():
    state = {"w": torch.randn(64, 64), "steps": torch.tensor(3), "d": torch.randn(4, dtype=torch.float64)}
    full = encode_parameters(Parameters(1, state))
    half = encode_parameters(Parameters(1, state), bf16=True)
    back = decode_parameters(half)
    assert back.dtype == "bfloat16" and back.state["w"].dtype == torch.bfloat16
    assert back.state["d"].dtype == torch.bfloat16 and back.state["steps"].dtype == torch.int64
    assert torch.equal(back.state["w"], state["w"].bfloat16())
    assert len(half) < 0.6 * len(full)


def test_layout_is_aligned_and_ends_with_the_last_tensor():
    state = {f"layer.{i}.weight_with_a_long_name": torch.ones(i + 1) for i in range(300)}
    payload = encode_parameters(Parameters(0, state))
    header = header_of(payload)
    offsets = [t["offset"] for t in header["tensors"]]
    assert all(o % ALIGN == 0 for o in offsets) and offsets == sorted(offsets)
    assert offsets[0] == -(-(len(MAGIC) + 4 + struct.unpack_from("<I", payload, 8)[0]) // ALIGN) * ALIGN
    last = header["tensors"][-1]
    assert header["nbytes"] == len(payload) == last["offset"] + last["nbytes"]
    assert decode_parameters(encode_parameters(Parameters(0, {}))).state == {}


def test_decoded_tensors_view_a_writable_buffer_and_copy_a_readonly_one():
    payload = encode_parameters(Parameters(0, {"w": torch.arange(32.0)}))
    view = decode_parameters(payload).state["w"]
    base = torch.frombuffer(payload, dtype=torch.uint8).data_ptr()
    assert base <= view.data_ptr() < base + len(payload)  # zero copy
    assert view.data_ptr() % ALIGN == base % ALIGN
    copied = decode_parameters(bytes(payload)).state["w"]  # bytes are read-only: a private copy
    assert not base <= copied.data_ptr() < base + len(payload)
    assert torch.equal(copied, torch.arange(32.0))


def test_writing_into_a_dirty_reused_buffer_gives_the_same_bytes():
    p = Parameters(4, odd_state(), run_id="r")
    layout = layout_parameters(p, bf16=True)
    dirty = bytearray(os.urandom(layout.nbytes + 100))
    view = write_parameters(layout, dirty)
    assert bytes(view) == bytes(encode_parameters(p, bf16=True))
    with pytest.raises(ValueError, match="buffer of"):
        write_parameters(layout, bytearray(layout.nbytes - 1))


def test_only_known_dtypes_travel():
    with pytest.raises(TypeError, match="only"):
        encode_parameters(Parameters(0, {"mask": torch.ones(2, dtype=torch.bool)}))


# ------------------------------------------------------------------------------------- hostile input


@pytest.fixture
def payload() -> bytearray:
    return encode_parameters(Parameters(2, {"a": torch.randn(3, 4), "b": torch.arange(5)}, run_id="r"))


def test_every_truncation_and_any_extra_byte_is_refused(payload):
    for n in [0, 1, 7, 8, 11, 12, 50, len(payload) - 1]:
        with pytest.raises(DecodeError, match="truncated|payload of|not a pirl"):
            decode_parameters(payload[:n])
    with pytest.raises(DecodeError, match="payload of"):
        decode_parameters(payload + b"\0")


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda h: h.update(format="pirl/params/v1"), "run the same pirl version"),
        (lambda h: h.update(extra=1), "header keys"),
        (lambda h: h.pop("base_digest"), "header keys"),
        (lambda h: h.update(version=True), "version"),
        (lambda h: h.update(version="7"), "version"),
        (lambda h: h.update(dtype="float8"), "dtype"),
        (lambda h: h.update(byteorder="big"), "endian"),
        (lambda h: h.update(tensors={"a": 1}), "list"),
        (lambda h: h["tensors"][0].update(dtype="bool"), "allowed"),
        (lambda h: h["tensors"][0].update(dtype="object"), "allowed"),
        (lambda h: h["tensors"][0].update(dtype=5), "allowed"),
        (lambda h: h["tensors"][0].update(shape=[3, 5]), "bytes, but shape"),
        (lambda h: h["tensors"][0].update(shape=[-3, -4]), "shape entry"),
        (lambda h: h["tensors"][0].update(shape="3x4"), "shape must be a list"),
        (lambda h: h["tensors"][0].update(offset=0), "offset"),
        (lambda h: h["tensors"][0].update(offset=-64), "offset"),
        (lambda h: h["tensors"][1].update(offset=h["tensors"][1]["offset"] + 64), "offset|past the payload"),
        (lambda h: h["tensors"][1].update(shape=[5000], nbytes=40000), "past the payload"),
        (lambda h: h["tensors"][1].update(name="a"), "repeated"),
        (lambda h: h["tensors"][1].update(name=""), "empty"),
        (lambda h: h["tensors"][1].pop("nbytes"), "keys"),
        (lambda h: h.update(nbytes=h["nbytes"] + 64), "tensors end at"),
        (lambda h: h.update(nbytes=10**15), "tensors end at"),
    ],
)
def test_a_malformed_header_is_refused_with_a_reason(payload, mutate, match):
    header = header_of(payload)
    mutate(header)
    with pytest.raises(DecodeError, match=match):
        read_header(with_header(payload, header))


def test_the_header_itself_must_be_bounded_utf8_json(payload):
    assert decode_parameters(with_header(payload, header_of(payload))).version == 2  # the helper is sound
    with pytest.raises(DecodeError, match="header of"):
        read_header(MAGIC + struct.pack("<I", 2**31) + b"{}")
    with pytest.raises(DecodeError, match="UTF-8 JSON"):
        read_header(MAGIC + struct.pack("<I", 3) + b"\xff\xfe{")
    with pytest.raises(DecodeError, match="JSON object"):
        read_header(MAGIC + struct.pack("<I", 2) + b"[]")
    assert read_header(payload[:5]) is None and read_header(payload[:20]) is None  # more bytes needed


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch /tmp/pirl_pwned_by_params",))


def test_torch_save_and_pickle_payloads_are_refused_unread():
    if os.path.exists("/tmp/pirl_pwned_by_params"):
        os.remove("/tmp/pirl_pwned_by_params")
    buf = io.BytesIO()
    torch.save({"format": "pirl/params/v1", "x": _Evil()}, buf)
    with pytest.raises(DecodeError, match="older pirl.*algorithm.type"):
        decode_parameters(buf.getvalue())
    with pytest.raises(DecodeError, match="algorithm.type"):
        decode_parameters(pickle.dumps({"state": _Evil()}))
    assert not os.path.exists("/tmp/pirl_pwned_by_params")


def test_a_lerobot_sac_learners_weights_get_an_actionable_error():
    from lerobot.transport.utils import state_to_bytes

    with pytest.raises(DecodeError, match="LeRobot SAC learner"):
        decode_parameters(state_to_bytes({"actor.weight": torch.zeros(2)}))


# ----------------------------------------------------------------------------------------- reassembly


class Buffers:
    """acquire/discard for the assembler, recording what happened."""

    def __init__(self) -> None:
        self.acquired: list[bytearray] = []
        self.discarded: list[bytearray] = []

    def acquire(self, nbytes: int) -> bytearray:
        self.acquired.append(bytearray(os.urandom(nbytes + 3)))  # dirty and larger, like a reused one
        return self.acquired[-1]

    def discard(self, buf: bytearray) -> None:
        self.discarded.append(buf)


def chunks(payload, size):
    view = memoryview(payload)
    return [(state, view[a:b]) for state, a, b in chunk_spans(len(view), size)]


@pytest.mark.parametrize("chunk", [1, 7, 64, 333, 10**6])
def test_the_assembler_rebuilds_a_payload_from_any_chunking(chunk):
    state = odd_state()
    payload = encode_parameters(Parameters(9, state, run_id="x"), bf16=True)
    bufs = Buffers()
    asm = ParameterAssembler(bufs.acquire, bufs.discard)
    results = [asm.feed(s, d) for s, d in chunks(payload, chunk)]
    assert all(r is None for r in results[:-1])
    params, buf = results[-1]
    assert buf is bufs.acquired[0] and len(bufs.acquired) == 1 and not bufs.discarded
    assert params.version == 9 and params.run_id == "x"
    expected = decode_parameters(payload).state
    for name, t in expected.items():
        assert torch.equal(params.state[name], t), name
    big = params.state["w"]
    base = torch.frombuffer(buf, dtype=torch.uint8).data_ptr()
    assert base <= big.data_ptr() < base + len(buf)  # a view of the staging buffer


def test_the_assembler_restarts_on_begin_and_refuses_short_or_long_payloads():
    p1 = encode_parameters(Parameters(1, {"w": torch.zeros(100)}))
    p2 = encode_parameters(Parameters(2, {"w": torch.ones(100)}))
    bufs = Buffers()
    asm = ParameterAssembler(bufs.acquire, bufs.discard)
    first = chunks(p1, 128)
    for s, d in first[:3]:  # a push cut off mid-way, then a new one begins
        assert asm.feed(s, d) is None
    *_, (params, _) = [asm.feed(s, d) for s, d in chunks(p2, 128)]
    assert params.version == 2 and torch.equal(params.state["w"], torch.ones(100))
    assert bufs.discarded == [bufs.acquired[0]]  # the abandoned push's buffer went back

    for s, d in first[:-1]:
        asm.feed(s, d)
    with pytest.raises(DecodeError, match="truncated"):
        asm.feed(END, b"")
    with pytest.raises(DecodeError, match="longer than"):
        for s, d in first[:-1]:
            asm.feed(s, d)
        asm.feed(END, bytes(first[-1][1]) + b"x")
    with pytest.raises(DecodeError, match="truncated"):
        asm.feed(END, p1[:10])  # a one-message payload too short to hold its header
    with pytest.raises(DecodeError, match="unknown transfer state"):
        asm.feed(7, b"")
    assert len(bufs.discarded) == 3  # every failed push gave its buffer back
    *_, (params, _) = [asm.feed(s, d) for s, d in chunks(p1, 4096)]  # and the assembler still works
    assert params.version == 1


def test_the_assembler_refuses_a_bad_push_at_its_first_bytes():
    from lerobot.transport.utils import state_to_bytes

    bufs = Buffers()
    asm = ParameterAssembler(bufs.acquire, bufs.discard)
    with pytest.raises(DecodeError, match="torch.save"):
        asm.feed(BEGIN, state_to_bytes({"w": torch.zeros(4)})[:100])
    assert not bufs.acquired  # refused before anything was allocated
    assert asm.feed(MIDDLE, MAGIC) is None  # a push may start without BEGIN, as in LeRobot's receiver


def test_a_push_too_large_to_allocate_is_a_decode_error():
    memory = {"left": False}

    def acquire(nbytes: int) -> bytearray:
        if not memory["left"]:
            raise MemoryError
        return bytearray(nbytes)

    asm = ParameterAssembler(acquire, lambda buf: None)
    payload = encode_parameters(Parameters(1, {"w": torch.zeros(100)}))
    with pytest.raises(DecodeError, match="cannot allocate"):  # the client reconnects, it does not crash
        asm.feed(END, payload)
    memory["left"] = True  # the same assembler takes the next push
    *_, (params, _) = [asm.feed(s, d) for s, d in chunks(payload, 64)]
    assert params.version == 1
