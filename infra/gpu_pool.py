"""Ray render pool: actors that load the model once and keep it resident.

One actor per GPU on a cluster (`num_gpus=1`), CPU actors locally. `RAY_ADDRESS` (passed in from
settings) selects a cluster; empty means a local Ray started on demand. The pool is generic: it
keeps whatever `load()` returns resident in each actor and runs `fn(model, payload)` there, so
the model-specific work lives in tasks/ and this adapter stays about scheduling:

- backpressure: at most `max_in_flight` calls are outstanding (one per actor by default);
- failure propagation: a failed call yields `WorkFailed` with the original error text; a dead
  actor is replaced and its call reported as a `TransientError` so the caller may retry;
- routing by group: payloads of one group (a render's LoRA) go to the actor that ran that
  group last, so an actor changes what it holds only when its group has run out;
- metrics for the Ray dashboard: renders in flight, seconds per render, failures.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import ray
from ray.exceptions import RayActorError, RayTaskError
from ray.util import metrics

from infra.leftover_processes import end_local_ray_at_exit
from infra.render_gang import Gang
from schemas.errors import PipelineError, TransientError

log = logging.getLogger(__name__)

P = TypeVar("P")

_END = object()  # end of the payload iterator

RENDER_SECONDS_BOUNDARIES = [1.0, 5.0, 15.0, 60.0, 180.0, 600.0, 1800.0, 3600.0]


class WorkFailed(PipelineError):
    """A call on a pool actor raised; the message carries the payload key and the cause."""


@dataclass(frozen=True)
class PoolConfig:
    """How many actors, on what resources, and how much work may be outstanding."""

    num_workers: int = 1
    num_gpus_per_worker: float = 0.0
    num_cpus_per_worker: float = 1.0
    max_in_flight: int | None = None  # default: one call per actor
    address: str | None = None  # RAY_ADDRESS; None/"" = local Ray
    include_dashboard: bool | None = None
    placement_timeout_s: float = 900.0  # how long work may wait for any actor to be placed
    # >1: each worker is a gang of this many actors on one node running every call together
    # (context parallel); num_workers counts gangs, resources are per member.
    gang_size: int = 1

    def __post_init__(self) -> None:
        if self.num_workers < 1:
            raise ValueError(f"num_workers={self.num_workers} must be at least 1")
        if self.gang_size < 1:
            raise ValueError(f"gang_size={self.gang_size} must be at least 1")
        if self.max_in_flight is not None and self.max_in_flight < 1:
            raise ValueError(f"max_in_flight={self.max_in_flight} must be at least 1")


class _ModelActor:
    """Holds the loaded model for its whole life; serves one call at a time."""

    def __init__(self, load: Callable[[], Any]) -> None:
        self.model = load()

    def run(self, fn: Callable[[Any, Any], Any], payload: Any) -> tuple[Any, str]:
        """fn's result and the address of the node that computed it (for lineage and tests)."""
        return fn(self.model, payload), ray.util.get_node_ip_address()

    def ready(self) -> bool:
        return True


@dataclass(frozen=True)
class Outcome(Generic[P]):
    """The result of one payload: `value` on success, `error` otherwise."""

    payload: P
    key: str
    value: Any = None
    error: PipelineError | None = None
    seconds: float = 0.0
    node: str | None = None  # address of the Ray node that ran it (None when it failed)

    @property
    def ok(self) -> bool:
        return self.error is None


class _WorkQueue(Generic[P]):
    """The payloads not yet sent, by group, and the group each actor ran last.

    Without a group function payloads are read lazily, one ahead, in order. With one they are
    read at once and queued per group: an idle actor takes its own group's next payload; when
    that has run out, the largest group no other actor holds (so two actors do not swap into
    the same group), else the largest. A fresh actor holds group None."""

    def __init__(self, payloads: Iterable[P], group: Callable[[P], str | None] | None) -> None:
        self._pending = iter(payloads)
        self._group = group
        self._queues: dict[str | None, deque[P]] = {}
        self._held: dict[int, str | None] = {}
        if group is not None:
            for payload in self._pending:
                self._queues.setdefault(group(payload), deque()).append(payload)

    def has_work(self) -> bool:
        if any(self._queues.values()):
            return True
        if self._group is None:
            item = next(self._pending, _END)
            if item is not _END:
                self._queues.setdefault(None, deque()).append(item)  # type: ignore[arg-type]
                return True
        return False

    def take(self, actor: int) -> P:
        """The next payload for this actor (call after has_work() said there is one)."""
        held = self._held.get(actor)
        if not self._queues.get(held):
            others = {g for a, g in self._held.items() if a != actor}
            groups = [g for g, queue in self._queues.items() if queue]
            free = [g for g in groups if g not in others]
            held = max(free or groups, key=lambda g: len(self._queues[g]))
            self._held[actor] = held
        return self._queues[held].popleft()

    def forget(self, actor: int) -> None:
        """The actor was replaced: the new one holds nothing yet."""
        self._held.pop(actor, None)

    def rest(self) -> Iterator[P]:
        for queue in self._queues.values():
            yield from queue
        yield from self._pending


