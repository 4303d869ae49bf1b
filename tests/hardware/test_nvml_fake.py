"""The fake NVML: pynvml's names and errors, answers from scenario data that can fail and change."""

from __future__ import annotations

import json
from pathlib import Path

import pynvml
import pytest

from app.core.errors import RigfitError
from app.hardware.nvml import ENV_FAKE, builtin_scenarios, load_backend, load_fake, scenario_path
from app.hardware.nvml_fake import FakeNvml, error_class, load_scenario
from app.hardware.pci import normalize_bus_id

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "nvml"


def _fake(data: dict[str, object], **kwargs: object) -> FakeNvml:
    fake = FakeNvml(data, **kwargs)  # type: ignore[arg-type]
    fake.nvmlInit()
    return fake


def _one_gpu(**fields: object) -> dict[str, object]:
    return {"driver": "550.1", "devices": [{"name": "NVIDIA GeForce RTX 3090", **fields}]}


def test_raw_h200_recording_replays_unchanged() -> None:
    fake = FakeNvml(load_scenario(FIXTURES / "h200-raw.json"))
    fake.nvmlInit()
    h = fake.nvmlDeviceGetHandleByIndex(0)
    assert fake.nvmlDeviceGetName(h) == "NVIDIA H200"
    assert fake.nvmlDeviceGetCudaComputeCapability(h) == (9, 0)  # stored as the string "(9, 0)"
    assert fake.nvmlDeviceGetPciInfo(h).busId == b"00000000:00:06.0"  # bytes, as the real ctypes struct
    v2 = fake.nvmlDeviceGetMemoryInfo(h, version=pynvml.nvmlMemory_v2)
    assert (v2.total, v2.reserved, v2.used) == (150754820096, 644939776, 0)
    assert fake.nvmlDeviceGetMemoryInfo(h).used == 644939776
    assert fake.nvmlDeviceGetMaxClockInfo(h, pynvml.NVML_CLOCK_MEM) == 3201
    with pytest.raises(pynvml.NVMLError_NotSupported):
        fake.nvmlDeviceGetFanSpeed(h)
    with pytest.raises(pynvml.NVMLError_NotSupported):
        fake.nvmlDeviceGetNvLinkState(h, 0)


@pytest.mark.parametrize(
    "spec",
    [
        "ERR NotSupported",
        "ERR NVMLError_NotSupported: Not Supported",
        "ERR NOT_SUPPORTED",
        "ERR NVML_ERROR_NOT_SUPPORTED",
    ],
)
def test_error_strings_in_every_spelling_name_the_pynvml_class(spec: str) -> None:
    assert error_class(spec) is pynvml.NVMLError_NotSupported


def test_gpu_is_lost_spellings() -> None:
    assert error_class("ERR GpuIsLost") is pynvml.NVMLError_GpuIsLost
    assert error_class("ERR GPU_IS_LOST") is pynvml.NVMLError_GpuIsLost


def test_any_field_can_be_an_error_even_inside_a_struct() -> None:
    fake = _fake(_one_gpu(util={"gpu": "ERR Unknown", "memory": 3}))
    h = fake.nvmlDeviceGetHandleByIndex(0)
    with pytest.raises(pynvml.NVMLError_Unknown):
        fake.nvmlDeviceGetUtilizationRates(h)


def test_absent_key_raises_not_supported() -> None:
    fake = _fake(_one_gpu())
    with pytest.raises(pynvml.NVMLError_NotSupported):
        fake.nvmlDeviceGetPowerUsage(fake.nvmlDeviceGetHandleByIndex(0))


def test_calls_before_init_raise_uninitialized() -> None:
    fake = FakeNvml(_one_gpu())
    with pytest.raises(pynvml.NVMLError_Uninitialized):
        fake.nvmlDeviceGetCount()


def test_init_error_is_what_nvml_init_raises() -> None:
    fake = FakeNvml({"init": "ERR DriverNotLoaded"})
    with pytest.raises(pynvml.NVMLError_DriverNotLoaded):
        fake.nvmlInit()


