"""Where the server listens: loopback by default, a warning for anything else, ports and names checked."""

from __future__ import annotations

import socket

import pytest

from app.serve.dispatch import Dispatcher
from app.serve.server import OpenAIServer, ServeError, exposure_warning, is_loopback


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("localhost", True),
        ("::1", True),
        ("127.0.0.2", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.5", False),
        ("myhost", False),
    ],
)
def test_only_loopback_addresses_count_as_this_computer_only(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback
    assert (exposure_warning(host, None) is None) is loopback


def test_the_warning_says_whether_a_key_guards_it() -> None:
    assert "no API key is set" in (exposure_warning("0.0.0.0", None) or "")
    assert "they need the API key" in (exposure_warning("0.0.0.0", "k") or "")


def _server(**kw: object) -> OpenAIServer:
    return OpenAIServer(Dispatcher(client=None), **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kw", "words"),
    [
        ({"port": 70000}, "does not exist"),
        ({"port": -1}, "does not exist"),
        ({"api_key": "  "}, "API key is empty"),
    ],
)
def test_bad_settings_are_refused_before_binding(kw: dict[str, object], words: str) -> None:
    with pytest.raises(ServeError, match=words):
        _server(**kw)


def test_an_ephemeral_port_is_shown_in_the_url_and_freed_on_close() -> None:
    server = _server(port=0)
    server.start()
    try:
        assert server.port > 0 and server.url == f"http://127.0.0.1:{server.port}/v1"
        with socket.create_connection(("127.0.0.1", server.port), timeout=5):
            pass
    finally:
        server.close()
    assert not server.running
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", server.port), timeout=5)


def test_ipv6_loopback_gets_brackets_in_the_url() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 here")
    server = _server(host="::1", port=0)
    try:
        server.start()
    except ServeError as exc:
        pytest.skip(f"IPv6 loopback not available: {exc}")
    try:
        assert server.url == f"http://[::1]:{server.port}/v1"
    finally:
        server.close()


def test_a_name_that_does_not_resolve_and_an_address_not_ours_are_one_line_each() -> None:
    with pytest.raises(ServeError, match="not an IP address or a name"):
        _server(host="no.such.host.invalid", port=0).start()
    with pytest.raises(ServeError, match="not an address of this computer"):
        _server(host="192.0.2.1", port=0).start()
