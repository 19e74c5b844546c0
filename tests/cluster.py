"""Test hosts on this machine: network namespaces joined by a bridge, each running a Ray node.

`NetnsCluster` makes a private /24 on a Linux bridge in the root namespace (the "switch"), one
namespace per host with a veth into it, and runs `ray start` inside each host: a head (GCS, no
CPUs, so no render lands there) and workers. Every address is on the cluster's own bridge; nothing
leaves the machine. Needs root and iproute2 (CI runs as root). Everything it creates carries the
cluster's prefix and is removed on `down()`, also after a crash of an earlier run.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

RAY = str(Path(sys.executable).with_name("ray"))
GCS_PORT = 6379
# Dead-node detection in seconds rather than the default ~30 s, so a killed host is noticed
# while the test still has work in flight.
FAST_FAILURE_DETECTION = {
    "RAY_health_check_initial_delay_ms": "1000",
    "RAY_health_check_period_ms": "1000",
    "RAY_health_check_timeout_ms": "1000",
    "RAY_health_check_failure_threshold": "3",
}


class ClusterError(RuntimeError):
    """The test cluster could not be brought up."""


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=30)


@contextmanager
def netns_hosts(prefix: str, subnet: int) -> Iterator[NetnsCluster]:
    """A Ray head and two one-CPU workers on test hosts in network namespaces, importing the
    project from this checkout; removed afterwards. Skips where namespaces cannot be made,
    fails under CI (the multi-node tests must run there)."""
    reason = netns_available()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI needs the multi-node test hosts: {reason}")
        pytest.skip(reason)
    cluster = NetnsCluster(prefix=prefix, subnet=subnet, workers=2, worker_cpus=1,
                           work_dir=Path(f"/tmp/{prefix}"))
    try:
        cluster.network_up()
        cluster.ray_up(env={"PYTHONPATH": str(Path(__file__).resolve().parents[1])})
        yield cluster
    finally:
        cluster.down()


def netns_available() -> str | None:
    """None when namespaces can be made here, else the reason they cannot."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "iproute2 (`ip`) is not installed"
    probe = "mova-probe-ns"
    made = _ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"`ip netns add` failed: {made.stderr.strip()}"
    _ip("netns", "del", probe, check=False)
    return None


@dataclass
class Host:
    name: str
    namespace: str
    address: str
    temp_dir: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def command(self, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.namespace, *argv]


