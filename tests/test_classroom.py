"""Classroom mode (`bar app --share`): the token check, viewers who cannot act (not even with a forged
button message), the host who can, and the launcher that binds the LAN and prints both links."""
from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from bar_app import classroom
from bar_app.__main__ import lan_address, stop_server, wait_healthy
from bar_core.job import JobManager
from tests.helpers import free_port, tiny_config
from tests.test_app import APP
from tests.test_host_check import first_line

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "s3cret-Token_for-tests"


@pytest.fixture
def one_run(runs_dir):
    """The runs folder with one finished tiny run, 'r', and a fresh manager for the app."""
    st.cache_resource.clear()
    job = JobManager(runs_dir).start(tiny_config(), name="r")
    assert job.join(120) and job.state == "done"
    yield runs_dir
    st.cache_resource.clear()


@pytest.fixture
def classroom_on(monkeypatch):
    monkeypatch.setenv(classroom.ENV, TOKEN)


def test_every_session_is_the_host_without_classroom_mode(monkeypatch):
    monkeypatch.delenv(classroom.ENV, raising=False)
    assert classroom.classroom_token() is None
    assert classroom.is_host({}, {}) and classroom.is_host({}, {"host": "anything"})


def test_only_the_token_makes_a_host_and_the_session_remembers_it(classroom_on):
    state: dict = {}
    for wrong in ({}, {"host": ""}, {"host": TOKEN[:-1]}, {"host": TOKEN + "x"}, {"host": TOKEN.upper()}):
        assert not classroom.is_host(state, wrong), wrong
    assert classroom.is_host(state, {"host": TOKEN})
    assert classroom.is_host(state, {}), "a link without the token keeps the session the host"
    assert not classroom.is_host({}, {}), "another session is not"
    assert len(classroom.new_token()) >= 32 and classroom.new_token() != classroom.new_token()


def button_keys(at: AppTest) -> set[str]:
    return {b.key for b in at.button if b.key}


def test_a_viewer_sees_no_control_that_acts(classroom_on, one_run):
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    assert not at.exception, at.exception
    keys = button_keys(at)
    assert not keys & {"start", "start_quick_demo", "pause", "resume", "stop"}, keys
    assert not [k for k in at.session_state if str(k).startswith("cfg_")], "no set-up form for a viewer"
    assert any(classroom.VIEWER_NOTE in c.value for c in at.caption)
    at.session_state["page"] = "Runs"
    at.run()
    assert not at.exception, at.exception
    assert not button_keys(at) & {"runs_rename_open", "runs_delete_open", "runs_rerun"}
    assert "runs_open" in button_keys(at), "a viewer still opens runs"
    at.session_state["page"] = "Train & watch"
    at.session_state["view_tabs"] = "Connectivity"
    at.run()
    assert not at.exception, at.exception
    assert at.button(key="btn_pruned").disabled, "a viewer does not time the pruned network on the host's CPU"


def _act():
    """A session's script that calls the host's actions directly, as a forged button message would."""
    import streamlit as st

    from bar_app.runs_page import _delete
    from bar_app.state import get_manager, host_only, start_job
    from tests.helpers import tiny_config

    manager = get_manager()
    calls = st.session_state.setdefault("calls", [])
    host_only(calls.append)("pause")  # what Pause, Resume and Stop call (bar_app/views/controls.py)
    if st.session_state.get("do") == "delete":
        _delete(manager, ["r"])
    if st.session_state.get("do") == "start":
        st.session_state["started"] = start_job("msg", "started", "...", config=tiny_config(), name="new")
        if manager.job is not None:
            manager.job.join(120)


def test_a_viewers_forged_actions_neither_delete_nor_start(classroom_on, one_run):
    at = AppTest.from_function(_act, default_timeout=60)
    at.session_state["do"] = "delete"
    at.run()
    assert not at.exception, at.exception
    assert (one_run / "r" / "config.json").is_file(), "the viewer deleted a run"
    assert at.session_state["calls"] == [], "a viewer's Pause/Stop callback acted"
    at.session_state["do"] = "start"
    at.run()
    assert not at.exception, at.exception
    assert at.session_state["started"] is False and classroom.VIEWER_NOTE in at.session_state["msg"]
    assert not (one_run / "new").exists()


def test_the_host_with_the_token_can_start_and_delete(classroom_on, one_run):
    at = AppTest.from_function(_act, default_timeout=120)
    at.query_params["host"] = TOKEN
    at.session_state["do"] = "start"
    at.run()
    assert not at.exception, at.exception
    assert at.session_state["started"] is True and (one_run / "new" / "config.json").is_file()
    assert at.session_state["calls"] == ["pause"]
    at.session_state["do"] = "delete"
    at.run()
    assert not (one_run / "r").exists()


def test_the_hosts_page_has_the_controls(classroom_on, one_run):
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params["host"] = TOKEN
    at.run()
    assert not at.exception, at.exception
    assert "start" in button_keys(at)
    assert "host" not in at.query_params, "the token leaves the visible URL"
    at.session_state["page"] = "Runs"
    at.run()
    assert {"runs_rename_open", "runs_delete_open"} <= button_keys(at), "still the host after the URL dropped it"


def test_without_classroom_mode_the_page_is_as_before(monkeypatch, one_run):
    monkeypatch.delenv(classroom.ENV, raising=False)
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    assert not at.exception, at.exception
    assert "start" in button_keys(at)
    assert not any(classroom.VIEWER_NOTE in c.value for c in at.caption)


def test_share_binds_the_lan_prints_both_links_and_answers_the_lan_address(tmp_path, monkeypatch):
    monkeypatch.delenv(classroom.ENV, raising=False)
    port = free_port()
    log = tmp_path / "server.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "bar_app", "--share", "--server.port", str(port)],
                                cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_healthy(f"http://127.0.0.1:{port}", proc)
        time.sleep(0.5)
        text = log.read_text()
        lan = lan_address()
        host = re.search(rf"Host \(keep this link to yourself\): http://{re.escape(lan)}:{port}/\?host=(\S+)", text)
        assert host and f"Students: http://{lan}:{port}/" in text, text
        assert host.group(1) not in Path(f"/proc/{proc.pid}/cmdline").read_bytes().decode(errors="replace")
        listening = subprocess.run(["ss", "-ltn"], capture_output=True, text=True).stdout
        assert re.search(rf"(0\.0\.0\.0|\*):{port}\b", listening), listening
        assert first_line(port, "/", f"{lan}:{port}").endswith("200 OK")
        assert " 400 " in first_line(port, "/", f"evil.example:{port}")
    finally:
        stop_server(proc)
