"""OpenLineage run events for each task: a JSON-lines file by default, HTTP when configured.

Lineage never stops production: an event the HTTP endpoint does not take (down, slow, refusing
it) is appended to `undelivered.jsonl` beside the file transport's events instead, and for a
minute after such a failure events go straight there, so a dead endpoint costs one timeout a
minute rather than one per event.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlparse
from uuid import UUID

from openlineage.client import OpenLineageClient
from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.facet_v2 import RunFacet, error_message_run
from openlineage.client.serde import Serde
from openlineage.client.transport.file import FileConfig, FileTransport
from openlineage.client.transport.http import (
    ApiKeyTokenProvider,
    HttpConfig,
    HttpTransport,
    TokenProvider,
)
from openlineage.client.transport.http_common import DEFAULT_RETRY_CONFIG
from openlineage.client.transport.transport import Transport

log = logging.getLogger(__name__)

PRODUCER = "https://github.com/mova-ads/mova-ads"
EVENTS_FILE = "openlineage.jsonl"
UNDELIVERED_FILE = "undelivered.jsonl"
HTTP_TIMEOUT_S = 5.0
# One retry (the client's default is five, with backoff: 39 s per event at a silent endpoint).
HTTP_RETRY = {**DEFAULT_RETRY_CONFIG, "total": 1, "connect": 1, "read": 1}
ENDPOINT_PAUSE_S = 60.0  # after a failed delivery, events skip the endpoint this long
# (endpoint or events file, clock) -> the clock's time until which events skip it
_PAUSED_UNTIL: dict[tuple[str, Callable[[], float]], float] = {}


def _dataset(uri: str) -> tuple[str, str]:
    """(namespace, name) for an artifact URI: `s3://bucket` + key, `file` + path."""
    parsed = urlparse(uri)
    if parsed.scheme == "s3":
        return f"s3://{parsed.netloc}", parsed.path.lstrip("/")
    return parsed.scheme or "file", parsed.path or uri


def _file_transport(path: Path) -> FileTransport:
    return FileTransport(FileConfig(log_file_path=str(path), append=True))


class LineageEmitter:
    """Emits START / COMPLETE / FAIL events for a job run, with artifact URIs as datasets."""

    def __init__(self, *, file_dir: Path, namespace: str = "mova-ads",
                 http_url: str | None = None, api_key: str | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.namespace = namespace
        file_dir.mkdir(parents=True, exist_ok=True)
        transport: Transport
        if http_url:
            # the key goes as `Authorization: Bearer <key>` (Marquez, DataHub, hosted ones)
            auth = ApiKeyTokenProvider({"apiKey": api_key}) if api_key else TokenProvider({})
            transport = HttpTransport(HttpConfig(url=http_url, timeout=HTTP_TIMEOUT_S,
                                                 retry=HTTP_RETRY, auth=auth))
        else:
            transport = _file_transport(file_dir / EVENTS_FILE)
        self.client = OpenLineageClient(transport=transport)
        self.undelivered_path = file_dir / UNDELIVERED_FILE
        self._undelivered = OpenLineageClient(transport=_file_transport(self.undelivered_path))
        self._clock = clock
        # The pause is shared by the emitters of one process that send to the same place with
        # the same clock (a run has several: its flows' and tasks' services), so a dead
        # endpoint costs one timeout a minute per process, not one per emitter.
        self._pause_key = (http_url or str(file_dir / EVENTS_FILE), clock)

    def _emit(self, state: RunState, job_name: str, run_id: UUID, inputs: list[str],
              outputs: list[str], facets: Mapping[str, RunFacet] | None) -> None:
        event = RunEvent(
            eventType=state, eventTime=datetime.now(UTC).isoformat(), producer=PRODUCER,
            run=Run(runId=str(run_id), facets=dict(facets or {})),
            job=Job(namespace=self.namespace, name=job_name),
            inputs=[InputDataset(*_dataset(uri)) for uri in inputs],
            outputs=[OutputDataset(*_dataset(uri)) for uri in outputs],
        )
        if self._clock() < _PAUSED_UNTIL.get(self._pause_key, float("-inf")):
            self._keep(event, "endpoint paused after a failure")
            return
        try:
            self.client.emit(event)
        # requests' errors are OSErrors (an unreachable endpoint); the file transport raises
        # RuntimeError (a full disk): either way production goes on
        except (OSError, RuntimeError) as err:
            _PAUSED_UNTIL[self._pause_key] = self._clock() + ENDPOINT_PAUSE_S
            self._keep(event, str(err))
            return
        log.info("lineage.event state=%s job=%s run_id=%s inputs=%d outputs=%d", state.value,
                 job_name, run_id, len(inputs), len(outputs))

    def _keep(self, event: RunEvent, why: str) -> None:
        """An event the transport did not take, kept in `undelivered.jsonl`; where that cannot
        be written either (the disk is full), in the log, whole, so it can still be replayed."""
        try:
            self._undelivered.emit(event)
        except (OSError, RuntimeError) as err:
            log.error("lineage.unkept run_id=%s error=%s (%s) event=%s", event.run.runId, why,
                      err, Serde.to_json(event))
            return
        log.warning("lineage.undelivered state=%s job=%s run_id=%s kept_in=%s error=%s",
                    event.eventType and event.eventType.value, event.job.name, event.run.runId,
                    self.undelivered_path, why)

    def start(self, job_name: str, run_id: UUID, inputs: list[str], *,
              facets: Mapping[str, RunFacet] | None = None) -> None:
        """Emit START; `facets` are extra run facets (e.g. nominalTime)."""
        self._emit(RunState.START, job_name, run_id, inputs, [], facets)

    def complete(self, job_name: str, run_id: UUID, inputs: list[str], outputs: list[str], *,
                 facets: Mapping[str, RunFacet] | None = None) -> None:
        """Emit COMPLETE with the run's input and output artifact URIs."""
        self._emit(RunState.COMPLETE, job_name, run_id, inputs, outputs, facets)

    def fail(self, job_name: str, run_id: UUID, inputs: list[str], error: str) -> None:
        """Emit FAIL with the error message as an errorMessage run facet."""
        facet = error_message_run.ErrorMessageRunFacet(message=error, programmingLanguage="python")
        self._emit(RunState.FAIL, job_name, run_id, inputs, [], {"errorMessage": facet})
