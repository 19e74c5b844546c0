"""Stored bytes that are not the bytes written are caught: a local object corrupted on disk
fails its read (and its copy) on the checksum, and an S3 upload whose object is not what was
sent (replaced or truncated between the upload and its verification, as a lying or racing
store would leave it) fails the upload instead of being taken as stored."""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest

from infra.storage import LocalStore, S3Store, StorageError


def _flip_one_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["flipped byte", "truncated", "appended"])
def test_a_corrupted_local_object_fails_its_read(tmp_path: Path, damage: str) -> None:
    store = LocalStore(tmp_path / "store")
    data = os.urandom(3 * 2**20 + 5)  # more than one streaming chunk
    store.put_bytes(data, "a/clip.mp4")
    path = tmp_path / "store" / "a" / "clip.mp4"
    if damage == "flipped byte":
        _flip_one_byte(path, 2 * 2**20 + 1)  # same size: only the checksum can tell
    elif damage == "truncated":
        path.write_bytes(data[:-1])
    else:
        path.write_bytes(data + b"\0")
    with pytest.raises(StorageError, match=r"'a/clip.mp4' .* is corrupt"):
        store.get_file("a/clip.mp4", tmp_path / "out" / "clip.mp4")
    assert not (tmp_path / "out" / "clip.mp4").exists(), "corrupt bytes reached the caller"
    assert not list((tmp_path / "out").glob(".tmp-*"))
    with pytest.raises(StorageError):
        store.copy("a/clip.mp4", "final/clip.mp4")
    assert store.head("final/clip.mp4") is None


def test_an_intact_local_object_reads_back_exactly(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    data = os.urandom(2**20 + 3)
    store.put_bytes(data, "a.bin")
    assert store.get_file("a.bin", tmp_path / "a.bin").read_bytes() == data


# ---- S3: the object is replaced right after the upload call returns -------------------------


@pytest.fixture
def s3(s3_endpoint: str, aws_credentials: None) -> S3Store:
    return S3Store(f"integrity-{uuid.uuid4().hex[:8]}", endpoint_url=s3_endpoint,
                   create_bucket=True, multipart_threshold=5 * 2**20)


def _after_upload(store: S3Store, operation: str, tamper: Callable[[Any, str], None]) -> None:
    """Once `operation` (PutObject or CompleteMultipartUpload) succeeds through the store's
    client, a second, independent client rewrites the object: the store's own verification
    then reads what the bucket really holds."""
    other = boto3.client("s3", endpoint_url=store.client.meta.endpoint_url,
                         region_name="us-east-1")

    def record(params: dict[str, Any], **_: Any) -> None:
        if params.get("Bucket") == store.bucket:
            keys.append(params["Key"])

    def after(**_: Any) -> None:
        if keys:
            tamper(other, keys.pop())

    keys: list[str] = []
    store.client.meta.events.register(f"provide-client-params.s3.{operation}", record)
    store.client.meta.events.register(f"after-call.s3.{operation}", after)


def _truncate(store: S3Store) -> Callable[[Any, str], None]:
    def tamper(other: Any, key: str) -> None:
        head = other.head_object(Bucket=store.bucket, Key=key)
        body = other.get_object(Bucket=store.bucket, Key=key)["Body"].read()
        other.put_object(Bucket=store.bucket, Key=key, Body=body[: len(body) // 2],
                         Metadata=head["Metadata"], ContentType=head["ContentType"])
    return tamper


def _replace_with_other_content(store: S3Store) -> Callable[[Any, str], None]:
    def tamper(other: Any, key: str) -> None:
        body = other.get_object(Bucket=store.bucket, Key=key)["Body"].read()
        other.put_object(Bucket=store.bucket, Key=key, Body=bytes(len(body)),
                         Metadata={"sha256": "0" * 64})
    return tamper


def _delete(store: S3Store) -> Callable[[Any, str], None]:
    def tamper(other: Any, key: str) -> None:
        other.delete_object(Bucket=store.bucket, Key=key)
    return tamper


@pytest.mark.parametrize(("tamper", "found"), [
    (_truncate, "2048 bytes sha256 {digest}"), (_replace_with_other_content,
                                                "4096 bytes sha256 000000000000"),
    (_delete, "nothing")])
def test_an_s3_upload_that_did_not_store_the_bytes_fails(
        s3: S3Store, tamper: Callable[[S3Store], Callable[[Any, str], None]], found: str) -> None:
    data = os.urandom(4096)
    digest = hashlib.sha256(data).hexdigest()[:12]
    _after_upload(s3, "PutObject", tamper(s3))
    with pytest.raises(StorageError) as info:
        s3.put_bytes(data, "v.bin")
    assert str(info.value) == (f"S3 upload of 'v.bin' did not verify: expected 4096 bytes "
                               f"sha256 {digest}, found {found.format(digest=digest)}")


@pytest.mark.parametrize("tamper", [_truncate, _replace_with_other_content])
def test_an_s3_copy_that_did_not_store_the_bytes_fails(
        s3: S3Store, tamper: Callable[[S3Store], Callable[[Any, str], None]]) -> None:
    data = os.urandom(4096)
    s3.put_bytes(data, "review/v.bin")
    _after_upload(s3, "CopyObject", tamper(s3))
    with pytest.raises(StorageError) as info:
        s3.copy("review/v.bin", "final/v.bin")
    assert str(info.value).startswith(
        "S3 copy 'review/v.bin' -> 'final/v.bin' did not verify: expected 4096 bytes sha256 "
        f"{hashlib.sha256(data).hexdigest()[:12]}, found ")


def test_a_multipart_s3_upload_that_came_out_short_fails(s3: S3Store, tmp_path: Path) -> None:
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(11 * 2**20))
    _after_upload(s3, "CompleteMultipartUpload", _truncate(s3))
    with pytest.raises(StorageError, match=r"did not verify: expected 11534336 bytes"):
        s3.put_file(source, "big.bin")


def test_an_s3_object_changed_after_upload_fails_its_download(s3: S3Store,
                                                              tmp_path: Path) -> None:
    s3.put_bytes(b"the approved cut", "cut.mp4")
    head = s3.client.head_object(Bucket=s3.bucket, Key="cut.mp4")
    s3.client.put_object(Bucket=s3.bucket, Key="cut.mp4", Body=b"a different cut!",
                         Metadata=head["Metadata"])  # same size, stale checksum
    with pytest.raises(StorageError) as info:
        s3.get_file("cut.mp4", tmp_path / "cut.mp4")
    stored = hashlib.sha256(b"the approved cut").hexdigest()[:12]
    assert str(info.value) == ("S3 download of 'cut.mp4' did not verify: expected sha256 "
                               f"{stored}, got different bytes")
    assert not (tmp_path / "cut.mp4").exists()