def test_missing_functions_raise_function_not_found_like_an_old_driver() -> None:
    fake = _fake(
        _one_gpu(
            temp=40,
            mem_v2={"total": 1, "free": 1, "used": 0, "reserved": 0},
            mem={"total": 1, "free": 1, "used": 0},
        )
        | {"missing": ["nvmlDeviceGetTemperatureV", "nvmlDeviceGetMemoryInfo_v2"]}
    )
    h = fake.nvmlDeviceGetHandleByIndex(0)
    with pytest.raises(pynvml.NVMLError_FunctionNotFound):
        fake.nvmlDeviceGetTemperatureV(h, 0)
    assert fake.nvmlDeviceGetTemperature(h, 0) == 40
    with pytest.raises(pynvml.NVMLError_FunctionNotFound):
        fake.nvmlDeviceGetMemoryInfo(h, version=pynvml.nvmlMemory_v2)
    assert fake.nvmlDeviceGetMemoryInfo(h).total == 1


def test_call_series_walk_one_item_per_read_and_hold_the_last() -> None:
    fake = _fake(_one_gpu(temp={"series": [40, 50, "ERR NotSupported", 60]}))
    h = fake.nvmlDeviceGetHandleByIndex(0)
    assert fake.nvmlDeviceGetTemperatureV(h, 0) == 40
    assert fake.nvmlDeviceGetTemperatureV(h, 0) == 50
    with pytest.raises(pynvml.NVMLError_NotSupported):
        fake.nvmlDeviceGetTemperatureV(h, 0)
    assert [fake.nvmlDeviceGetTemperatureV(h, 0) for _ in range(3)] == [60, 60, 60]


def test_looping_series_start_over() -> None:
    fake = _fake(_one_gpu(fan={"series": [10, 20, 30], "loop": True}))
    h = fake.nvmlDeviceGetHandleByIndex(0)
    assert [fake.nvmlDeviceGetFanSpeed(h) for _ in range(5)] == [10, 20, 30, 10, 20]


def test_tick_series_follow_advance_not_reads() -> None:
    fake = _fake(_one_gpu(power={"series": [100000, 200000], "step": "tick"}))
    h = fake.nvmlDeviceGetHandleByIndex(0)
    assert fake.nvmlDeviceGetPowerUsage(h) == fake.nvmlDeviceGetPowerUsage(h) == 100000
    fake.advance()
    assert fake.nvmlDeviceGetPowerUsage(h) == 200000


def test_seconds_series_follow_the_clock_since_init() -> None:
    now = [100.0]
    fake = _fake(
        _one_gpu(util={"gpu": {"series": [1, 2, 3], "step": "seconds", "period_s": 2.0}, "memory": 0}),
        clock=lambda: now[0],
    )
    h = fake.nvmlDeviceGetHandleByIndex(0)
    assert fake.nvmlDeviceGetUtilizationRates(h).gpu == 1
    now[0] += 2.5
    assert fake.nvmlDeviceGetUtilizationRates(h).gpu == 2
    now[0] += 10
    assert fake.nvmlDeviceGetUtilizationRates(h).gpu == 3


def test_gpu_is_lost_after_n_calls_and_stays_lost() -> None:
    fake = _fake(_one_gpu(temp=40, lost_after_calls=3))
    h = fake.nvmlDeviceGetHandleByIndex(0)  # call 1
    assert fake.nvmlDeviceGetTemperatureV(h, 0) == 40  # 2
    assert fake.nvmlDeviceGetTemperatureV(h, 0) == 40  # 3
    with pytest.raises(pynvml.NVMLError_GpuIsLost):
        fake.nvmlDeviceGetTemperatureV(h, 0)
    with pytest.raises(pynvml.NVMLError_GpuIsLost):
        fake.nvmlDeviceGetHandleByIndex(0)


def test_nvlink_index_past_the_last_link_raises_invalid_argument() -> None:
    fake = _fake(_one_gpu(nvlink=[{"link": 0, "state": 1}, {"link": 1, "state": 0}]))
    h = fake.nvmlDeviceGetHandleByIndex(0)
    assert fake.nvmlDeviceGetNvLinkState(h, 1) == 0
    with pytest.raises(pynvml.NVMLError_InvalidArgument):
        fake.nvmlDeviceGetNvLinkState(h, 2)


