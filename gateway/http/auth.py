"""Bearer-key authentication: `auth` for the views' `auth_required`, and the caller for the rate limiter.

A key is looked up (hashed, in the ledger) once per request, whoever asks first: the limiter before the
view, then the view. Keys longer than 256 characters are refused unread. A disabled analyst's key
authenticates nobody.
"""
from __future__ import annotations

from apiflask import HTTPTokenAuth
from flask import g

from budget.records import Analyst
from gateway.http.resources import resources

auth = HTTPTokenAuth(scheme="Bearer", security_scheme_name="BearerAuth")
MAX_KEY_LENGTH = 256


@auth.verify_token
def _verify(token: str) -> Analyst | None:
    return _lookup(token)


def current_principal() -> Analyst | None:
    """The enabled analyst whose bearer key this request carries, or None. The rate limiter asks before
    the view authenticates; the key is looked up (hashed) once per request either way."""
    sent = auth.get_auth()
    return _lookup(getattr(sent, "token", None))


def _lookup(token: str | None) -> Analyst | None:
    cached = g.get("dpgate_auth")
    if cached is not None and cached[0] == token:
        return cached[1]  # type: ignore[no-any-return]
    analyst = None
    if token and len(token) <= MAX_KEY_LENGTH:
        analyst = resources().ledger.authenticate(token)
    g.dpgate_auth = (token, analyst)
    if analyst is not None:
        g.analyst = analyst
    return analyst


@auth.get_user_roles
def _roles(user: Analyst) -> list[str]:
    return [user.role]
