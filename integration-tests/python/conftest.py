"""Starts `llm-forward run --demo` (the real binary, Envoy and the filter) for the Python client tests."""
import os
import pathlib
import signal
import socket
import subprocess
import time
import urllib.request

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def gateway_binary() -> pathlib.Path:
    for profile in ("debug", "release"):
        p = ROOT / "target" / profile / "llm-forward"
        if p.exists():
            return p
    raise RuntimeError("build the gateway first: cargo build -p llm-forward")


class RunningGateway:
    def __init__(self, proc, port, output_path):
        self.proc = proc
        self.port = port
        self.output_path = output_path

    @property
    def base_url(self):
        return f"http://127.0.0.1:{self.port}"

    def output(self):
        return self.output_path.read_text(errors="replace")


def start_gateway(tmp_path, *args, env_extra=None):
    # Envoy's admin stays on run's private Unix socket; only the listener gets a port.
    port = free_port()
    env = dict(os.environ)
    env.update(
        LLM_FORWARD_ADDRESS="127.0.0.1",
        LLM_FORWARD_PORT=str(port),
        LLM_FORWARD_CONCURRENCY="2",
        LLM_FORWARD_WASM=str(ROOT / "target/wasm32-wasip1/release/llm_forward_filter.wasm"),
    )
    env.update(env_extra or {})
    out = tmp_path / "gateway.out"
    proc = subprocess.Popen(
        [str(gateway_binary()), "run", *args],
        cwd=tmp_path,
        env=env,
        stdout=out.open("w"),
        stderr=subprocess.STDOUT,
    )
    gw = RunningGateway(proc, port, out)
    deadline = time.time() + 60
    while "ready to serve" not in gw.output():
        if proc.poll() is not None:
            raise RuntimeError(f"llm-forward exited ({proc.returncode}):\n{gw.output()}")
        if time.time() > deadline:
            proc.kill()
            raise RuntimeError(f"llm-forward not ready after 60s:\n{gw.output()}")
        time.sleep(0.1)
    return gw


def start_mock():
    """`llm-forward mock` on a free port, ready; returns (process, port)."""
    port = free_port()
    proc = subprocess.Popen(
        [str(gateway_binary()), "mock", "--listen", f"127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 10
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=1)
            return proc, port
        except Exception:
            if time.time() > deadline:
                proc.kill()
                raise
            time.sleep(0.1)


def stop_mock(proc):
    proc.terminate()
    proc.wait(timeout=10)


def stop_gateway(gw, timeout=15):
    if gw.proc.poll() is None:
        gw.proc.send_signal(signal.SIGTERM)
        try:
            return gw.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            gw.proc.kill()
            raise
    return gw.proc.returncode


@pytest.fixture
def demo_gateway(tmp_path):
    gw = start_gateway(tmp_path, "--demo")
    yield gw
    stop_gateway(gw)