def test_p2p_rejects_the_tuple_constant_nvidia_ml_py_13_defines() -> None:
    fake = _fake({"devices": [{"name": "a"}, {"name": "b"}], "p2p": {"read": [["OK", "OK"], ["OK", "OK"]]}})
    a, b = fake.nvmlDeviceGetHandleByIndex(0), fake.nvmlDeviceGetHandleByIndex(1)
    assert fake.nvmlDeviceGetP2PStatus(a, b, 0) == pynvml.NVML_P2P_STATUS_OK
    with pytest.raises(pynvml.NVMLError_InvalidArgument):
        fake.nvmlDeviceGetP2PStatus(a, b, (0,))  # type: ignore[arg-type]


def test_topology_names_map_to_nvml_levels() -> None:
    fake = _fake({"devices": [{"name": "a"}, {"name": "b"}], "topology": [[0, "NODE"], ["NODE", 0]]})
    a, b = fake.nvmlDeviceGetHandleByIndex(0), fake.nvmlDeviceGetHandleByIndex(1)
    assert fake.nvmlDeviceGetTopologyCommonAncestor(a, b) == pynvml.NVML_TOPOLOGY_NODE


def test_handle_by_bus_id_accepts_both_bus_id_spellings() -> None:
    fake = _fake(_one_gpu(pci={"busId": "00000000:21:00.0"}))
    assert fake.nvmlDeviceGetHandleByPciBusId("0000:21:00.0") == fake.nvmlDeviceGetHandleByIndex(0)
    assert normalize_bus_id(b"00000000:4B:00.0") == "0000:4b:00.0"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"devices": [{"temp": "ERR NoSuchError"}]}, "unknown NVML error"),
        ({"devices": [{"name": "a"}], "topology": [[0, 1]]}, "1x1 matrix"),
        ({"devices": [], "p2p": {"sideways": []}}, "unknown p2p index"),
        ({"devices": [{"temp": {"series": []}}]}, "non-empty list"),
        ({"devices": [{"temp": {"series": [1], "step": "hourly"}}]}, "step must be"),
        ({"devices": [{"lost_after_calls": -1}]}, "lost_after_calls"),
        ({"format": "rigfit-nvml/9"}, "unsupported scenario format"),
        ([1, 2], "must be a JSON object"),
    ],
)
def test_broken_scenarios_are_rejected_on_load_with_the_problem(data: object, message: str) -> None:
    with pytest.raises(RigfitError, match=message):
        FakeNvml(data)  # type: ignore[arg-type]


def test_scenario_file_that_is_not_json_names_the_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"devices": [\n  {"name": }\n]}')
    with pytest.raises(RigfitError, match=r"bad\.json is not valid JSON: line 2"):
        load_scenario(bad)


def test_important_scenarios_are_built_in() -> None:
    names = set(builtin_scenarios())
    assert {
        "h200",
        "rtx4090",
        "2x3090-nvlink",
        "3090+3060-x4",
        "no-driver",
        "no-library",
        "zero-gpus",
        "gpu-lost",
    } <= names


def test_every_built_in_scenario_loads() -> None:
    for name in builtin_scenarios():
        assert getattr(load_fake(name), "rigfit_fake", False), name


def test_unknown_scenario_name_lists_the_built_in_ones() -> None:
    with pytest.raises(RigfitError, match=r"built-in: .*2x3090-nvlink"):
        scenario_path("2x3090-nvlnk")


def test_env_var_selects_the_fake_everywhere(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "one.json"
    path.write_text(json.dumps(_one_gpu()))
    monkeypatch.setenv(ENV_FAKE, str(path))
    backend = load_backend()
    assert getattr(backend, "rigfit_fake", False)
    backend.nvmlInit()
    assert backend.nvmlDeviceGetName(backend.nvmlDeviceGetHandleByIndex(0)) == "NVIDIA GeForce RTX 3090"


def test_missing_scenario_file_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(ENV_FAKE, str(tmp_path / "nope.json"))
    with pytest.raises(RigfitError, match="scenario file not found"):
        load_backend()
