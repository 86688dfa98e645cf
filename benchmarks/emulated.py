"""Nodes emulated on one machine: network namespaces on a bridge, each joined by a veth pair whose
two ends can be shaped to a bandwidth with the `tbf` queueing discipline (so a node's traffic is
bounded both ways). This kernel has no `netem`, so latency cannot be added: the link's latency is
the software path's own (tens of microseconds), and the cost model carries latency as a parameter.

    with EmulatedCluster(nodes=2) as cluster:
        cluster.shape("100mbit")
        cluster.run(0, ["python", ...])   # in node 0's namespace

Everything made is removed on exit, also on Ctrl-C and SIGTERM. `Unavailable` says why nodes cannot
be made (not root, no iproute2 or tc, namespaces refused)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from dataclasses import dataclass

RATE = re.compile(r"^(\d+(?:\.\d+)?)(kbit|mbit|gbit)$")
UNITS = {"kbit": 1e3, "mbit": 1e6, "gbit": 1e9}
MTU_FRAME = 1514
BUCKET_S = 1e-3  # the token bucket holds 1 ms of the rate: with 50 us, 1gbit carried 490 Mbit/s here


class Unavailable(RuntimeError):
    """This machine cannot emulate nodes; the message says why."""


def rate_bits(rate: str) -> float:
    """'100mbit' -> 1e8 bits per second."""
    m = RATE.match(rate)
    if not m:
        raise ValueError(f"bandwidth {rate!r}: expected a number with kbit, mbit or gbit (e.g. 100mbit)")
    return float(m.group(1)) * UNITS[m.group(2)]


def bucket_bytes(rate: str | None) -> int:
    """The token bucket `shape` gives a link of `rate` (None: unshaped, no bucket)."""
    return 0 if rate is None else max(2 * MTU_FRAME, int(rate_bits(rate) / 8 * BUCKET_S))


def _sh(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True)


@dataclass(frozen=True)
class Node:
    namespace: str
    address: str
    device: str  # the namespace's end of its veth pair
    host_device: str  # the bridge's end


class EmulatedCluster:
    made = 0  # clusters made by this process: each gets its own names (the kernel frees old ones late)

    def __init__(self, nodes: int, tag: str | None = None):
        EmulatedCluster.made += 1
        self.tag = tag or f"{os.getpid() % 10000}{EmulatedCluster.made % 10}"
        subnet = f"10.{232 + os.getpid() % 20}.{os.getpid() % 250}"
        self.bridge = f"dvb{self.tag}"
        self.nodes = [
            Node(f"dvpg{self.tag}n{i}", f"{subnet}.{i + 1}", f"dv{self.tag}n{i}", f"dv{self.tag}h{i}")
            for i in range(nodes)
        ]
        self._made_namespaces: list[str] = []
        self._made_bridge = False
        self._old_handlers: dict[int, object] = {}

    def __enter__(self) -> EmulatedCluster:
        if os.geteuid() != 0:
            raise Unavailable(
                "network namespaces need root: run it as root, or with sudo and the venv's python "
                "(sudo .venv/bin/python benchmarks/...; a plain `sudo python` is the system's, without torch)"
            )
        for tool in ("ip", "tc"):
            if shutil.which(tool) is None:
                raise Unavailable(f"{tool} (iproute2) is not installed")
        for sig in (signal.SIGINT, signal.SIGTERM):  # clean up on interruption too
            self._old_handlers[sig] = signal.signal(sig, self._interrupted)
        try:
            self._build()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _interrupted(self, signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    def _step(self, *cmd: str) -> None:
        done = _sh(*cmd)
        if done.returncode != 0:
            raise Unavailable(f"cannot build the emulated nodes ({' '.join(cmd)}: {done.stderr.strip()})")

    def _build(self) -> None:
        self._step("ip", "link", "add", self.bridge, "type", "bridge")
        self._made_bridge = True
        self._step("ip", "link", "set", self.bridge, "up")
        for node in self.nodes:
            self._step("ip", "netns", "add", node.namespace)
            self._made_namespaces.append(node.namespace)
            self._step("ip", "link", "add", node.host_device, "type", "veth", "peer", "name", node.device)
            self._step("ip", "link", "set", node.device, "netns", node.namespace)
            self._step("ip", "link", "set", node.host_device, "master", self.bridge)
            self._step("ip", "link", "set", node.host_device, "up")
            inside = ("ip", "netns", "exec", node.namespace)
            self._step(*inside, "ip", "addr", "add", f"{node.address}/24", "dev", node.device)
            self._step(*inside, "ip", "link", "set", node.device, "up")
            self._step(*inside, "ip", "link", "set", "lo", "up")

    def shape(self, rate: str | None) -> None:
        """Every node's link limited to `rate` each way (token bucket), or unshaped with None.
        The bucket holds two frames or BUCKET_S of the rate, whichever is more: a message's first
        millisecond's worth passes at once, then the rate holds (a shallower bucket misses the rate
        at 1gbit and above); large (GSO) packets are split to fit."""
        for node in self.nodes:
            for dev, prefix in (
                (node.device, ("ip", "netns", "exec", node.namespace)),
                (node.host_device, ()),
            ):
                if rate is None:
                    _sh(*prefix, "tc", "qdisc", "del", "dev", dev, "root")  # absent already: fine
                    continue
                burst = bucket_bytes(rate)
                self._step(
                    *prefix, "tc", "qdisc", "replace", "dev", dev, "root", "tbf",
                    "rate", rate, "burst", str(burst), "latency", "100ms",
                )  # fmt: skip

    def command(self, index: int, cmd: list[str]) -> list[str]:
        """`cmd` run inside node `index`'s namespace."""
        return ["ip", "netns", "exec", self.nodes[index].namespace, *cmd]

    def __exit__(self, *exc) -> None:
        for node in self.nodes:  # now: a deleted namespace's veth pairs go only when the kernel gets to it
            _sh("ip", "link", "delete", node.host_device)
        for ns in reversed(self._made_namespaces):
            _sh("ip", "netns", "delete", ns)
        self._made_namespaces.clear()
        if self._made_bridge:
            _sh("ip", "link", "delete", self.bridge)
            self._made_bridge = False
        for sig, handler in self._old_handlers.items():
            signal.signal(sig, handler)
        self._old_handlers.clear()
