"""Run the trialport engine in process with an audit hook that sees every event.

Run: python examples/python/engine_audit_hook.py [HOME_DIR]   (after `pip install ./bindings-python pyarrow`)
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

import pyarrow as pa

import trialport

home = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="trialport-home-"))

# %% A home holds the job store, the artifacts and the hash-chained audit trail; init makes the first admin key.
admin = f"ApiKey {trialport.init_home(home, org='acme')}"


def audit_to_console(event: dict[str, Any]) -> None:
    """An audit hook: called after each event is stored. Raising would fail the operation (fail-closed)."""
    actor = event["actor"]["subject"]
    print(f"  audit #{event['seq']:<3} {event['action']:<16} {event['outcome']:<8} {event['target']:<44} by {actor}")


with trialport.Engine(home) as engine:
    engine.add_audit_hook(audit_to_console)

    # %% Data registered in memory (no copy) becomes a dataset of a study.
    engine.add_dataset(
        "TP-001",
        "AE",
        pa.table({"USUBJID": ["TP-001-0001", "TP-001-0003"], "AETERM": ["Headache", "Nausea"], "AESEV": [1, 2]}),
        label="Adverse Events",
    )

    # %% An export is a job: queued at once, run by the engine's workers.
    job = engine.export_data(admin, study="TP-001", datasets=["AE"], format="xlsx")
    print("queued", job)
    job = job.wait(timeout=60)
    print("finished", job, [a.name for a in job.artifacts])

    # %% Downloads are checked against the recorded SHA-256 (and audited).
    target = home / "ae.xlsx"
    job.download(target, artifact="ae.xlsx")
    print("downloaded", target, target.stat().st_size, "bytes")

    # %% A denied call is audited too, and raised as a typed error.
    try:
        engine.list_jobs("ApiKey tp_not_a_key")
    except trialport.UnauthorizedError as e:
        print("denied:", e.code, e.reason)

    print("audit chain verified:", engine.verify_audit(admin), "events")
