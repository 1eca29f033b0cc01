"""Tracking writes that never hold training up: a journal on disk and one sender thread.

:class:`OutboxLogger` has the methods of :class:`~sparse_rcnn.platform.tracking.runs.RunLogger`
that the engine calls on rank 0, but a call only appends the write to a journal
(``journal.jsonl``; pictures and files under ``files/``) and returns. A background thread
delivers the writes in order through a write-once ``RunLogger``; ``delivered`` records the
last one delivered. When the tracking server cannot be reached, the writes wait in the journal
and the thread tries again once the server's ``/health`` answers (probed every second), so
nothing is dropped and training goes on at full speed.

Delivery is idempotent. After a failed request the logger asks the server what the run holds
before it writes again (the server may have stored a request whose answer was lost), and a
journal that a crashed process left is delivered again, pending writes first, by the next
``OutboxLogger`` on the same folder and run: a resumed job.

The bound: when pending writes have made no progress for ``SPARSE_RCNN_TRACKING_OUTAGE_S``
seconds (default 1800), :meth:`OutboxLogger.outage_error` returns the one line the run stops
with, and :meth:`OutboxLogger.close` raises it as :class:`TrackingUnavailable`; the journal
stays. A write the server answers but refuses (three times) stops the run the same way, with
the server's message.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import shutil
import sys
import threading
import time
import urllib.request
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np

from sparse_rcnn.platform.errors import InputError, PlatformError
from sparse_rcnn.platform.redact import redact
from sparse_rcnn.platform.tracking import names
from sparse_rcnn.platform.tracking.runs import RunLogger

OUTAGE_ENV = "SPARSE_RCNN_TRACKING_OUTAGE_S"
DEFAULT_OUTAGE_S = 1800.0
JOURNAL, DELIVERED, FILES, LOCK = "journal.jsonl", "delivered", "files", "sender.lock"
_REFUSALS = 3  # failed deliveries of one write while the server answers: a refused write
_RECENT_S = 2.0  # a server that answered this recently is written to without a probe


class TrackingUnavailable(PlatformError, RuntimeError):
    """The tracking server stayed unreachable (or kept refusing a write) past the bound; the
    undelivered writes are kept in the outbox folder."""


def outage_limit() -> float:
    """``$SPARSE_RCNN_TRACKING_OUTAGE_S`` in seconds (default 1800)."""
    raw = os.environ.get(OUTAGE_ENV, "").strip()
    if not raw:
        return DEFAULT_OUTAGE_S
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise InputError(f"{OUTAGE_ENV}={raw!r}: expected a positive number of seconds")
    return value


def server_answers(uri: str, timeout: float = 3.0) -> bool:
    """Whether the tracking server at ``uri`` answers ``GET /health`` within ``timeout``
    seconds; a store that is no server (SQLite, a folder) always answers."""
    if not uri.startswith(("http://", "https://")):
        return True
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout) as r:
            return r.status == 200
    except (OSError, ValueError):
        return False


def outbox_folder(base: str | Path, run_id: str) -> Path:
    """``<base>/tracking-outbox/<run_id>``: where a run's undelivered writes are kept."""
    return Path(base) / "tracking-outbox" / run_id


def kept_outboxes(folder: str | Path) -> list[Path]:
    """The run outboxes holding a journal at ``folder``: the folder itself, its children (a
    ``tracking-outbox`` folder), or ``folder/tracking-outbox/*`` (a checkpoint folder)."""
    folder = Path(folder)
    for pattern in (JOURNAL, f"*/{JOURNAL}", f"tracking-outbox/*/{JOURNAL}"):
        found = sorted(p.parent for p in folder.glob(pattern))
        if found:
            return found
    return []


