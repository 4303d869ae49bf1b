"""Fuzzing through the real command line, in subprocesses: fewer cases, the whole program.

A fuzzed GGUF header or config.json goes to ``rigfit plan`` / ``rigfit fit`` as a user would run
them: exit 0 with JSON whose numbers are finite, or exit 2 with one line; never a traceback, never
another exit code. The subprocess timeout is the hang guard.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

from hypothesis import given
from hypothesis import strategies as st

from tests.commands.cli import ROOT
from tests.fuzz import gguf_bytes as G
from tests.fuzz.conftest import scaled
from tests.fuzz.harness import CASES
from tests.fuzz.strategies import configs, gguf_docs

HANG_GUARD_S = 120


def _rigfit(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=HANG_GUARD_S,
        check=False,
        env={**os.environ, "RIGFIT_FAKE_NVML": "zero-gpus"},
    )


def _check(out: subprocess.CompletedProcess[str], kind: str) -> None:
    assert "Traceback" not in out.stderr, out.stderr
    assert out.returncode in (0, 2), (out.returncode, out.stderr)
    if out.returncode == 2:
        assert out.stderr.count("\n") == 1 and out.stderr.startswith("rigfit: "), out.stderr
        CASES[f"{kind}:refused"] += 1
        return
    data = json.loads(out.stdout)

    def walk(x: object) -> None:
        if isinstance(x, float):
            assert math.isfinite(x), data
        elif isinstance(x, dict):
            for v in x.values():
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)

    walk(data)
    CASES[f"{kind}:planned"] += 1


@scaled(3, deadline_s=60)
@given(
    doc=gguf_docs(),
    rig=st.sampled_from(["RTX 3090", "2x RTX 3090 nvlink", "RTX 4090 + RTX 3060@x4"]),
    ctx=st.sampled_from(["512", "8192", "131072", "16777216"]),
    command=st.sampled_from(["plan", "fit"]),
)
def test_fuzzed_gguf_files_through_the_cli(
    tmp_path_factory, doc: G.GgufDoc, rig: str, ctx: str, command: str
) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path_factory.mktemp("cli") / "fuzz.gguf"
    path.write_bytes(G.encode(doc))
    if command == "plan":
        out = _rigfit("plan", "--model", str(path), "--rig", rig, "--ctx", ctx, "--json")
    else:
        out = _rigfit(
            "fit", "--model", str(path), "--models", "llama-3.2-1b", "--rig", rig, "--ctx", ctx, "--json"
        )
    _check(out, f"cli-{command}-gguf")


@scaled(2, deadline_s=60)
@given(config=configs(), rig=st.sampled_from(["RTX 3090", "2x RTX 3090 nvlink"]))
def test_fuzzed_config_json_through_the_cli(tmp_path_factory, config: dict, rig: str) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path_factory.mktemp("cfg") / "config.json"
    path.write_text(json.dumps(config))
    _check(_rigfit("plan", "--model", str(path), "--rig", rig, "--json"), "cli-plan-config")
