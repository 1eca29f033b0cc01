"""Keeping the local Ray on 127.0.0.1. This module does not import ``ray``: the setting it makes
must be in the environment before ``ray`` is imported.

Ray 2.60 rewrites a node IP of ``127.0.0.1`` to the host's address (``ray.init(_node_ip_address=
"127.0.0.1")`` and ``ray start --node-ip-address=127.0.0.1`` alike) unless
``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, which Ray reads once, at import, and which makes Ray
treat the machine as a single-node cluster on loopback. With the node IP on loopback the
dashboard agent, runtime-env agent and the metrics servers of the dashboard and autoscaler bind
to 127.0.0.1 as well, and GCS, raylet and workers listen on ``::ffff:127.0.0.1`` only.
"""

from __future__ import annotations

import os

LOOPBACK = "127.0.0.1"
SINGLE_NODE_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def prefer_loopback(address: str | None) -> bool:
    """Ask for a loopback-only local Ray when the platform will start one (no ``address``, no
    ``$RAY_ADDRESS``); call before ``import ray``. Returns whether it did."""
    if address or os.environ.get("RAY_ADDRESS"):
        return False
    os.environ.setdefault(SINGLE_NODE_ENV, "0")
    return True
