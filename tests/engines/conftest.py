from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

# --- Spark -------------------------------------------------------------------------------------------
# One Spark engine per test process: starting the JVM takes tens of seconds on two cores. Its warehouse
# is a temporary directory of this process, so parallel workers never share files. A test JVM lives a
# minute: compiling with the quick JIT only (C1) and the serial collector takes a third off the suite.

SPARK_KEY = "spark-test-key"
os.environ.setdefault("PYSPARK_SUBMIT_ARGS", "--driver-java-options '-XX:TieredStopAtLevel=1 -XX:+UseSerialGC' pyspark-shell")


@pytest.fixture(scope="session")
def spark_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from gateway.engines.spark import SparkEngine
    from gateway.settings import SparkSettings

    root = tmp_path_factory.mktemp("spark")
    engine = SparkEngine(SparkSettings(warehouse=root / "warehouse", driver_memory="1g", shuffle_partitions=2), data_dir=root, seed=SPARK_KEY)
    yield engine
    engine.close()
