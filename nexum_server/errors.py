"""The Nexum exception tree, shared by the server and its clients.

    NexumError
    ├── ConfigError            a setting has a bad value (names the key)
    ├── SchemaError            the database file was written by an incompatible server
    ├── NotFound               no such execution, task or workflow        -> 404
    │   └── WorkflowNotFound   start names a workflow version never registered
    ├── InvalidValue           an input or output JSON cannot be stored   -> 422
    │   └── InvalidSessionId   a session id breaks the rule of `ids.py`   -> 422
    ├── LeaseLost              the lease token is stale or the task ended -> 409
    │   └── SessionTakenOver   a newer run of the session took it over    -> 409
    ├── SessionBusy            forget refused: the session has live calls -> 409
    ├── WaitOver               a wait was resolved already, or timed out  -> 409
    ├── StoreUnavailable       the database is busy or failing            -> 503
    └── ClientError            raised by the HTTP client only
        ├── ServerUnavailable  the server cannot be reached
        ├── RequestRejected    the server answered 4xx/5xx (keeps status and body)
        └── WaitTimeout        an execution did not finish within the caller's timeout

The API layer maps these to HTTP status codes in one place (`api.py`).
"""

from __future__ import annotations


class NexumError(Exception):
    """Base of every error this package raises on purpose."""

    code = "nexum_error"


class ConfigError(NexumError, ValueError):
    code = "config_error"


class SchemaError(NexumError):
    code = "schema_error"


class NotFound(NexumError):
    code = "not_found"


class WorkflowNotFound(NotFound):
    code = "workflow_not_found"


class InvalidValue(NexumError, ValueError):
    """A JSON value the store cannot keep faithfully (NaN or Infinity)."""

    code = "invalid_value"


class InvalidSessionId(InvalidValue):
    code = "invalid_session_id"


class StoreUnavailable(NexumError):
    """The database is busy or failing; the same request may succeed later."""

    code = "store_unavailable"


class LeaseLost(NexumError):
    code = "lease_lost"


class SessionTakenOver(LeaseLost):
    """Another agent run took the session; this run's in-process work is fenced off."""

    code = "session_taken_over"


class SessionBusy(NexumError):
    """A session cannot be forgotten while executions in it are PENDING or RUNNING."""

    code = "session_busy"


class WaitOver(NexumError):
    """A wait can be resolved once: it was resolved already, or its timeout ran out."""

    code = "wait_over"


class ClientError(NexumError):
    code = "client_error"


class ServerUnavailable(ClientError):
    code = "server_unavailable"


class RequestRejected(ClientError):
    """The server answered with an error status; `status` and `body` say which and why."""

    def __init__(self, status: int, body: object, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.body = body

    @property
    def error_code(self) -> str | None:
        if isinstance(self.body, dict) and isinstance(self.body.get("error"), dict):
            return self.body["error"].get("code")
        return None


class WaitTimeout(ClientError, TimeoutError):
    code = "wait_timeout"

    def __init__(self, message: str, execution: object = None) -> None:
        super().__init__(message)
        self.execution = execution
        """The execution as last seen, when the wait was for one."""
