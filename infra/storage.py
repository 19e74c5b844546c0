"""Object storage: a local folder by default, S3 (any endpoint) in production.

Both backends are content-aware: every object carries its SHA-256, and putting an object whose
key already holds the same checksum writes nothing (`uploaded=False`). Writes are atomic (a
crash never leaves a partial object under its final key) and verified after upload.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import mimetypes
import os
import socket
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any, Protocol
from urllib.parse import urlparse

import boto3
from boto3.exceptions import Boto3Error
from boto3.s3.transfer import S3TransferRetriesExceededError, TransferConfig
from botocore.config import Config as BotoConfig
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionError,
    HTTPClientError,
)

from infra.hashing import CHUNK, sha256_bytes, sha256_file
from infra.storage_errors import InvalidKey, StorageError, TransientStorageError

__all__ = ["InvalidKey", "LocalStore", "ObjectStore", "S3Store", "StorageError", "StoredObject",
           "TransientStorageError", "deliverable_key", "get_reference", "input_key",
           "legacy_deliverable_key", "open_store", "s3_object"]

log = logging.getLogger(__name__)

MULTIPART_THRESHOLD = 8 * 2**20
_MIN_PART = 5 * 2**20  # S3 rejects multipart parts below 5 MiB (except the last)
_META_SUFFIX = ".meta.json"
_TEMP_PREFIX = ".tmp-"
_NOT_FOUND = {"404", "NoSuchKey", "NotFound"}
_THROTTLED = {"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout",
              "RequestTimeTooSkewed", "TooManyRequests"}


@dataclass(frozen=True)
class StoredObject:
    uri: str
    key: str
    sha256: str
    size_bytes: int
    content_type: str
    metadata: dict[str, str] = field(default_factory=dict)
    uploaded: bool = True  # False: the same content was already there


class ObjectStore(Protocol):
    def put_file(self, path: Path, key: str, *, content_type: str | None = None,
                 metadata: Mapping[str, str] | None = None) -> StoredObject: ...

    def put_bytes(self, data: bytes, key: str, *, content_type: str | None = None,
                  metadata: Mapping[str, str] | None = None) -> StoredObject: ...

    def head(self, key: str) -> StoredObject | None: ...

    def get_file(self, key: str, dest: Path) -> Path: ...

    def exists(self, key: str) -> bool: ...

    def list(self, prefix: str = "") -> list[str]: ...

    def uri_for(self, key: str) -> str: ...

    def presigned_url(self, key: str, expires_s: int = 3600) -> str | None: ...

    def local_path(self, key: str) -> Path | None:
        """Where the object's file is when the store is a local folder (served directly);
        None for remote stores. Says nothing about whether the object exists: use head()."""
        ...

    def copy(self, src_key: str, dst_key: str) -> StoredObject: ...


def check_key(key: str) -> str:
    """The key itself if it is relative a/b/c parts without '..', '.', empties or backslashes."""
    parts = key.split("/")
    if not key or key.startswith("/") or "\\" in key or any(p in ("", ".", "..") for p in parts):
        raise InvalidKey(f"invalid object key {key!r}: expected relative a/b/c parts "
                         "without '..', '.', empty parts or backslashes")
    if key.endswith(_META_SUFFIX) or parts[-1].startswith(_TEMP_PREFIX):
        raise InvalidKey(f"invalid object key {key!r}: names ending in {_META_SUFFIX!r} or "
                         f"starting with {_TEMP_PREFIX!r} are reserved by the store")
    return key


def _check_prefix(prefix: str) -> str:
    """A listing prefix: empty, or a key that may end in '/'."""
    if prefix:
        check_key(prefix.removesuffix("/"))
    return prefix


def _key_part(value: str, what: str) -> str:
    if not value or "/" in value or "\\" in value or value in (".", ".."):
        raise InvalidKey(f"{what} {value!r} cannot be part of an object key: expected a "
                         "non-empty name without '/', '\\' and not '.' or '..'")
    return value


def deliverable_key(team: str, campaign: str, locale: str, aspect: str, filename: str, *,
                    brief: str | None = None) -> str:
    """campaigns/{team}/{campaign}/[brief-{brief}/]{locale}/{aspect, ':' as 'x'}/{filename}:
    campaign slugs are unique per team only, so the team keeps two teams' files apart; `brief`
    gives one brief its own folder inside its campaign's (the review area: two briefs of one
    campaign may wait for review at once)."""
    folder = [] if brief is None else [_key_part(f"brief-{brief}", "brief")]
    return "/".join(["campaigns", _key_part(team, "team"), _key_part(campaign, "campaign"),
                     *folder, _key_part(locale, "locale"),
                     _key_part(aspect.replace(":", "x"), "aspect"),
                     _key_part(filename, "file name")])


def input_key(team: str, sha256: str, suffix: str) -> str:
    """inputs/{team}/{sha256}{suffix}: a team's uploaded image, content-addressed."""
    return f"inputs/{_key_part(team, 'team')}/{sha256}{suffix}"


