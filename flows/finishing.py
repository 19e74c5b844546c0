"""Finishing next to the renders: scene finishes and spot assemblies run as Prefect tasks on a
thread pool (`FINISH_CONCURRENCY` at once), each started as soon as what it needs is stored: a
scene finish when its render is, a spot when its last scene is finished.

ffmpeg does the work in its own processes, so threads are enough to keep the CPUs busy while
the flow thread waits on the render pool. A failure stays with its variant: the future's error
fails that row (with a reason the team reads) and every other future runs on.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from uuid import UUID

from prefect import get_run_logger
from prefect.futures import PrefectFuture
from prefect.task_runners import ThreadPoolTaskRunner

from infra.repository import DeliverableKind
from infra.statuses import DeliverableStatus
from tasks.deliver import finish_task
from tasks.production import (
    deliverables_in,
    fail_variant,
    scenes_ready,
    scenes_waiting_for,
    spots_ready,
)
from tasks.services import Services
from tasks.spot_deliver import assemble_spot_task


class Finishing:
    """One brief's finishing work in flight: submit, then wait on the futures."""

    def __init__(self, services: Services, brief_id: UUID) -> None:
        self.services = services
        self.brief_id = brief_id
        self.runner = ThreadPoolTaskRunner(max_workers=services.settings.finish_concurrency)
        self.futures: dict[UUID, PrefectFuture[str]] = {}
        self.spots: set[UUID] = set()  # the futures that assemble a spot (not a scene finish)

    def __enter__(self) -> Finishing:
        self.runner.__enter__()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.runner.__exit__(kind, error, trace)

    def _submit(self, row_id: UUID, work: Callable[..., str], param: str) -> None:
        if row_id not in self.futures:  # once per round: a rerun of the render task repeats
            self.futures[row_id] = self.runner.submit(
                work, parameters={"services": self.services, param: row_id})

    def _submit_spot(self, row_id: UUID) -> None:
        self._submit(row_id, assemble_spot_task, "spot_id")
        self.spots.add(row_id)

    def scenes_of_render(self, job_id: UUID) -> None:
        """A render is stored: finish its scenes now (the render pool goes on meanwhile), and
        assemble the spots whose scenes have all been finished since."""
        for row_id in scenes_waiting_for(self.services, self.brief_id, job_id):
            self._submit(row_id, finish_task, "deliverable_id")
        self.ready_spots()

    def ready_spots(self) -> None:
        """Spots whose every scene is finished: assembled now, not after the last render."""
        for row_id in spots_ready(self.services, self.brief_id):
            self._submit_spot(row_id)

    def ready_scenes(self) -> None:
        """Every pending scene whose render has settled: stored by an earlier run, or failed
        for good (the finish records the failure)."""
        for row_id in scenes_ready(self.services, self.brief_id):
            self._submit(row_id, finish_task, "deliverable_id")

    def pending_spots(self) -> None:
        for row_id in deliverables_in(self.services, self.brief_id, DeliverableStatus.PENDING,
                                      DeliverableKind.SPOT):
            self._submit_spot(row_id)

    def wait(self) -> list[str]:
        """Wait for everything submitted, and for the spots that what finished makes ready;
        the statuses it left. Ends the round."""
        statuses: list[str] = []
        waited: set[UUID] = set()
        while waiting := [(k, f) for k, f in self.futures.items() if k not in waited]:
            for row_id, future in waiting:
                try:
                    statuses.append(str(future.result()))
                except Exception as err:  # noqa: BLE001 - this variant fails, the rest go on
                    get_run_logger().error("finish.failed deliverable_id=%s", row_id,
                                           exc_info=True)
                    statuses.append(fail_variant(self.services, row_id, err))
                waited.add(row_id)
                if row_id not in self.spots:  # a scene finished: its spot may be complete
                    self.ready_spots()
        self.futures = {}
        return statuses
