"""Several gateway processes on one data directory: the registration lock and the catalog refresh.

Replicas (`dpgate serve --workers N`, or several `dpgate serve` on other ports) share one PostgreSQL
ledger and one data directory. Two things keep them in step without talking to each other:

- **One registrar at a time.** Registering a dataset writes files (the demo's tables, DuckDB's version
  files, Spark's Parquet) and engine relations. `register_lock` serialises that across the processes of
  one machine (an exclusive `fcntl.flock` on `<data_dir>/.register.lock`) and across the threads of one
  process (a re-entrant lock around it). Files that readers open are written under a temporary name and
  renamed into place, so a reader never sees half of one; the lock only spares the duplicated work.
  `dpgate serve` (and each gunicorn worker) also builds its app under it: replicas started together
  start one at a time, the first writing what the others then only attach.
- **Every replica answers every registration.** `POST /v1/admin/datasets` stores the dataset's JSON
  under `<data_dir>/datasets/` (written to a temporary name, then renamed) after its data are
  registered. `Refresher` lists that directory at most every `replica_refresh_ms` per process, from a
  hook before each request, and registers again each file whose (inode, size, mtime) changed; with
  DuckDB that only attaches the version files the registering process wrote. A refresh never waits: if
  another thread of the process is refreshing, or another process holds the registration lock, the
  request goes on and the next one refreshes. The synthetic tables a job adds to a dataset
  (`gateway.synthetic_tables`, one JSON file each under `<data_dir>/synthetic/<dataset>/`) are watched
  the same way: a dataset with a new one is registered again with it.

Budgets need no such step: every charge is one transaction in the shared ledger.
"""
from __future__ import annotations

import fcntl
import json
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import structlog

from gateway.errors import DpgateError

log = structlog.get_logger("dpgate")

LOCK_NAME = ".register.lock"


class _FileLock:
    """An exclusive flock on one file, re-entrant within a process (threads wait on an RLock first)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._thread = threading.RLock()
        self._depth = 0
        self._fd: int | None = None

    def acquire(self, *, blocking: bool = True) -> bool:
        if not self._thread.acquire(blocking=blocking):
            return False
        if self._depth == 0:
            try:
                fd = self._open_locked(blocking)
            except BaseException:
                self._thread.release()
                raise
            if fd is None:
                self._thread.release()
                return False
            self._fd = fd
        self._depth += 1
        return True

    def _open_locked(self, blocking: bool) -> int | None:
        """The lock file, flocked; None where another process holds it and `blocking` is false."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            return None
        except BaseException:
            os.close(fd)
            raise
        return fd

    def release(self) -> None:
        self._depth -= 1
        if self._depth == 0 and self._fd is not None:
            fd, self._fd = self._fd, None
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
        self._thread.release()


_LOCKS: dict[str, _FileLock] = {}
_LOCKS_GUARD = threading.Lock()


def _lock_for(data_dir: Path) -> _FileLock:
    key = str(Path(data_dir).resolve() / LOCK_NAME)
    with _LOCKS_GUARD:
        found = _LOCKS.get(key)
        if found is None:
            found = _LOCKS[key] = _FileLock(Path(key))
        return found


@contextmanager
def register_lock(data_dir: Path | str) -> Iterator[None]:
    """Hold the data directory's registration lock (waits for other processes and threads)."""
    lock = _lock_for(Path(data_dir))
    lock.acquire()
    try:
        yield
    finally:
        lock.release()


@contextmanager
def try_register_lock(data_dir: Path | str) -> Iterator[bool]:
    """The registration lock if it is free now (yields True), else yields False at once."""
    lock = _lock_for(Path(data_dir))
    held = lock.acquire(blocking=False)
    try:
        yield held
    finally:
        if held:
            lock.release()


Stamp = tuple[int, int, int]  # (inode, size, mtime_ns) of a stored dataset's JSON


def _stamps(store: Path) -> dict[str, Stamp]:
    out: dict[str, Stamp] = {}
    try:
        entries = list(os.scandir(store))
    except FileNotFoundError:
        return out
    for entry in entries:
        if entry.name.startswith(".") or not entry.name.endswith(".json") or not entry.is_file():
            continue
        try:
            st = entry.stat()
        except FileNotFoundError:  # replaced meanwhile: the next listing sees its successor
            continue
        out[entry.name] = (st.st_ino, st.st_size, st.st_mtime_ns)
    return out


