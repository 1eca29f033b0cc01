"""A real multi-node Ray cluster on this machine's loopback network, for tests of what happens
beyond one node: each node is its own ``ray start --block`` process (its own temp dir, raylet,
object store, agents and CPUs), all joined to one head with token auth.

Two raylets on one host need distinct node IPs, and neither can be 127.0.0.1: with
``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=1`` (needed by ``ray start --address``, which aborts
otherwise) Ray rewrites 127.0.0.1 and ``localhost`` to the host's network address, in the node
IP and in the GCS address alike. Other loopback addresses are kept: the head is 127.0.0.2,
the second node 127.0.0.3 (Linux routes all of 127.0.0.0/8 to ``lo``). The dashboard and the
MLflow server stay on 127.0.0.1. Unlike a single loopback node (see
``sparse_rcnn.platform.orchestration.loopback``), GCS and raylets then listen on all
interfaces (``::``): Ray binds to 127.0.0.1 only when the node IP is exactly that. Token auth
keeps other users of the network out.

Only processes this module started are ever signalled: a node's processes are its
``ray start`` process and everything descended from it (Ray workers rename themselves
``ray::...``, so their command lines no longer name the temp dir), plus any process whose
command line names the cluster's temp dir. ``ray stop`` is never used: it stops every Ray on
the machine.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import requests

from tests.platform.orchestration.sockets import process_tree

HEAD_IP = "127.0.0.2"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ray_cli() -> str:
    found = Path(sys.executable).parent / "ray"
    return str(found if found.exists() else shutil.which("ray"))


@dataclass
class RayNode:
    """One ``ray start --block`` process and the node it runs."""

    name: str
    ip: str
    num_cpus: int
    temp_dir: Path
    proc: subprocess.Popen
    log: IO[str]
    starts: int = 1  # how many times this node has been started (restarts make new node ids)

    def pids(self) -> list[int]:
        """The ``ray start`` process and every process of the node below it."""
        return process_tree(self.proc.pid) if self.proc.poll() is None else []

    def raylet_pid(self) -> int:
        for pid in self.pids():
            try:
                if Path(f"/proc/{pid}/comm").read_text().strip() == "raylet":
                    return pid
            except OSError:
                continue
        raise RuntimeError(f"node {self.name}: no raylet process (is the node up?)")


@dataclass
class LoopbackCluster:
    """A head node plus extra nodes on 127.0.0.x, each with its own temp dir under ``root``.
    ``dashboard`` (http://127.0.0.1:PORT) is the Ray Jobs address; ``gcs_address`` the
    ``ray.init`` / ``--address`` one."""

    root: Path
    token: str
    token_path: Path
    gcs_address: str
    dashboard: str
    env: dict[str, str]
    nodes: dict[str, RayNode] = field(default_factory=dict)

    # ---- starting ----------------------------------------------------------------------------

    @classmethod
    def start(cls, head_cpus: int = 1, env: dict[str, str] | None = None) -> LoopbackCluster:
        """Start the head (``head_cpus`` CPUs, the dashboard on 127.0.0.1) and wait until the
        dashboard lists it ALIVE. ``env`` adds to the environment of every node (and so of the
        job drivers and workers it starts)."""
        # Short path: Ray's Unix socket paths under a temp dir must stay below 108 characters.
        root = Path(tempfile.mkdtemp(prefix="rcl-", dir="/tmp"))
        token = secrets.token_hex(32)
        token_path = root / "auth_token"
        token_path.write_text(token)
        drop = ("RAY_ADDRESS", "RAY_AUTH_TOKEN", "RAY_API_SERVER_ADDRESS", "MLFLOW_TRACKING_URI")
        node_env = {k: v for k, v in os.environ.items() if k not in drop}
        node_env.update(
            RAY_AUTH_MODE="token",
            RAY_AUTH_TOKEN_PATH=str(token_path),
            RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="1",  # `ray start --address` refuses without it
            RAY_USAGE_STATS_ENABLED="0",
            RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="2",  # a test cluster: nothing worth draining
            # A dead node is declared dead after ~3 s instead of Ray's ~15 s (5 missed checks
            # 3 s apart): the time a fault test waits for Ray Train to notice.
            RAY_health_check_period_ms="1000",
            RAY_health_check_failure_threshold="3",
            # An entrypoint's `python` is looked up on the cluster's PATH: this environment's.
            PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            **(env or {}),
        )
        gcs_port, dash_port = free_port(), free_port()
        cluster = cls(root, token, token_path, f"{HEAD_IP}:{gcs_port}",
                      f"http://127.0.0.1:{dash_port}", node_env)  # fmt: skip
        head_args = [
            "--head", f"--port={gcs_port}", "--dashboard-host=127.0.0.1",
            f"--dashboard-port={dash_port}", "--include-dashboard=true",
            f"--ray-client-server-port={free_port()}",
        ]  # fmt: skip
        try:
            head = cluster._launch("head", HEAD_IP, head_cpus, head_args)
            cluster.wait_alive(1, timeout=120, starting=head)
        except BaseException:
            cluster.stop()
            raise
        return cluster

    def add_node(self, name: str, ip: str, num_cpus: int = 1, timeout: float = 120) -> RayNode:
        """Join a node (``ray start --address``) with its own temp dir; wait until it is ALIVE."""
        alive = len(self.alive_nodes())
        node = self._launch(name, ip, num_cpus, [f"--address={self.gcs_address}"])
        self.wait_alive(alive + 1, timeout, starting=node)
        return node

    def _launch(self, name: str, ip: str, num_cpus: int, args: list[str]) -> RayNode:
        starts = self.nodes[name].starts + 1 if name in self.nodes else 1
        temp_dir = self.root / f"{name}-{starts}"  # a restart gets a clean one
        cmd = [
            ray_cli(), "start", "--block", *args, f"--node-ip-address={ip}",
            f"--num-cpus={num_cpus}", f"--temp-dir={temp_dir}", "--disable-usage-stats",
            # Fixed defaults (52365 for the agent) would collide between nodes of one host.
            f"--dashboard-agent-listen-port={free_port()}",
            f"--runtime-env-agent-port={free_port()}", f"--metrics-export-port={free_port()}",
        ]  # fmt: skip
        log = open(self.root / f"{name}-{starts}.log", "w")  # noqa: SIM115
        proc = subprocess.Popen(cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        self.nodes[name] = RayNode(name, ip, num_cpus, temp_dir, proc, log, starts)
        return self.nodes[name]

    # ---- state -------------------------------------------------------------------------------

    def _get(self, path: str) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.token}"}
        return requests.get(self.dashboard + path, headers=headers, timeout=10)

    def node_table(self) -> list[dict]:
        """The dashboard's node list (alive and dead): node_id, node_ip, state, ..."""
        r = self._get("/api/v0/nodes?limit=1000")
        r.raise_for_status()
        return r.json()["data"]["result"]["result"]

    def alive_nodes(self) -> list[dict]:
        try:
            return [n for n in self.node_table() if n["state"] == "ALIVE"]
        except (requests.RequestException, ValueError, KeyError):
            return []

    def node_id(self, name: str) -> str:
        """The node id of ``name``'s current (alive) incarnation."""
        ip = self.nodes[name].ip
        found = [n["node_id"] for n in self.alive_nodes() if n["node_ip"] == ip]
        if len(found) != 1:
            raise RuntimeError(f"node {name} ({ip}): {len(found)} alive nodes with that IP")
        return found[0]

    def wait_alive(self, count: int, timeout: float, starting: RayNode | None = None) -> None:
        """Until exactly ``count`` nodes are ALIVE; fails at once if ``starting`` ends."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if starting is not None and starting.proc.poll() is not None:
                raise RuntimeError(
                    f"ray start of node {starting.name} exited with {starting.proc.returncode}; "
                    f"see {self.root / f'{starting.name}-{starting.starts}.log'}"
                )
            if len(self.alive_nodes()) == count:
                return
            time.sleep(0.5)
        raise TimeoutError(
            f"{count} alive Ray nodes expected within {timeout} s, have "
            f"{len(self.alive_nodes())}; logs in {self.root}"
        )

    # ---- faults ------------------------------------------------------------------------------

    def kill_raylet(self, name: str) -> int:
        """SIGKILL the node's raylet (its workers and agents then exit, and ``ray start
        --block`` stops the rest); returns the raylet's PID."""
        pid = self.nodes[name].raylet_pid()
        os.kill(pid, signal.SIGKILL)
        return pid

    def kill_node(self, name: str) -> list[int]:
        """Every process of the node dies at once, as when a machine loses power: all are
        stopped (SIGSTOP, so none reacts to another's death), then SIGKILLed."""
        node = self.nodes[name]
        pids = node.pids()
        for sig in (signal.SIGSTOP, signal.SIGKILL):
            for pid in pids:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
        node.proc.wait(timeout=30)
        return pids

    def restart(self, name: str, timeout: float = 120) -> RayNode:
        """Start the node again after a kill (a new node id, same IP and CPUs)."""
        node = self.nodes[name]
        node.proc.wait(timeout=60)  # `ray start --block` ends once its raylet has gone
        node.log.close()
        self.wait_dead(name, timeout)
        return self.add_node(name, node.ip, node.num_cpus, timeout)

    def wait_dead(self, name: str, timeout: float = 60) -> None:
        """Until the head no longer lists ``name`` ALIVE (GCS health checks, ~3 s here)."""
        ip = self.nodes[name].ip
        deadline = time.monotonic() + timeout
        while any(n["node_ip"] == ip for n in self.alive_nodes()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"node {name} ({ip}) still ALIVE {timeout} s after its kill")
            time.sleep(0.5)

    # ---- stopping ----------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop every node (workers first), then SIGKILL whatever of theirs is left."""
        leftovers: set[int] = set()
        for node in sorted(self.nodes.values(), key=lambda n: n.name == "head"):
            leftovers.update(node.pids())
            if node.proc.poll() is None:
                node.proc.terminate()  # drains the node, then stops the processes it started
                try:
                    node.proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    node.proc.kill()
            node.log.close()
        for pid in leftovers:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        kill_processes_naming(str(self.root))
        shutil.rmtree(self.root, ignore_errors=True)


def kill_processes_naming(marker: str) -> None:
    """SIGKILL the processes whose command line contains ``marker`` (Linux /proc)."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        if cmdline.parent.name == str(os.getpid()):
            continue
        try:
            if marker in cmdline.read_bytes().decode(errors="replace"):
                os.kill(int(cmdline.parent.name), signal.SIGKILL)
        except (OSError, ValueError):
            pass
