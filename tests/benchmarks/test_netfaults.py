"""The black-hole proxy (benchmarks/netfaults.py) beyond freeze/thaw (tests/benchmarks/test_faults.py has
that): a side that goes away takes the other with it, and with no upstream a client is refused."""

from __future__ import annotations

import socket

import pytest

from benchmarks.netfaults import BlackHoleProxy


def test_a_closed_upstream_closes_the_client_side_too():
    server = socket.create_server(("127.0.0.1", 0))
    proxy = BlackHoleProxy(server.getsockname()[1])
    try:
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=2) as client:
            server.settimeout(2)
            upstream, _ = server.accept()
            upstream.sendall(b"hi")
            assert client.recv(16) == b"hi"
            upstream.close()  # a killed learner
            assert client.recv(16) == b""  # the actor sees the connection end, not silence
    finally:
        proxy.close()
        server.close()


def test_without_an_upstream_the_client_is_refused():
    spare = socket.create_server(("127.0.0.1", 0))
    port = spare.getsockname()[1]
    spare.close()  # nothing listens there now
    proxy = BlackHoleProxy(port)
    try:
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=2) as client:
            try:
                data = client.recv(16)
            except ConnectionResetError:
                data = b""
            assert data == b""
    finally:
        proxy.close()


def test_close_ends_every_connection():
    server = socket.create_server(("127.0.0.1", 0))
    proxy = BlackHoleProxy(server.getsockname()[1])
    try:
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=2) as client:
            server.settimeout(2)
            upstream, _ = server.accept()
            with upstream:
                proxy.freeze()
                proxy.close()
                assert client.recv(16) == b""
                upstream.settimeout(2)
                assert upstream.recv(16) == b""
            with pytest.raises(OSError):
                socket.create_connection(("127.0.0.1", proxy.port), timeout=1)
    finally:
        server.close()
