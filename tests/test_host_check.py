"""The served app refuses requests addressed to a name it does not serve (DNS rebinding): HTTP and
websockets, the page and the live-feed route, on the real server."""
from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from bar_app.__main__ import FLAGS, PAGE, stop_server, wait_healthy
from bar_app.host_check import LOOPBACK, allowed_hosts, host_name
from tests.helpers import free_port

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("header,name", [("127.0.0.1:8501", "127.0.0.1"), ("LocalHost:80", "localhost"),
                                         ("[::1]:8501", "::1"), ("evil.example", "evil.example"),
                                         ("evil.example:8501", "evil.example"), ("", "")])
def test_host_name_drops_the_port(header, name):
    assert host_name(header) == name


def test_loopback_by_default_and_more_names_only_when_asked():
    assert allowed_hosts("127.0.0.1") == LOOPBACK == allowed_hosts(None)
    assert allowed_hosts("127.0.0.1", "class.local, 10.0.0.7") == LOOPBACK | {"class.local", "10.0.0.7"}
    lan = allowed_hosts("0.0.0.0")
    assert socket.gethostname().lower() in lan and LOOPBACK <= lan and "evil.example" not in lan


def first_line(port: int, path: str, host: str, websocket: bool = False) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        req = f"GET {path} HTTP/1.1\r\nHost: {host}\r\n"
        if websocket:
            req += ("Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                    f"Sec-WebSocket-Version: 13\r\nOrigin: http://{host}\r\n")
        s.sendall((req + "\r\n").encode())
        return s.recv(200).split(b"\r\n")[0].decode()


def test_the_server_answers_its_names_and_refuses_others(tmp_path):
    port = free_port()
    log = open(tmp_path / "server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(PAGE), *FLAGS, "--server.port", str(port)],
                            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_healthy(f"http://127.0.0.1:{port}", proc)
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"):
            assert first_line(port, "/", host).endswith("200 OK"), host
            assert first_line(port, "/_stcore/stream", host, websocket=True).endswith("101 Switching Protocols"), host
        for host in (f"evil.example:{port}", "evil.example", f"127.0.0.1.evil.example:{port}"):
            assert " 400 " in first_line(port, "/", host), host
            assert " 400 " in first_line(port, "/bar/feed?q=abc:1", host), host
            assert " 101 " not in first_line(port, "/_stcore/stream", host, websocket=True), host
    finally:
        stop_server(proc)
        log.close()
