"""Long calls release the GIL; Ctrl-C during `wait` cancels the job."""

from __future__ import annotations

import _thread
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import trialport
from conftest import Home, as_polars


def big_table(rows: int) -> pa.Table:
    rng = np.random.default_rng(7)
    return pa.table(
        {
            "USUBJID": pa.array([f"S1-{i:07d}" for i in range(rows)]),
            "AVAL": rng.normal(size=rows),
            "VISITNUM": rng.integers(0, 20, size=rows),
        }
    )


class Counter:
    """A Python thread that counts as fast as it can: it only advances while nobody holds the GIL for long."""

    def __init__(self) -> None:
        self.n = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.n += 1

    def __enter__(self) -> Counter:
        self._thread.start()
        time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def test_write_releases_the_gil(tmp_path: Path) -> None:
    table = big_table(200_000)
    with Counter() as counter:
        before, started = counter.n, time.perf_counter()
        trialport.write(table, tmp_path / "big.csv")
        after, elapsed = counter.n, time.perf_counter() - started
    # Held throughout, the GIL would let the counter move at most a few steps; released, it counts freely.
    assert elapsed > 0.05, "the export was too quick to tell"
    assert after - before > 10_000


def test_engine_calls_release_the_gil(home: Home) -> None:
    with trialport.Engine(home.path) as engine:
        engine.add_dataset("S1", "LB", big_table(200_000))
        job = engine.export_data(home.admin, study="S1", datasets=["LB"], format="parquet")
        with Counter() as counter:
            before = counter.n
            done = job.wait(60)
            after = counter.n
        assert done.state == "succeeded", done.error
        assert after - before > 10_000


@pytest.fixture
def ctrl_c_raises() -> Iterator[None]:
    """Python's own SIGINT handler, whatever the process was started with: a shell starts a background job with
    SIGINT ignored, and Python then leaves it ignored, so that ``interrupt_main`` would do nothing."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)


def test_ctrl_c_during_wait_cancels_the_job(home: Home, ctrl_c_raises: None) -> None:
    with trialport.Engine(home.path, workers=0) as engine:  # the job stays queued until cancelled
        engine.add_dataset("S1", "DM", as_polars())
        job = engine.export_data(home.admin, study="S1", datasets=["DM"], format="csv")
        timer = threading.Timer(0.3, _thread.interrupt_main)
        timer.start()
        try:
            with pytest.raises(KeyboardInterrupt):
                # Bounded: were the interrupt lost, the wait would end queued and the test fail, not hang.
                engine.wait(job, timeout=30)
        finally:
            timer.cancel()
        assert engine.get_job(home.admin, job).state == "cancelled"
        cancels = [e for e in engine.audit_events(home.admin, limit=1000) if e["action"] == "cancel"]
        assert cancels and cancels[-1]["target"] == f"job:{job.id}"
