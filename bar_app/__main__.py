"""`python -m bar_app`: serve the dashboard on 127.0.0.1, print its URL, send no telemetry.

Extra arguments go to `streamlit run` (e.g. `python -m bar_app --server.port 8600`). Without a port, the
first free one from 8501 up is used. `--share` (classroom mode, bar_app/classroom.py) binds every interface
and prints a host link with a secret token and the students' link.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

# The page (main.py) with the live-feed route (bar_app/live_feed.py)
PAGE = Path(__file__).resolve().with_name("server.py")
FLAGS = ["--server.headless", "true", "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false",
         "--server.fileWatcherType", "none", "--runner.postScriptGC", "false",
         "--server.enableStaticServing", "true",  # serves app/static/plotly.min.js (bar_app/live_plot.py)
         # what .streamlit/config.toml sets for a clone, so that an installed `bar app` looks the same
         "--client.toolbarMode", "minimal", "--server.runOnSave", "false", "--global.developmentMode", "false"]


def free_port(start: int = 8501, tries: int = 100) -> int:
    for port in range(start, start + tries):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise SystemExit(f"no free port in {start}..{start + tries - 1}; pass --server.port N")


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    """Block until the server started as `proc` answers `url`/_stcore/health with "ok" (the browser test,
    the screenshot script); RuntimeError if it exits first or does not answer within `timeout` s."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"the app exited with code {proc.returncode} before it was ready")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.read().decode().strip() == "ok":
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"the app did not answer {url}/_stcore/health within {timeout:.0f} s")


def stop_server(proc: subprocess.Popen, timeout: float = 20.0) -> None:
    """Stop the server started as `proc`: terminate, and kill it if it has not exited within `timeout` s."""
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _exit_on_sigterm(signum, frame) -> None:
    """SIGTERM as a clean exit: the interpreter's exit stops a training job after its step, saving a
    checkpoint and the summary (bar_core/job.py registers that at exit). Streamlit's server (uvicorn)
    catches SIGTERM, shuts down, puts this handler back and raises the signal again: it lands here."""
    print("\nSIGTERM: stopping; a training job saves its checkpoint and summary first ...", file=sys.stderr, flush=True)
    sys.exit(128 + signum)


def lan_address() -> str:
    """This machine's address on its LAN: the source address of a route outwards (a UDP connect sends
    nothing), else its host name's address, else loopback."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.255.255.255", 1))
            return s.getsockname()[0]
        except OSError:
            pass
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"


def share_flags(port: str) -> list[str]:
    """Classroom mode: the token into this process's environment (the server runs in it; not on a command
    line that ps shows), the LAN address into the Host check, both links printed; the flags that bind it."""
    from bar_app import classroom

    token = classroom.new_token()
    os.environ[classroom.ENV] = token
    lan = lan_address()
    extra = os.environ.get("BAR_ALLOWED_HOSTS", "")
    os.environ["BAR_ALLOWED_HOSTS"] = ",".join(h for h in (extra, lan) if h)
    print("BAR Explorer in classroom mode (Ctrl+C to stop)\n"
          f"  Host (keep this link to yourself): http://{lan}:{port}/?{classroom.PARAM}={token}\n"
          f"  Students: http://{lan}:{port}/", flush=True)
    return ["--server.address", "0.0.0.0"]


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    share = "--share" in argv
    argv = [a for a in argv if a != "--share"]
    if share and any(a.startswith("--server.address") for a in argv):
        raise SystemExit("error: --share binds every interface itself; leave out --server.address")
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    port_args = [a for a in argv if a.startswith("--server.port")]
    if port_args:
        a = port_args[0]
        i = argv.index(a)
        port = a.split("=", 1)[1] if "=" in a else (argv[i + 1] if i + 1 < len(argv) else "")
        if not port.isdigit():
            raise SystemExit(f"error: --server.port needs a port number, got {port!r}")
    else:
        port = str(free_port())
        argv = ["--server.port", port, *argv]
    if share:
        argv = [*share_flags(port), *argv]  # after FLAGS: the later --server.address wins
    else:
        print(f"BAR Explorer: open http://127.0.0.1:{port}  (Ctrl+C to stop)", flush=True)
    from streamlit.web import cli as stcli

    from bar_app.live_plot import ensure_static_plotly

    ensure_static_plotly()  # the static folder exists before Streamlit looks for it (else it warns once)

    sys.argv = ["streamlit", "run", str(PAGE), *FLAGS, *argv]
    return stcli.main()


if __name__ == "__main__":
    sys.exit(main())