class Refresher:
    """Registers, in this process, the datasets other processes stored since the last look.

    `unavailable` is the query service's map of datasets that cannot be served (name -> why): a dataset
    that registers is removed from it, one whose data no longer load is put in it."""

    def __init__(self, gateway: Any, unavailable: dict[str, str], data_dir: Path, *, every_ms: int) -> None:
        self.gateway = gateway
        self.unavailable = unavailable
        self.data_dir = Path(data_dir)
        self.store = self.data_dir / "datasets"
        self.every_s = every_ms / 1000
        self._seen: dict[str, Stamp] = {}
        self._seen_synthetic: dict[str, dict[str, Stamp]] = {}
        self._first = True
        self._next = 0.0
        self._busy = threading.Lock()

    def maybe_refresh(self) -> None:
        """Refresh if the interval has passed and no other thread is refreshing; never waits."""
        if time.monotonic() < self._next or not self._busy.acquire(blocking=False):
            return
        try:
            self._next = time.monotonic() + self.every_s
            self.refresh()
        except Exception as exc:  # noqa: BLE001 - a failed look never fails the request that made it
            log.error("refresh_failed", error_type=type(exc).__name__)
        finally:
            self._busy.release()

    def refresh(self) -> list[str]:
        """Register each stored dataset whose file changed, and each dataset that got a synthetic table
        (`gateway.synthetic_tables`); returns the names registered."""
        stamps = _stamps(self.store)
        changed = [name for name, st in sorted(stamps.items()) if self._seen.get(name) != st]
        synthetic = self._synthetic_changes()
        if synthetic:
            changed_names = {n.lower() for n in self._register_synthetic(synthetic)}
        else:
            changed_names = set()
        if not changed:
            return sorted(changed_names)
        done: list[str] = []
        with try_register_lock(self.data_dir) as held:
            if not held:  # another process is registering: its file (or the next change) is seen next time
                return []
            for name in changed:
                path = self.store / name
                try:
                    raw = json.loads(path.read_text())
                except (OSError, ValueError):
                    continue  # replaced or removed meanwhile: looked at again next time
                if self._first and self._known(raw):
                    self._seen[name] = stamps[name]  # registered at start from this very file
                    continue
                dataset = str(raw.get("name", path.stem)).lower() if isinstance(raw, dict) else path.stem
                try:
                    meta = self.gateway.register(raw)
                except (DpgateError, ValueError, OSError) as exc:
                    self.unavailable[dataset] = str(exc)
                    log.error("dataset_unavailable", dataset=dataset, error_type=type(exc).__name__)
                else:
                    self.unavailable.pop(meta.name.lower(), None)
                    done.append(meta.name)
                    log.info("dataset_refreshed", dataset=meta.name, version=self.gateway.version(meta.name))
                self._seen[name] = stamps[name]
        self._first = False
        return done + sorted(n for n in changed_names if n not in {d.lower() for d in done})

    def _synthetic_changes(self) -> dict[str, dict[str, Stamp]]:
        """Per dataset directory under `<data_dir>/synthetic`, the stamps of its tables' JSON files, where they changed."""
        from gateway.synthetic_tables import root

        out: dict[str, dict[str, Stamp]] = {}
        try:
            dirs = [e for e in os.scandir(root(self.data_dir)) if e.is_dir() and not e.name.startswith(".")]
        except FileNotFoundError:
            return out
        for entry in dirs:
            stamps = _stamps(Path(entry.path))
            if stamps != self._seen_synthetic.get(entry.name, {}):
                out[entry.name] = stamps
        return out

    def _register_synthetic(self, changes: dict[str, dict[str, Stamp]]) -> list[str]:
        """Register again, with their new synthetic tables, the datasets this process serves."""
        done: list[str] = []
        with try_register_lock(self.data_dir) as held:
            if not held:
                return done
            for dataset, stamps in sorted(changes.items()):
                try:
                    meta = self.gateway.catalog.get(dataset)
                except LookupError:  # not served here (yet): registered with its tables when it is
                    self._seen_synthetic[dataset] = stamps
                    continue
                if {f"{t.lower()}.json" for t in meta.synthetic_tables()} == set(stamps):
                    self._seen_synthetic[dataset] = stamps  # served already (synthetic tables never change)
                    continue
                try:
                    meta = self.gateway.register(meta.without_synthetic())
                except (DpgateError, ValueError, OSError) as exc:
                    log.error("synthetic_refresh_failed", dataset=dataset, error_type=type(exc).__name__)
                    continue  # tried again next time
                self._seen_synthetic[dataset] = stamps
                done.append(meta.name)
                log.info("synthetic_tables_refreshed", dataset=meta.name, tables=len(meta.synthetic_tables()))
        return done

    def _known(self, raw: Any) -> bool:
        """Whether the catalog already holds this definition (the start registered it from the file)."""
        from gateway.catalog import parse_dataset

        try:
            meta = self.gateway._placed(parse_dataset(raw))  # noqa: SLF001
            have = self.gateway.catalog.get(meta.name)
        except (DpgateError, LookupError, ValueError, TypeError):  # unknown_dataset is a LookupError
            return False
        if meta.name.lower() in self.unavailable:
            return False
        return bool(have.without_synthetic().model_dump(mode="json") == meta.model_dump(mode="json"))


def install_refresh(app: Any, settings: Any) -> Refresher:
    """A before-request hook that keeps this process's catalog in step with the data directory."""
    ext = app.extensions["dpgate"]
    refresher = Refresher(ext["gateway"], ext["queries"].unavailable, settings.data_dir, every_ms=settings.replica_refresh_ms)
    ext["refresher"] = refresher

    @app.before_request
    def _refresh_catalog() -> None:
        refresher.maybe_refresh()

    return refresher
