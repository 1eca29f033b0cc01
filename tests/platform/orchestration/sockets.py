"""The listening TCP sockets of a process tree, read from Linux ``/proc`` (no ``ss`` needed)."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Listener:
    address: str  # "127.0.0.1", "::ffff:127.0.0.1", "0.0.0.0", "::", ...
    port: int
    pid: int
    process: str  # /proc/PID/comm, e.g. "gcs_server", "raylet", "ray::DashboardA"

    @property
    def all_interfaces(self) -> bool:
        return self.address in ("0.0.0.0", "::")


def process_tree(root: int) -> list[int]:
    """``root`` and every process descended from it."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(stat.parent.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def _socket_inodes(pids: list[int]) -> dict[str, tuple[int, str]]:
    owners: dict[str, tuple[int, str]] = {}
    for pid in pids:
        try:
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
            fds = list(Path(f"/proc/{pid}/fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                owners[target[8:-1]] = (pid, comm)
    return owners


def _address(hex_ip: str) -> str:
    raw = bytes.fromhex(hex_ip)
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, raw[::-1])
    # /proc prints IPv6 as four little-endian 32-bit words.
    raw = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
    return socket.inet_ntop(socket.AF_INET6, raw)


def listening(pids: list[int]) -> set[Listener]:
    """TCP sockets in LISTEN state owned by ``pids``."""
    owners = _socket_inodes(pids)
    found: set[Listener] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A" or fields[9] not in owners:  # 0A: LISTEN
                continue
            hex_ip, hex_port = fields[1].split(":")
            pid, comm = owners[fields[9]]
            found.add(Listener(_address(hex_ip), int(hex_port, 16), pid, comm))
    return found