def legacy_deliverable_key(campaign: str, locale: str, aspect: str, filename: str) -> str:
    """The layout before teams (campaigns/{campaign}/...), read once by the key move."""
    return "/".join(["campaigns", _key_part(campaign, "campaign"), _key_part(locale, "locale"),
                     _key_part(aspect.replace(":", "x"), "aspect"),
                     _key_part(filename, "file name")])


def _content_type(key: str, given: str | None) -> str:
    return given or mimetypes.guess_type(key)[0] or "application/octet-stream"


def _log_put(obj: StoredObject, backend: str) -> None:
    log.info("storage.put key=%s bytes=%d sha256=%s uploaded=%s backend=%s", obj.key,
             obj.size_bytes, obj.sha256[:12], obj.uploaded, backend)


def _temp_owner_prefix() -> str:
    """`.tmp-<pid>@<host>-`: a temp file's name says which process on which host writes it."""
    return f"{_TEMP_PREFIX}{os.getpid()}@{socket.gethostname()}-"


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        return True
    return True


def remove_orphaned_temps(folder: Path) -> list[Path]:
    """Delete the temp files in `folder` whose writer, a process on this host, has ended: a put
    killed outright (SIGKILL, a lost machine) cannot remove its own. Another host's temps and
    those of a running process stay. Returns what was removed."""
    removed = []
    host = socket.gethostname()
    for temp in folder.glob(f"{_TEMP_PREFIX}*@*"):
        pid, _, rest = temp.name[len(_TEMP_PREFIX):].partition("@")
        owner_host = rest.rpartition("-")[0]  # tempfile's random part has no "-"
        if pid.isdigit() and owner_host == host and not _process_exists(int(pid)):
            temp.unlink(missing_ok=True)
            removed.append(temp)
    return removed


