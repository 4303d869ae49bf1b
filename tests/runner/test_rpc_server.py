"""``rigfit rpc-server`` and the server process: start, answer, port taken, bad devices, the network
warning, Ctrl+C."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from app.core.errors import RigfitError
from app.hardware.rpc import query_server
from app.runner.ggml import Ggml, build_backends, rpc_available
from app.runner.rpc import NETWORK_WARNING, ServerOptions, ServerProcess, free_port

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(not rpc_available(), reason="llama-cpp-python without the RPC backend")


def test_the_build_has_rpc_and_its_files_say_so() -> None:
    assert "RPC" in build_backends()


def test_ggml_is_loaded_by_the_names_libllama_links() -> None:
    lib = Ggml()
    # The same copy libllama uses: loading libggml.so instead maps a second registry (DEVICE.md).
    names = {Path(p).name for p in _mapped_libraries() if "ggml" in Path(p).name}
    assert "libggml.so" not in names and "libggml.so.0" in names
    assert lib.has_rpc and any(d.name == "CPU" for d in lib.devices())


def _mapped_libraries() -> set[str]:
    with open(f"/proc/{os.getpid()}/maps", encoding="utf-8") as maps:
        return {line.split()[-1] for line in maps if line.rstrip().endswith(".so") or ".so." in line}


def test_a_server_answers_and_stops(tmp_path: Path) -> None:
    server = ServerProcess(ServerOptions(port=free_port(), devices=("CPU",), threads=1))
    server.start()
    try:
        info = server.wait_serving()
        assert info.devices and info.devices[0].total_mib > 0
        assert any("CPU" in line for line in server.lines)
    finally:
        code = server.stop()
    assert code is not None and not server.running


def test_a_taken_port_is_one_clear_line() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        server = ServerProcess(ServerOptions(port=port, devices=("CPU",)))
        server.start()
        with pytest.raises(RigfitError, match=f"port {port} on 127.0.0.1 is already in use"):
            server.wait_serving(timeout_s=30)
        assert server.stop() == 2


def test_an_unknown_device_names_what_there_is() -> None:
    server = ServerProcess(ServerOptions(port=free_port(), devices=("CUDA7",)))
    server.start()
    with pytest.raises(RigfitError, match=r"no device named 'CUDA7' here \(this machine has: CPU"):
        server.wait_serving(timeout_s=30)
    server.stop()


def test_other_addresses_need_a_flag() -> None:
    with pytest.raises(RigfitError, match="--allow-network"):
        ServerOptions(host="0.0.0.0").validate()
    ServerOptions(host="0.0.0.0", allow_network=True).validate()
    ServerOptions(host="127.0.0.2").validate()  # loopback: no flag needed


def _rigfit(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "app", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def test_cli_warns_with_llama_cpps_words_when_told_to_listen_on_the_network() -> None:
    # The port is held (bound, never listening), so no server ever faces the network here.
    with socket.socket() as holder:
        holder.bind(("0.0.0.0", 0))
        port = holder.getsockname()[1]
        proc = _rigfit("rpc-server", "--host", "0.0.0.0", "--port", str(port), "--allow-network")
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 2
    assert "Never expose the RPC server to an open network!" in out + err
    assert NETWORK_WARNING.splitlines()[1].format(host="0.0.0.0") in out + err
    assert f"port {port} on 0.0.0.0 is already in use" in err


def test_cli_refuses_the_network_without_the_flag() -> None:
    proc = _rigfit("rpc-server", "--host", "0.0.0.0", "--port", str(free_port()))
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 2
    assert err.strip().splitlines() == [
        "rigfit: listening on 0.0.0.0 lets other machines use this computer's devices with no "
        "password; add --allow-network if this network is yours alone"
    ]


def test_cli_serves_until_ctrl_c() -> None:
    port = free_port()
    proc = _rigfit("rpc-server", "--port", str(port), "--device", "CPU", "--threads", "1")
    assert proc.stderr is not None
    err_lines: list[str] = []
    reader = threading.Thread(target=lambda: err_lines.extend(iter(proc.stderr.readline, "")), daemon=True)  # type: ignore[union-attr]
    reader.start()
    try:
        deadline = time.monotonic() + 60
        while not any("serving on" in line for line in err_lines):
            assert proc.poll() is None and time.monotonic() < deadline, err_lines
            time.sleep(0.1)
        assert query_server(f"127.0.0.1:{port}", timeout_s=2.0).devices
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl+C in a terminal does
        proc.wait(timeout=30)
        # The reader owns stderr until its end (communicate() would close it under the reader).
        reader.join(10)
        assert proc.stdout is not None
        out = proc.stdout.read()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    err = "".join(err_lines)
    assert proc.returncode == 0, err
    assert "RPC server stopped" in err and f"serving on 127.0.0.1:{port}" in err
    assert "Starting RPC server" in out
    with pytest.raises(RigfitError):
        query_server(f"127.0.0.1:{port}", timeout_s=1.0)


def test_cli_ctrl_c_while_starting_is_a_clean_stop() -> None:
    proc = _rigfit("rpc-server", "--port", str(free_port()), "--device", "CPU", "--threads", "1")
    try:
        err = ""
        deadline = time.monotonic() + 60
        # As soon as the server process exists (the CLI's child), before it answers.
        while time.monotonic() < deadline and len(psutil.Process(proc.pid).children()) == 0:
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGINT)
        _out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode in (0, 130), err
    assert "Traceback" not in err
