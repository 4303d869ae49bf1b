"""``rigfit bench``: speeds per split configuration; configs the rig cannot run are reported, not fatal."""

from __future__ import annotations

import json

import pytest

from tests.commands.cli import rigfit
from tests.ram_bandwidth import TEST_RAM_BANDWIDTH_GBPS


def test_bench_json_measures_runnable_configs_and_reports_the_others() -> None:
    out = rigfit(
        "bench",
        "--model",
        "demo",
        "--configs",
        "layer;layer:1,1;row:1,1;none",
        "--pp",
        "32",
        "--tg",
        "4",
        "--repeat",
        "2",
        "--threads",
        "1",
        "--json",
    )
    assert out.returncode == 0, out.stderr
    rows = {r["config"]: r for r in (json.loads(line) for line in out.stdout.splitlines())}
    assert list(rows) == ["layer", "layer:1,1", "row:1,1", "none"]
    for name in ("layer", "none"):
        r = rows[name]
        assert r["status"] == "ok"
        assert len(r["pp_tok_s_runs"]) == 2 and len(r["tg_tok_s_runs"]) == 2
        assert r["pp_tok_s_mean"] > 0 and r["tg_tok_s_mean"] > 0 and r["pp_tok_s_sd"] >= 0
        # The speed model's figures for the same run stand beside the measurement (this computer's
        # kept RAM bandwidth: tests/ram_bandwidth.py).
        assert r["pp_tok_s_predicted"] > 0 and r["tg_tok_s_predicted"] > 0
        assert r["ram_read_gbps"] == TEST_RAM_BANDWIDTH_GBPS
    assert rows["layer:1,1"]["status"] == "unsupported" and "no GPU" in rows["layer:1,1"]["reason"]
    assert rows["layer:1,1"]["pp_tok_s_mean"] is None
    assert rows["row:1,1"]["status"] == "unsupported"
    assert out.stderr.count("running on the CPU") == 1


def test_bench_table_shows_mean_and_spread() -> None:
    out = rigfit(
        "bench",
        "--model",
        "demo",
        "--configs",
        "layer;row:1,1",
        "--pp",
        "16",
        "--tg",
        "2",
        "--repeat",
        "2",
        "--threads",
        "1",
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert "pp16 tok/s" in lines[0] and "tg2 tok/s" in lines[0] and lines[0].count("predicted") == 2
    assert lines[1].startswith("layer ") and "±" in lines[1]
    assert lines[2].startswith("row:1,1") and "cannot run" in lines[2]


def test_a_config_that_fails_to_load_is_reported_and_the_rest_still_run() -> None:
    out = rigfit(
        "bench",
        "--model",
        "demo",
        "--configs",
        "layer;layer",
        "--pp",
        "16",
        "--tg",
        "2",
        "--repeat",
        "1",
        "--threads",
        "1",
        "--kv-type",
        "q8_0",
        "--flash-attn",
        "off",
        "--json",
    )
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["status"] for r in rows] == ["failed", "failed"]
    assert "quantized V cache requires flash_attn" in rows[0]["reason"]
    assert out.returncode == 1


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--configs", "layer;;row"], "bad --configs"),
        (["--configs", "diagonal:1,1"], "split mode must be one of"),
        (["--configs", "layer:1,-2"], "zero or positive"),
        (["--pp", "1"], "--pp must be 0 or at least 2"),
        (["--repeat", "0"], "--repeat"),
        (["--pp", "0", "--tg", "0"], "nothing to measure"),
    ],
)
def test_bad_bench_input_is_one_line(args: list[str], words: str) -> None:
    out = rigfit("bench", "--model", "demo", *args)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert words in out.stderr.strip().splitlines()[-1]


def test_the_prediction_uses_the_runs_rig_when_rpc_devices_join_it(monkeypatch: pytest.MonkeyPatch) -> None:
    # With --rpc the run's rig (this computer plus the servers' devices) is what the prediction is
    # for; this computer's rig alone would predict a CPU-only run.
    from dataclasses import replace

    from app.commands.bench import predicted_speeds
    from app.core.settings import Settings
    from app.hardware import probe
    from app.hardware.catalog import parse_rig_expression

    def no_detection() -> None:
        raise AssertionError("the run's rig was given: nothing to detect")

    monkeypatch.setattr(probe, "detect_rig", no_detection)
    settings = Settings(ctx=64)
    with_remote = parse_rig_expression("rpc(RTX 3090 @ 10GbE)")
    assert with_remote.gpus[0].is_remote
    cpu = predicted_speeds("demo", settings, 16, 4, 2, replace(with_remote, gpus=()))
    remote = predicted_speeds("demo", settings, 16, 4, 2, with_remote)
    assert cpu is not None and remote is not None
    assert cpu.tg_tok_s and remote.tg_tok_s and cpu.tg_tok_s != remote.tg_tok_s


def test_a_busy_machine_is_said_beside_the_predictions(monkeypatch: pytest.MonkeyPatch) -> None:
    from app.commands import bench
    from app.hardware import membw

    monkeypatch.setattr(membw, "machine_busy", lambda: True)
    monkeypatch.setattr(membw.os, "getloadavg", lambda: (6.2, 5.0, 4.0))
    monkeypatch.setattr(membw.os, "cpu_count", lambda: 2)
    note = bench.busy_note()
    assert note is not None and "load average 6.2 on 2 CPUs" in note and "predicted" in note
    assert "\n" not in note
    monkeypatch.setattr(membw, "machine_busy", lambda: False)
    assert bench.busy_note() is None