@contextmanager
def _temp_beside(path: Path) -> Iterator[IO[bytes]]:
    """A temp file beside `path` (its `.name` is its path), flushed to disk when the block ends;
    removed if the block fails. The caller moves it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    out = tempfile.NamedTemporaryFile(dir=path.parent, prefix=_temp_owner_prefix(),
                                      delete=False)
    try:
        with out:
            yield out
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        Path(out.name).unlink(missing_ok=True)
        raise


@contextmanager
def _atomic_target(path: Path) -> Iterator[IO[bytes]]:
    """A temp file beside `path` (its `.name` is its path), moved over `path` on success only."""
    with _temp_beside(path) as out:
        yield out
    try:
        os.replace(out.name, path)
    except BaseException:
        Path(out.name).unlink(missing_ok=True)
        raise


def _copy_hashed(source: IO[bytes], out: IO[bytes]) -> tuple[str, int]:
    """Copy source to out in chunks; returns (sha256 hex, bytes copied)."""
    digest, size = hashlib.sha256(), 0
    while chunk := source.read(CHUNK):
        digest.update(chunk)
        out.write(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


class LocalStore:
    """A folder: objects are files; checksum, type and metadata live in `<file>.meta.json`."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as err:  # a file in its place, a read-only disk: not a traceback
            reason = "it is a file" if self.root.is_file() else f"{err.strerror}: {err.filename}"
            raise StorageError(f"the storage folder {self.root} cannot be used: {reason}"
                               ) from None

    def _path(self, key: str) -> Path:
        path = (self.root / check_key(key)).resolve()
        if self.root not in path.parents:
            raise InvalidKey(f"key {key!r} resolves to {path}, outside the store {self.root}")
        return path

    @staticmethod
    def _sidecar(path: Path) -> Path:
        return path.with_name(path.name + _META_SUFFIX)

    def _put(self, open_source: Callable[[], IO[bytes]], digest: str, key: str,
             content_type: str | None, metadata: Mapping[str, str] | None) -> StoredObject:
        path = self._path(key)
        if path.parent.is_dir():  # a put into this folder killed mid-way left its temp file
            for temp in remove_orphaned_temps(path.parent):
                log.warning("storage.orphan_removed path=%s", temp)
        existing = self.head(key)
        if existing is not None and existing.sha256 == digest:
            _log_put(replace(existing, uploaded=False), "local")
            return replace(existing, uploaded=False)
        sidecar_path = self._sidecar(path)
        staged: list[Path] = []  # written in full beside their targets, not yet in place
        try:
            # 1. the new bytes and their sidecar, in temp files: a full disk or a changed source
            #    fails here, and the object already stored under the key is left as it was
            with open_source() as source, _temp_beside(path) as out:
                staged.append(Path(out.name))
                copied, size = _copy_hashed(source, out)
                if copied != digest:
                    raise StorageError(f"source for key {key!r} changed while storing: "
                                       f"expected sha256 {digest[:12]}, copied {copied[:12]}")
            obj = StoredObject(uri=self.uri_for(key), key=key, sha256=digest, size_bytes=size,
                               content_type=_content_type(key, content_type),
                               metadata=dict(metadata or {}))
            sidecar = {"sha256": digest, "size_bytes": size, "content_type": obj.content_type,
                       "metadata": obj.metadata}
            with _temp_beside(sidecar_path) as out:
                staged.append(Path(out.name))
                out.write(json.dumps(sidecar, sort_keys=True).encode())
            # 2. renames only: the old sidecar goes first, so until the new one lands head()
            #    says absent rather than pairing new bytes with old metadata
            sidecar_path.unlink(missing_ok=True)
            os.replace(staged[0], path)
            os.replace(staged[1], sidecar_path)
            staged.clear()
        except OSError as err:  # a full disk, a read-only folder: say which object it was
            raise StorageError(f"cannot store {key!r} in {self.root}: "
                               f"{err.strerror or err}") from err
        finally:
            for temp in staged:
                temp.unlink(missing_ok=True)
        _log_put(obj, "local")
        return obj

    def put_bytes(self, data: bytes, key: str, *, content_type: str | None = None,
                  metadata: Mapping[str, str] | None = None) -> StoredObject:
        return self._put(lambda: io.BytesIO(data), sha256_bytes(data), key, content_type,
                         metadata)

    def put_file(self, path: Path, key: str, *, content_type: str | None = None,
                 metadata: Mapping[str, str] | None = None) -> StoredObject:
        source = Path(path)
        return self._put(lambda: source.open("rb"), sha256_file(source), key, content_type,
                         metadata)

    def head(self, key: str) -> StoredObject | None:
        path = self._path(key)
        sidecar = self._sidecar(path)
        if not path.is_file() or not sidecar.is_file():
            return None
        info = json.loads(sidecar.read_text())
        return StoredObject(uri=self.uri_for(key), key=key, sha256=info["sha256"],
                            size_bytes=info["size_bytes"], content_type=info["content_type"],
                            metadata=info["metadata"])

    def exists(self, key: str) -> bool:
        return self.head(key) is not None

    def get_file(self, key: str, dest: Path) -> Path:
        stored = self.head(key)
        if stored is None:
            raise StorageError(f"no object {key!r} in {self.root}")
        with self._path(key).open("rb") as source, _atomic_target(dest) as out:
            copied, _ = _copy_hashed(source, out)
            if copied != stored.sha256:
                raise StorageError(f"object {key!r} in {self.root} is corrupt: expected sha256 "
                                   f"{stored.sha256[:12]}, read {copied[:12]}")
        return dest

    def list(self, prefix: str = "") -> list[str]:
        """Keys of complete objects (data and sidecar both present) starting with prefix."""
        _check_prefix(prefix)
        keys = []
        for sidecar in self.root.rglob("*" + _META_SUFFIX):
            data = sidecar.with_name(sidecar.name.removesuffix(_META_SUFFIX))
            key = data.relative_to(self.root).as_posix()
            if data.is_file() and key.startswith(prefix):
                keys.append(key)
        return sorted(keys)

    def uri_for(self, key: str) -> str:
        return self._path(key).as_uri()

    def presigned_url(self, key: str, expires_s: int = 3600) -> str | None:
        return None  # a folder has no URL of its own; the application serves local files

    def local_path(self, key: str) -> Path | None:
        return self._path(key)

    def copy(self, src_key: str, dst_key: str) -> StoredObject:
        source = self.head(src_key)
        if source is None:
            raise StorageError(f"no object {src_key!r} in {self.root} to copy to {dst_key!r}")
        return self._put(lambda: self._path(src_key).open("rb"), source.sha256, dst_key,
                         source.content_type, source.metadata)


