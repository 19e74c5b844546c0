"""S3 through a fault-injecting proxy in front of the moto server: 5xx answers, connections cut
mid-upload and mid-response, stalled requests. Every object arrives whole and verified, or the
call fails loudly; nothing partial is ever left under a key."""

from __future__ import annotations

import hashlib
import logging
import random
from pathlib import Path

import boto3
import pytest

from infra.storage import S3Store, TransientStorageError
from tests.faultproxy import Fault, fault_proxy

log = logging.getLogger(__name__)

FAULTS = [Fault.HTTP_503, Fault.HTTP_500, Fault.CUT_REQUEST, Fault.CUT_RESPONSE, Fault.STALL]


def _every_other(n: int) -> Fault:
    """Requests 1, 3, 5, ... fail, cycling through every kind of fault; never two in a row, so
    a client that retries at least once per request always gets through."""
    return FAULTS[(n // 2) % len(FAULTS)] if n % 2 else Fault.NONE


def _payloads() -> dict[str, bytes]:
    rng = random.Random(12)
    sizes = [0, 1, 1000, 64 * 1024, 3 * 2**20, 11 * 2**20]  # 11 MiB: three multipart parts
    return {f"faults/{i:02d}-{size}.bin": rng.randbytes(size) for i, size in enumerate(sizes)}


@pytest.mark.slow
@pytest.mark.usefixtures("aws_credentials")
def test_uploads_and_downloads_survive_injected_faults(s3_endpoint: str, tmp_path: Path) -> None:
    direct = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    direct.create_bucket(Bucket="flaky")
    payloads = _payloads()
    port = int(s3_endpoint.rsplit(":", 1)[1])
    # A stall outlasts the read timeout; the timeout leaves moto time to answer a 5 MiB part
    # on a loaded 2-core machine (at 1 s, a clean request timed out there too).
    with fault_proxy(port, _every_other, stall_s=6.0) as proxy:
        store = S3Store("flaky", "ads", endpoint_url=proxy.url, multipart_threshold=5 * 2**20,
                        max_attempts=4, read_timeout_s=3.0, connect_timeout_s=2.0)
        for key, data in payloads.items():
            stored = store.put_bytes(data, key)
            assert stored.sha256 == hashlib.sha256(data).hexdigest()
        for key, data in payloads.items():
            out = store.get_file(key, tmp_path / key.replace("/", "_"))
            assert out.read_bytes() == data
    injected = {fault: proxy.injected[fault] for fault in FAULTS}
    assert all(count > 0 for count in injected.values()), injected
    log.info("faults injected: %s over %d requests", injected, proxy.requests)
    # What really reached the bucket, read around the proxy: every object whole, nothing else.
    listed = direct.list_objects_v2(Bucket="flaky", Prefix="ads/").get("Contents", [])
    assert sorted(obj["Key"] for obj in listed) == sorted(f"ads/{k}" for k in payloads)
    for key, data in payloads.items():
        body = direct.get_object(Bucket="flaky", Key=f"ads/{key}")["Body"].read()
        assert hashlib.sha256(body).digest() == hashlib.sha256(data).digest(), key
    assert not direct.list_multipart_uploads(Bucket="flaky").get("Uploads"), \
        "an interrupted multipart upload was left behind"


@pytest.mark.usefixtures("aws_credentials")
def test_a_download_whose_body_is_cut_short_every_time_fails_as_transient_naming_the_object(
        s3_endpoint: str, tmp_path: Path) -> None:
    """A first frame, a LoRA or a clip read through a link that keeps closing halfway through
    the body: boto3's own re-reads run out and raised its bare 'Max Retries Exceeded' (no key,
    not transient: the render failed for good, the reason naming nothing)."""
    S3Store("truncated", "ads", endpoint_url=s3_endpoint, create_bucket=True) \
        .put_bytes(random.Random(3).randbytes(2**20), "frames/first.png")
    port = int(s3_endpoint.rsplit(":", 1)[1])
    # the HEAD goes through; every GET sends its head and half its body, then closes
    with fault_proxy(port, lambda n: Fault.TRUNCATE_BODY if n else Fault.NONE) as proxy:
        store = S3Store("truncated", "ads", endpoint_url=proxy.url, max_attempts=2,
                        read_timeout_s=3.0, connect_timeout_s=2.0)
        with pytest.raises(TransientStorageError, match="'frames/first.png'"):
            store.get_file("frames/first.png", tmp_path / "first.png")
    assert proxy.injected[Fault.TRUNCATE_BODY] > 1  # boto3 read it again before giving up
    assert list(tmp_path.iterdir()) == [], "a partial download was left"
