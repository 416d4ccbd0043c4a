"""The bounding hash's key: made once per data directory, whole, even by processes starting together."""
from __future__ import annotations

import stat
import threading
from pathlib import Path

from gateway.settings import load_settings


def test_processes_creating_the_key_together_keep_one(tmp_path: Path) -> None:
    start, keys = threading.Barrier(8), []

    def make() -> None:
        settings = load_settings(data_dir=tmp_path)
        start.wait()
        keys.append(settings.secret_seed())

    threads = [threading.Thread(target=make) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(keys)) == 1 and len(keys[0]) == 64
    path = tmp_path / "bounding.key"
    assert path.read_text() == keys[0] and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["bounding.key"]  # no temporary file left
    assert load_settings(data_dir=tmp_path).secret_seed() == keys[0]  # kept