# Ray starts its workers at niceness 15 (its own daemons come first). A render actor is the
# campaign's long pole, and next to ffmpeg finishing at niceness 0 on the same CPUs it got a
# few percent of a core: a 1.6 s CPU render took up to 16 s. A local Ray adds 0 to the
# driver's niceness; a cluster's nodes are started with RAY_worker_niceness=0 (the
# render-worker image).
WORKER_NICENESS = 0


def ensure_ray(config: PoolConfig) -> None:
    """Connect to the configured cluster, or start local Ray once per process."""
    if ray.is_initialized():
        return
    end_local_ray_at_exit()  # before ray.init: its handler then runs after Ray's shutdown
    if config.address:
        ray.init(address=config.address, log_to_driver=False)
    else:
        ray.init(include_dashboard=config.include_dashboard, log_to_driver=False,
                 _system_config={"worker_niceness": WORKER_NICENESS})
    log.info("ray.connected address=%s", config.address or "local")


class GpuPool:
    """A fixed set of resident-model actors with bounded in-flight work."""

    def __init__(self, load: Callable[[], Any], config: PoolConfig) -> None:
        ensure_ray(config)
        self.config = config
        self._load = load
        # SPREAD: actors go to different nodes while there are nodes to spread over, so a
        # cluster's hosts all render and losing one host loses as few resident models as possible.
        self._actor_cls = ray.remote(
            num_gpus=config.num_gpus_per_worker, num_cpus=config.num_cpus_per_worker,
            scheduling_strategy="SPREAD",
        )(_ModelActor)
        self._actors = [self._new_actor() for _ in range(config.num_workers)]
        self._in_flight = metrics.Gauge(
            "mova_renders_in_flight", description="Render calls outstanding in the pool."
        )
        self._seconds = metrics.Histogram(
            "mova_render_seconds", description="Wall seconds per render call.",
            boundaries=RENDER_SECONDS_BOUNDARIES,
        )
        self._failures = metrics.Counter(
            "mova_render_failures_total", description="Render calls that failed.",
            tag_keys=("kind",),
        )

    def _new_actor(self) -> Any:
        if self.config.gang_size > 1:
            return Gang(self._load, self.config.gang_size, self.config.num_cpus_per_worker,
                        self.config.num_gpus_per_worker)
        return self._actor_cls.remote(self._load)

    def _ready(self, index: int) -> Any:
        worker = self._actors[index]
        return worker.ready() if isinstance(worker, Gang) else worker.ready.remote()

    def _run(self, index: int, fn: Callable[[Any, Any], Any], payload: Any) -> Any:
        worker = self._actors[index]
        if isinstance(worker, Gang):
            return worker.run(fn, payload)
        return worker.run.remote(fn, payload)

    def _replace(self, index: int) -> None:
        """A new actor (or gang) in place of a dead one; a gang's survivors go too."""
        worker = self._actors[index]
        if isinstance(worker, Gang):
            worker.kill()
        self._actors[index] = self._new_actor()

    def _gang_broken(self, index: int) -> bool:
        worker = self._actors[index]
        return isinstance(worker, Gang) and worker.broken()

    def gang_members(self) -> list[list[Any]]:
        """Each gang's actor handles, rank 0 first (empty without gangs)."""
        return [list(w.members) for w in self._actors if isinstance(w, Gang)]

    def wait_ready(self, timeout_s: float = 600.0) -> None:
        """Block until every actor has loaded its model (surfaces load errors early)."""
        try:
            ray.get([self._ready(i) for i in range(len(self._actors))], timeout=timeout_s)
        except RayTaskError as err:
            if any(self._gang_broken(i) for i in range(len(self._actors))):
                raise TransientError(f"a gang member died while loading its model: {err}"
                                     ) from err
            raise WorkFailed(f"a pool actor failed to load its model: {err.cause!r}") from err
        except RayActorError as err:
            raise TransientError(f"a pool actor died while loading its model: {err}") from err

    def map_unordered(self, fn: Callable[[Any, P], Any], payloads: Iterable[P],
                      key: Callable[[P], str],
                      group: Callable[[P], str | None] | None = None,
                      on_start: Callable[[P], None] | None = None) -> Iterator[Outcome[P]]:
        """Run `fn(model, payload)` for each payload on the actors; yield outcomes as they end.

        `group` (optional) names what a payload needs the actor to hold (a LoRA): payloads are
        routed to the actor already holding their group (see _WorkQueue). `on_start`
        (optional) is called with each payload as it is handed to an actor (a lineage run
        starts when its work does, not when its outcome comes back).

        Work goes only to actors whose model is loaded: an actor that replaces a dead one may
        wait for capacity (its host is gone), and work handed to it would wait with it. When no
        actor can take work for `placement_timeout_s`, the remaining payloads come back as
        TransientError outcomes instead of hanging the caller."""
        work = _WorkQueue(payloads, group)
        limit = self.config.max_in_flight or len(self._actors)
        idle: list[int] = []
        warming = {self._ready(i): i for i in range(len(self._actors))}
        running: dict[Any, tuple[int, P, float]] = {}  # ref -> (actor index, payload, start)
        waiting_since = time.monotonic()

        def submit() -> bool:
            if not idle or len(running) >= limit or not work.has_work():
                return False
            index = idle.pop()
            payload = work.take(index)
            ref = self._run(index, fn, payload)
            running[ref] = (index, payload, time.monotonic())
            if on_start is not None:
                on_start(payload)
            log.debug("pool.submit key=%s actor=%d", key(payload), index)
            return True

        while running or work.has_work():
            while submit():
                pass
            self._in_flight.set(len(running))
            if not running and not idle:
                left = self.config.placement_timeout_s - (time.monotonic() - waiting_since)
                ready, _ = ray.wait(list(warming), num_returns=1, timeout=max(0.0, left))
                if not ready:
                    yield from self._unplaced(work.rest(), key)
                    return
            else:
                [ready], _ = ray.wait(list(running) + list(warming), num_returns=1)
                ready = [ready]
            done = ready[0]
            if done in warming:
                index = warming.pop(done)
                if self._warmed(done, index):
                    idle.append(index)
                else:
                    work.forget(index)
                    warming[self._ready(index)] = index
                waiting_since = time.monotonic()
                continue
            index, payload, started = running.pop(done)
            outcome, replaced = self._collect(done, index, payload, key(payload), started)
            yield outcome
            if replaced:
                work.forget(index)
                warming[self._ready(index)] = index
            else:
                idle.append(index)
            waiting_since = time.monotonic()
        self._in_flight.set(0)

    def _warmed(self, ready_ref: Any, index: int) -> bool:
        """True when the actor loaded its model; a dead one is replaced (False)."""
        try:
            ray.get(ready_ref)
            return True
        except RayTaskError as err:
            if not self._gang_broken(index):
                raise WorkFailed(f"a pool actor failed to load its model: {err.cause!r}"
                                 ) from err
        except RayActorError:
            pass
        log.warning("pool.actor_died_loading actor=%d", index)
        self._replace(index)
        return False

    def _unplaced(self, rest: Iterator[P], key: Callable[[P], str]) -> Iterator[Outcome[P]]:
        message = (f"no render worker could be placed within {self.config.placement_timeout_s:.0f}"
                   " s (hosts lost or no free capacity); retry")
        for payload in rest:
            yield Outcome(payload, key(payload), error=TransientError(message))

    def _collect(self, ref: Any, index: int, payload: P, key: str, started: float
                 ) -> tuple[Outcome[P], bool]:
        """The outcome, and whether the actor died and was replaced."""
        try:
            value, node = ray.get(ref)
        except RayTaskError as err:
            if self._gang_broken(index):  # a member died: the others failed in a collective
                return self._died(index, payload, key, started, err), True
            seconds = time.monotonic() - started
            self._failures.inc(tags={"kind": "error"})
            cause = err.cause if err.cause is not None else err
            log.warning("pool.failed key=%s error=%r", key, cause)
            error: PipelineError
            if isinstance(cause, PipelineError):
                error = cause
            else:
                error = WorkFailed(f"render {key} failed: {type(cause).__name__}: {cause}")
            return Outcome(payload, key, error=error, seconds=seconds), False
        except RayActorError as err:
            return self._died(index, payload, key, started, err), True
        seconds = time.monotonic() - started
        self._seconds.observe(seconds)
        log.info("pool.done key=%s seconds=%.2f node=%s", key, seconds, node)
        return Outcome(payload, key, value=value, seconds=seconds, node=node), False

    def _died(self, index: int, payload: P, key: str, started: float, err: Exception
              ) -> Outcome[P]:
        self._failures.inc(tags={"kind": "actor_died"})
        log.warning("pool.actor_died key=%s actor=%d", key, index)
        self._replace(index)
        return Outcome(payload, key, seconds=time.monotonic() - started,
                       error=TransientError(f"render {key}: worker died ({err}); retry"))

    def shutdown(self) -> None:
        """Stop the actors (the Ray instance itself is left to its owner)."""
        for worker in self._actors:
            if isinstance(worker, Gang):
                worker.kill()
            else:
                ray.kill(worker)
        self._actors = []
