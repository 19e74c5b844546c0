"""Storage contract details a caller relies on: key rules and their messages, content types,
what head/list/get say about absent or half-written objects, the log line of each put, and
S3 failures mapped to retry-or-not (throttling and 5xx from a loopback server that answers
like S3 does when it is overloaded)."""

from __future__ import annotations

import hashlib
import http.server
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from infra.storage import (
    InvalidKey,
    LocalStore,
    S3Store,
    StorageError,
    TransientStorageError,
    deliverable_key,
    input_key,
    legacy_deliverable_key,
    open_store,
)
from tests.infra.test_storage import socket_port

PART_RULE = "expected a non-empty name without '/', '\\' and not '.' or '..'"


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



@pytest.mark.parametrize("bad", ["a/b", "a\\b", ".", "..", ""])
@pytest.mark.parametrize(("field", "what"), [(0, "team"), (1, "campaign"), (2, "locale"),
                                             (3, "aspect"), (4, "file name")])
def test_a_bad_key_part_is_named_in_the_refusal(field: int, what: str, bad: str) -> None:
    parts = ["emea", "spring", "de-DE", "9:16", "run.mp4"]
    parts[field] = bad
    with pytest.raises(InvalidKey) as info:
        deliverable_key(*parts)
    assert str(info.value) == f"{what} {bad!r} cannot be part of an object key: {PART_RULE}"


def test_input_and_legacy_key_layouts() -> None:
    assert input_key("emea", "ab" * 32, ".png") == f"inputs/emea/{'ab' * 32}.png"
    assert legacy_deliverable_key("spring", "de-DE", "9:16", "run.mp4") == \
        "campaigns/spring/de-DE/9x16/run.mp4"
    with pytest.raises(InvalidKey) as info:
        input_key("a/b", "ab", ".png")
    assert str(info.value) == f"team 'a/b' cannot be part of an object key: {PART_RULE}"
    for field, what in enumerate(["campaign", "locale", "aspect", "file name"]):
        parts = ["spring", "de-DE", "9:16", "run.mp4"]
        parts[field] = ".."
        with pytest.raises(InvalidKey) as info:
            legacy_deliverable_key(*parts)
        assert str(info.value) == f"{what} '..' cannot be part of an object key: {PART_RULE}"


def test_a_local_store_makes_its_folder_and_its_parents(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "not" / "yet" / "there")
    assert (tmp_path / "not" / "yet" / "there").is_dir()
    assert store.put_bytes(b"x", "a.txt").size_bytes == 1


