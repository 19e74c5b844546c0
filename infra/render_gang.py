"""Render gangs: N actors on one node that run each call together (context parallel, §13.4).

A gang is one Ray placement group (STRICT_PACK: every bundle on one node; a GPU per bundle when
the pool asks for GPUs, CPU bundles otherwise) holding N actors. Rank 0 picks a free port on its
node; every member joins the torch.distributed group at `tcp://<rank 0 ip>:<port>` (gloo on
CPU, NCCL on CUDA) and only then loads the model, so the model can split its steps over the
group. A call goes to every member and the gang's answer is rank 0's. Everything here is
asynchronous (object refs), so the pool's loop never blocks on one gang.

A gang is all or nothing: when a member dies the others would wait in a collective, so the pool
kills the whole gang and builds a new one.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import ray
from ray.exceptions import GetTimeoutError, RayActorError
from ray.util.placement_group import PlacementGroup, placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

log = logging.getLogger(__name__)

# A collective waits this long for a member before it fails (a dead member usually closes its
# sockets at once; this bounds the case where its host vanished).
COLLECTIVE_TIMEOUT_S = 300.0


class _GangMember:
    """One rank: joins the gang's process group, then loads the model and keeps it."""

    def __init__(self, load: Callable[[], Any], rank: int, world_size: int,
                 backend: str) -> None:
        self._load = load
        self.rank, self.world_size, self.backend = rank, world_size, backend
        self.model: Any = None

    def rendezvous(self) -> str:
        """Rank 0: the address every member joins (this node's IP and a free port)."""
        with socket.socket() as probe:
            probe.bind(("", 0))
            port = probe.getsockname()[1]
        return f"tcp://{ray.util.get_node_ip_address()}:{port}"

    def join(self, init_method: str) -> bool:
        import torch.distributed as dist

        dist.init_process_group(self.backend, init_method=init_method, rank=self.rank,
                                world_size=self.world_size,
                                timeout=timedelta(seconds=COLLECTIVE_TIMEOUT_S))
        self.model = self._load()
        return True

    def run(self, fn: Callable[[Any, Any], Any], payload: Any) -> tuple[Any, str]:
        return fn(self.model, payload), ray.util.get_node_ip_address()

    def alive(self) -> bool:
        return True


@ray.remote(num_cpus=0)
def _first_of(first: Any, *others: Any) -> Any:
    """Rank 0's value once every member has answered (Ray resolves the arguments first: a
    failed or dead member fails this too)."""
    return first


class Gang:
    """The placement group, its members, and refs that settle when the gang is ready / done."""

    def __init__(self, load: Callable[[], Any], size: int, num_cpus: float, num_gpus: float,
                 ) -> None:
        bundle = {"CPU": num_cpus, **({"GPU": num_gpus} if num_gpus else {})}
        bundle = {k: v for k, v in bundle.items() if v}
        self.group: PlacementGroup = placement_group([bundle or {"CPU": 0.01}] * size,
                                                     strategy="STRICT_PACK")
        backend = "nccl" if num_gpus else "gloo"
        member_cls = ray.remote(_GangMember)
        self.members = [
            member_cls.options(
                num_cpus=num_cpus, num_gpus=num_gpus,
                scheduling_strategy=PlacementGroupSchedulingStrategy(
                    self.group, placement_group_bundle_index=rank),
            ).remote(load, rank, size, backend)
            for rank in range(size)
        ]
        address = self.members[0].rendezvous.remote()
        self._joined = [member.join.remote(address) for member in self.members]

    def ready(self) -> Any:
        return _first_of.remote(*self._joined)

    def run(self, fn: Callable[[Any, Any], Any], payload: Any) -> Any:
        return _first_of.remote(*[member.run.remote(fn, payload) for member in self.members])

    def broken(self, timeout_s: float = 30.0) -> bool:
        """True when a member is dead or does not answer: the gang cannot run collectives."""
        try:
            ray.get([member.alive.remote() for member in self.members], timeout=timeout_s)
        except (RayActorError, GetTimeoutError):
            return True
        return False

    def kill(self) -> None:
        for member in self.members:
            ray.kill(member)
        remove_placement_group(self.group)