@dataclass
class NetnsCluster:
    """A bridge 10.213.<subnet>.0/24 and hosts .11 (head), .12, .13, ... (workers)."""

    prefix: str = "mova"
    subnet: int = 0
    workers: int = 2
    worker_cpus: int = 2
    work_dir: Path = Path("/tmp/mova-cluster")
    hosts: list[Host] = field(default_factory=list)

    @property
    def bridge(self) -> str:
        return f"{self.prefix}br{self.subnet}"

    @property
    def gateway(self) -> str:
        return f"10.213.{self.subnet}.1"

    @property
    def head(self) -> Host:
        return self.hosts[0]

    @property
    def gcs_address(self) -> str:
        return f"{self.head.address}:{GCS_PORT}"

    # ---- network ----------------------------------------------------------------------------

    def _host(self, index: int, name: str) -> Host:
        # Short temp dirs: Ray's Unix socket paths must stay under 107 characters.
        return Host(name=name, namespace=f"{self.prefix}-{name}",
                    address=f"10.213.{self.subnet}.{11 + index}",
                    temp_dir=self.work_dir / name)

    def _clean_leftovers(self) -> None:
        listed = _ip("netns", "list", check=False).stdout.split()
        for namespace in listed:
            if namespace.startswith(f"{self.prefix}-"):
                self._kill_namespace(namespace)
                _ip("netns", "del", namespace, check=False)
        _ip("link", "del", self.bridge, check=False)
        # A veth left in the root namespace (its host's setup was cut short) goes too.
        for line in _ip("-o", "link", "show", check=False).stdout.splitlines():
            name = line.split(":")[1].strip().split("@")[0] if line.count(":") >= 2 else ""
            if name.startswith(f"{self.prefix}{self.subnet}"):
                _ip("link", "del", name, check=False)

    @property
    def auth_env(self) -> dict[str, str]:
        """Token authentication with the cluster's own token, for every process that talks to
        it (Ray 2.60 otherwise switches auth on or off by whether ~/.ray/auth_token exists)."""
        return {"RAY_AUTH_MODE": "token",
                "RAY_AUTH_TOKEN_PATH": str(self.work_dir / "auth_token")}

    def network_up(self) -> None:
        self._clean_leftovers()
        self.work_dir.mkdir(parents=True, exist_ok=True)
        token = self.work_dir / "auth_token"
        token.write_text(secrets.token_hex(32))
        token.chmod(0o600)
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        names = ["head"] + [f"w{i}" for i in range(1, self.workers + 1)]
        for index, name in enumerate(names):
            host = self._host(index, name)
            outside, inside = f"{self.prefix}{self.subnet}{name}", "eth0"
            _ip("netns", "add", host.namespace)
            _ip("link", "add", outside, "type", "veth", "peer", "name", f"{outside}p")
            _ip("link", "set", f"{outside}p", "netns", host.namespace)
            _ip("link", "set", outside, "master", self.bridge)
            _ip("link", "set", outside, "up")
            ns = ("netns", "exec", host.namespace, "ip")
            _ip(*ns, "link", "set", f"{outside}p", "name", inside)
            _ip(*ns, "addr", "add", f"{host.address}/24", "dev", inside)
            _ip(*ns, "link", "set", inside, "up")
            _ip(*ns, "link", "set", "lo", "up")
            _ip(*ns, "route", "add", "default", "via", self.gateway)
            shutil.rmtree(host.temp_dir, ignore_errors=True)
            host.temp_dir.mkdir(parents=True)
            self.hosts.append(host)

    # ---- processes --------------------------------------------------------------------------

    def start(self, host: Host, argv: list[str], env: dict[str, str] | None = None,
              log_name: str = "process") -> subprocess.Popen[bytes]:
        """Run argv inside `host`'s namespace, in its own process group, logging to a file."""
        log = (host.temp_dir / f"{log_name}.log").open("ab")
        process = subprocess.Popen(host.command(argv),
                                   env={**os.environ, **self.auth_env, **(env or {})},
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        host.processes.append(process)
        return process

    def run(self, host: Host, argv: list[str], env: dict[str, str] | None = None,
            timeout_s: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run(host.command(argv),
                              env={**os.environ, **self.auth_env, **(env or {})},
                              capture_output=True, text=True, timeout=timeout_s, check=False)

    def ray_up(self, env: dict[str, str] | None = None, timeout_s: float = 180) -> None:
        """`ray start` on every host (head first), then wait until all nodes are alive."""
        env = {**FAST_FAILURE_DETECTION, **(env or {})}
        self.start(self.head, [RAY, "start", "--head", "--block",
                               f"--node-ip-address={self.head.address}", f"--port={GCS_PORT}",
                               "--num-cpus=0", "--include-dashboard=false",
                               f"--temp-dir={self.head.temp_dir}", "--disable-usage-stats"],
                   env=env, log_name="ray")
        self.wait_for_nodes(1, timeout_s)
        for host in self.hosts[1:]:
            self.start(host, [RAY, "start", "--block", f"--address={self.gcs_address}",
                              f"--node-ip-address={host.address}",
                              f"--num-cpus={self.worker_cpus}", f"--temp-dir={host.temp_dir}",
                              f"--resources={{\"host_{host.name}\": 1}}",
                              "--disable-usage-stats"], env=env, log_name="ray")
        self.wait_for_nodes(len(self.hosts), timeout_s)

    def alive_nodes(self) -> list[str]:
        """Node IP addresses the head's GCS reports alive."""
        script = ("import json, ray; ray.init(address='auto', logging_level='ERROR'); "
                  "print(json.dumps([n['NodeManagerAddress'] for n in ray.nodes() "
                  "if n['Alive']]))")
        result = self.run(self.head, [sys.executable, "-c", script],
                          env={"RAY_ADDRESS": self.gcs_address}, timeout_s=60)
        if result.returncode != 0:
            return []
        return list(json.loads(result.stdout.strip().splitlines()[-1]))

    def wait_for_nodes(self, count: int, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if len(self.alive_nodes()) >= count:
                return
            for host in self.hosts:
                for process in host.processes:
                    if process.poll() is not None:
                        raise ClusterError(f"ray on {host.name} exited:\n{self.logs(host)}")
            time.sleep(1)
        raise ClusterError(f"{count} Ray node(s) not alive after {timeout_s:.0f} s:\n"
                           + "\n".join(self.logs(h) for h in self.hosts))

    def logs(self, host: Host, tail: int = 40) -> str:
        lines: list[str] = []
        for log in sorted(host.temp_dir.glob("*.log")):
            lines += [f"--- {host.name}: {log.name}"]
            lines += log.read_text(errors="replace").splitlines()[-tail:]
        return "\n".join(lines)

    @staticmethod
    def _kill_namespace(namespace: str) -> None:
        """SIGKILL every process in the namespace: the host loses power."""
        pids = _ip("netns", "pids", namespace, check=False).stdout.split()
        for pid in pids:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass

    def kill_host(self, host: Host) -> None:
        self._kill_namespace(host.namespace)
        for process in host.processes:
            process.wait(timeout=30)

    def down(self) -> None:
        for host in reversed(self.hosts):
            self.kill_host(host)
            _ip("netns", "del", host.namespace, check=False)
        self.hosts.clear()
        self._clean_leftovers()  # also what a setup cut short left behind
