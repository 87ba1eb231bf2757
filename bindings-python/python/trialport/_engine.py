"""The engine: the eight operations on a home directory, and the typed ``Job`` and ``Page`` they return."""

from __future__ import annotations

import atexit
import copy
import json
import os
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from . import _trialport
from ._convert import meta_json, options_json, request_json
from ._typing import ColumnsMeta, Data, DatasetSelection, JobState, OptionValue

__all__ = ["Artifact", "Engine", "Job", "Page", "Progress"]


@dataclass(frozen=True)
class Progress:
    """How far a job has come."""

    rows_written: int
    """Rows written so far."""
    bytes_written: int
    """Bytes written so far."""
    datasets_done: int
    """Datasets (or documents) finished."""
    datasets_total: int
    """Datasets (or documents) in the job."""


@dataclass(frozen=True)
class Artifact:
    """One file a job produced."""

    name: str
    """Name within the job, e.g. ``"dm.csv"`` or ``"manifest.json"``."""
    media_type: str
    """Media type."""
    bytes: int
    """Size in bytes."""
    sha256: str
    """SHA-256, lowercase hex (verified again at download)."""
    rows: int | None
    """Rows, for dataset artifacts."""


class Job:
    """A snapshot of an export job. Jobs run on the engine's workers: ``wait()`` for the outcome.

    ``state`` is one of ``queued``, ``running``, ``succeeded``, ``failed``, ``cancelled``, ``expired``.
    """

    __slots__ = ("_credential", "_data", "_engine")

    def __init__(self, data: Mapping[str, Any], engine: Engine, credential: str | None) -> None:
        self._data: dict[str, Any] = dict(data)
        self._engine = engine
        self._credential = credential

    @property
    def id(self) -> str:
        """The job id (a UUIDv7)."""
        return str(self._data["id"])

    @property
    def kind(self) -> str:
        """What it exports: ``data``, ``report``, ``dashboard`` or ``bulk``."""
        return str(self._data["kind"])

    @property
    def study(self) -> str:
        """The study."""
        return str(self._data["study"])

    @property
    def org(self) -> str:
        """The organization."""
        return str(self._data["org"])

    @property
    def format(self) -> str:
        """The output format id."""
        return str(self._data["format"])

    @property
    def state(self) -> JobState:
        """The state when this snapshot was taken."""
        state: JobState = self._data["state"]
        return state

    @property
    def finished(self) -> bool:
        """Whether the job will not change any more (except ``succeeded`` becoming ``expired``)."""
        return self.state not in ("queued", "running")

    @property
    def progress(self) -> Progress:
        """Rows and bytes written, datasets done and in total."""
        p = self._data.get("progress") or {}
        return Progress(
            rows_written=int(p.get("rows_written", 0)),
            bytes_written=int(p.get("bytes_written", 0)),
            datasets_done=int(p.get("datasets_done", 0)),
            datasets_total=int(p.get("datasets_total", 0)),
        )

    @property
    def artifacts(self) -> list[Artifact]:
        """The files of a succeeded job (data files first, ``manifest.json`` last)."""
        return [
            Artifact(
                name=a["name"],
                media_type=a["media_type"],
                bytes=int(a["bytes"]),
                sha256=a["sha256"],
                rows=None if a.get("rows") is None else int(a["rows"]),
            )
            for a in self._data.get("artifacts") or []
        ]

    @property
    def error(self) -> dict[str, Any] | None:
        """For a failed job, the standard error object (``code``, ``message``, ``field``, ``details``)."""
        error = self._data.get("error")
        return None if error is None else copy.deepcopy(error)

    @property
    def request(self) -> dict[str, Any]:
        """The request as the engine stored it."""
        return copy.deepcopy(self._data.get("request") or {})

    @property
    def created_at(self) -> str:
        """When it was created (UTC, RFC 3339)."""
        return str(self._data["created_at"])

    @property
    def started_at(self) -> str | None:
        """When a worker started it."""
        value = self._data.get("started_at")
        return None if value is None else str(value)

    @property
    def finished_at(self) -> str | None:
        """When it finished."""
        value = self._data.get("finished_at")
        return None if value is None else str(value)

    @property
    def requested_by(self) -> str:
        """The subject who asked (e.g. ``apikey:<id>``)."""
        return str(self._data["requested_by"])

    def to_dict(self) -> dict[str, Any]:
        """The job record as the engine reports it."""
        return copy.deepcopy(self._data)

    def wait(self, timeout: float | None = None) -> Job:
        """Waits until the job finished (or ``timeout`` seconds passed) and returns it anew; see
        :meth:`Engine.wait`."""
        return self._engine.wait(self, timeout)

    def refresh(self) -> Job:
        """The job as it is now (:meth:`Engine.get_job`)."""
        return self._engine.get_job(self._credential, self)

    def cancel(self) -> Job:
        """Cancels the job (:meth:`Engine.cancel`)."""
        return self._engine.cancel(self._credential, self)

    def download(
        self, path: str | os.PathLike[str] | None = None, *, artifact: str | None = None
    ) -> bytes | None:
        """The artifact's bytes, or ``None`` after writing them to ``path`` (:meth:`Engine.download`)."""
        return self._engine.download(self._credential, self, path, artifact=artifact)

    def __repr__(self) -> str:
        return f"Job(id={self.id!r}, kind={self.kind!r}, study={self.study!r}, state={self.state!r})"