def _error_code(err: BaseException) -> tuple[str, int]:
    response: dict[str, Any] = getattr(err, "response", None) or {}
    code = str(response.get("Error", {}).get("Code", ""))
    status = int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    return code, status


def _wrap(err: Exception, action: str, key: str) -> StorageError:
    """Our error for a botocore/boto3 one: transient for throttling, 5xx and network failures."""
    cause: BaseException | None = err
    while cause is not None:  # boto3 re-raises upload ClientErrors as S3UploadFailedError
        if isinstance(cause, S3TransferRetriesExceededError):  # each read of the body cut short
            return TransientStorageError(f"S3 {action} {key!r}: network failure, retries "
                                         f"spent: {cause.last_exception}")
        if isinstance(cause, ConnectionError | HTTPClientError):
            return TransientStorageError(f"S3 {action} {key!r}: network failure: {cause}")
        code, status = _error_code(cause)
        if code in _THROTTLED or status >= 500:
            return TransientStorageError(f"S3 {action} {key!r}: {code or status} (retry): "
                                         f"{cause}")
        if isinstance(cause, ClientError):
            break
        cause = cause.__cause__ or cause.__context__
    return StorageError(f"S3 {action} {key!r} failed: {err}")


class S3Store:
    """An S3 bucket (and key prefix) through boto3's managed, multipart-capable transfer."""

    def __init__(self, bucket: str, prefix: str = "", *, endpoint_url: str | None = None,
                 region: str = "us-east-1", create_bucket: bool = False,
                 require_bucket: bool = False,
                 multipart_threshold: int = MULTIPART_THRESHOLD, max_attempts: int = 5,
                 connect_timeout_s: float = 10.0, read_timeout_s: float = 60.0) -> None:
        self.bucket, self.prefix = bucket, prefix.strip("/")
        if self.prefix:
            check_key(self.prefix)
        # Standard retry mode: 5xx, throttling, connection resets and timeouts are retried with
        # exponential backoff and jitter, up to max_attempts per request, the first included
        # (each multipart part and each ranged download read on its own). botocore's own
        # `max_attempts` counts retries only; `total_max_attempts` counts every attempt.
        self.client = boto3.client(
            "s3", endpoint_url=endpoint_url, region_name=region,
            config=BotoConfig(retries={"total_max_attempts": max_attempts, "mode": "standard"},
                              connect_timeout=connect_timeout_s, read_timeout=read_timeout_s))
        self.transfer = TransferConfig(multipart_threshold=multipart_threshold,
                                       multipart_chunksize=max(multipart_threshold, _MIN_PART))
        if create_bucket or require_bucket:
            self._ensure_bucket(create_bucket)

    def _ensure_bucket(self, create: bool) -> None:
        """The bucket exists afterwards: created when missing if asked, else a StorageError."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
            return
        except ClientError as err:
            if _error_code(err)[0] not in _NOT_FOUND:
                raise _wrap(err, "head_bucket", self.bucket) from err
        except BotoCoreError as err:
            raise _wrap(err, "head_bucket", self.bucket) from err
        if not create:  # a misspelt name must not quietly become a new, empty bucket
            raise StorageError(f"S3 bucket {self.bucket!r} does not exist: check the name, "
                               "create it, or set STORAGE_CREATE_BUCKET=1 to have it created")
        try:
            self.client.create_bucket(Bucket=self.bucket)
        except (ClientError, BotoCoreError) as err:
            raise _wrap(err, "create_bucket", self.bucket) from err

    def _full(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def head(self, key: str) -> StoredObject | None:
        try:
            info = self.client.head_object(Bucket=self.bucket, Key=self._full(key))
        except ClientError as err:
            if _error_code(err)[0] in _NOT_FOUND:
                return None
            raise _wrap(err, "head", key) from err
        except BotoCoreError as err:
            raise _wrap(err, "head", key) from err
        metadata = dict(info.get("Metadata", {}))
        return StoredObject(uri=self.uri_for(key), key=key, sha256=metadata.get("sha256", ""),
                            size_bytes=int(info["ContentLength"]),
                            content_type=info.get("ContentType", ""), metadata=metadata)

    def exists(self, key: str) -> bool:
        return self.head(key) is not None

    def _put(self, upload: Callable[[dict[str, Any]], None], digest: str, size: int, key: str,
             content_type: str | None, metadata: Mapping[str, str] | None) -> StoredObject:
        existing = self.head(key)
        if existing is not None and existing.sha256 == digest:
            _log_put(replace(existing, uploaded=False), "s3")
            return replace(existing, uploaded=False)
        # S3 checks each part against the SHA256 checksum botocore sends; the whole-file
        # digest goes in user metadata so head() and the idempotence check can read it back.
        extra = {"ContentType": _content_type(key, content_type), "ChecksumAlgorithm": "SHA256",
                 "Metadata": {**dict(metadata or {}), "sha256": digest}}
        try:
            upload(extra)
        except (ClientError, BotoCoreError, Boto3Error) as err:
            raise _wrap(err, "upload", key) from err
        stored = self.head(key)
        if stored is None or stored.size_bytes != size or stored.sha256 != digest:
            found = "nothing" if stored is None else \
                f"{stored.size_bytes} bytes sha256 {stored.sha256[:12]}"
            raise StorageError(f"S3 upload of {key!r} did not verify: expected {size} bytes "
                               f"sha256 {digest[:12]}, found {found}")
        _log_put(stored, "s3")
        return stored

    def put_file(self, path: Path, key: str, *, content_type: str | None = None,
                 metadata: Mapping[str, str] | None = None) -> StoredObject:
        source = Path(path)

        def upload(extra: dict[str, Any]) -> None:
            self.client.upload_file(str(source), self.bucket, self._full(key), ExtraArgs=extra,
                                    Config=self.transfer)

        return self._put(upload, sha256_file(source), source.stat().st_size, key, content_type,
                         metadata)

    def put_bytes(self, data: bytes, key: str, *, content_type: str | None = None,
                  metadata: Mapping[str, str] | None = None) -> StoredObject:
        def upload(extra: dict[str, Any]) -> None:
            self.client.upload_fileobj(io.BytesIO(data), self.bucket, self._full(key),
                                       ExtraArgs=extra, Config=self.transfer)

        return self._put(upload, sha256_bytes(data), len(data), key, content_type, metadata)

    def get_file(self, key: str, dest: Path) -> Path:
        """Download atomically to dest; checked against the stored sha256 when there is one."""
        stored = self.head(key)
        if stored is None:
            raise StorageError(f"no object {key!r} in s3://{self.bucket}/{self.prefix}")
        with _atomic_target(dest) as out:
            try:
                self.client.download_fileobj(self.bucket, self._full(key), out,
                                             Config=self.transfer)
            except (ClientError, BotoCoreError, Boto3Error,
                    S3TransferRetriesExceededError) as err:
                raise _wrap(err, "download", key) from err
            out.flush()
            if stored.sha256 and sha256_file(Path(out.name)) != stored.sha256:
                raise StorageError(f"S3 download of {key!r} did not verify: expected sha256 "
                                   f"{stored.sha256[:12]}, got different bytes")
        return dest

    def list(self, prefix: str = "") -> list[str]:
        _check_prefix(prefix)
        root = f"{self.prefix}/" if self.prefix else ""
        keys: list[str] = []
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(
                    Bucket=self.bucket, Prefix=root + prefix):
                keys.extend(item["Key"][len(root):] for item in page.get("Contents", []))
        except (ClientError, BotoCoreError) as err:
            raise _wrap(err, "list", prefix) from err
        return sorted(keys)

    def uri_for(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._full(key)}"

    def local_path(self, key: str) -> Path | None:
        return None

    def presigned_url(self, key: str, expires_s: int = 3600) -> str | None:
        return str(self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": self._full(key)},
            ExpiresIn=expires_s))

    def copy(self, src_key: str, dst_key: str) -> StoredObject:
        """Server-side copy (multipart when large), keeping content type and metadata."""
        source = self.head(src_key)
        if source is None:
            raise StorageError(f"no object {src_key!r} in s3://{self.bucket} to copy to "
                               f"{dst_key!r}")
        existing = self.head(dst_key)
        if existing is not None and existing.sha256 and existing.sha256 == source.sha256:
            return replace(existing, uploaded=False)
        # Multipart copies do not carry metadata over by themselves, so pass it explicitly.
        extra = {"ContentType": source.content_type, "Metadata": source.metadata,
                 "MetadataDirective": "REPLACE", "ChecksumAlgorithm": "SHA256"}
        try:
            self.client.copy({"Bucket": self.bucket, "Key": self._full(src_key)}, self.bucket,
                             self._full(dst_key), ExtraArgs=extra, Config=self.transfer)
        except (ClientError, BotoCoreError, Boto3Error) as err:
            raise _wrap(err, "copy", dst_key) from err
        copied = self.head(dst_key)
        if copied is None or copied.sha256 != source.sha256 \
                or copied.size_bytes != source.size_bytes:
            raise StorageError(f"S3 copy {src_key!r} -> {dst_key!r} did not verify: expected "
                               f"{source.size_bytes} bytes sha256 {source.sha256[:12]}, "
                               f"found {copied}")
        _log_put(copied, "s3")
        return copied


def open_store(url: str, *, endpoint_url: str | None = None, region: str = "us-east-1",
               create_bucket: bool = False, require_bucket: bool = False) -> ObjectStore:
    """`file:///abs/dir` or a path -> LocalStore; `s3://bucket/prefix` -> S3Store (whose bucket
    is created when missing with create_bucket, checked to exist with require_bucket)."""
    parsed = urlparse(url)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise StorageError(f"storage URL {url!r} names no bucket: expected s3://bucket/prefix")
        return S3Store(parsed.netloc, parsed.path, endpoint_url=endpoint_url, region=region,
                       create_bucket=create_bucket, require_bucket=require_bucket)
    if parsed.scheme == "file":
        return LocalStore(Path(parsed.path))
    if parsed.scheme == "":
        return LocalStore(Path(url))
    raise StorageError(f"unsupported storage URL {url!r}: expected file:///dir, a path or "
                       "s3://bucket/prefix")


def s3_object(uri: str, *, endpoint_url: str | None = None, region: str = "us-east-1"
              ) -> tuple[ObjectStore, str]:
    """`s3://bucket/key` -> (that bucket's store, the key): a file a brief points at outside
    our own store."""
    parsed = urlparse(uri)
    return (open_store(f"s3://{parsed.netloc}", endpoint_url=endpoint_url, region=region),
            parsed.path.lstrip("/"))


def get_reference(store: ObjectStore, ref: str, dest: Path, *, endpoint_url: str | None = None,
                  region: str = "us-east-1") -> Path:
    """A file a brief points at into `dest`: a key of `store` or an s3:// URI."""
    if ref.startswith("s3://"):
        store, ref = s3_object(ref, endpoint_url=endpoint_url, region=region)
    return store.get_file(ref, dest)

