"""Storage contract details a caller relies on: key rules and their messages, content types,
what head/list/get say about absent or half-written objects, the log line of each put, and
S3 failures mapped to retry-or-not (throttling and 5xx from a loopback server that answers
like S3 does when it is overloaded)."""

from __future__ import annotations

import http.server
import logging
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.storage import (
    InvalidKey,
    LocalStore,
    S3Store,
    StorageError,
    TransientStorageError,
    open_store,
)


def test_key_rules_and_their_message(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    for bad in ("a\\b", "a/", "/a", "a/../b", "./a", ""):
        with pytest.raises(InvalidKey) as info:
            store.head(bad)
        assert str(info.value) == (f"invalid object key {bad!r}: expected relative a/b/c parts "
                                   "without '..', '.', empty parts or backslashes")
    for reserved in ("x.meta.json", "a/.tmp-1"):
        with pytest.raises(InvalidKey, match="are reserved by the store"):
            store.head(reserved)
    assert store.head("a/.tmpx") is None and store.head("a.meta.jsonx") is None
    with pytest.raises(InvalidKey):
        store.list("../")
    assert store.list("") == [] and store.list("a/") == []


def test_a_symlink_cannot_lead_out_of_the_store(tmp_path: Path) -> None:
    (tmp_path / "outside").mkdir()
    store = LocalStore(tmp_path / "store")
    (tmp_path / "store" / "link").symlink_to(tmp_path / "outside")
    with pytest.raises(InvalidKey, match="outside the store"):
        store.put_bytes(b"x", "link/escaped.txt")
    assert not (tmp_path / "outside" / "escaped.txt").exists()


@pytest.mark.parametrize(("key", "given", "expected"), [
    ("a/v.mp4", None, "video/mp4"), ("a/c.vtt", None, "text/vtt"),
    ("a/blob", None, "application/octet-stream"), ("a/v.mp4", "video/quicktime",
                                                   "video/quicktime")])
def test_content_types(tmp_path: Path, key: str, given: str | None, expected: str) -> None:
    store = LocalStore(tmp_path)
    assert store.put_bytes(b"x", key, content_type=given).content_type == expected
    head = store.head(key)
    assert head is not None and head.content_type == expected


def test_head_and_list_ignore_half_written_objects(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.put_bytes(b"whole", "a/whole.bin")
    (tmp_path / "a" / "no-sidecar.bin").write_bytes(b"data only")
    store.put_bytes(b"gone", "a/no-data.bin")
    (tmp_path / "a" / "no-data.bin").unlink()
    assert store.list() == ["a/whole.bin"] and store.list("a/w") == ["a/whole.bin"]
    assert store.list("b") == []
    assert store.head("a/no-sidecar.bin") is None and store.head("a/no-data.bin") is None
    assert not store.exists("a/no-sidecar.bin") and store.exists("a/whole.bin")
    with pytest.raises(StorageError) as info:
        store.get_file("a/no-data.bin", tmp_path / "out")
    assert str(info.value) == f"no object 'a/no-data.bin' in {tmp_path.resolve()}"
    with pytest.raises(StorageError) as info:
        store.copy("a/missing", "b/copy")
    assert str(info.value) == (f"no object 'a/missing' in {tmp_path.resolve()} to copy to "
                               "'b/copy'")


def test_uris_and_local_paths(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "s")
    stored = store.put_bytes(b"x", "a/b.txt", metadata={"k": "v"})
    assert stored.uri == (tmp_path / "s" / "a" / "b.txt").resolve().as_uri()
    assert stored.key == "a/b.txt" and stored.size_bytes == 1 and stored.metadata == {"k": "v"}
    assert store.local_path("a/b.txt") == (tmp_path / "s" / "a" / "b.txt").resolve()
    assert store.local_path("a/none.txt") == (tmp_path / "s" / "a" / "none.txt").resolve()


def test_each_put_logs_one_line(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = LocalStore(tmp_path)
    with caplog.at_level(logging.INFO, logger="infra.storage"):
        first = store.put_bytes(b"hello", "h.txt")
        store.put_bytes(b"hello", "h.txt")
    assert [r.getMessage() for r in caplog.records] == [
        f"storage.put key=h.txt bytes=5 sha256={first.sha256[:12]} uploaded={flag} "
        "backend=local" for flag in (True, False)]


def test_open_store_needs_a_bucket() -> None:
    with pytest.raises(StorageError) as info:
        open_store("s3:///prefix")
    assert str(info.value) == ("storage URL 's3:///prefix' names no bucket: expected "
                               "s3://bucket/prefix")


# ---- S3 ---------------------------------------------------------------------------------------


def test_s3_keys_prefix_and_uris(s3_endpoint: str, aws_credentials: None) -> None:
    bucket = f"contract-{uuid.uuid4().hex[:8]}"
    store = open_store(f"s3://{bucket}/team/a", endpoint_url=s3_endpoint, create_bucket=True)
    assert isinstance(store, S3Store) and store.prefix == "team/a"
    stored = store.put_bytes(b"x", "v/1.txt")
    assert stored.uri == f"s3://{bucket}/team/a/v/1.txt" and stored.content_type == "text/plain"
    assert store.client.get_object(Bucket=bucket, Key="team/a/v/1.txt")["Body"].read() == b"x"
    assert store.list("v/") == ["v/1.txt"] and store.local_path("v/1.txt") is None
    bare = S3Store(bucket, endpoint_url=s3_endpoint)
    assert bare.list("team/") == ["team/a/v/1.txt"] and bare.uri_for("k") == f"s3://{bucket}/k"
    with pytest.raises(InvalidKey):
        S3Store(bucket, "../up", endpoint_url=s3_endpoint)
    with pytest.raises(InvalidKey):
        store.head("a//b")
    # creating a bucket that exists is a no-op; a missing bucket without create is an error
    S3Store(bucket, endpoint_url=s3_endpoint, create_bucket=True)
    missing = S3Store(f"missing-{uuid.uuid4().hex[:8]}", endpoint_url=s3_endpoint)
    with pytest.raises(StorageError) as info:
        missing.put_bytes(b"x", "a.txt")
    assert not isinstance(info.value, TransientStorageError)
    assert "S3 upload 'a.txt' failed" in str(info.value)
    with pytest.raises(StorageError, match="no object 'nope' in s3://"):
        store.copy("nope", "other")


class _Overloaded(http.server.BaseHTTPRequestHandler):
    """Answers every request as an overloaded S3 endpoint does."""

    status, code = 503, "SlowDown"

    def _answer(self) -> None:
        body = (f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{self.code}</Code>"
                "<Message>Please reduce your request rate.</Message></Error>").encode()
        self.send_response(self.status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_PUT = do_HEAD = do_POST = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(params=[(503, "SlowDown"), (500, "InternalError"), (400, "RequestTimeout")])
def overloaded(request: pytest.FixtureRequest) -> Iterator[tuple[str, int]]:
    handler = type("Handler", (_Overloaded,), {"status": request.param[0],
                                               "code": request.param[1]})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", request.param[0]
    server.shutdown()
    server.server_close()


def test_throttling_and_server_errors_are_transient(overloaded: tuple[str, int],
                                                    aws_credentials: None) -> None:
    url, status = overloaded
    store = S3Store("bucket-x", endpoint_url=url, max_attempts=1)
    with pytest.raises(TransientStorageError, match=r"S3 list 'a/': "):
        store.list("a/")
    if status >= 500:  # a HEAD answer carries its status only, no error code
        with pytest.raises(TransientStorageError, match=r"S3 head_bucket 'bucket-x': "):
            S3Store("bucket-x", endpoint_url=url, max_attempts=1, create_bucket=True)
        with pytest.raises(TransientStorageError, match=r"S3 head 'a\.txt': "):
            store.head("a.txt")


def test_a_refused_request_is_not_transient(aws_credentials: None) -> None:
    class Forbidden(_Overloaded):
        status, code = 403, "AccessDenied"

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Forbidden)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        store = S3Store("bucket-x", endpoint_url=f"http://127.0.0.1:{server.server_address[1]}",
                        max_attempts=1)
        with pytest.raises(StorageError) as info:
            store.list("a/")
        assert not isinstance(info.value, TransientStorageError)
        assert str(info.value).startswith("S3 list 'a/' failed: ")
    finally:
        server.shutdown()
        server.server_close()