class Page:
    """One page of jobs, newest first."""

    __slots__ = ("_data", "items")

    def __init__(self, data: Mapping[str, Any], items: list[Job]) -> None:
        self._data = dict(data)
        self.items: list[Job] = items
        """The jobs on this page."""

    @property
    def page(self) -> int:
        """The 1-based page number."""
        return int(self._data["page"])

    @property
    def limit(self) -> int:
        """Jobs per page."""
        return int(self._data["limit"])

    @property
    def total(self) -> int:
        """Jobs matching the query, on all pages."""
        return int(self._data["total"])

    def to_dict(self) -> dict[str, Any]:
        """``{"items": [...], "page", "limit", "total"}`` as the engine reports it."""
        return copy.deepcopy(self._data)

    def __iter__(self) -> Iterator[Job]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def __repr__(self) -> str:
        return f"Page(page={self.page}, limit={self.limit}, total={self.total}, items={len(self.items)})"


JobRef = Job | str
"""A job or its id."""


def _job_id(job: JobRef) -> str:
    return job.id if isinstance(job, Job) else str(job)


_OPEN: weakref.WeakSet[Engine] = weakref.WeakSet()


@atexit.register
def _close_open_engines() -> None:
    # Workers must stop before the interpreter does: a hook they run needs it.
    for engine in list(_OPEN):
        engine.close()


def _deidentify_json(value: str | Sequence[str] | Mapping[str, Any] | None) -> Any:
    """The ``deidentify`` member of a request: a string or mapping as given, any other sequence as a list."""
    if value is None or isinstance(value, (str, Mapping)):
        return dict(value) if isinstance(value, Mapping) else value
    return list(value)


