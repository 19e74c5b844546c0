"""OpenLineage run events for each task: a JSON-lines file by default, HTTP when configured."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlparse
from uuid import UUID

from openlineage.client import OpenLineageClient
from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.facet_v2 import RunFacet, error_message_run
from openlineage.client.transport.file import FileConfig, FileTransport
from openlineage.client.transport.http import HttpConfig, HttpTransport
from openlineage.client.transport.transport import Transport

from schemas.errors import TransientError

log = logging.getLogger(__name__)

PRODUCER = "https://github.com/mova-ads/mova-ads"
EVENTS_FILE = "openlineage.jsonl"


def _dataset(uri: str) -> tuple[str, str]:
    """(namespace, name) for an artifact URI: `s3://bucket` + key, `file` + path."""
    parsed = urlparse(uri)
    if parsed.scheme == "s3":
        return f"s3://{parsed.netloc}", parsed.path.lstrip("/")
    return parsed.scheme or "file", parsed.path or uri


class LineageEmitter:
    """Emits START / COMPLETE / FAIL events for a job run, with artifact URIs as datasets."""

    def __init__(self, *, namespace: str = "mova-ads", file_dir: Path | None = None,
                 http_url: str | None = None) -> None:
        self.namespace = namespace
        transport: Transport
        if http_url:
            transport = HttpTransport(HttpConfig(url=http_url))
        else:
            if file_dir is None:
                raise ValueError("LineageEmitter needs file_dir or http_url")
            file_dir.mkdir(parents=True, exist_ok=True)
            transport = FileTransport(FileConfig(log_file_path=str(file_dir / EVENTS_FILE),
                                                 append=True))
        self.client = OpenLineageClient(transport=transport)

    def _emit(self, state: RunState, job_name: str, run_id: UUID, inputs: list[str],
              outputs: list[str], facets: Mapping[str, RunFacet] | None) -> None:
        event = RunEvent(
            eventType=state, eventTime=datetime.now(UTC).isoformat(), producer=PRODUCER,
            run=Run(runId=str(run_id), facets=dict(facets or {})),
            job=Job(namespace=self.namespace, name=job_name),
            inputs=[InputDataset(*_dataset(uri)) for uri in inputs],
            outputs=[OutputDataset(*_dataset(uri)) for uri in outputs],
        )
        try:
            self.client.emit(event)
        except OSError as err:  # requests' errors are OSErrors too: an unreachable endpoint
            raise TransientError(f"lineage {state.value} event for job {job_name!r} run "
                                 f"{run_id} was not delivered: {err}") from err
        log.info("lineage.event state=%s job=%s run_id=%s inputs=%d outputs=%d", state.value,
                 job_name, run_id, len(inputs), len(outputs))

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
