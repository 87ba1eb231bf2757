"""The exceptions of trialport, one per stable error code (DESIGN.md §8).

Every error the engine reports is raised as a subclass of :class:`ExportError`, chosen by its code in ``_CLASSES``
below, the one place where codes map to exception classes. Programs match on the class or on ``.code`` and
``.reason``; messages are for people and never contain data values or secrets.
"""

from __future__ import annotations

import copy
import json
from typing import Any

__all__ = [
    "ConflictError",
    "ExportError",
    "NotFoundError",
    "RateLimitError",
    "ServerError",
    "UnauthorizedError",
    "ValidationError",
]


class ExportError(Exception):
    """An error of the trialport engine, carrying the standard error object.

    Attributes mirror the standard error JSON: ``code`` (``"EXP001"`` ... ``"EXP006"``), ``message``, ``field``
    (the request field the error is about, or ``None``), ``reason`` (stable snake_case, e.g. ``"permission_denied"``),
    ``details`` (including ``reason``), ``timestamp`` and ``request_id`` (empty when the error did not come from an
    engine operation).
    """

    def __init__(self, payload: dict[str, Any]) -> None:
        error = payload.get("error", payload)
        self._error: dict[str, Any] = dict(error)
        super().__init__(self._describe())

    def _describe(self) -> str:
        text = f"{self.code} ({self.reason}): {self.message}"
        if self.field:
            text += f" [field {self.field}]"
        return text

    @property
    def code(self) -> str:
        """The stable error code, e.g. ``"EXP002"``."""
        return str(self._error.get("code", ""))

    @property
    def message(self) -> str:
        """The human message."""
        return str(self._error.get("message", ""))

    @property
    def field(self) -> str | None:
        """The request field the error is about, e.g. ``"limit"``, or ``None``."""
        field = self._error.get("field")
        return None if field is None else str(field)

    @property
    def details(self) -> dict[str, Any]:
        """Further details, including ``reason`` (e.g. ``retry_after_ms`` for a rate limit)."""
        return copy.deepcopy(self._error.get("details") or {})

    @property
    def reason(self) -> str:
        """The stable snake_case reason, e.g. ``"out_of_range"``."""
        return str((self._error.get("details") or {}).get("reason", ""))

    @property
    def request_id(self) -> str | None:
        """The id of the operation that failed (also in the audit trail), or ``None``."""
        request_id = self._error.get("request_id")
        return str(request_id) if request_id else None

    @property
    def timestamp(self) -> str | None:
        """When the operation failed (UTC, RFC 3339), or ``None``."""
        timestamp = self._error.get("timestamp")
        return str(timestamp) if timestamp else None

    def to_dict(self) -> dict[str, Any]:
        """The standard error response: ``{"error": {"code", "message", "field", "details", "timestamp",
        "request_id"}}``."""
        return {"error": copy.deepcopy(self._error)}

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.to_dict(),))


class NotFoundError(ExportError):
    """EXP001: a job, dataset, study, format, artifact or file does not exist."""


class ValidationError(ExportError):
    """EXP002: a bad request, option or metadata, or a value the format cannot represent."""


class UnauthorizedError(ExportError):
    """EXP003: a missing, invalid or expired credential, or a permission the caller does not have."""


class ConflictError(ExportError):
    """EXP004: an illegal job state change, a reused idempotency key, an existing file, an expired artifact."""


class ServerError(ExportError):
    """EXP005: I/O, storage, integrity or audit failure (including an audit hook that raised)."""


class RateLimitError(ExportError):
    """EXP006: too many calls; ``details["retry_after_ms"]`` says when to retry."""

    @property
    def retry_after_ms(self) -> int | None:
        """Milliseconds to wait before retrying."""
        value = self.details.get("retry_after_ms")
        return int(value) if value is not None else None


_CLASSES: dict[str, type[ExportError]] = {
    "EXP001": NotFoundError,
    "EXP002": ValidationError,
    "EXP003": UnauthorizedError,
    "EXP004": ConflictError,
    "EXP005": ServerError,
    "EXP006": RateLimitError,
}


def error_from_dict(payload: dict[str, Any]) -> ExportError:
    """The exception for a standard error object (``{"error": {...}}`` or the inner object, as in ``Job.error``)."""
    error = payload.get("error", payload)
    return _CLASSES.get(str(error.get("code", "")), ExportError)(payload)


def _from_payload(text: str) -> ExportError:
    """Called by the native module with the standard error JSON of a failed call."""
    return error_from_dict(json.loads(text))
