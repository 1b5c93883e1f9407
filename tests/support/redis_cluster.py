"""
A real 3-node Redis Cluster for integration tests, started on free ports.

Three ``redis-server --cluster-enabled yes`` masters on loopback (no
replicas), joined by ``redis-cli --cluster create ... --cluster-yes``, each
owning a third of the 16384 slots. `RedisCluster.migrate_slot` moves one slot
(and its keys) to another node the way ``redis-cli --cluster reshard`` does,
so a client that cached the old owner gets ``MOVED``.

Use the fixture from a test module::

    from tests.support.redis_cluster import redis_cluster  # noqa: F401

It skips when ``redis-server`` or ``redis-cli`` is missing, and fails instead
under ``STORMWALL_REQUIRE_INTEGRATION=1``, like the other integration tests.
"""

from __future__ import annotations

import socket
import subprocess
import time
from typing import TYPE_CHECKING

import pytest

from tests.support.servers import free_port, require_binary


if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

HOST = "127.0.0.1"
SLOTS = 16384


def _command(port: int, *args: str) -> bytes:
    """One RESP command on a fresh connection; the raw first reply."""
    parts = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        data = arg.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    with socket.create_connection((HOST, port), timeout=2) as s:
        s.sendall(b"".join(parts))
        return s.recv(65536)


class RedisCluster:
    """Three cluster-enabled redis-servers joined into one cluster."""

    def __init__(self, server: str, cli: str, workdir: Path) -> None:
        self.server = server
        self.cli = cli
        self.workdir = workdir
        self.ports: list[int] = []
        self._procs: list[subprocess.Popen[bytes]] = []

    @property
    def startup_nodes(self) -> list[tuple[str, int]]:
        """(host, port) of every node."""
        return [(HOST, port) for port in self.ports]

    def start(self) -> None:
        """Start the nodes, create the cluster, wait until it serves."""
        # Each node's cluster bus gets a free port of its own: the default
        # (port + 10000) is past 65535 for a third of the ephemeral range.
        ports: list[int] = []
        while len(set(ports)) < 6:
            ports = [free_port() for _ in range(6)]
        self.ports, bus_ports = ports[:3], ports[3:]
        for port, bus_port in zip(self.ports, bus_ports, strict=True):
            home = self.workdir / str(port)
            home.mkdir(parents=True, exist_ok=True)
            self._procs.append(
                subprocess.Popen(
                    [
                        self.server,
                        "--port",
                        str(port),
                        "--bind",
                        HOST,
                        "--cluster-enabled",
                        "yes",
                        "--cluster-port",
                        str(bus_port),
                        "--cluster-config-file",
                        f"nodes-{port}.conf",
                        "--cluster-node-timeout",
                        "2000",
                        "--save",
                        "",
                        "--appendonly",
                        "no",
                        "--dir",
                        str(home),
                        "--protected-mode",
                        "no",
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        for port in self.ports:
            self._wait(lambda p=port: _command(p, "PING").startswith(b"+PONG"))
        subprocess.run(
            [
                self.cli,
                "--cluster",
                "create",
                *(f"{HOST}:{port}" for port in self.ports),
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        self._wait(self.ready)

    def ready(self) -> bool:
        """Every node says the cluster is ok and knows all three nodes."""
        for port in self.ports:
            info = _command(port, "CLUSTER", "INFO")
            if b"cluster_state:ok" not in info:
                return False
            if b"cluster_known_nodes:3" not in info:
                return False
        return True

    def node_id(self, port: int) -> str:
        """The cluster node id of the node on ``port``."""
        return _command(port, "CLUSTER", "MYID").split(b"\r\n")[1].decode()

    def owner(self, slot: int) -> int:
        """The port of the node owning ``slot``."""
        import redis

        with redis.Redis(host=HOST, port=self.ports[0]) as c:
            for start, end, primary, *_ in c.execute_command(
                "CLUSTER", "SLOTS"
            ):
                if start <= slot <= end:
                    return int(primary[1])
        msg = f"slot {slot} has no owner"
        raise AssertionError(msg)

    def migrate_slot(self, slot: int, target: int) -> None:
        """
        Move ``slot`` and its keys to the node on ``target`` (a port).

        The documented resharding steps: IMPORTING on the target, MIGRATING
        on the source, MIGRATE every key, then SETSLOT NODE everywhere.
        """
        import redis

        source = self.owner(slot)
        if source == target:
            return
        source_id, target_id = self.node_id(source), self.node_id(target)
        with (
            redis.Redis(host=HOST, port=source) as src,
            redis.Redis(host=HOST, port=target) as dst,
        ):
            dst.execute_command(
                "CLUSTER", "SETSLOT", slot, "IMPORTING", source_id
            )
            src.execute_command(
                "CLUSTER", "SETSLOT", slot, "MIGRATING", target_id
            )
            while keys := src.execute_command(
                "CLUSTER", "GETKEYSINSLOT", slot, 100
            ):
                src.execute_command(
                    "MIGRATE", HOST, target, "", 0, 5000, "KEYS", *keys
                )
            for port in self.ports:
                with redis.Redis(host=HOST, port=port) as node:
                    node.execute_command(
                        "CLUSTER", "SETSLOT", slot, "NODE", target_id
                    )
        self._wait(lambda: self.owner(slot) == target)

    def stop(self) -> None:
        """Kill every node."""
        for proc in self._procs:
            proc.kill()
        for proc in self._procs:
            proc.wait(10)
        self._procs = []

    @staticmethod
    def _wait(condition: object, seconds: float = 60) -> None:
        deadline = time.monotonic() + seconds
        while True:
            try:
                if condition():  # type: ignore[operator]
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                msg = "the Redis Cluster did not come up in time"
                raise RuntimeError(msg)
            time.sleep(0.05)


@pytest.fixture(scope="module")
def redis_cluster(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RedisCluster]:
    """A 3-node Redis Cluster for the module's tests (skips without the
    binaries, fails without them under STORMWALL_REQUIRE_INTEGRATION=1)."""
    cluster = RedisCluster(
        require_binary("redis-server"),
        require_binary("redis-cli"),
        tmp_path_factory.mktemp("cluster"),
    )
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
