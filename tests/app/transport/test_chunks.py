"""LeRobot chunking without copies, and hand-framed Parameters messages that are protobuf's bytes exactly."""

from __future__ import annotations

import os

import pytest
from lerobot.transport import services_pb2
from lerobot.transport.utils import CHUNK_SIZE, send_bytes_in_chunks

from app.transport.chunks import (
    DecodeError,
    chunk_spans,
    frame_parameters,
    parse_parameters_frame,
    to_messages,
)

SIZES = [0, 1, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, 2 * CHUNK_SIZE + 17]


def lerobot_messages(payload: bytes) -> list:
    return list(send_bytes_in_chunks(payload, services_pb2.Parameters, silent=True))


@pytest.mark.parametrize("size", SIZES)
def test_chunks_are_lerobots_for_any_buffer_type(size):
    payload = os.urandom(size)
    expected = [(m.transfer_state, m.data) for m in lerobot_messages(payload)]
    for buf in (payload, bytearray(payload), memoryview(bytearray(payload))):
        got = [(m.transfer_state, m.data) for m in to_messages(buf, services_pb2.Parameters)]
        assert got == expected
    assert [s for s, *_ in chunk_spans(size)] == [s for s, _ in expected]


@pytest.mark.parametrize("size", SIZES)
def test_hand_framed_messages_are_the_bytes_protobuf_sends(size):
    payload = os.urandom(size)
    frames = list(frame_parameters(bytearray(payload)))
    assert frames == [m.SerializeToString() for m in lerobot_messages(payload)]
    parsed = [parse_parameters_frame(f) for f in frames]
    assert [(s, bytes(d)) for s, d in parsed] == [
        (m.transfer_state, m.data) for m in map(services_pb2.Parameters.FromString, frames)
    ]


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        out.append(low | (0x80 if n else 0))
        if not n:
            return bytes(out)


def test_any_protobuf_encoding_of_the_message_is_read_like_protobuf_reads_it():
    data = b"\x01\x02payload"
    reordered = b"\x12" + _varint(len(data)) + data + b"\x08\x02"
    unknown = b"\x18\x96\x01" + b"\x21" + bytes(8) + b"\x2d" + bytes(4) + b"\x32\x03abc" + reordered
    repeated = b"\x12\x03old\x08\x01" + reordered  # the last value of each field wins
    for raw in (reordered, unknown, repeated, b"", b"\x08\x03"):
        expected = services_pb2.Parameters.FromString(raw)
        state, got = parse_parameters_frame(raw)
        assert (state, bytes(got)) == (expected.transfer_state, expected.data)
    big = os.urandom(300)  # a two-byte length varint
    assert bytes(parse_parameters_frame(b"\x08\x02\x12" + _varint(300) + big)[1]) == big


@pytest.mark.parametrize(
    "raw",
    [
        b"\x08",  # varint missing
        b"\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",  # over-long varint
        b"\x12\x05abc",  # length past the end
        b"\x0a\x01x",  # field 1 as bytes
        b"\x10\x01",  # field 2 as varint
        b"\x1b",  # a group
        b"\x21\x00",  # fixed64 cut short
        b"\x00\x01",  # field number 0
    ],
)
def test_malformed_frames_are_refused(raw):
    with pytest.raises(DecodeError, match="malformed"):
        parse_parameters_frame(raw)
