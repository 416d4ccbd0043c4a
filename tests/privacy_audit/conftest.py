"""Audits observe output distributions, which the constant-time padding of releases does not change:
it is turned off while this folder's tests run (a million padded draws would sleep for an hour)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.privacy_audit.cases import no_timing_padding


@pytest.fixture(autouse=True)
def _no_timing_padding() -> Iterator[None]:
    with no_timing_padding():
        yield