class OutboxLogger:
    """Rank 0's tracking during training (see the module doc). Implements the engine's
    ``MetricsLogger`` and ``PictureLogger``. Call :meth:`close` when training ends."""

    def __init__(
        self,
        uri: str,
        run_id: str,
        folder: str | Path,
        outage_s: float | None = None,
        probe_s: float = 1.0,
    ):
        self.uri, self.run_id, self.folder = uri, run_id, Path(folder)
        self.outage_s = outage_limit() if outage_s is None else outage_s
        self.probe_s = probe_s
        (self.folder / FILES).mkdir(parents=True, exist_ok=True)
        self._cond = threading.Condition()
        self._pending: deque[dict[str, Any]] = deque()
        self._next_seq = 0
        self._progress_at = time.monotonic()  # last delivery, or when the queue filled
        self._answered_at = -math.inf  # last delivery (the server answered)
        self._refused: str | None = None  # a write the server answers but refuses
        self._closing = self._abandoned = self._announced = False
        self._journal_warned = False
        self._load_journal()
        self._journal = open(self.folder / JOURNAL, "a", encoding="utf-8")  # noqa: SIM115
        self._thread = threading.Thread(target=self._send_loop, name="tracking-outbox",
                                        daemon=True)  # fmt: skip
        self._thread.start()

    # -- the engine's side: append and return ---------------------------------------------

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self._put({"op": "metrics", "step": step, "ts": _now_ms(),
                   "metrics": {k: float(v) for k, v in metrics.items()}})  # fmt: skip

    def log_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        self._put({"op": "epoch", "epoch": epoch, "ts": _now_ms(),
                   "metrics": {k: float(v) for k, v in metrics.items()}})  # fmt: skip

    def log_image(self, image: Any, key: str, step: int) -> None:
        self._put({"op": "image", "key": key, "step": step}, image=np.asarray(image))

    def log_png(self, data: bytes, artifact_file: str) -> None:
        path = Path(artifact_file)
        parent = str(path.parent) if str(path.parent) != "." else None
        self._put({"op": "artifact", "name": path.name, "artifact_path": parent}, data=data)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        path = Path(path)
        entry = {"op": "artifact", "name": path.name, "artifact_path": artifact_path}
        self._put(entry, data=path.read_bytes())

    def log_detections(self, dets: Any, epoch: int) -> None:
        import tempfile

        from sparse_rcnn.platform.evaluation.detections import save_detections

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"val_detections_epoch{epoch}.parquet"
            save_detections(dets, path)
            self.log_artifact(path, names.ARTIFACT_DETECTIONS_DIR)

    def set_note(self, markdown: str) -> None:
        self._put({"op": "note", "markdown": markdown})

    def _put(self, entry: dict[str, Any], image: np.ndarray | None = None,
             data: bytes | None = None) -> None:  # fmt: skip
        with self._cond:
            entry["seq"] = self._next_seq
            self._next_seq += 1
            try:  # the journal first: a crash after this call loses nothing
                if image is not None:
                    np.save(self._file(entry, "image.npy"), image, allow_pickle=False)
                if data is not None:
                    self._file(entry, entry["name"]).write_bytes(data)
                self._journal.write(json.dumps(entry) + "\n")
                self._journal.flush()
            except OSError as e:  # a full disk: delivered from memory, not kept past a crash
                entry["_image"], entry["_data"] = image, data
                if not self._journal_warned:
                    self._journal_warned = True
                    print(f"warning: cannot write the tracking journal in {self.folder} "
                          f"({e.strerror or e}); pending tracking writes are kept in memory "
                          "only", file=sys.stderr, flush=True)  # fmt: skip
            if not self._pending:
                self._progress_at = time.monotonic()
            self._pending.append(entry)
            self._cond.notify_all()

    def _file(self, entry: dict[str, Any], name: str) -> Path:
        folder = self.folder / FILES / str(entry["seq"])
        folder.mkdir(exist_ok=True)
        return folder / name

    # -- state and the end ----------------------------------------------------------------

    @property
    def pending(self) -> int:
        with self._cond:
            return len(self._pending)

    def outage_error(self) -> str | None:
        """The one-line error to stop the run with, or None while writes get delivered (or
        have waited less than the bound)."""
        with self._cond:
            return self._error_locked()

    def _error_locked(self) -> str | None:
        if self._refused is not None:
            return (f"the tracking server {redact(self.uri)} refuses a write: {self._refused}; "
                    f"{len(self._pending)} tracking writes not delivered are kept in "
                    f"{self.folder}")  # fmt: skip
        stalled = time.monotonic() - self._progress_at
        if self._pending and stalled > self.outage_s:
            return (f"tracking server {redact(self.uri)} unreachable for {stalled:.0f} s "
                    f"(limit {OUTAGE_ENV}={self.outage_s:g}); {len(self._pending)} tracking "
                    f"writes not delivered are kept in {self.folder}; resuming the job, or "
                    "`sparse-rcnn deliver-tracking` on that folder, delivers them")  # fmt: skip
        return None

    def close(self, wait_s: float | None = None) -> None:
        """Wait until every write is delivered, then stop the sender and remove the journal.
        ``wait_s`` caps the wait (default: until the outage bound). Raises
        :class:`TrackingUnavailable` when writes are still pending; the journal then stays
        for a later logger on the same folder and run."""
        deadline = None if wait_s is None else time.monotonic() + wait_s
        with self._cond:
            self._closing = True
            self._cond.notify_all()
            while self._pending:
                error = self._error_locked()
                if error is None and deadline is not None and time.monotonic() >= deadline:
                    error = (f"{len(self._pending)} tracking writes not delivered to "
                             f"{redact(self.uri)} are kept in {self.folder}; resuming the job, "
                             "or `sparse-rcnn deliver-tracking` on that folder, delivers "
                             "them")  # fmt: skip
                if error is not None:
                    self._abandoned = True
                    self._journal.close()
                    raise TrackingUnavailable(error)
                self._cond.wait(timeout=0.2)
        self._thread.join()
        self._journal.close()
        shutil.rmtree(self.folder, ignore_errors=True)
        try:
            self.folder.parent.rmdir()  # the outbox of no other run is left
        except OSError:
            pass

    # -- the sender thread ----------------------------------------------------------------

    def _load_journal(self) -> None:
        """Queue what an earlier process journalled and did not deliver."""
        journal = self.folder / JOURNAL
        if not journal.exists():
            return
        try:
            delivered = int((self.folder / DELIVERED).read_text().strip())
        except (OSError, ValueError):
            delivered = -1
        for line in journal.read_text(encoding="utf-8").splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:  # the line a crash cut short: never acknowledged
                continue
            self._next_seq = max(self._next_seq, entry["seq"] + 1)
            if entry["seq"] > delivered:
                self._pending.append(entry)

    def _send_loop(self) -> None:
        # One sender per outbox at a time, across processes too: a sender given up on (its
        # logger closed while a request hung on a dead server) may still finish that request;
        # the next one starts, and learns what the run holds, only after it has returned.
        with open(self.folder / LOCK, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self._send_all()

    def _send_all(self) -> None:
        run = RunLogger(self.uri, self.run_id, write_once=True)
        refusals = 0
        while True:
            with self._cond:
                while not self._pending and not self._closing:
                    self._cond.wait()
                if not self._pending or self._abandoned:
                    return
                entry = self._pending[0]
            if time.monotonic() - self._answered_at > _RECENT_S:
                self._wait_for_server()
                if self._abandoned:
                    return
            try:
                self._deliver(run, entry)
            except Exception as e:  # the server went away, or refuses this write
                if self._abandoned:
                    return
                run.forget_logged()  # it may have stored the write before the answer was lost
                if not server_answers(self.uri):
                    refusals = 0
                    continue
                refusals += 1
                if refusals >= _REFUSALS:
                    with self._cond:
                        self._refused = redact(" ".join(f"{type(e).__name__}: {e}".split()))
                        self._cond.notify_all()
                    return
                time.sleep(self.probe_s)
                continue
            if self._abandoned:  # the next sender delivers the entry again (write-once)
                return
            refusals = 0
            with self._cond:
                self._pending.popleft()
                self._progress_at = self._answered_at = time.monotonic()
                self._cond.notify_all()
            self._acknowledge(entry)

    def _wait_for_server(self) -> None:
        while not server_answers(self.uri) and not self._abandoned:
            if not self._announced:
                self._announced = True
                print(f"warning: tracking server {redact(self.uri)} unreachable; training goes "
                      f"on and its tracking writes wait in {self.folder} (up to {OUTAGE_ENV}="
                      f"{self.outage_s:g} s)", file=sys.stderr, flush=True)  # fmt: skip
            time.sleep(self.probe_s)
        if self._announced and not self._abandoned:
            self._announced = False
            print(f"tracking server {redact(self.uri)} answers again; delivering "
                  f"{self.pending} pending tracking writes", file=sys.stderr,
                  flush=True)  # fmt: skip

    def _deliver(self, run: RunLogger, entry: dict[str, Any]) -> None:
        op = entry["op"]
        if op == "metrics":
            run.log_metrics(entry["metrics"], entry["step"], timestamp_ms=entry["ts"])
        elif op == "epoch":
            run.log_epoch(entry["epoch"], entry["metrics"], timestamp_ms=entry["ts"])
        elif op == "image":
            image = entry.get("_image")
            if image is None:
                image = np.load(self._file(entry, "image.npy"), allow_pickle=False)
            run.log_image(image, entry["key"], entry["step"])
        elif op == "artifact" and entry.get("_data") is not None:
            import tempfile

            with tempfile.TemporaryDirectory() as tmp:  # the journal's disk is full
                path = Path(tmp) / entry["name"]
                path.write_bytes(entry["_data"])
                run.log_artifact(path, entry["artifact_path"])
        elif op == "artifact":
            run.log_artifact(self._file(entry, entry["name"]), entry["artifact_path"])
        elif op == "note":
            run.set_note(entry["markdown"])
        else:
            raise ValueError(f"unknown journal entry {op!r}")

    def _acknowledge(self, entry: dict[str, Any]) -> None:
        try:
            tmp = self.folder / f".{DELIVERED}.tmp"
            tmp.write_text(str(entry["seq"]))
            tmp.replace(self.folder / DELIVERED)
            shutil.rmtree(self.folder / FILES / str(entry["seq"]), ignore_errors=True)
        except OSError:  # a full disk: delivering the entry again later is harmless
            pass


def _now_ms() -> int:
    return int(time.time() * 1000)
