"""The server answers only requests addressed to it by a name it serves (loopback names by default).

A web page the user visits elsewhere can point a name it controls at 127.0.0.1 (DNS rebinding) and
then drive the local app from the user's own browser: same machine, but its requests carry that name
in their Host header. Requests, websockets included, whose Host is not one of this server's names are
refused: HTTP with 400, a websocket closed before it opens. Bound to another address
(`--server.address`), the server also answers that address and this machine's names;
BAR_ALLOWED_HOSTS adds more (comma-separated), e.g. the name students type in a classroom.
"""
from __future__ import annotations

import os
import socket

LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
ANY = ("0.0.0.0", "::", "")


def host_name(header: str) -> str:
    """The name in a Host header, without its port: 'a.b:8501' -> 'a.b', '[::1]:8501' -> '::1'."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def allowed_hosts(address: str | None, extra: str | None = None) -> frozenset[str]:
    """The names a server bound to `address` answers to (see the module's docstring)."""
    names = set(LOOPBACK)
    address = (address or "").strip().lower()
    if address and address not in LOOPBACK:
        if address not in ANY:
            names.add(address)
        hostname = socket.gethostname().lower()
        names |= {hostname, socket.getfqdn().lower()}
        try:
            names |= set(socket.gethostbyname_ex(hostname)[2])
        except OSError:
            pass
    names |= {h.strip().lower() for h in (extra or "").split(",") if h.strip()}
    return frozenset(names)


class TrustedHosts:
    """ASGI middleware: refuse requests whose Host header is not one of `hosts()` (read once, at the
    first request: the server's options are set by then)."""

    def __init__(self, app, hosts=None):
        self.app = app
        self._hosts_fn = hosts or (lambda: allowed_hosts(_server_address(), os.environ.get("BAR_ALLOWED_HOSTS")))
        self._hosts: frozenset[str] | None = None

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        if self._hosts is None:
            self._hosts = frozenset(self._hosts_fn())
        header = next((v.decode("latin-1") for k, v in scope.get("headers", []) if k == b"host"), "")
        if host_name(header) in self._hosts:
            return await self.app(scope, receive, send)
        if scope["type"] == "websocket":
            await receive()  # websocket.connect
            await send({"type": "websocket.close", "code": 1008})
            return
        body = b"this server answers only to its own host names (see bar_app/host_check.py)\n"
        await send({"type": "http.response.start", "status": 400,
                    "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


def _server_address() -> str | None:
    import streamlit as st
    return st.get_option("server.address")
