"""Fault injection, for the reliability tests only: kill -9 of the serving process at a named step.

Armed once, at process start, by the settings (`fault`, i.e. ``DPGATE_FAULT``); unarmed (the default)
every hook is a no-op, and nothing can arm it later. The steps of a query, in the order they happen
(`gateway.service`), and what a crash there must leave behind:

- ``after_engine``: the engine has returned the exact aggregates; no noise drawn, nothing charged,
  nothing sent. The request id stays reserved until the restart's `Ledger.recover()` drops it.
- ``after_noise``: the noisy answer exists in memory only; nothing charged, nothing sent.
- ``after_charge``: the charge is committed, with the answer stored under its request id; nothing sent.
  The charge stays; a retry with the request id gets the stored answer, not a second charge.
- ``during_response``: the status line, the headers and half the body of a ``200`` answer to
  ``POST /v1/queries`` have been handed to the HTTP server; then the process dies mid-body.

The kill is ``os.kill(os.getpid(), SIGKILL)``: no handler, no ``finally``, no flush runs, as in a crash.
"""
from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NoReturn

STEPS = ("after_engine", "after_noise", "after_charge", "during_response")


def kill() -> NoReturn:
    """Die at once, as kill -9 from outside would have it."""
    os.kill(os.getpid(), signal.SIGKILL)
    raise AssertionError("still alive after SIGKILL")  # pragma: no cover


class Faults:
    """The armed step (or None) and the hooks the query path calls."""

    def __init__(self, armed: str | None = None) -> None:
        if armed is not None and armed not in STEPS:
            raise ValueError(f"unknown fault {armed!r}; one of {STEPS}")
        self.armed = armed

    def point(self, step: str) -> None:
        """Called by the query path as it passes `step`: dies there if that is the armed step."""
        if step == self.armed:
            kill()

    def engine(self, engine: Any) -> Any:
        """The engine a release reads through: dies as the first exact result comes back (``after_engine``)."""
        return _DyingEngine(engine, self) if self.armed == "after_engine" else engine

    def wsgi(self, app: Callable[..., Iterable[bytes]]) -> Callable[..., Iterable[bytes]]:
        """The WSGI application, wrapped so as to die half-way through an answer (``during_response``)."""
        return _DyingResponse(app) if self.armed == "during_response" else app


NO_FAULTS = Faults(None)


class _DyingEngine:
    def __init__(self, engine: Any, faults: Faults) -> None:
        self._engine = engine
        self._faults = faults

    def execute(self, select: Any) -> list[tuple]:
        rows: list[tuple] = self._engine.execute(select)
        self._faults.point("after_engine")
        return rows

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)


class _DyingResponse:
    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") != "POST" or environ.get("PATH_INFO") != "/v1/queries":
            return self.app(environ, start_response)
        statuses: list[str] = []

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            statuses.append(status)
            return start_response(status, headers, exc_info)

        inner = self.app(environ, capture)
        try:
            body = b"".join(inner)
        finally:
            close = getattr(inner, "close", None)
            if close is not None:
                close()
        if not statuses or not statuses[0].startswith("200"):
            return [body]
        return _half_then_die(body)


def _half_then_die(body: bytes) -> Iterator[bytes]:
    yield body[: len(body) // 2]
    time.sleep(0.5)  # give the server the time to put the first half on the wire
    kill()