def test_local_sizes_flags_and_uris_of_a_multi_chunk_object(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    data = bytes(range(256)) * (2 * 4096 + 3)  # 2 MiB and 768 bytes: three streaming chunks
    stored = store.put_bytes(data, "a/big.bin")
    assert stored.size_bytes == len(data) == 2 * 2**20 + 768 and stored.uploaded is True
    again = store.put_bytes(data, "a/big.bin")
    assert again.uploaded is False and again.size_bytes == len(data)
    head = store.head("a/big.bin")
    assert head is not None and head.size_bytes == len(data)
    assert head.uri == (tmp_path / "a" / "big.bin").resolve().as_uri()
    assert head.sha256 == hashlib.sha256(data).hexdigest()


def test_put_file_and_copy_keep_the_given_type_and_metadata(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    source = tmp_path / "take.mp4"
    source.write_bytes(b"mov bytes")
    stored = store.put_file(source, "a/take.mp4", content_type="video/quicktime",
                            metadata={"take": "3"})
    assert stored.content_type == "video/quicktime"
    copied = store.copy("a/take.mp4", "final/take.bin")  # the key's suffix says otherwise
    head = store.head("final/take.bin")
    assert copied.content_type == "video/quicktime" and copied.metadata == {"take": "3"}
    assert head is not None and head.content_type == "video/quicktime"
    assert head.metadata == {"take": "3"}


def test_sidecars_do_not_depend_on_the_metadata_order(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.put_bytes(b"x", "a.bin", metadata={"b": "2", "a": "1"})
    store.put_bytes(b"x", "b.bin", metadata={"a": "1", "b": "2"})
    assert (tmp_path / "a.bin.meta.json").read_bytes() == \
        (tmp_path / "b.bin.meta.json").read_bytes()


def test_a_corrupt_read_names_both_checksums(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.put_bytes(b"the take", "a.bin")
    (tmp_path / "a.bin").write_bytes(b"the fake")
    with pytest.raises(StorageError) as info:
        store.get_file("a.bin", tmp_path / "out.bin")
    expected, read = (hashlib.sha256(b).hexdigest()[:12] for b in (b"the take", b"the fake"))
    assert str(info.value) == (f"object 'a.bin' in {tmp_path.resolve()} is corrupt: expected "
                               f"sha256 {expected}, read {read}")

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


def test_a_required_bucket_that_does_not_exist_is_named_and_never_created(
        s3_endpoint: str, aws_credentials: None) -> None:
    """The service opens its store with require_bucket: a misspelt bucket name is an error at
    once, not a new bucket; create_bucket (STORAGE_CREATE_BUCKET=1) makes it instead."""
    name = f"misspelt-{uuid.uuid4().hex[:8]}"
    with pytest.raises(StorageError) as info:
        open_store(f"s3://{name}/ads", endpoint_url=s3_endpoint, require_bucket=True)
    assert str(info.value) == (f"S3 bucket {name!r} does not exist: check the name, create it, "
                               "or set STORAGE_CREATE_BUCKET=1 to have it created")
    assert not isinstance(info.value, TransientStorageError)
    client = S3Store(name, endpoint_url=s3_endpoint).client
    assert name not in [b["Name"] for b in client.list_buckets()["Buckets"]]
    store = open_store(f"s3://{name}/ads", endpoint_url=s3_endpoint, require_bucket=True,
                       create_bucket=True)
    assert store.put_bytes(b"x", "a.txt").uri == f"s3://{name}/ads/a.txt"
    open_store(f"s3://{name}/ads", endpoint_url=s3_endpoint, require_bucket=True)  # exists now


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


@contextmanager
def answering(handler: type[http.server.BaseHTTPRequestHandler]) -> Iterator[str]:
    """A local HTTP server answering S3 requests with `handler`; its endpoint URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(params=[(503, "SlowDown"), (500, "InternalError"), (400, "RequestTimeout")])
def overloaded(request: pytest.FixtureRequest) -> Iterator[tuple[str, int]]:
    handler = type("Handler", (_Overloaded,), {"status": request.param[0],
                                               "code": request.param[1]})
    with answering(handler) as url:
        yield url, request.param[0]


def test_throttling_and_server_errors_are_transient(overloaded: tuple[str, int],
                                                    aws_credentials: None) -> None:
    url, status = overloaded
    store = S3Store("bucket-x", endpoint_url=url, max_attempts=1)
    code = {503: "SlowDown", 500: "InternalError", 400: "RequestTimeout"}[status]
    with pytest.raises(TransientStorageError, match=rf"S3 list 'a/': {code} \(retry\): "):
        store.list("a/")
    if status >= 500:  # a HEAD answer carries its status only, no error code
        with pytest.raises(TransientStorageError, match=r"S3 head_bucket 'bucket-x': "):
            S3Store("bucket-x", endpoint_url=url, max_attempts=1, create_bucket=True)
        with pytest.raises(TransientStorageError, match=r"S3 head 'a\.txt': "):
            store.head("a.txt")


def test_a_throttled_upload_is_transient(aws_credentials: None, tmp_path: Path) -> None:
    """boto3 reports a failed upload as its own error whose context is S3's answer: the store
    looks through it to the throttling code."""
    class ThrottlesUploads(_Overloaded):
        def do_HEAD(self) -> None:  # noqa: N802 - http.server's naming
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

    with answering(ThrottlesUploads) as url:
        store = S3Store("bucket-x", endpoint_url=url,
                        max_attempts=1)
        source = tmp_path / "a.txt"
        source.write_bytes(b"x")
        throttled = r"S3 upload 'a\.txt': SlowDown \(retry\)"
        with pytest.raises(TransientStorageError, match=throttled):
            store.put_bytes(b"x", "a.txt")
        with pytest.raises(TransientStorageError, match=throttled):
            store.put_file(source, "a.txt")
        with pytest.raises(TransientStorageError) as info:  # HEAD says absent, PUT is throttled
            S3Store("bucket-x", endpoint_url=store.client.meta.endpoint_url, max_attempts=1,
                    create_bucket=True)
        assert str(info.value).startswith("S3 create_bucket 'bucket-x': SlowDown (retry): ")


def test_a_throttled_download_is_transient(aws_credentials: None, tmp_path: Path) -> None:
    class ThrottlesDownloads(_Overloaded):
        def do_HEAD(self) -> None:  # noqa: N802 - http.server's naming
            self.send_response(200)
            self.send_header("Content-Length", "1")
            self.send_header("Content-Type", "text/plain")
            self.send_header("ETag", '"x"')
            self.send_header("x-amz-meta-sha256", hashlib.sha256(b"x").hexdigest())
            self.end_headers()

    with answering(ThrottlesDownloads) as url:
        store = S3Store("bucket-x", endpoint_url=url,
                        max_attempts=1)
        with pytest.raises(TransientStorageError) as info:
            store.get_file("a.txt", tmp_path / "a.txt")
        assert str(info.value).startswith("S3 download 'a.txt': SlowDown (retry): ")
        assert not (tmp_path / "a.txt").exists()


def test_a_throttled_copy_is_transient(aws_credentials: None) -> None:
    class ThrottlesCopies(_Overloaded):
        def do_HEAD(self) -> None:  # noqa: N802 - http.server's naming
            found = self.path.endswith("/src.txt")
            self.send_response(200 if found else 404)
            self.send_header("Content-Length", "1" if found else "0")
            self.send_header("ETag", '"x"')
            self.send_header("x-amz-meta-sha256", hashlib.sha256(b"x").hexdigest())
            self.end_headers()

    with answering(ThrottlesCopies) as url:
        store = S3Store("bucket-x", endpoint_url=url,
                        max_attempts=1)
        with pytest.raises(TransientStorageError) as info:
            store.copy("src.txt", "dst.txt")
        assert str(info.value).startswith("S3 copy 'dst.txt': SlowDown (retry): ")


def test_an_s3_copy_logs_its_put(s3_endpoint: str, aws_credentials: None,
                                 caplog: pytest.LogCaptureFixture) -> None:
    store = S3Store(f"copylog-{uuid.uuid4().hex[:8]}", endpoint_url=s3_endpoint,
                    create_bucket=True)
    store.put_bytes(b"x", "a.txt")
    with caplog.at_level(logging.INFO, logger="infra.storage"):
        store.copy("a.txt", "b.txt")
    assert [r.getMessage() for r in caplog.records] == [
        f"storage.put key=b.txt bytes=1 sha256={hashlib.sha256(b'x').hexdigest()[:12]} "
        "uploaded=True backend=s3"]


def test_an_unreachable_endpoint_fails_the_bucket_check_as_transient(
        aws_credentials: None) -> None:
    with socket_port() as port:  # nothing listens there
        with pytest.raises(TransientStorageError) as info:
            S3Store("bucket-x", endpoint_url=f"http://127.0.0.1:{port}", max_attempts=1,
                    connect_timeout_s=1, create_bucket=True)
    assert str(info.value).startswith("S3 head_bucket 'bucket-x': network failure: ")


def test_s3_puts_keep_type_and_metadata_and_log_each_put(
        s3_endpoint: str, aws_credentials: None, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    store = S3Store(f"puts-{uuid.uuid4().hex[:8]}", endpoint_url=s3_endpoint,
                    create_bucket=True)
    source = tmp_path / "take.mp4"
    source.write_bytes(b"take")
    with caplog.at_level(logging.INFO, logger="infra.storage"):
        first = store.put_bytes(b"cut", "a/cut.mp4", content_type="video/quicktime",
                                metadata={"take": "3"})
        again = store.put_bytes(b"cut", "a/cut.mp4")
    assert first.uploaded is True and again.uploaded is False
    digest = hashlib.sha256(b"cut").hexdigest()
    assert [r.getMessage() for r in caplog.records] == [
        f"storage.put key=a/cut.mp4 bytes=3 sha256={digest[:12]} uploaded={flag} backend=s3"
        for flag in (True, False)]
    head = store.head("a/cut.mp4")
    assert head is not None and head.content_type == "video/quicktime"
    assert head.metadata == {"take": "3", "sha256": digest}
    filed = store.put_file(source, "a/take.mp4", content_type="video/quicktime")
    assert filed.content_type == "video/quicktime"


def test_large_byte_uploads_go_multipart(s3_endpoint: str, aws_credentials: None) -> None:
    store = S3Store(f"bigbytes-{uuid.uuid4().hex[:8]}", endpoint_url=s3_endpoint,
                    create_bucket=True, multipart_threshold=5 * 2**20)
    store.put_bytes(bytes(6 * 2**20), "big.bin")
    etag = store.client.head_object(Bucket=store.bucket, Key="big.bin")["ETag"]
    assert etag.strip('"').endswith("-2"), "expected a 2-part multipart upload"


def test_an_s3_listing_prefix_follows_the_key_rules(aws_credentials: None) -> None:
    store = S3Store("bucket-x", endpoint_url="http://127.0.0.1:9")  # refused before any request
    for bad in ("../", "/a", "a//"):
        with pytest.raises(InvalidKey):
            store.list(bad)


def test_a_refused_request_is_not_transient(aws_credentials: None) -> None:
    class Forbidden(_Overloaded):
        status, code = 403, "AccessDenied"

    with answering(Forbidden) as url:
        store = S3Store("bucket-x", endpoint_url=url,
                        max_attempts=1)
        with pytest.raises(StorageError) as info:
            store.list("a/")
        assert not isinstance(info.value, TransientStorageError)
        assert str(info.value).startswith("S3 list 'a/' failed: ")


def test_open_store_passes_region_and_creates_no_bucket_unasked(s3_endpoint: str,
                                                               aws_credentials: None) -> None:
    name = f"unasked-{uuid.uuid4().hex[:8]}"
    store = open_store(f"s3://{name}/p", endpoint_url=s3_endpoint, region="eu-west-1")
    assert isinstance(store, S3Store) and store.client.meta.region_name == "eu-west-1"
    buckets = store.client.list_buckets()["Buckets"]
    assert name not in [bucket["Name"] for bucket in buckets]


def test_presigned_urls_last_an_hour_unless_told(s3_endpoint: str, aws_credentials: None) -> None:
    store = S3Store(f"presign-{uuid.uuid4().hex[:8]}", endpoint_url=s3_endpoint,
                    create_bucket=True)
    store.put_bytes(b"x", "a.txt")
    for asked, lifetime in (({}, 3600), ({"expires_s": 60}, 60)):
        before = time.time()
        url = store.presigned_url("a.txt", **asked)
        after = time.time()
        assert url is not None  # a query-string signature: Expires is the moment it ends
        expires = int(parse_qs(urlparse(url).query)["Expires"][0])
        assert int(before + lifetime) <= expires <= int(after + lifetime)


def test_an_unreachable_endpoint_fails_a_head_as_transient(aws_credentials: None) -> None:
    with socket_port() as port:  # nothing listens there
        store = S3Store("bucket-x", endpoint_url=f"http://127.0.0.1:{port}", max_attempts=1,
                        connect_timeout_s=1)
        with pytest.raises(TransientStorageError) as info:
            store.head("a.txt")
    assert str(info.value).startswith("S3 head 'a.txt': network failure: ")


def test_s3_requests_retry_five_times_with_bounded_timeouts(aws_credentials: None) -> None:
    # the defaults every deployment gets: standard retries (backoff with jitter), 5 attempts a
    # request in all (the first included), 10 s to connect, 60 s per read
    config = S3Store("bucket-x", endpoint_url="http://127.0.0.1:9").client.meta.config
    assert config.retries == {"total_max_attempts": 5, "mode": "standard"}
    assert (config.connect_timeout, config.read_timeout) == (10.0, 60.0)
    tuned = S3Store("bucket-x", endpoint_url="http://127.0.0.1:9", max_attempts=2,
                    connect_timeout_s=1.5, read_timeout_s=7.0).client.meta.config
    assert tuned.retries == {"total_max_attempts": 2, "mode": "standard"}
    assert (tuned.connect_timeout, tuned.read_timeout) == (1.5, 7.0)


def test_an_s3_prefix_given_with_slashes_is_the_same_prefix(s3_endpoint: str,
                                                            aws_credentials: None) -> None:
    bucket = f"slashes-{uuid.uuid4().hex[:8]}"
    store = S3Store(bucket, "/X-team/a/", endpoint_url=s3_endpoint, create_bucket=True)
    assert store.prefix == "X-team/a"  # only slashes are stripped
    assert store.put_bytes(b"x", "v.txt").uri == f"s3://{bucket}/X-team/a/v.txt"


def test_an_object_written_by_another_tool_has_no_checksum(s3_endpoint: str,
                                                           aws_credentials: None) -> None:
    store = S3Store(f"foreign-{uuid.uuid4().hex[:8]}", endpoint_url=s3_endpoint,
                    create_bucket=True)
    store.client.put_object(Bucket=store.bucket, Key="raw.bin", Body=b"abc")
    head = store.head("raw.bin")
    assert head is not None
    assert (head.sha256, head.size_bytes, head.metadata) == ("", 3, {})


@pytest.mark.parametrize("attempts", [1, 3])
def test_max_attempts_counts_every_request_the_first_included(attempts: int,
                                                               aws_credentials: None) -> None:
    class Counting(_Overloaded):
        seen: list[str] = []

        def _answer(self) -> None:
            Counting.seen.append(self.path)
            super()._answer()

        do_GET = do_PUT = do_HEAD = do_POST = _answer

    with answering(Counting) as url:
        store = S3Store("bucket-x", endpoint_url=url, max_attempts=attempts)
        with pytest.raises(TransientStorageError):
            store.list("a/")
    assert len(Counting.seen) == attempts
