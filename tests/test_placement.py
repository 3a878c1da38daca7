"""Placement of arms on devices (issue 25), against fake device lists: how many devices each arm
needs, which arm gets which devices, what waits, and the one-line errors before anything runs."""

from __future__ import annotations

import re

import pytest

from vit_backend_plugin.harness.config import ConfigError
from vit_backend_plugin.harness.placement import (
    FAKE_GPUS_ENV,
    Scheduler,
    accuracy_env,
    check_fits,
    devices_needed,
    schedule,
    select_devices,
    throughput_env,
    visible_devices,
)

GPUS4 = ["0", "1", "2", "3"]


@pytest.mark.parametrize("engine_args, n", [
    ({}, 1),
    ({"tensor_parallel_size": 2}, 2),
    ({"tensor_parallel_size": 2, "data_parallel_size": 2}, 4),
    ({"pipeline_parallel_size": 2, "tensor_parallel_size": 2}, 4),
    ({"data_parallel_size": 3, "tensor_parallel_size": None}, 3),
])
def test_devices_needed(engine_args, n):
    assert devices_needed(engine_args) == n


@pytest.mark.parametrize("bad", [0, -1, "2", 1.5, True])
def test_devices_needed_rejects_what_is_not_a_count(bad):
    with pytest.raises(ConfigError, match="tensor_parallel_size must be a whole number"):
        devices_needed({"tensor_parallel_size": bad})


def test_visible_devices_fake_hook_then_cuda_visible_devices_then_nvidia_smi():
    smi = [{"name": "H100"}] * 3
    assert visible_devices(smi, {}) == ["0", "1", "2"]
    assert visible_devices(None, {}) == []
    assert visible_devices(smi, {"CUDA_VISIBLE_DEVICES": "4,6"}) == ["4", "6"]
    assert visible_devices(smi, {"CUDA_VISIBLE_DEVICES": ""}) == []  # the caller hid them all
    assert visible_devices(None, {FAKE_GPUS_ENV: "0,1", "CUDA_VISIBLE_DEVICES": "7"}) == ["0", "1"]


def test_select_devices():
    assert select_devices(None, GPUS4) is None  # default: today's behaviour, no placement
    assert select_devices("all", GPUS4) == GPUS4
    assert select_devices("2", GPUS4) == ["0", "1"]
    assert select_devices(" ALL ", ["3", "5"]) == ["3", "5"]
    for spec, msg in [("5", "--gpus 5: only 4 GPU(s) visible"), ("0", "at least 1"),
                      ("two", "a count or 'all'")]:
        with pytest.raises(ConfigError, match=re.escape(msg)):
            select_devices(spec, GPUS4)
    for spec in ("2", "all"):  # a machine without GPUs: say so, and name the test hook
        with pytest.raises(ConfigError, match=re.escape(f"nvidia-smi lists none; {FAKE_GPUS_ENV}")):
            select_devices(spec, [])


def test_an_arm_larger_than_the_device_set_is_one_line_before_anything_runs():
    with pytest.raises(ConfigError) as e:
        check_fits({"a": 1, "big": 4}, ["0", "1"], "--gpus 2 gives")
    assert str(e.value) == ("arm 'big' needs 4 devices (tensor x pipeline x data parallel) and "
                            "--gpus 2 gives 2")
    with pytest.raises(ConfigError, match="'big' needs 4"):
        Scheduler({"big": 4}, ["0"])


def test_scheduler_gives_lowest_free_devices_in_config_order_and_later_arms_fill_gaps():
    s = Scheduler({"a": 1, "tp2": 2, "tp2b": 2, "d": 1, "all4": 4}, GPUS4)
    assert s.start() == [("a", ["0"]), ("tp2", ["1", "2"]), ("d", ["3"])]  # tp2b, all4 wait
    assert s.waiting == ["tp2b", "all4"]
    s.finish("tp2")
    assert s.start() == [("tp2b", ["1", "2"])]
    s.finish("a")
    assert s.start() == []  # all4 needs every device
    s.finish("d")
    s.finish("tp2b")
    assert s.start() == [("all4", GPUS4)]
    s.finish("all4")
    assert s.done


def test_eight_one_device_arms_on_eight_gpus_all_start_at_once():
    gpus = [str(i) for i in range(8)]
    starts = schedule({f"arm{i}": 1 for i in range(8)}, gpus, {f"arm{i}": 10.0 for i in range(8)})
    assert [(t, d) for t, _, d in starts] == [(0.0, [g]) for g in gpus]


def test_schedule_over_time_with_data_parallel_and_tensor_parallel_arms():
    needs = {"base": 1, "dp2": devices_needed({"data_parallel_size": 2}),
             "tp2dp2": devices_needed({"tensor_parallel_size": 2, "data_parallel_size": 2}),
             "late": 1}
    starts = schedule(needs, GPUS4, {"base": 5.0, "dp2": 3.0, "tp2dp2": 1.0, "late": 2.0})
    assert starts == [
        (0.0, "base", ["0"]), (0.0, "dp2", ["1", "2"]), (0.0, "late", ["3"]),  # tp2dp2 waits
        (5.0, "tp2dp2", GPUS4),  # once every device is free
    ]


def test_child_environment_of_a_placed_arm():
    assert accuracy_env(None, {}) == {}  # default: nothing overridden
    assert accuracy_env(["2", "3"], {"tensor_parallel_size": 2}) == {"CUDA_VISIBLE_DEVICES": "2,3"}
    dp = {"tensor_parallel_size": 2, "data_parallel_size": 2}
    assert accuracy_env(["0", "1", "2", "3"], dp) == {
        "CUDA_VISIBLE_DEVICES": "0,1,2,3", "RAY_ADDRESS": "local",
        "VIT_PARITY_DP_REPLICA_GPUS": "2"}
    assert accuracy_env(None, dp) == {"RAY_ADDRESS": "local"}  # a Ray task: Ray sets the devices
    # throughput: one engine (no data parallelism) on the first devices of the run's set
    assert throughput_env(None, dp) == {}
    assert throughput_env(["4", "5", "6"], dp) == {"CUDA_VISIBLE_DEVICES": "4,5"}
    assert throughput_env(["4", "5", "6"], {}) == {"CUDA_VISIBLE_DEVICES": "4"}
