"""The app's resources, in one typed place: what `create_app` builds and every view reads.

`create_app` stores one `Resources` in `app.extensions["dpgate"]`; views take it with `resources()` (or
one member with `ext(name)`, typed per name). No blueprint imports the factory module (`gateway.app`):
they import this module and `gateway.http.auth`.

`Resources` also answers `res["ledger"]`, `res.get("limiter")` and `res["x"] = ...` as the dict it
replaces did, for the tests and the modules that install parts of their own (the console's sessions,
the replicas' refresher).
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Literal, overload

from flask import Flask, current_app

if TYPE_CHECKING:
    from flask_limiter import Limiter

    from budget.ledger import Ledger
    from gateway.console.sessions import SessionStore
    from gateway.core import Gateway
    from gateway.http.metrics import Metrics
    from gateway.service import QueryService
    from gateway.settings import Settings
    from training.service import TrainingService

KEY = "dpgate"


@dataclass
class Resources:
    settings: Settings
    gateway: Gateway
    ledger: Ledger
    queries: QueryService
    training: TrainingService
    metrics: Metrics
    limiter: Limiter | None = None
    sessions: SessionStore | None = None  # the console's (gateway/console)
    extra: dict[str, Any] = field(default_factory=dict)  # parts installed by other modules, by name

    def _declared(self, name: str) -> bool:
        return name != "extra" and name in {f.name for f in fields(self)}

    def __getitem__(self, name: str) -> Any:
        if self._declared(name):
            return getattr(self, name)
        return self.extra[name]

    def __setitem__(self, name: str, value: Any) -> None:
        if self._declared(name):
            setattr(self, name, value)
        else:
            self.extra[name] = value

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and (self._declared(name) and getattr(self, name) is not None or name in self.extra)

    def get(self, name: str, default: Any = None) -> Any:
        return self[name] if name in self else default


def install(app: Flask, res: Resources) -> Resources:
    app.extensions[KEY] = res
    return res


def resources(app: Flask | None = None) -> Resources:
    """The resources of `app`, or of the app handling the current request."""
    res: Resources = (app or current_app).extensions[KEY]
    return res


@overload
def ext(name: Literal["settings"]) -> Settings: ...
@overload
def ext(name: Literal["gateway"]) -> Gateway: ...
@overload
def ext(name: Literal["ledger"]) -> Ledger: ...
@overload
def ext(name: Literal["queries"]) -> QueryService: ...
@overload
def ext(name: Literal["training"]) -> TrainingService: ...
@overload
def ext(name: Literal["metrics"]) -> Metrics: ...
@overload
def ext(name: Literal["limiter"]) -> Limiter | None: ...
@overload
def ext(name: Literal["sessions"]) -> SessionStore: ...
@overload
def ext(name: str) -> Any: ...
def ext(name: str) -> Any:
    """One member of the current app's resources, typed by its name (`resources()` for them all)."""
    return resources()[name]
