"""The render pool on a real multi-node Ray cluster: hosts are network namespaces on this
machine (a head and two workers on their own bridge), joined with `ray start`."""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster import NetnsCluster, netns_hosts

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NetnsCluster]:
    with netns_hosts("movac", 31) as hosts:
        yield hosts


def test_the_pool_spreads_over_hosts_and_finishes_when_a_host_dies(
        cluster: NetnsCluster) -> None:
    jobs = 16
    log = cluster.head.temp_dir / "driver.log"
    driver = cluster.start(cluster.head, [sys.executable, "-m", "tests.infra.cluster_pool_driver",
                                          str(jobs)],
                           env={"RAY_ADDRESS": cluster.gcs_address, "PYTHONPATH": str(ROOT)},
                           log_name="driver")
    victim = cluster.hosts[1]
    deadline = time.monotonic() + 180
    before_kill: list[str] = []
    while time.monotonic() < deadline:  # wait until both hosts have finished work
        before_kill = [line.split()[2] for line in log.read_text().splitlines()
                       if line.startswith("done ")]
        if len(set(before_kill)) >= 2 and len(before_kill) >= 4:
            break
        assert driver.poll() is None, cluster.logs(cluster.head)
        time.sleep(0.2)
    assert len(set(before_kill)) >= 2, f"work ran on {set(before_kill)} only"
    cluster.kill_host(victim)  # the host loses power with a job in flight
    assert driver.wait(timeout=240) == 0, cluster.logs(cluster.head)
    # the driver's last word; Ray may still log lines into the same file after it
    report = json.loads([line for line in log.read_text().splitlines()
                         if line.startswith('{"done"')][-1])
    done = {int(k): v for k, v in report["done"].items()}
    assert sorted(done) == list(range(jobs)), "a job was lost"
    assert report["transient"] >= 1, "the killed host had no job in flight"
    survivors = {h.address for h in cluster.hosts[2:]}
    finished_after = [node for node in done.values()][len(before_kill):]
    assert set(finished_after) <= survivors | {victim.address}
    assert Counter(done.values())[cluster.hosts[2].address] > 0
    assert victim.address not in cluster.alive_nodes()
