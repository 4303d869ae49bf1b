"""``rigfit search``, ``rigfit pull`` and ``rigfit plan --model hf:…`` against the fake hub, as a user runs them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.commands.cli import ROOT, rigfit
from tests.hub.fake_hub import FakeHub
from tests.hub.models import DEMO_FILE, DEMO_REPO, SPLIT_REPO, VOCAB128K_FILE, VOCAB128K_REPO


@pytest.fixture(autouse=True)
def _no_telemetry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")


def _one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 2, (done.stdout, done.stderr)
    # A pull's progress lines may come first (stderr, so stdout stays the data); the error is one line.
    lines = [line for line in done.stderr.strip().splitlines() if not line.startswith("[")]
    assert len(lines) == 1 and lines[0].startswith("rigfit: "), done.stderr
    return lines[0]


def test_search_lists_repositories_with_quants_sizes_and_the_catalog_source(fake_hub: FakeHub) -> None:
    done = rigfit("search", "rigfit-test")
    assert done.returncode == 0, done.stderr
    assert "rigfit-test/Vocab128k-Instruct-GGUF  (hub search, 50 downloads)" in done.stdout
    assert "  Q8_0        23.6 MiB  Vocab128k-Instruct-Q8_0.gguf" in done.stdout
    assert "Split3-Q8_0/Split3-Q8_0-00001-of-00003.gguf  (3 parts)" in done.stdout
    data = json.loads(rigfit("search", "smollm2", "--json").stdout)
    by_repo = {r["repo"]: r for r in data["repos"]}
    maker = by_repo[DEMO_REPO]
    assert maker["source"] == "catalog: the model maker's own GGUF"
    assert maker["models"][0]["quant"] == "Q4_1"
    assert maker["models"][0]["size_bytes"] == fake_hub.blob(DEMO_REPO, DEMO_FILE).size
    assert maker["models"][0]["ref"] == f"hf:{DEMO_REPO}/{DEMO_FILE}"
    # The catalog's other repository is not on this hub: said for it, the others still listed.
    assert (
        "no repository 'bartowski/SmolLM2-135M-Instruct-GGUF'"
        in by_repo["bartowski/SmolLM2-135M-Instruct-GGUF"]["error"]
    )


def test_plan_from_a_remote_header_matches_the_plan_of_the_local_file(fake_hub: FakeHub) -> None:
    local = json.loads(
        rigfit(
            "plan", "--model", str(fake_hub.blob(DEMO_REPO, DEMO_FILE).file), "--rig", "2x RTX 3090", "--json"
        ).stdout
    )
    for ref in (f"hf:{DEMO_REPO}/{DEMO_FILE}", f"hf:{DEMO_REPO}"):
        args = ["plan", "--model", ref, "--rig", "2x RTX 3090", "--json"] + (
            ["--quant", "Q4_1"] if ref.count("/") == 1 else []
        )
        done = rigfit(*args)
        assert done.returncode == 0, done.stderr
        remote = json.loads(done.stdout)
        assert remote["remote"] == f"hf:{DEMO_REPO}/{DEMO_FILE}" and local["remote"] is None
        assert remote["devices"] == local["devices"] and remote["status"] == local["status"]
    text = rigfit("plan", "--model", f"hf:{SPLIT_REPO}", "--rig", "RTX 3090").stdout
    assert "(remote: hf:rigfit-test/Split3-GGUF/Split3-Q8_0/Split3-Q8_0-00001-of-00003.gguf)" in text
    assert "not downloaded" in text


def test_pull_downloads_with_progress_then_run_finds_it(fake_hub: FakeHub) -> None:
    done = rigfit("pull", DEMO_REPO, "--quant", "q4_1", "--json")
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert (
        events[0]["event"] == "start" and events[0]["size_bytes"] == fake_hub.blob(DEMO_REPO, DEMO_FILE).size
    )
    assert events[-1]["event"] == "done" and events[-1]["sha256_checked"]
    assert any(e["event"] == "progress" for e in events)
    path = Path(events[-1]["path"])
    assert path.is_file() and str(path).startswith(os.environ["HF_HUB_CACHE"])
    text = rigfit("pull", f"hf:{DEMO_REPO}/{DEMO_FILE}")
    assert text.returncode == 0 and "Already downloaded" in text.stdout
    # rigfit run takes the reference, finds the file offline, and llama.cpp answers from it.
    ran = rigfit("run", "--model", f"hf:{DEMO_REPO}:Q4_1", "--prompt", "Hi", "--max-tokens", "4", "--json")
    assert ran.returncode == 0, ran.stderr
    events = [json.loads(line) for line in ran.stdout.splitlines()]
    assert any(e.get("type") == "token" for e in events), events[-3:]
    # A bad split after an hf: reference is still bad input: one line, exit 2 (the wording is the
    # split rule's, app/core/rules.py, and pinned by its own tests).
    assert _one_line_error(
        rigfit("run", "--model", f"hf:{DEMO_REPO}:Q4_1", "--prompt", "Hi", "--split", "0,0")
    ).startswith("rigfit: bad split '0,0'")
    from app.hub.cache import local_model_ref

    assert local_model_ref(f"hf:{DEMO_REPO}/{DEMO_FILE}") == str(path)
    assert local_model_ref("demo") == "demo"


def test_every_pull_fault_is_one_line_and_exit_code_2(
    fake_hub: FakeHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert "no repository 'nobody/Nothing-GGUF'" in _one_line_error(rigfit("pull", "nobody/Nothing-GGUF"))
    assert "has no IQ1_S GGUF; it has Q4_1" in _one_line_error(rigfit("pull", DEMO_REPO, "--quant", "IQ1_S"))
    assert "not a Hugging Face repository id" in _one_line_error(rigfit("pull", "just-a-name"))
    assert "not downloaded yet: run 'rigfit pull" in _one_line_error(
        rigfit("run", "--model", f"hf:{VOCAB128K_REPO}/{VOCAB128K_FILE}", "--prompt", "x")
    )
    assert "not downloaded yet: run 'rigfit pull" in _one_line_error(
        rigfit("serve", "--model", f"hf:{VOCAB128K_REPO}/{VOCAB128K_FILE}", "--port", "0")
    )
    fake_hub.repos[VOCAB128K_REPO].token = "hf_secret"
    line = _one_line_error(rigfit("pull", VOCAB128K_REPO))
    assert "(401)" in line and "set HF_TOKEN" in line and "accept its licence" in line
    fake_hub.advertised_sha256[(DEMO_REPO, DEMO_FILE)] = "cd" * 32
    assert "the file was deleted" in _one_line_error(rigfit("pull", DEMO_REPO))
    assert not list(Path(os.environ["HF_HUB_CACHE"]).rglob("*.gguf"))
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # the discard port: nothing listens
    assert "cannot reach the Hugging Face hub" in _one_line_error(rigfit("search", "llama"))
    assert "cannot reach the Hugging Face hub" in _one_line_error(
        rigfit("plan", "--model", f"hf:{DEMO_REPO}", "--quant", "Q4_1")
    )


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child is a POSIX thing")
def test_ctrl_c_stops_a_pull_and_the_same_command_resumes_it(fake_hub: FakeHub) -> None:
    hosted = fake_hub.blob(DEMO_REPO, DEMO_FILE)
    fake_hub.cut_after[hosted.sha256] = [30 << 20]
    fake_hub.stall_blobs.add(hosted.sha256)  # after the cut, the reconnection stalls
    env = {**os.environ, "HF_HUB_DOWNLOAD_TIMEOUT": "120"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "app", "pull", DEMO_REPO],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while sum(1 for e in fake_hub.log if e.role == "cdn") < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)  # let the first bytes reach the disk
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "MiB of 93.8 MiB are kept, run the same command to resume" in err
    fake_hub.stall_blobs.clear()
    fake_hub.log.clear()
    again = rigfit("pull", DEMO_REPO)
    assert again.returncode == 0, again.stderr
    assert [e.range for e in fake_hub.log if e.role == "cdn"] == [f"bytes={30 << 20}-"]


def test_an_hf_model_plans_and_runs_with_rpc_servers_too(
    fake_hub: FakeHub, rpc_cpu_servers: list[Any]
) -> None:
    server = rpc_cpu_servers[0].endpoint
    # Planned from its header on the hub, on this rig plus a described RPC machine.
    done = rigfit(
        "plan", "--model", f"hf:{DEMO_REPO}", "--quant", "Q4_1", "--rig", "RTX 3090",
        "--rpc", f"{server}=RTX 4090@10GbE", "--split", "1,1", "--json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["remote"] == f"hf:{DEMO_REPO}/{DEMO_FILE}"
    assert [d["llama_name"] for d in data["devices"]] == ["CUDA0", "RPC0"]
    assert data["devices"][1]["remote"]["endpoint"] == server
    # Pulled, then run on this computer's CPU and both servers.
    assert rigfit("pull", DEMO_REPO).returncode == 0
    ran = rigfit(
        "run", "--model", f"hf:{DEMO_REPO}:Q4_1", "--prompt", "Hi", "--max-tokens", "4", "--temperature", "0",
        "--ctx", "512", "--threads", "1", "--split", "1,1",
        "--rpc", ",".join(f"{s.endpoint}=CPU" for s in rpc_cpu_servers), "--json",
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    events = [json.loads(line) for line in ran.stdout.splitlines()]
    loaded = next(e for e in events if e["type"] == "loaded")
    assert [d["name"] for d in loaded["devices"]][:2] == ["RPC0", "RPC1"]
    assert events[-1]["type"] == "done"
