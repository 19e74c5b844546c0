"""Storage against moto's S3 server over HTTP and against a local folder."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path

import pytest

from infra.storage import (
    InvalidKey,
    LocalStore,
    S3Store,
    StorageError,
    TransientStorageError,
    deliverable_key,
    open_store,
)


@pytest.fixture
def s3(s3_endpoint: str, aws_credentials: None) -> S3Store:
    store = open_store(f"s3://bucket-{uuid.uuid4().hex[:8]}/deliveries",
                       endpoint_url=s3_endpoint, create_bucket=True)
    assert isinstance(store, S3Store)
    return store


def test_put_head_get_round_trip_with_type_and_metadata(s3: S3Store, tmp_path: Path) -> None:
    source = tmp_path / "clip.mp4"
    source.write_bytes(b"\x00\x01 not really an mp4")
    stored = s3.put_file(source, "a/clip.mp4", metadata={"campaign": "spring"})
    assert stored.uploaded and stored.uri.endswith("/deliveries/a/clip.mp4")
    head = s3.head("a/clip.mp4")
    assert head is not None and head.content_type == "video/mp4"
    assert head.metadata["campaign"] == "spring"
    assert head.sha256 == stored.sha256 == hashlib.sha256(source.read_bytes()).hexdigest()
    back = s3.get_file("a/clip.mp4", tmp_path / "back.mp4")
    assert back.read_bytes() == source.read_bytes()
    assert s3.list("a") == ["a/clip.mp4"] and s3.list("a/") == ["a/clip.mp4"]
    assert s3.list() == ["a/clip.mp4"] and s3.list("b/") == []
    assert s3.exists("a/clip.mp4") and not s3.exists("a/other.mp4")


def test_changed_content_overwrites_and_missing_objects_fail(s3: S3Store, tmp_path: Path) -> None:
    first = s3.put_bytes(b"version 1", "v.txt")
    second = s3.put_bytes(b"version 2", "v.txt")
    assert second.uploaded and second.sha256 != first.sha256
    head = s3.head("v.txt")  # expected values computed here, not taken from put's answer
    assert head is not None and head.sha256 == hashlib.sha256(b"version 2").hexdigest()
    assert head.size_bytes == 9 and head.content_type == "text/plain"
    assert s3.client.get_object(Bucket=s3.bucket, Key="deliveries/v.txt")["Body"].read() == \
        b"version 2"
    with pytest.raises(StorageError, match="no object 'nope.txt'") as caught:
        s3.get_file("nope.txt", tmp_path / "nope.txt")
    assert not isinstance(caught.value, TransientStorageError)
    assert not (tmp_path / "nope.txt").exists()


def test_unreachable_endpoint_is_transient(aws_credentials: None) -> None:
    with socket_port() as port:  # a port nobody listens on once released
        store = S3Store("bucket", endpoint_url=f"http://127.0.0.1:{port}", max_attempts=1)
    with pytest.raises(TransientStorageError, match="network failure"):
        store.head("a.txt")


def test_large_files_go_multipart_and_verify(s3_endpoint: str, aws_credentials: None,
                                             tmp_path: Path) -> None:
    store = S3Store(f"big-{uuid.uuid4().hex[:8]}", endpoint_url=s3_endpoint, create_bucket=True,
                    multipart_threshold=5 * 2**20)
    source = tmp_path / "big.bin"
    data = os.urandom(12 * 2**20)
    source.write_bytes(data)
    stored = store.put_file(source, "big.bin")
    info = store.client.head_object(Bucket=store.bucket, Key="big.bin")
    assert info["ETag"].strip('"').endswith("-3"), "expected a 3-part multipart upload"
    expected = hashlib.sha256(data).hexdigest()
    assert stored.size_bytes == 12 * 2**20 and info["Metadata"]["sha256"] == expected
    assert stored.sha256 == expected
    # A multipart server-side copy keeps the type and the sha256 metadata.
    copied = store.copy("big.bin", "published/big.bin")
    info = store.client.head_object(Bucket=store.bucket, Key="published/big.bin")
    assert info["ETag"].strip('"').endswith("-3")
    assert copied.sha256 == expected and info["Metadata"]["sha256"] == expected
    assert copied.content_type == info["ContentType"] == "application/octet-stream"
    back = store.get_file("published/big.bin", tmp_path / "back.bin")
    assert back.read_bytes() == data


def test_same_content_is_not_uploaded_again(s3: S3Store, tmp_path: Path) -> None:
    source = tmp_path / "x.json"
    source.write_text('{"a": 1}')
    first = s3.put_file(source, "x.json")
    modified = s3.client.head_object(Bucket=s3.bucket, Key="deliveries/x.json")["LastModified"]
    second = s3.put_file(source, "x.json")
    assert first.uploaded and not second.uploaded
    again = s3.client.head_object(Bucket=s3.bucket, Key="deliveries/x.json")["LastModified"]
    assert again == modified


def test_presigned_url_downloads_the_object(s3: S3Store) -> None:
    s3.put_bytes(b"hello", "hello.txt")
    url = s3.presigned_url("hello.txt")
    assert url is not None
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - loopback
        assert response.read() == b"hello"


def test_copy_promotes_an_object(s3: S3Store) -> None:
    s3.put_bytes(b"review me", "review/v.mp4")
    copied = s3.copy("review/v.mp4", "final/v.mp4")
    assert copied.sha256 == hashlib.sha256(b"review me").hexdigest()
    assert copied.content_type == "video/mp4" and copied.size_bytes == 9
    body = s3.client.get_object(Bucket=s3.bucket, Key="deliveries/final/v.mp4")["Body"].read()
    assert body == b"review me"
    assert s3.copy("review/v.mp4", "final/v.mp4").uploaded is False


def test_a_large_copy_keeps_type_metadata_and_checksum(s3_endpoint: str,
                                                       aws_credentials: None) -> None:
    """Above the multipart threshold S3 copies in parts, which carry no metadata by themselves:
    the store passes it along, or the copy would lose its checksum and fail to verify."""
    store = S3Store(f"bigcopy-{uuid.uuid4().hex[:8]}", endpoint_url=s3_endpoint,
                    create_bucket=True, multipart_threshold=5 * 2**20)
    data = os.urandom(6 * 2**20)
    store.put_bytes(data, "review/v.bin", content_type="video/quicktime",
                    metadata={"take": "3"})
    copied = store.copy("review/v.bin", "final/v.bin")
    head = store.head("final/v.bin")
    assert head is not None and head == copied
    assert head.sha256 == hashlib.sha256(data).hexdigest() and head.size_bytes == len(data)
    assert head.content_type == "video/quicktime" and head.metadata["take"] == "3"


@pytest.mark.parametrize("bad", ["../etc/passwd", "/abs", "a//b", "a/./b", ""])
def test_keys_cannot_escape(tmp_path: Path, bad: str) -> None:
    with pytest.raises(InvalidKey):
        LocalStore(tmp_path).put_bytes(b"x", bad)


def test_deliverable_key_layout_carries_the_team() -> None:
    assert deliverable_key("emea", "spring", "de-DE", "9:16", "run.mp4") == \
        "campaigns/emea/spring/de-DE/9x16/run.mp4"
    assert deliverable_key("apac", "spring", "de-DE", "9:16", "run.mp4") != \
        deliverable_key("emea", "spring", "de-DE", "9:16", "run.mp4")
    with pytest.raises(InvalidKey, match="campaign '..'"):
        deliverable_key("emea", "..", "de-DE", "9:16", "run.mp4")
    with pytest.raises(InvalidKey, match="team '..'"):
        deliverable_key("..", "spring", "de-DE", "9:16", "run.mp4")


def test_open_store_selects_the_backend(tmp_path: Path) -> None:
    assert isinstance(open_store(str(tmp_path / "plain")), LocalStore)
    local = open_store((tmp_path / "url").as_uri())
    assert isinstance(local, LocalStore) and local.root == (tmp_path / "url").resolve()
    with pytest.raises(StorageError) as info:
        open_store("gs://bucket/x")
    assert str(info.value) == ("unsupported storage URL 'gs://bucket/x': expected file:///dir, "
                               "a path or s3://bucket/prefix")


@pytest.mark.parametrize("parts", [("t", "a/b", "de-DE", "9:16", "x.mp4"),
                                   ("t", "c", "", "9:16", "x.mp4"),
                                   ("t", "c", "de-DE", "..", "x.mp4"),
                                   ("t", "c", "de-DE", "9:16", ""),
                                   ("a/b", "c", "de-DE", "9:16", "x.mp4")])
def test_deliverable_key_rejects_bad_parts(parts: tuple[str, str, str, str, str]) -> None:
    with pytest.raises(ValueError, match="cannot be part of an object key"):
        deliverable_key(*parts)


def test_local_store_round_trip_idempotence_and_versions(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    source = tmp_path / "clip.mp4"
    source.write_bytes(os.urandom(3 * 2**20 + 7))  # several streaming chunks
    first = store.put_file(source, "a/clip.mp4", metadata={"k": "v"})
    mtime = (tmp_path / "store" / "a" / "clip.mp4").stat().st_mtime_ns
    second = store.put_file(source, "a/clip.mp4")
    assert first.uploaded and not second.uploaded
    assert second.sha256 == hashlib.sha256(source.read_bytes()).hexdigest()
    assert (tmp_path / "store" / "a" / "clip.mp4").stat().st_mtime_ns == mtime
    head = store.head("a/clip.mp4")
    assert head is not None and head.metadata == {"k": "v"} and head.content_type == "video/mp4"
    back = store.get_file("a/clip.mp4", tmp_path / "out" / "back.mp4")
    assert back.read_bytes() == source.read_bytes()
    newer = store.put_bytes(b"new cut", "a/clip.mp4")
    head = store.head("a/clip.mp4")
    assert newer.uploaded and head is not None and head.size_bytes == 7
    assert head.sha256 == hashlib.sha256(b"new cut").hexdigest()
    copied = store.copy("a/clip.mp4", "final/clip.mp4")
    assert copied.sha256 == hashlib.sha256(b"new cut").hexdigest()
    assert (tmp_path / "store" / "final" / "clip.mp4").read_bytes() == b"new cut"
    assert store.list("final/") == ["final/clip.mp4"]
    assert store.exists("final/clip.mp4") and store.presigned_url("final/clip.mp4") is None
    assert store.list() == ["a/clip.mp4", "final/clip.mp4"]


@pytest.mark.parametrize("bad", ["a/b.meta.json", "a/.tmp-x"])
def test_local_store_reserves_its_own_file_names(tmp_path: Path, bad: str) -> None:
    with pytest.raises(InvalidKey, match="reserved"):
        LocalStore(tmp_path).put_bytes(b"x", bad)


def test_source_changing_mid_write_leaves_the_old_version(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The source file is rewritten between the hash pass and the copy pass (another process
    writing it): the copy's hash disagrees and the store refuses it."""
    import infra.storage as storage_module

    store = LocalStore(tmp_path / "store")
    old = store.put_bytes(b"old", "a/v.bin")
    source = tmp_path / "source"
    source.write_bytes(b"first read")
    hash_file = storage_module.sha256_file

    def hash_then_rewrite(path: Path) -> str:
        digest = hash_file(path)
        Path(path).write_bytes(b"second read differs")
        return digest

    monkeypatch.setattr(storage_module, "sha256_file", hash_then_rewrite)
    with pytest.raises(StorageError) as info:
        store.put_file(source, "a/v.bin")
    first, second = (hashlib.sha256(b).hexdigest()[:12] for b in (b"first read",
                                                                  b"second read differs"))
    assert str(info.value) == ("source for key 'a/v.bin' changed while storing: expected "
                               f"sha256 {first}, copied {second}")
    assert not list((tmp_path / "store").rglob(".tmp-*"))
    # Nothing is touched until the new version is written in full: the old one stays stored.
    assert store.head("a/v.bin") == old and store.list() == ["a/v.bin"]
    assert (tmp_path / "store" / "a" / "v.bin").read_bytes() == b"old"
    assert store.put_bytes(b"old", "a/v.bin").uploaded is False


