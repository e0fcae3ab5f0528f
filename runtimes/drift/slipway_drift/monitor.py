"""A monitor's live state: configuration, one window per version, results, and its detection worker.

Everything here runs on the event loop; the blocking parts (S3, parquet, alibi-detect) go to thread pools and
come back as plain values, so no state is shared with a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, deque
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

from slipway_drift import reference
from slipway_drift.config import Column, MonitorConfig, VersionConfig
from slipway_drift.detect import Detector, Reference
from slipway_drift.events import Batch
from slipway_drift.metrics import Metrics
from slipway_drift.store import KEEP_RESULTS, MonitorStore, read_rows
from slipway_drift.window import Window, as_batch, split

log = logging.getLogger("slipway_drift")
# Full windows waiting for a reference that does not load are kept up to this many per version, oldest dropped.
MAX_PENDING = 5


@dataclass(eq=False)  # compared by identity: a window is one object, however equal its rows
class Pending:
    version: str
    n: int  # the version's window number
    rows: Batch


@dataclass
class VersionState:
    config: VersionConfig
    columns: tuple[Column, ...]
    window: Window = field(default_factory=Window)
    reference: Reference | None = None
    reference_error: str | None = None
    detection_error: str | None = None  # the last window's, if it failed (that window has no result)
    loading: bool = False
    detector: Detector | None = None


def rfc3339(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


class Monitor:
    def __init__(
        self, namespace: str, name: str, config: MonitorConfig, store: MonitorStore, metrics: Metrics, pools: Pools
    ) -> None:
        self.namespace, self.name, self.config, self.store = namespace, name, config, store
        self.metrics, self.pools = metrics, pools
        self.versions: dict[str, VersionState] = {}
        self.results: deque[dict[str, Any]] = deque(maxlen=KEEP_RESULTS)
        self.rejected: Counter[str] = Counter()
        self.counters: dict[str, dict[str, int]] = {}
        self.seq = 0
        self.pending: list[Pending] = []
        self._wake = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None

    @property
    def window_size(self) -> int:
        return self.config.detector.window_size

    # lifecycle
    def load(self) -> None:
        """State from disk: results, counters, open windows and full windows still waiting for a result."""
        self.results.extend(self.store.load_results())
        self.counters = self.store.read_counters()
        self.seq = max([self.store.read_seq(), *(r.get("seq", 0) for r in self.results)])
        for v, vc in self.config.versions.items():
            self.versions[v] = VersionState(vc, vc.columns(self.config.detector.features))
        for v in self.store.versions_on_disk() - set(self.versions):
            self.store.remove_version(v)
        done = {(r.get("version"), r.get("window")) for r in self.results}
        for v, n, path in self.store.pending():
            if (v, n) in done:  # the result was written, the crash came before the pending file went
                self._count_evaluated(v, n)
                self.store.drop_pending(v, n)
            elif v in self.versions:
                rows = read_rows(path)[: self.window_size]
                self.pending.append(Pending(v, n, as_batch(rows, self.versions[v].columns)))
        self.store.write_counters(self.counters)
        for v, vs in self.versions.items():
            rows = self.store.read_window(v)
            if len(rows) > self.window_size:
                self.store.replace_window(v, rows[: self.window_size])
            vs.window = Window([as_batch(rows[: self.window_size], vs.columns)])
            if len(vs.window) >= self.window_size:
                self._seal(v)  # killed after filling a window and before sealing it
            self.metrics.window_samples.labels(self.namespace, self.name, v).set(len(vs.window))

    def start(self) -> None:
        for v in self.versions:
            self._load_reference(v)
        self._worker = asyncio.get_running_loop().create_task(self._work(), name=f"drift-{self.name}")
        self._wake.set()

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        self.store.close()

    # configuration
    def apply(self, new: MonitorConfig) -> None:
        """A new PUT body: reset what it invalidates, keep the rest; retry references that failed."""
        old = self.config
        self.config = new
        detector_changed = new.document["detector"] != old.document["detector"]
        for v in list(self.versions):
            if v not in new.versions:
                self._drop_version(v)
        for v, vc in new.versions.items():
            vs = self.versions.get(v)
            columns = vc.columns(new.detector.features)
            if vs is None:
                self.versions[v] = VersionState(vc, columns)
                self._load_reference(v)
                continue
            data_changed = vc.reference_key() != vs.config.reference_key() or vc.inputs != vs.config.inputs
            vs.config = vc
            if detector_changed or data_changed:
                self._reset_window(v)
                vs.detector = None
            if data_changed or columns != vs.columns:
                vs.columns, vs.reference = columns, None
                self._load_reference(v)
            elif vs.reference is None and not vs.loading:
                self._load_reference(v)
        self._wake.set()

    def _drop_version(self, v: str) -> None:
        del self.versions[v]
        self.pending = [p for p in self.pending if p.version != v]
        self.store.remove_version(v)
        self.metrics.forget(self.namespace, self.name, v)

    def _reset_window(self, v: str) -> None:
        self.versions[v].window = Window()
        self.store.reset_window(v)
        for p in [p for p in self.pending if p.version == v]:
            self.store.drop_pending(v, p.n)
        self.pending = [p for p in self.pending if p.version != v]
        self.metrics.window_samples.labels(self.namespace, self.name, v).set(0)

    # events
    def ingest(self, v: str, rows: Batch) -> None:
        """Rows of one accepted event: fill the window, seal it when full, carry the rest into the next."""
        vs = self.versions[v]
        total = len(rows)
        while len(rows):
            head, rows = split(rows, self.window_size - len(vs.window))
            self.store.append_window(v, head)
            vs.window.add(head)
            if len(vs.window) >= self.window_size:
                self._seal(v)
        self.metrics.accepted(self.namespace, self.name, v, total, len(vs.window))

    def _seal(self, v: str) -> None:
        c = self.counters.setdefault(v, {"sealed": 0, "evaluated": 0, "lastWindow": -1})
        n = c["sealed"]
        c["sealed"] = n + 1
        self.store.write_counters(self.counters)
        self.store.seal_window(v, n)
        vs = self.versions[v]
        self.pending.append(Pending(v, n, vs.window.rows()))
        vs.window = Window()
        waiting = [p for p in self.pending if p.version == v]
        for p in waiting[:-MAX_PENDING]:
            log.warning("dropping window %d of %s/%s/%s: reference still not loaded", p.n, self.namespace, self.name, v)
            self.pending.remove(p)
            self.store.drop_pending(v, p.n)
        self._wake.set()

    def _count_evaluated(self, v: str, n: int) -> None:
        c = self.counters.setdefault(v, {"sealed": n + 1, "evaluated": 0, "lastWindow": -1})
        if c["lastWindow"] < n:
            c["evaluated"] += 1
            c["lastWindow"] = n
        c["sealed"] = max(c["sealed"], n + 1)

    # references
    def _load_reference(self, v: str) -> None:
        vs = self.versions[v]
        vs.loading = True
        vc, columns = vs.config, vs.columns
        path = self.store.reference_path(v)

        def done(fut: asyncio.Future[Reference]) -> None:
            current = self.versions.get(v)
            if current is not vs or current.config != vc or current.columns != columns:
                return  # superseded by a later PUT, which started its own load
            vs.loading = False
            if fut.cancelled():
                return
            if (exc := fut.exception()) is not None:
                vs.reference_error = str(exc) if isinstance(exc, reference.ReferenceUnavailable) else repr(exc)
                log.warning("reference of %s/%s/%s: %s", self.namespace, self.name, v, vs.reference_error)
                return
            vs.reference, vs.reference_error, vs.detector = fut.result(), None, None
            self._wake.set()

        fut = asyncio.get_running_loop().run_in_executor(self.pools.io, reference.fetch, vc, columns, path)
        fut.add_done_callback(done)

    def retry_references(self) -> None:
        for v, vs in self.versions.items():
            if vs.reference is None and not vs.loading:
                self._load_reference(v)

    # detection
    async def _work(self) -> None:
        """Evaluate full windows one at a time, oldest first, so results come out in order."""
        loop = asyncio.get_running_loop()
        while True:
            job = next((p for p in self.pending if self._ready(p.version)), None)
            if job is None:
                self._wake.clear()
                await self._wake.wait()
                continue
            vs = self.versions[job.version]
            ref = vs.reference
            assert ref is not None
            detector, out, cfg = vs.detector, None, self.config.detector
            try:
                if detector is None:
                    detector = await loop.run_in_executor(self.pools.detect, Detector, cfg, ref)
                    if vs.reference is ref and self.config.detector is cfg:
                        vs.detector = detector
                out = await loop.run_in_executor(self.pools.detect, detector.run, job.rows)
            except Exception as e:  # a detector failing on odd data must not stop the monitor; the window is dropped
                log.exception("detection failed for %s/%s/%s", self.namespace, self.name, job.version)
                vs.detection_error = f"window {job.n}: {type(e).__name__}: {e}"
            if job not in self.pending or self.versions.get(job.version) is not vs or vs.reference is not ref:
                continue  # reset or dropped while it ran
            self.pending.remove(job)
            if out is not None:
                vs.detection_error = None
                self._record(job, vs, out)
            self.store.drop_pending(job.version, job.n)

    def _ready(self, v: str) -> bool:
        vs = self.versions.get(v)
        return vs is not None and vs.reference is not None

    def _record(self, job: Pending, vs: VersionState, out: dict[str, Any]) -> None:
        self.seq += 1
        result = {
            "seq": self.seq,
            "time": rfc3339(time.time()),
            "version": job.version,
            "role": vs.config.role,
            **out,
            "window": job.n,
        }
        # Result first, then the counters, then the pending window goes: see store.py for the crash cases.
        self.store.append_result(result)
        self.store.write_seq(self.seq)
        self._count_evaluated(job.version, job.n)
        self.store.write_counters(self.counters)
        self.results.append(result)
        self.metrics.result(self.namespace, self.name, result, len(vs.window))

    # views
    def summary(self) -> dict[str, Any]:
        """What changes when the operator has something to read (GET): the last result's seq and each version's
        state. The operator compares it between two listings to read only the monitors that changed."""
        return {"seq": self.seq, "versions": self.version_states()}

    def version_states(self) -> dict[str, Any]:
        versions = {}
        for v, vs in self.versions.items():
            versions[v] = {
                "role": vs.config.role,
                "referenceLoaded": vs.reference is not None,
                "referenceRows": 0 if vs.reference is None else int(vs.reference.matrix.shape[0]),
                "referenceError": vs.reference_error,
                "samples": len(vs.window),
                "windowsEvaluated": self.counters.get(v, {}).get("evaluated", 0),
                "pendingWindows": sum(1 for p in self.pending if p.version == v),
                "detectionError": vs.detection_error,
            }
        return versions

    def document(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "name": self.name,
            "config": self.config.document,
            "backendUsed": self.config.detector.backend_used,
            "versions": self.version_states(),
            "results": list(self.results),
            "rejected": dict(self.rejected),
        }


@dataclass
class Pools:
    io: Executor
    detect: Executor