class Engine:
    """The trialport engine on a home directory, in this process.

    The home (made by :func:`trialport.init_home` or ``trialport --home DIR init``) holds the SQLite store of jobs,
    API keys and the audit trail, and the artifacts. Every operation takes a credential first, ``"ApiKey <key>"``
    or ``"Bearer <jwt>"``, and is audited, allowed or not. Export operations return a ``queued`` :class:`Job` at
    once; workers (threads of this process) run it. Calls release the GIL.

    Use it as a context manager, or call :meth:`close`.
    """

    def __init__(
        self,
        home: str | os.PathLike[str],
        *,
        jwt: Mapping[str, Any] | None = None,
        workers: int | None = None,
        rate_limit: tuple[float, int] | None = None,
    ) -> None:
        """Opens the engine on ``home``.

        Args:
            home: A home directory.
            jwt: JWT settings for ``"Bearer <jwt>"`` credentials, in the shape of the ``jwt`` member of the home's
                ``config.json``: ``{"keys": [{"path": ..., "alg": ..., "kid": ...}], "issuers": [...],
                "audiences": [...], "leeway_secs": 60}``. Key files hold the key material (PEM public key, JWK,
                JWK Set or HMAC secret); a relative ``path`` is relative to ``home``; paths may be ``os.PathLike``.
                When given, these settings replace the home's JWT settings for this engine (the home's
                configuration is not changed). Default: the home's settings, if any.
            workers: Worker threads (default: the home's configuration, else 2; 0 runs no job).
            rate_limit: ``(per_second, burst)``: each principal may make ``burst`` calls at once and ``per_second``
                on average; more fail with :class:`RateLimitError`. Default: no limit.

        Raises:
            NotFoundError: ``home`` is not a home.
            ValidationError: A bad rate limit; ``jwt`` settings of the wrong shape (reason ``invalid_config``) or
                with unusable keys (e.g. ``weak_hmac_secret`` for an HS256 secret under 32 bytes), field ``jwt``.
            ServerError: A key file that cannot be read.
        """
        # Translation only: the core parses and checks the settings (EXP002 with field ``jwt``).
        jwt_json = None if jwt is None else json.dumps(
            dict(jwt) if isinstance(jwt, Mapping) else jwt, default=os.fspath
        )
        self._native = _trialport.Engine(os.fspath(home), jwt_json, workers, rate_limit)
        _OPEN.add(self)

    # -- lifecycle ---------------------------------------------------------------------------------------------

    def close(self) -> None:
        """Stops the workers (a job they were running goes back to ``queued``) and releases the home."""
        self._native.close()
        _OPEN.discard(self)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._native.closed

    def __enter__(self) -> Engine:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- data and hooks ----------------------------------------------------------------------------------------

    def add_dataset(
        self,
        study: str,
        name: str,
        data: Data,
        *,
        label: str | None = None,
        columns: ColumnsMeta | None = None,
    ) -> None:
        """Registers (or replaces) dataset ``name`` of ``study`` in the engine's in-memory source.

        The batches are kept without copying them; the engine reads them for every export of the dataset.

        Args:
            study: Study id, e.g. ``"S1"``.
            name: Dataset name, e.g. ``"DM"``.
            data: Anything with ``__arrow_c_stream__`` or ``__arrow_c_array__`` (pyarrow, polars, pandas, ...).
            label: Dataset label.
            columns: Column metadata, as for :func:`trialport.write`.

        Raises:
            ValidationError: Invalid names or metadata.
        """
        self._native.add_dataset(study, name, data, meta_json(None, label, columns))

    def add_audit_hook(self, hook: Callable[[dict[str, Any]], object]) -> None:
        """Calls ``hook`` with every audit event from now on, after the event is stored.

        An event is a dict: ``seq``, ``event_id``, ``timestamp``, ``actor`` (``subject``, ``name``, ``org``),
        ``action``, ``target``, ``outcome`` (``success``, ``denied``, ``failed``), ``details``, ``request_id``,
        ``prev_hash``, ``hash``. Events of jobs come from worker threads. Fail-closed: if ``hook`` raises, the
        operation being audited fails with :class:`ServerError` (reason ``audit_failed``). Events are recorded one
        at a time, so a hook must not call the engine itself: hand the event to another thread or a queue instead.
        """

        def call(text: str) -> None:
            hook(json.loads(text))

        self._native.add_audit_hook(call)

    # -- exports -----------------------------------------------------------------------------------------------

    def _job(self, text: str, credential: str | None) -> Job:
        return Job(json.loads(text), self, credential)

    def _export(self, credential: str, kind: str, request: Mapping[str, Any]) -> Job:
        return self._job(self._native.export(credential, kind, request_json(request)), credential)

    def export_data(
        self,
        credential: str,
        *,
        study: str,
        datasets: Sequence[DatasetSelection],
        format: str,
        options: Mapping[str, OptionValue] | None = None,
        deidentify: str | Sequence[str] | Mapping[str, Any] | None = None,
        identifiable: bool = False,
        signature: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        **format_options: OptionValue,
    ) -> Job:
        """Exports datasets of a study, one artifact per dataset.

        Args:
            credential: ``"ApiKey <key>"`` or ``"Bearer <jwt>"``.
            study: Study id.
            datasets: Dataset names, or ``{"name", "columns", "filters"}`` selections.
            format: Format id, e.g. ``"csv"``.
            options: Format options by name; ``**format_options`` adds more as keyword arguments.
            deidentify: De-identification: a comma list or sequence of profiles (``"safe-harbor"``,
                ``"pseudonymize"``, ``"date-shift"``, ``"drop-free-text"``), or a mapping
                ``{"profiles": [...], "drop": [...], "keep": [...]}``. Pseudonyms and date shifts use the home's
                ``deid.key``. The policy and what it did are recorded in the manifest and the audit trail.
            identifiable: Let columns classed as identifying (the ``privacy`` of the dataset metadata) leave the
                export unchanged (it needs the permission ``data:identifiable``); without it such an export raises
                :class:`ValidationError` (``reason == "identifiable_data"``), and a caller without the permission
                :class:`UnauthorizedError` with the same reason. Filtering on such columns needs the permission too.
            signature: An e-signature, ``{"meaning": "review" | "approval" | "responsibility" | "authorship",
                "password": <the caller's signing password>}`` (see :meth:`set_signing_password`). Required when
                ``identifiable`` is true; the engine signs the job's manifest with it. The password is never stored.
            idempotency_key: The same key and request return the same job.

        Returns:
            The ``queued`` job.

        Raises:
            UnauthorizedError: Bad credential or no permission.
            ValidationError: Bad request, options, columns or filters.
            NotFoundError: Unknown format, study or dataset.
            ConflictError: ``idempotency_key`` reused with another request.
        """
        request = {
            "study": study,
            "datasets": [d if isinstance(d, str) else dict(d) for d in datasets],
            "format": format,
            "options": options_json(options, format_options),
            "deidentify": _deidentify_json(deidentify),
            "identifiable": identifiable or None,
            "signature": signature,
            "idempotency_key": idempotency_key,
        }
        return self._export(credential, "data", request)

    def export_report(
        self,
        credential: str,
        *,
        study: str,
        report: Mapping[str, Any],
        format: str,
        options: Mapping[str, OptionValue] | None = None,
        signature: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        **format_options: OptionValue,
    ) -> Job:
        """Renders a report: ``{"title", "data_cutoff", "parameters", "sections": [...]}``, sections of ``text``,
        ``table``, ``summary`` and ``chart`` (the report language: ``docs/reports.md``, ``docs/report.schema.json``).

        Args:
            credential: The caller's credential.
            study: The study the report draws from (the report's ``study``).
            report: The report spec.
            format: ``"html"``, ``"pdf"`` (PDF/A-2b), ``"json"`` or ``"xlsx"`` (see :func:`trialport.formats`).
            options: Format options.
            signature: An e-signature, ``{"meaning": ..., "password": ...}`` (see :meth:`bulk_export`): optional;
                the engine signs the job's manifest with it, and the document shows the signature.
            idempotency_key: The same key and request return the same job.

        Raises:
            ValidationError: ``report`` names another study than ``study`` (reason ``study_mismatch``).
        """
        request = {
            "study": study,
            "report": {"study": study, **dict(report)},
            "format": format,
            "options": options_json(options, format_options),
            "signature": signature,
            "idempotency_key": idempotency_key,
        }
        return self._export(credential, "report", request)

    def export_dashboard(
        self,
        credential: str,
        *,
        study: str,
        dashboard: Mapping[str, Any],
        format: str,
        options: Mapping[str, OptionValue] | None = None,
        signature: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        **format_options: OptionValue,
    ) -> Job:
        """Renders a dashboard: ``{"title", "tiles": [{"label", "dataset", "measure", "column", "filters"}],
        "tables": [...], "charts": [{"title", "kind", "dataset", "x", "measure", "column", "filters"}]}``.

        Args:
            credential: The caller's credential.
            study: The study the dashboard draws from (the dashboard's ``study``).
            dashboard: The dashboard spec (``docs/reports.md``).
            format: ``"html"``, ``"pdf"`` (PDF/A-2b), ``"json"`` or ``"xlsx"``.
            options: Format options.
            signature: An e-signature, ``{"meaning": ..., "password": ...}`` (see :meth:`bulk_export`): optional;
                the engine signs the job's manifest with it.
            idempotency_key: The same key and request return the same job.

        Raises:
            ValidationError: ``dashboard`` names another study than ``study`` (reason ``study_mismatch``).
        """
        request = {
            "study": study,
            "dashboard": {"study": study, **dict(dashboard)},
            "format": format,
            "options": options_json(options, format_options),
            "signature": signature,
            "idempotency_key": idempotency_key,
        }
        return self._export(credential, "dashboard", request)

    def bulk_export(
        self,
        credential: str,
        *,
        study: str,
        datasets: Sequence[DatasetSelection] | None = None,
        format: str,
        package: str = "zip",
        container: str = "zip",
        options: Mapping[str, OptionValue] | None = None,
        signature: Mapping[str, Any] | None = None,
        deidentify: str | Sequence[str] | Mapping[str, Any] | None = None,
        identifiable: bool = False,
        idempotency_key: str | None = None,
        **format_options: OptionValue,
    ) -> Job:
        """Exports several datasets (by default every dataset of the study) in one package with a manifest.

        Args:
            credential: The caller's credential.
            study: Study id.
            datasets: Dataset names or selections; ``None`` for all.
            format: Format id of the files inside.
            package: ``"zip"``, or ``"ectd"`` for the eCTD Module 5 tree (XPT v5 files with a define.xml per
                standard; every FDA check runs over every dataset before a byte is written).
            container: ``"zip"`` (one zip artifact) or ``"directory"`` (an eCTD tree as the job's artifacts).
            options: Format options.
            signature: An e-signature, ``{"meaning": "review" | "approval" | "responsibility" | "authorship",
                "password": <the caller's signing password>}`` (see :meth:`set_signing_password`). Required for
                ``package="ectd"`` and when ``identifiable`` is true; the engine signs the package's manifests with
                it. The password is never stored.
            deidentify: De-identification: a comma list or sequence of profiles (``"safe-harbor"``,
                ``"pseudonymize"``, ``"date-shift"``, ``"drop-free-text"``), or a mapping
                ``{"profiles": [...], "drop": [...], "keep": [...]}``. Pseudonyms and date shifts use the home's
                ``deid.key``. The policy and what it did are recorded in the manifest and the audit trail.
            identifiable: Let columns classed as identifying (the ``privacy`` of the dataset metadata) leave the
                export unchanged (it needs the permission ``data:identifiable``); without it such an export raises
                :class:`ValidationError` (``reason == "identifiable_data"``), and a caller without the permission
                :class:`UnauthorizedError` with the same reason. Filtering on such columns needs the permission too.
            idempotency_key: The same key and request return the same job.
        """
        request = {
            "study": study,
            "datasets": None if datasets is None else [d if isinstance(d, str) else dict(d) for d in datasets],
            "format": format,
            "package": package,
            "container": container,
            "options": options_json(options, format_options),
            "signature": signature,
            "deidentify": _deidentify_json(deidentify),
            "identifiable": identifiable or None,
            "idempotency_key": idempotency_key,
        }
        return self._export(credential, "bulk", request)

    # -- jobs --------------------------------------------------------------------------------------------------

    def list_jobs(
        self,
        credential: str,
        *,
        page: int = 1,
        limit: int = 20,
        status: JobState | None = None,
        study: str | None = None,
    ) -> Page:
        """The jobs the caller may see, newest first.

        Raises:
            ValidationError: ``limit`` not in 1..100, ``page`` below 1, or an unknown ``status``.
        """
        request = {"page": page, "limit": limit, "status": status, "study": study}
        data = json.loads(self._native.list_jobs(credential, request_json(request)))
        items = [Job(item, self, credential) for item in data.get("items", [])]
        return Page(data, items)

    def get_job(self, credential: str | None, job_id: JobRef) -> Job:
        """One job's state, progress, artifacts and error (``credential`` ``None``: as the credential that last
        obtained the job from this engine).

        Raises:
            NotFoundError: No such job (or not visible to the caller's organization).
        """
        return self._job(self._native.get_job(credential, _job_id(job_id)), credential)

    def wait(
        self, job_id: JobRef, timeout: float | None = None, *, credential: str | None = None
    ) -> Job:
        """Waits until a job finished (or ``timeout`` seconds passed: then the job is returned as it is).

        The credential is, unless given, the one the job was obtained with from this engine. The GIL is released
        while waiting; Ctrl-C cancels the job, waits for it to stop and raises ``KeyboardInterrupt``.

        Raises:
            UnauthorizedError: No credential known for the job, or no permission.
            NotFoundError: No such job.
        """
        if credential is None and isinstance(job_id, Job):
            credential = job_id._credential
        # Without a credential, the engine waits as the one that last obtained the job from it.
        return self._job(self._native.wait(credential, _job_id(job_id), timeout), credential)

    def cancel(self, credential: str | None, job_id: JobRef) -> Job:
        """Cancels a queued or running job (a running job stops at its next batch and leaves no artifact;
        ``credential`` ``None``: as the credential that last obtained the job from this engine).

        Raises:
            ConflictError: The job has finished.
        """
        return self._job(self._native.cancel(credential, _job_id(job_id)), credential)

    def download(
        self,
        credential: str | None,
        job_id: JobRef,
        path: str | os.PathLike[str] | None = None,
        *,
        artifact: str | None = None,
    ) -> bytes | None:
        """An artifact of a succeeded job, its SHA-256 verified as it is read.

        Args:
            credential: The caller's credential (permission is checked again); ``None``: the one that last
                obtained the job from this engine.
            job_id: The job.
            path: Where to write the file (it appears only when complete and verified; an existing file is not
                replaced); ``None`` returns the bytes.
            artifact: The file, e.g. ``"dm.csv"`` or ``"manifest.json"``; needed when the job has several.

        Raises:
            ConflictError: The job has not succeeded, or its artifacts expired.
            ValidationError: Several artifacts and none named.
            ServerError: The bytes do not match their recorded SHA-256.
        """
        return self._native.download(
            credential, _job_id(job_id), artifact, None if path is None else os.fspath(path)
        )

    # -- keys, audit, formats ----------------------------------------------------------------------------------

    def create_api_key(
        self,
        credential: str,
        *,
        name: str,
        roles: Sequence[str],
        studies: Sequence[str],
        org: str | None = None,
        expires_at: str | None = None,
    ) -> str:
        """Creates an API key; returns its text, shown only this once (the credential is ``f"ApiKey {key}"``).

        Args:
            credential: An ``admin`` credential (``keys:manage``).
            name: A name for people.
            roles: Roles: ``admin``, ``data_manager``, ``statistician``, ``monitor``, ``auditor``, ``integration``.
            studies: Study ids, or ``["*"]`` for all.
            org: The organization (default: the home's).
            expires_at: When it stops working (RFC 3339), or never.
        """
        text = self._native.create_api_key(
            credential, name, list(roles), list(studies), org, expires_at
        )
        key: str = json.loads(text)["api_key"]
        return key

    def revoke_api_key(self, credential: str, key_id: str) -> None:
        """Revokes an API key; it fails from the next call on."""
        self._native.revoke_api_key(credential, key_id)

    def audit_events(
        self, credential: str, *, start: int = 1, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Up to ``limit`` (1..1000) audit events from sequence number ``start`` (needs ``audit:read``)."""
        events: list[dict[str, Any]] = json.loads(
            self._native.audit_events(credential, start, limit)
        )
        return events

    def verify_audit(self, credential: str) -> int:
        """Verifies the audit trail's hash chain; returns the number of events checked.

        Raises:
            ServerError: Reason ``integrity_violation`` with ``details["seq"]`` of the first bad event.
        """
        return self._native.verify_audit(credential)

    def purge(self, credential: str) -> dict[str, int]:
        """Expires now every job of the caller's organization whose artifacts passed their retention time (the
        home's ``retention_days`` / ``retention`` settings): their files are deleted, each deletion recorded in
        the audit trail (``artifact.deleted``), the job becomes ``expired`` and keeps its record and its
        ``manifest.json`` (still downloadable); downloading another of its artifacts raises ``ConflictError``
        with reason ``expired``. A background sweep does the same every minute while the engine is open.

        Args:
            credential: An ``admin`` credential (``retention:purge``).

        Returns:
            ``{"jobs_expired": n, "artifacts_deleted": n, "bytes_freed": n}`` (recorded sizes of the deleted files).

        Raises:
            UnauthorizedError: Without the ``retention:purge`` permission.
        """
        summary: dict[str, int] = json.loads(self._native.purge(credential))
        return summary

    # -- e-signatures ------------------------------------------------------------------------------------------

    def set_signing_password(
        self, credential: str, password: str, *, current: str | None = None
    ) -> None:
        """Sets the caller's signing password: the second component of their e-signatures (21 CFR 11.200).

        Args:
            credential: The signer's own credential (nobody sets another's password).
            password: 8 to 1024 characters, no control characters.
            current: The present password, needed to change it (checked like a signature).

        Raises:
            ValidationError: Reason ``weak_password``.
            UnauthorizedError: Reason ``current_password_required``, ``signature_invalid`` or ``signing_locked``.
        """
        self._native.set_signing_password(credential, password, current)

    def reset_signing(self, credential: str, subject: str) -> None:
        """Clears a signer's password, failed attempts and lock (after five failed attempts signing locks), so
        that they can set a new password. Needs an ``admin`` credential of the signer's organization.

        Raises:
            NotFoundError: The signer has nothing to reset.
        """
        self._native.reset_signing(credential, subject)

    def signing_public_key(self) -> str:
        """The engine's Ed25519 public key (PEM) that verifies the signatures in its manifests: hand it to
        verifiers out of band (``trialport verify PACKAGE --public-key FILE``)."""
        return self._native.signing_public_key()

    def formats(self, credential: str) -> list[dict[str, Any]]:
        """The engine's formats with capabilities and options (as :func:`trialport.formats`)."""
        result: list[dict[str, Any]] = json.loads(self._native.formats(credential))
        return result

