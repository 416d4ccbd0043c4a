"""Training jobs on a real queue: RQ over Redis, run by `dpgate worker` processes.

With the setting ``job_queue`` (``redis://host:6379/0``), the gateway charges a job and records it
``queued`` in the shared job store exactly as in-process, then puts only its id on the RQ queue
(`JobQueue.enqueue`). A worker (`work`) takes ids off the queue and calls `TrainingService.run_queued`,
which runs the job only if its `JobStore.claim` — a compare-and-set from ``queued`` to ``running`` — wins.

At most once, by construction rather than by the broker. RQ does not redeliver a job whose worker died
(it moves it to its failed registry, and we configure no retries), but we do not rely on that: whatever
RQ does, and if one id is enqueued twice, only one claim can flip the record, and nothing sets a record
back to ``queued``. A worker beats its job's lease (`Heartbeat`) every ``heartbeat_s`` seconds and reads
the cancel flag as it does; a job whose lease is older than ``lost_after_s`` (its worker was killed, its
host lost) is marked ``failed`` (``worker_lost``) by whichever gateway or worker looks first, its charge
kept (`JobStore.fail_lost`).

Privacy: the queue carries job ids only; specs, plans and rows stay in the job store and the data. A job's
cost is decided and charged in the gateway before its id is enqueued; nothing here depends on the data.

The URL may name the queue: ``redis://127.0.0.1:6379/0?queue=dpgate-prod`` (default ``dpgate-training``),
for several deployments on one Redis. The other query options are redis-py's.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

if TYPE_CHECKING:
    from .service import TrainingService
    from .store import JobStore

__all__ = ["DEFAULT_QUEUE", "Heartbeat", "JobQueue", "run_job", "work", "worker_name"]

log = logging.getLogger(__name__)

DEFAULT_QUEUE = "dpgate-training"
_service: TrainingService | None = None  # the worker process's service (`work` sets it; `run_job` uses it)


def worker_name() -> str:
    """``host:pid`` of this process: what a lease records, for administrators reading the store."""
    return f"{socket.gethostname()}:{os.getpid()}"


class JobQueue:
    """The RQ queue named by a ``redis://`` URL (see the module docstring)."""

    def __init__(self, url: str, *, name: str | None = None) -> None:
        from redis import Redis
        from rq import Queue

        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss", "unix"):
            raise ValueError("job_queue must be a redis://, rediss:// or unix:// URL")
        query = parse_qsl(parts.query)
        given = [v for k, v in query if k == "queue"]
        self.name = name or (given[-1] if given else DEFAULT_QUEUE)
        self._redis_url = urlunsplit(parts._replace(query=urlencode([(k, v) for k, v in query if k != "queue"])))
        host = (parts.hostname or "") + (f":{parts.port}" if parts.port else "")
        self._shown = urlunsplit(parts._replace(netloc=host, query=""))  # no password in logs
        self.redis = Redis.from_url(self._redis_url, socket_connect_timeout=5, socket_timeout=30, health_check_interval=30)
        self.rq = Queue(self.name, connection=self.redis)

    def describe(self) -> str:
        """The queue for logs: scheme, host, database and name, never a password."""
        return f"{self._shown} queue={self.name}"

    def ping(self) -> None:
        """Raise (redis' ConnectionError) if the broker cannot be reached."""
        self.redis.ping()

    def enqueue(self, job_id: str) -> None:
        """Put one job id on the queue. No RQ timeout (a job stops by cancel or by its worker's end), no
        result kept, no retries: the job store is the record."""
        self.rq.enqueue(
            run_job, job_id, job_timeout=-1, result_ttl=0, failure_ttl=7 * 86_400, description="dpgate training job"
        )

    def __len__(self) -> int:
        return len(self.rq)

    def close(self) -> None:
        self.redis.close()


def run_job(job_id: str) -> bool:
    """What a worker runs for a queued id (RQ calls it by name): the job, at most once."""
    if _service is None:
        raise RuntimeError("training.queue.run_job runs inside `dpgate worker`")
    return _service.run_queued(job_id)


def work(service: TrainingService, queue: JobQueue, *, burst: bool = False, name: str | None = None) -> bool:
    """Run queued jobs in this process, one at a time, until stopped (or, `burst`, until the queue is
    empty). SIGTERM / SIGINT: a running job stops at its next step and ends ``failed`` (interrupted), its
    charge kept, and the worker exits. Returns whether it ran any job."""
    from rq import SimpleWorker

    global _service

    class _Worker(SimpleWorker):  # the job runs in this process (no fork): a kill -9 kills the job with it
        def request_stop(self, signum: Any, frame: Any) -> None:
            service.stop_running()
            super().request_stop(signum, frame)

    _service = service
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    service.reap_lost(force=True)
    try:
        worker = _Worker([queue.rq], connection=queue.redis, name=name)
        return bool(worker.work(burst=burst, logging_level="WARNING", with_scheduler=False))
    finally:
        _service = None
        for sig, handler in handlers.items():  # RQ installs its own; give the caller's back
            signal.signal(sig, handler)


class Heartbeat:
    """Beats a running job's lease every `interval` seconds on a thread of its own (so that a long step
    without callbacks — a data read, a diffprivlib fit — still beats), and sets `stop` when the job's
    record asks it to stop: cancel requested, or no longer running (another process judged it lost)."""

    def __init__(self, store: JobStore, job_id: str, worker: str, stop: threading.Event, *, interval: float) -> None:
        self.store, self.job_id, self.worker, self.stop_event = store, job_id, worker, stop
        self.interval = interval
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"dpgate-beat-{job_id[:8]}", daemon=True)

    def start(self) -> Heartbeat:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._done.set()
        self._thread.join(timeout=max(5.0, 2 * self.interval))

    def _loop(self) -> None:
        from .store import RUNNING

        while not self._done.wait(self.interval):
            try:
                status, cancel = self.store.beat(self.job_id, worker=self.worker)
            except Exception:  # noqa: BLE001 - the store may be briefly unreachable: beat again later
                log.warning("training job %s: heartbeat failed", self.job_id, exc_info=True)
                continue
            if cancel or status != RUNNING:
                self.stop_event.set()
