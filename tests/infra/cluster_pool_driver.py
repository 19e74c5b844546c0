"""Run inside the head host of a test cluster: the render pool over every worker host.

    python -m tests.infra.cluster_pool_driver N

Maps N one-second jobs over a two-actor pool, resubmitting what fails as transient (a dead host),
as the render task does. Prints `done <payload> <node>` per finished job, then one JSON line.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

from infra.gpu_pool import GpuPool, PoolConfig
from schemas.errors import TransientError

MAX_ROUNDS = 5


def load() -> dict[str, Any]:
    return {"pid": os.getpid()}


def work(model: dict[str, Any], payload: int) -> dict[str, Any]:
    time.sleep(1.0)
    return {"payload": payload, "pid": model["pid"]}


def main() -> int:
    count = int(sys.argv[1])
    pool = GpuPool(load, PoolConfig(num_workers=2, num_cpus_per_worker=1.0,
                                    address=os.environ["RAY_ADDRESS"]))
    pool.wait_ready(timeout_s=120)
    done: dict[int, str] = {}
    transient = 0
    todo = list(range(count))
    for _ in range(MAX_ROUNDS):
        retry = []
        for outcome in pool.map_unordered(work, todo, key=str):
            if outcome.ok:
                assert outcome.node is not None
                if outcome.payload in done:
                    raise SystemExit(f"payload {outcome.payload} finished twice")
                done[outcome.payload] = outcome.node
                sys.stdout.write(f"done {outcome.payload} {outcome.node}\n")
                sys.stdout.flush()
            elif isinstance(outcome.error, TransientError):
                transient += 1
                retry.append(outcome.payload)
            else:
                raise SystemExit(f"payload {outcome.payload} failed: {outcome.error}")
        if not retry:
            break
        todo = retry
    pool.shutdown()
    sys.stdout.write(json.dumps({"done": done, "transient": transient}) + "\n")
    return 0 if len(done) == count else 1


if __name__ == "__main__":
    raise SystemExit(main())
