"""The render pool on a real local Ray: resident models, backpressure, failure propagation."""

from __future__ import annotations

import os
import time
from typing import Any

from infra.gpu_pool import GpuPool, PoolConfig, WorkFailed
from schemas.errors import TransientError


def load_counter() -> dict[str, Any]:
    """Stands for a model load: records the process and how many calls it served."""
    return {"pid": os.getpid(), "loaded_at": time.time(), "calls": 0}


def serve(model: dict[str, Any], payload: int) -> dict[str, Any]:
    model["calls"] += 1
    started = time.time()
    if payload < 0:
        raise ValueError(f"bad payload {payload}")
    time.sleep(0.2)
    return {"pid": model["pid"], "loaded_at": model["loaded_at"], "calls": model["calls"],
            "start": started, "end": time.time(), "payload": payload}


def die(model: dict[str, Any], payload: int) -> int:
    if payload == 0:
        os._exit(1)
    return payload


def test_model_is_loaded_once_per_actor_and_stays_resident(local_ray: None) -> None:
    pool = GpuPool(load_counter, PoolConfig(num_workers=1, num_cpus_per_worker=0.5))
    pool.wait_ready()
    outcomes = list(pool.map_unordered(serve, [1, 2, 3], key=str))
    pool.shutdown()
    values = sorted((o.value for o in outcomes), key=lambda v: v["calls"])
    assert [v["calls"] for v in values] == [1, 2, 3]
    assert len({v["loaded_at"] for v in values}) == 1, "the model was loaded more than once"
    assert {v["payload"] for v in values} == {1, 2, 3}


def test_in_flight_work_is_bounded(local_ray: None) -> None:
    pool = GpuPool(load_counter, PoolConfig(num_workers=2, num_cpus_per_worker=0.5,
                                            max_in_flight=1))
    pool.wait_ready()
    outcomes = list(pool.map_unordered(serve, [1, 2, 3, 4], key=str))
    pool.shutdown()
    spans = sorted((o.value["start"], o.value["end"]) for o in outcomes)
    for (_, end), (next_start, _) in zip(spans, spans[1:], strict=False):
        assert next_start >= end - 0.01, f"calls overlapped although max_in_flight=1: {spans}"


def test_a_failing_call_is_reported_with_its_key_and_the_rest_complete(local_ray: None) -> None:
    pool = GpuPool(load_counter, PoolConfig(num_workers=2, num_cpus_per_worker=0.5))
    outcomes = {o.key: o for o in pool.map_unordered(serve, [1, -5, 2], key=lambda p: f"job{p}")}
    pool.shutdown()
    assert outcomes["job1"].ok and outcomes["job2"].ok
    failed = outcomes["job-5"]
    assert isinstance(failed.error, WorkFailed)
    assert "job-5" in str(failed.error) and "bad payload -5" in str(failed.error)


def test_a_dead_worker_is_replaced_and_reported_as_transient(local_ray: None) -> None:
    pool = GpuPool(load_counter, PoolConfig(num_workers=1, num_cpus_per_worker=0.5))
    outcomes = list(pool.map_unordered(die, [0, 7], key=str))
    pool.shutdown()
    by_key = {o.key: o for o in outcomes}
    assert isinstance(by_key["0"].error, TransientError)
    assert by_key["7"].value == 7


def test_work_that_no_actor_can_take_comes_back_transient_instead_of_hanging(
        local_ray: None) -> None:
    # One GPU per actor on a CPU-only Ray: the actor can never be placed (as when the only
    # host with a free GPU has died). The caller gets its payloads back to retry later.
    pool = GpuPool(load_counter, PoolConfig(num_workers=1, num_gpus_per_worker=1.0,
                                            num_cpus_per_worker=0.5, placement_timeout_s=2.0))
    started = time.monotonic()
    outcomes = list(pool.map_unordered(serve, [1, 2, 3], key=str))
    pool.shutdown()
    assert sorted(o.payload for o in outcomes) == [1, 2, 3]
    assert all(isinstance(o.error, TransientError) and "could be placed" in str(o.error)
               for o in outcomes)
    assert time.monotonic() - started < 60


def hold(model: dict[str, Any], payload: str) -> dict[str, Any]:
    """Stands for a render with a LoRA: payload 'A3' needs group A; switching costs a load."""
    wanted = payload[0] if payload[0] != "-" else None
    if model.get("held") != wanted:
        model["held"] = wanted
        model["loads"] = model.get("loads", 0) + (wanted is not None)
    time.sleep(0.05)
    return {"pid": model["pid"], "group": wanted, "loads": model.get("loads", 0)}


def test_renders_are_routed_to_the_actor_already_holding_their_group(local_ray: None) -> None:
    # Interleaved on purpose: sent in this order to whichever actor is free, each actor
    # would switch group on nearly every call.
    payloads = [f"{g}{i}" for i in range(4) for g in "ABC"] + ["-0", "-1"]
    pool = GpuPool(load_counter, PoolConfig(num_workers=2, num_cpus_per_worker=0.5))
    pool.wait_ready()
    outcomes = list(pool.map_unordered(hold, payloads, key=str,
                                       group=lambda p: p[0] if p[0] != "-" else None))
    pool.shutdown()
    assert sorted(o.payload for o in outcomes) == sorted(payloads)
    loads = {}
    for outcome in outcomes:
        loads[outcome.value["pid"]] = max(loads.get(outcome.value["pid"], 0),
                                          outcome.value["loads"])
    for pid in loads:  # an actor's calls run one group after the other, never back and forth
        groups = [o.value["group"] for o in outcomes if o.value["pid"] == pid]
        runs = [g for i, g in enumerate(groups) if i == 0 or g != groups[i - 1]]
        assert len(runs) == len(set(runs)), f"actor {pid} went back to a group: {groups}"
        assert loads[pid] == len(set(groups) - {None})
    # 12 LoRA renders, 3 LoRAs: each loaded once, plus at most one second copy where the last
    # group is shared so that both actors keep working.
    assert 3 <= sum(loads.values()) <= 4, loads


def test_each_payload_is_announced_when_an_actor_takes_it(local_ray: None) -> None:
    """A lineage run starts when its render does: `on_start` is called at hand-over, before
    the actor begins, not when the outcome comes back (START and COMPLETE had one time)."""
    announced: dict[int, float] = {}
    pool = GpuPool(load_counter, PoolConfig(num_workers=1, num_cpus_per_worker=0.5,
                                            max_in_flight=1))
    pool.wait_ready()
    came_back = []
    for outcome in pool.map_unordered(serve, [1, 2, 3], key=str,
                                      on_start=lambda p: announced.setdefault(p, time.time())):
        came_back.append((outcome, time.time()))
    pool.shutdown()
    assert sorted(announced) == [1, 2, 3]
    for outcome, at in came_back:
        # announced as the actor began its 0.2 s of work, not as the outcome came back
        assert announced[outcome.payload] <= outcome.value["start"] + 0.05
        assert at - announced[outcome.payload] >= 0.15