def test_failed_commit_removes_the_temp_file(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    store.put_bytes(b"inner", "a/b/c.txt")  # makes a/b a directory
    # (a full disk or a read-only folder likewise: the error names the object)
    with pytest.raises(StorageError, match=r"cannot store 'a/b' in .*store: Is a directory"):
        store.put_bytes(b"x", "a/b")
    assert not list((tmp_path / "store").rglob(".tmp-*"))
    assert store.list() == ["a/b/c.txt"]


class socket_port:  # noqa: N801 - reads as a context manager call
    """A free loopback port number, released on exit."""

    def __enter__(self) -> int:
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        return int(self.sock.getsockname()[1])

    def __exit__(self, *exc: object) -> None:
        self.sock.close()


def test_a_storage_folder_that_cannot_be_made_is_a_storage_error(tmp_path: Path) -> None:
    # A file where the storage folder goes (STORAGE_URL, or <data dir>/storage) was a
    # FileExistsError traceback from `mova-ads submit`; as a StorageError the CLI names it.
    afile = tmp_path / "storage"
    afile.write_text("")
    with pytest.raises(StorageError, match=f"the storage folder {afile} cannot be used: it is "
                                           "a file"):
        open_store(str(afile))
    with pytest.raises(StorageError, match="cannot be used: Not a directory"):
        open_store(f"file://{afile / 'sub'}")


def test_a_put_killed_outright_leaves_a_temp_the_next_put_in_its_folder_removes(
        tmp_path: Path) -> None:
    """SIGKILL gives a put no chance to remove its temp file; the next put into that folder
    (a restarted run stores the same deliverable again) removes it, but not a temp that a
    running process or another host is still writing."""
    store = LocalStore(tmp_path / "store")
    folder = tmp_path / "store" / "deliverables" / "d1"
    folder.mkdir(parents=True)
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, check=True)
    dead, host = int(ended.stdout), socket.gethostname()
    orphan = folder / f".tmp-{dead}@{host}-k1ll3d"
    in_progress = folder / f".tmp-{os.getpid()}@{host}-wr1t1ng"
    other_host = folder / f".tmp-{dead}@elsewhere-01-n0tm1ne"
    for temp in (orphan, in_progress, other_host):
        temp.write_bytes(b"partial")
    store.put_bytes(b"whole", "deliverables/d1/video.mp4")
    assert not orphan.exists()
    assert in_progress.exists() and other_host.exists()
    assert store.list() == ["deliverables/d1/video.mp4"]
    assert (folder / "video.mp4").read_bytes() == b"whole"
