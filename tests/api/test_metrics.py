"""The Prometheus metrics: for administrators on the main app, without a key on `metrics_listen`, and
added over worker processes in prometheus_client's multiprocess mode (PROMETHEUS_MULTIPROC_DIR)."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import urllib.request
from pathlib import Path

import pytest
from pydantic import ValidationError

from gateway.http.metrics import parse_listen
from gateway.settings import load_settings
from tests.api.test_rate_limits import close, limited_api, member

ROOT = Path(__file__).resolve().parents[2]


def _sample(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in the metrics")


def test_metrics_listen_serves_the_registry_without_a_key(tmp_path: Path) -> None:
    api = limited_api(tmp_path, metrics_listen="127.0.0.1:0")  # port 0: any free port
    listener = api.app.extensions["dpgate"]["metrics"].listener
    assert listener is not None
    try:
        ann = member(api, "ann")
        r = api.client.post("/v1/queries", json={"dataset": "bank", "sql": "SELECT COUNT(*) FROM tx", "epsilon": 0.25}, headers=ann)
        assert r.status_code == 200, r.json
        assert api.client.get("/metrics").status_code == 401  # the main app's: still an administrator's
        host, port = listener.address
        with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=10) as resp:
            assert resp.status == 200
            text = resp.read().decode()
        assert _sample(text, "dpgate_epsilon_charged_total") == pytest.approx(0.25)
        assert 'dpgate_http_requests_total{endpoint="/v1/queries",status="200"} 1.0' in text
        assert "ann" not in text and "bank" not in text
    finally:
        listener.close()
        close(api)


def test_no_listener_by_default(tmp_path: Path) -> None:
    api = limited_api(tmp_path)
    try:
        assert api.app.extensions["dpgate"]["settings"].metrics_listen == ""
        assert api.app.extensions["dpgate"]["metrics"].listener is None
    finally:
        close(api)


@pytest.mark.parametrize("value", ["9108", "localhost", "127.0.0.1:http", "127.0.0.1:70000", ":9108"])
def test_a_bad_metrics_listen_is_refused_at_start(tmp_path: Path, value: str) -> None:
    with pytest.raises(ValidationError, match="metrics_listen"):
        load_settings(data_dir=tmp_path, metrics_listen=value)


def test_listen_addresses() -> None:
    assert parse_listen("127.0.0.1:9108") == ("127.0.0.1", 9108)
    assert parse_listen("[::1]:9108") == ("::1", 9108)
    assert parse_listen(" 0.0.0.0:0 ") == ("0.0.0.0", 0)


SCRIPT = textwrap.dedent(
    """
    import multiprocessing, sys
    from gateway.http.metrics import Metrics, metrics_body

    def worker(epsilon):
        m = Metrics()  # another process's counters, as a gunicorn worker's
        m.charged.inc(epsilon)
        m.requests.labels("/v1/queries", "200").inc()

    if __name__ == "__main__":
        ctx = multiprocessing.get_context("spawn")
        for epsilon in (0.5, 0.25):
            p = ctx.Process(target=worker, args=(epsilon,))
            p.start(); p.join(); assert p.exitcode == 0
        mine = Metrics()
        mine.charged.inc(0.125)
        sys.stdout.write(metrics_body(mine)[0].decode())
    """
)


def test_multiprocess_mode_adds_every_process(tmp_path: Path) -> None:
    """With PROMETHEUS_MULTIPROC_DIR set before the processes start, a scrape of any one process shows
    the figures of all of them."""
    shared = tmp_path / "prom"
    shared.mkdir()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(shared), "PYTHONPATH": str(ROOT)}
    script = tmp_path / "workers.py"  # a file: spawned processes import their target from it
    script.write_text(SCRIPT)
    out = subprocess.run([sys.executable, str(script)], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert _sample(out.stdout, "dpgate_epsilon_charged_total") == pytest.approx(0.875)
    assert 'dpgate_http_requests_total{endpoint="/v1/queries",status="200"} 2.0' in out.stdout
    assert list(shared.glob("counter_*.db"))  # each process wrote its own file
