"""Statuses, records and the request and response bodies of the Nexum HTTP API.

Times are Unix seconds (float). An execution's `attempts` counts claims by workers: a retry after a
retryable failure and a re-claim after an expired lease are each one more attempt.
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from .errors import InvalidSessionId
from .ids import validate_session_id

Name = Field(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f]+$")
NO_NUL = r"^[^\x00]*$"
"""Text a store can hold: PostgreSQL refuses the NUL character in text, so no field takes it."""
Token = Field(min_length=1, max_length=200, pattern=NO_NUL)


def _session_id(value: str) -> str:
    try:
        return validate_session_id(value)
    except InvalidSessionId as e:
        # Its own error type, so the 422 says `invalid_session_id` (shape.py) as every route does.
        raise PydanticCustomError("invalid_session_id", "{reason}", {"reason": str(e)}) from None


SessionId = Annotated[str, AfterValidator(_session_id)]
"""A session id, checked by the one rule of `ids.py`, in bodies, paths and queries alike."""


class Status(StrEnum):
    """Lifecycle of an execution. PENDING covers both "never claimed" and "waiting to retry".

    INTERRUPTED: an in-process execution (run by an agent run, not a worker) whose run is gone
    before it reported. It is no one's work until the session's next run starts the same call and
    claims it; it is not running, not waiting for a worker, and does not keep a session from being
    forgotten.
    """

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    INTERRUPTED = "INTERRUPTED"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({Status.COMPLETED, Status.FAILED, Status.CANCELLED})


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WorkflowRef(_Body):
    """One version of one workflow."""

    workflow_id: str = Name
    """The workflow's id, e.g. `pydantic-tool-call`."""
    version_hash: str = Name
    """`sha256:` plus the hex digest of the workflow's IR."""


class RegisterWorkflow(WorkflowRef):
    """Body of `POST /v1/workflows`."""

    ir: dict[str, Any]
    """The workflow's intermediate representation: `nodes`, each with an `id` and a `kind`."""

    @field_validator("ir")
    @classmethod
    def _has_nodes(cls, ir: dict[str, Any]) -> dict[str, Any]:
        nodes = ir.get("nodes")
        if not isinstance(nodes, list) or not nodes:
            raise ValueError("ir.nodes must be a non-empty list of nodes")
        for node in nodes:
            if not isinstance(node, dict) or not isinstance(node.get("id"), str) or not node["id"]:
                raise ValueError("every node in ir.nodes needs a non-empty string `id`")
        return ir


RegisterOutcome = Literal["NEW", "IDENTICAL", "CHANGED"]


class RegisterResult(BaseModel):
    """What registering did: NEW id, IDENTICAL version, or a CHANGED (new) version of a known id."""

    workflow_id: str
    version_hash: str
    outcome: RegisterOutcome


class MessageBody(_Body):
    """One message a model request was sent, stored once by its hash (`journal.py`)."""

    hash: str = Field(pattern=r"^[0-9a-f]{64}$")
    """sha256 hex of the body's canonical JSON: `json.dumps(body, sort_keys=True, separators=(",", ":"),
    ensure_ascii=False)` in UTF-8."""
    body: Any
    """The message as JSON (a Pydantic AI `ModelMessage` dumped in JSON mode)."""


class StartExecution(WorkflowRef):
    """Body of `POST /v1/executions`: idempotent on (workflow_id, session_id, key)."""

    session_id: SessionId
    """Scope of the idempotency key; a re-run with the same session reuses completed results."""
    key: str = Name
    """Idempotency key of the call within its session (a sha256 hex digest for tool calls)."""
    input: Any
    """The execution's input, any JSON value."""
    wait: float = Field(default=0.0, ge=0, le=3600)
    """Hold the response up to this many seconds until the execution is terminal."""
    run_token: str | None = Field(default=None, min_length=1, max_length=200, pattern=NO_NUL)
    """The caller's session run (`POST /v1/sessions/{id}/runs`): lease the execution to the caller
    instead of a worker. The answer then carries `claimed` when the caller is to run it; when another
    holder runs it, the request is held like `wait`."""
    messages: list[MessageBody] | None = Field(default=None, max_length=10_000)
    """Bodies of messages the server may not have yet, named by `input.sent` (the hashes the model
    request was sent, in order; with `input.sent_after: {id, count}`, only those after the `count`
    of that earlier model request's list). Stored once each, in the start's own transaction; the
    input is stored without `sent` and `sent_after` (`GET /v1/executions/{id}/sent` gives the whole
    list back, with the bodies)."""


class UnitWrite(_Body):
    """One unit of a session run in `POST /v1/sessions/{id}/runs/{token}/units`."""

    key: str = Name
    """Idempotency key of the unit within its session."""
    input: Any
    """The unit's input, any JSON value (`sent` names its messages, as for a start)."""
    messages: list[MessageBody] | None = Field(default=None, max_length=10_000)
    """Bodies of messages the server may not have yet, as for `POST /v1/executions`."""
    done: bool = False
    """The unit has run already: `output` is recorded as its result in the same transaction."""
    output: Any = None
    """The unit's result, when `done`."""


class WriteUnits(WorkflowRef):
    """Body of `POST /v1/sessions/{session_id}/runs/{run_token}/units`: what a run that holds its
    session alone has to record, in one transaction: completions of units it claimed before, then its
    new units in the order they began (each started and claimed by the run, and completed if done)."""

    finished: list[CarriedReport] = Field(default_factory=list, max_length=1_000)
    units: list[UnitWrite] = Field(default_factory=list, max_length=1_000)


class UnitsWritten(BaseModel):
    """The answer to `WriteUnits`: the executions, in the order of the request."""

    finished: list[Execution]
    units: list[Execution]
    """Each new unit: COMPLETED when it was `done`; else RUNNING with `claimed` set. One that another
    holder runs, or had recorded, comes back as it is, without `claimed`."""


class ServedHits(_Body):
    """Optional body of `DELETE /v1/sessions/{session_id}/runs/{run_token}`: what the run served from memory."""

    execution_ids: list[str] = Field(max_length=100_000)
    """Executions the run served from the journal it read, with no start: counted as cached hits."""

    @field_validator("execution_ids")
    @classmethod
    def _ids(cls, value: list[str]) -> list[str]:
        if any(not 1 <= len(i) <= 200 or "\x00" in i for i in value):
            raise ValueError("each execution id is 1 to 200 characters, with no NUL")
        return value


class TakeSession(_Body):
    """Body of `POST /v1/sessions/{session_id}/runs`."""

    holder: str = Name
    """Who runs the session, shown to the next run that takes it over (e.g. `demo.py pid 4242 on host`)."""
    journal: bool = False
    """Also answer the session's journal (`SessionRunInfo.journal`), read after the take: a run that
    took the session from no live run then knows every unit the session holds, in one request."""


class SessionRunInfo(BaseModel):
    """A run that took its session."""

    session_id: str
    run_token: str
    """Fences the run: in-process starts and reports carry it; a newer run's token replaces it."""
    lease_seconds: float
    """Renew within this long (`POST .../heartbeat`); leases of the run's executions are as long."""
    lease_expires_at: float
    previous_holder: str | None = None
    """The live run this one took the session from, if any."""
    forked_from: str | None = None
    """The session this one was forked from (`POST /v1/sessions/{id}/fork`), if any."""
    fork_until: int | None = None
    """Set when the fork copied only the first units: the session's first `fork_until` journal units
    are to be served in order, whatever their keys; null when a fork is served by key as usual."""
    journal: Journal | None = None
    """The session's journal as it stood right after the take, when the take asked for it."""


class SessionLease(BaseModel):
    session_id: str
    lease_expires_at: float


class Execution(BaseModel):
    """One execution and its current state."""

    id: str
    workflow_id: str
    version_hash: str
    session_id: str
    key: str
    input: Any
    status: Status
    attempts: int
    """Claims by workers so far."""
    max_attempts: int
    result: Any = None
    """The output of the completed execution; null in lists (`GET /v1/executions`), which say only
    `result_chars`: read one execution for its result."""
    result_chars: int | None = None
    """In lists: the length of the stored result as JSON text (null without one)."""
    error: str | None = None
    """The last error reported, kept while a retry is pending."""
    worker_id: str | None = None
    created_at: float
    updated_at: float
    started_at: float | None = None
    """When the first attempt began."""
    completed_at: float | None = None
    attempt_started_at: float | None = None
    """When the last attempt began: it ran from here to `completed_at`. What came before it (earlier
    attempts, and the waits between them: a crash, a retry's backoff) is `attempt_started_at - started_at`."""
    next_attempt_at: float | None = None
    """When a PENDING execution becomes claimable."""
    lease_expires_at: float | None = None
    cached: bool = False
    """True when a start returned an execution that had already completed."""
    claimed: Task | None = None
    """Set when a start with `run_token` leased the execution to the caller: run it, then report."""


class ExecutionList(BaseModel):
    executions: list[Execution]


class PollTasks(_Body):
    """Body of `POST /v1/tasks/poll`."""

    worker_id: str = Name
    """Free-form name of the worker, shown in `nexum ps`; not `run:...`, which names an agent run."""
    workflows: list[WorkflowRef] = Field(min_length=1, max_length=100)
    """Workflow versions this worker can run."""
    wait: float = Field(default=0.0, ge=0, le=3600)
    """Hold the request up to this many seconds until a task is ready."""
    max_tasks: int = Field(default=1, ge=1, le=100)
    """Claim up to this many tasks at once (a worker with free slots asks for several)."""

    @field_validator("worker_id")
    @classmethod
    def _not_a_run(cls, worker_id: str) -> str:
        # `run:<token>` marks an agent run's own executions, which a gone run leaves INTERRUPTED.
        if worker_id.startswith("run:"):
            raise ValueError("worker_id must not start with 'run:' (that names an agent run)")
        return worker_id


class Task(BaseModel):
    """A claimed task: the EFFECT node of one execution, leased to one worker."""

    task_id: str
    execution_id: str
    workflow_id: str
    version_hash: str
    node_id: str
    input: Any
    attempt: int
    """1 for the first claim, 2 for the first retry or re-claim, and so on."""
    lease_token: str
    """Changes on every claim; only its holder may heartbeat, complete or fail the task."""
    lease_expires_at: float
    """When the lease runs out, on the server's clock (for people; workers time `lease_seconds`)."""
    lease_seconds: float
    """Length of the lease and of each renewal: a worker heartbeats well within it, on its own clock."""


class TaskBatch(BaseModel):
    tasks: list[Task]


class LeaseBody(_Body):
    """Body of heartbeat and release."""

    lease_token: str = Token


class CompleteTask(LeaseBody):
    """Body of `POST /v1/tasks/{id}/complete`."""

    output: Any
    """The node's output, any JSON value."""


class CarriedReport(CompleteTask):
    """The completion of a unit the run claimed in an earlier request."""

    task_id: str = Name


class FailTask(LeaseBody):
    """Body of `POST /v1/tasks/{id}/fail`."""

    error: str = Field(min_length=1, max_length=20_000)
    """What went wrong, as the caller should read it. A NUL character in it is stored as the six
    characters `\\u0000` (no store can hold it): an error text is for reading, and it often quotes
    what a model sent."""
    retryable: bool = True
    """False for errors that will not change on a retry: the execution fails at once."""

    @field_validator("error")
    @classmethod
    def _escape_nul(cls, error: str) -> str:
        return error.replace("\x00", "\\u0000")


class Lease(BaseModel):
    task_id: str
    lease_token: str
    lease_expires_at: float


class FieldProblem(BaseModel):
    """One problem a validation error found: where, and what is wrong (never the value sent)."""

    loc: list[str | int]
    """Where: `body`, `query` or `path`, then the field names (and list indexes) down to it."""
    msg: str
    type: str


class ErrorDetail(BaseModel):
    code: str
    """Stable, for programs to branch on: `invalid_request`, `not_found`, `lease_lost`, ..."""
    message: str
    """For people: one or more sentences saying what was wrong and, where it helps, what to do."""
    details: list[FieldProblem] | None = None
    """With `invalid_request` (422): each problem found in the request."""


class ErrorBody(BaseModel):
    """Every error the API returns, 4xx or 5xx, on every route."""

    error: ErrorDetail


class Health(BaseModel):
    status: Literal["ok"]
    version: str
    schema_version: int


# --- sessions: what the web page and `nexum sessions` show ------------------------------------------

SUMMARY_CHARS = 160
"""Longest input summary in a list of calls; the whole input is in the execution itself."""


class SessionSummary(BaseModel):
    """One session's executions, counted. A session is every execution with its `session_id`."""

    session_id: str
    calls: int
    """Executions stored for the session (a call started again after FAILED or CANCELLED counts twice)."""
    completed: int
    """Executions that ran to a result: executed once, then served from the store."""
    cached_hits: int
    """Starts answered with an already COMPLETED result instead of running the call again."""
    failed: int
    running: int
    pending: int
    """Waiting for a worker, or for a retry."""
    interrupted: int = 0
    """In-process calls of an agent run that is gone: the session's next run runs them again."""
    cancelled: int
    seconds_saved: float
    """Time saved: for each cached hit, how long the last attempt of the call ran (earlier attempts
    and the waits between them are not counted: they would not have run again)."""
    tool_seconds_saved: float = 0.0
    """The part of `seconds_saved` that tool calls (and any other executions) saved."""
    model_seconds_saved: float = 0.0
    """The part of `seconds_saved` that an agent's replayed model requests saved."""
    first_activity: float
    last_activity: float
    """When the session's newest call started, or its latest cached hit, whichever is later."""
    forked_from: str | None = None
    """The session this one was forked from, if any."""
    fork_until: int | None = None
    """How many units the fork copied when it copied only the first ones."""


class SessionPage(BaseModel):
    sessions: list[SessionSummary]
    """Newest activity first."""
    next_cursor: str | None = None
    """Pass as `cursor` for the next page; null on the last one."""
    server_time: float
    """The server's clock when it answered: "how long ago" is measured against it, not the reader's."""


class CallSummary(BaseModel):
    """One execution in a session's list of calls: what ran, how it went, without the result."""

    id: str
    workflow_id: str
    key: str
    tool: str | None = None
    """The tool's name when the execution is a tool call (its input names a tool and its arguments)."""
    args: Any = None
    """The tool call's arguments."""
    summary: str
    """Short text of the input: the arguments of a tool call, or the start of any other input."""
    status: Status
    attempts: int
    max_attempts: int
    error: str | None = None
    """The last error, cut to its first characters."""
    worker_id: str | None = None
    hits: int
    """Times a start was answered with this execution's stored result."""
    created_at: float
    updated_at: float
    started_at: float | None = None
    completed_at: float | None = None
    attempt_started_at: float | None = None
    """When the last attempt began (see `Execution.attempt_started_at`)."""
    next_attempt_at: float | None = None
    result_chars: int | None = None
    """Length of the stored result as JSON text; null without a result."""


class CallPage(BaseModel):
    calls: list[CallSummary]
    """Newest first."""
    next_cursor: str | None = None
    server_time: float
    """The server's clock when it answered."""


class ForgetResult(BaseModel):
    session_id: str
    deleted: int
    """Executions deleted."""


# --- the journal: a session's units in order, forks, exports ----------------------------------------


class JournalUnit(BaseModel):
    """One execution of a session, in recorded order."""

    step: int
    """1-based position in the session's recorded order (every execution, failed ones included)."""
    id: str
    workflow_id: str
    version_hash: str
    key: str
    status: Status
    input: Any
    """As stored: a model request's input without `sent`."""
    result: Any = None
    error: str | None = None
    attempts: int = 0
    created_at: float = 0.0
    started_at: float | None = None
    attempt_started_at: float | None = None
    completed_at: float | None = None

    def as_execution(self, session_id: str) -> Execution:
        """The unit as `start` would have answered it (`cached`), for a run that serves it from memory."""
        return Execution(
            id=self.id,
            workflow_id=self.workflow_id,
            version_hash=self.version_hash,
            session_id=session_id,
            key=self.key,
            input=self.input,
            status=self.status,
            attempts=self.attempts,
            max_attempts=self.attempts,
            result=self.result,
            error=self.error,
            created_at=self.created_at,
            updated_at=self.completed_at or self.created_at,
            started_at=self.started_at,
            attempt_started_at=self.attempt_started_at,
            completed_at=self.completed_at,
            cached=True,
        )


class Journal(BaseModel):
    """`GET /v1/sessions/{id}/journal`: everything a resuming run needs, in one answer."""

    session_id: str
    forked_from: str | None = None
    fork_until: int | None = None
    units: list[JournalUnit]


class SentMessage(BaseModel):
    hash: str
    body: Any = None
    """Null only when the message is no longer stored."""
    new: bool
    """Not sent to the session's previous model request."""


class SentView(BaseModel):
    """`GET /v1/executions/{id}/sent`: what a model request was sent, in order."""

    execution_id: str
    previous_id: str | None = None
    """The session's previous model request, against which `new` is judged."""
    complete: bool = True
    """False when retention deleted an older request this list was stored against."""
    messages: list[SentMessage]


class ForkSession(_Body):
    """Body of `POST /v1/sessions/{id}/fork`."""

    new_session_id: str = Name
    """The session to create; refused (409) when anything is stored under it."""
    until: int | None = Field(default=None, ge=0)
    """Copy only the completed units among the first `until` steps of the journal."""


class ForkResult(BaseModel):
    session_id: str
    forked_from: str | None = None
    fork_until: int | None = None
    copied: int
    """Units copied (or imported)."""


EXPORT_FORMAT = "nexum-session"
EXPORT_VERSION = 1


class ExportedUnit(_Body):
    workflow_id: str = Name
    version_hash: str = Name
    key: str = Name
    input: Any
    result: Any = None
    sent: list[str] | None = None
    """A model request's message hashes, in order (bodies in the file's `messages`)."""


class ExportedWorkflow(_Body):
    workflow_id: str = Name
    version_hash: str = Name
    ir: dict[str, Any]


class SessionExport(_Body):
    """The file `nexum export` writes and `nexum import` reads (format `nexum-session`, version 1)."""

    format: Literal["nexum-session"]
    version: Literal[1]
    session_id: str = Name
    exported_at: float
    forked_from: str | None = None
    fork_until: int | None = None
    workflows: list[ExportedWorkflow]
    units: list[ExportedUnit]
    """The session's completed units, in recorded order."""
    messages: dict[str, Any]
    """Every message the units name, by hash."""


# --- waits: a run waiting for an answer from outside (an approval, a result) ---------------------


class WaitStatus(StrEnum):
    """Lifecycle of a wait. Only WAITING changes, once, to one of the others."""

    WAITING = "WAITING"
    RESOLVED = "RESOLVED"
    """Answered with a JSON payload."""
    FAILED = "FAILED"
    """Resolved with a failure reason instead of a payload."""
    TIMED_OUT = "TIMED_OUT"
    """Its timeout ran out, on the server's clock, before anyone resolved it."""


class PendingCall(BaseModel):
    """One tool call a wait asks about (for Pydantic AI's `RequestInput`, one deferred tool call)."""

    tool_call_id: str
    tool_name: str
    args: Any = None
    """The call's arguments as the model gave them (shown as text, never as markup)."""
    kind: Literal["approval", "external", "question"] = "approval"
    """What the call waits for: an approval, or a result produced outside the run."""


class WaitRequest(BaseModel):
    """What a wait asks: the pending tool calls, if any, and anything else the waiting run adds."""

    calls: list[PendingCall] = Field(default_factory=list, max_length=1000)
    detail: Any = None
    """Free-form JSON from the waiting run (for `RequestInput`: the `DeferredToolRequests` as JSON)."""


class CreateWait(_Body):
    """Body of `POST /v1/sessions/{session_id}/waits`: idempotent on (session_id, key)."""

    key: str = Name
    """The wait's place in its session's run, the same on every replay."""
    name: str = Name
    """The wait's name in the run (`RequestInput.name`, e.g. `deferred_tool_calls`)."""
    timeout_seconds: float | None = Field(default=None, gt=0, le=10 * 365 * 24 * 3600)
    """Counted on the server's clock from when the wait was created; then it ends TIMED_OUT."""
    request: WaitRequest = Field(default_factory=WaitRequest)


class Wait(BaseModel):
    """One wait and its current state; `token` is what resolves it."""

    token: str
    session_id: str
    key: str
    name: str
    status: WaitStatus
    request: WaitRequest
    payload: Any = None
    """The answer, once RESOLVED."""
    error: str | None = None
    """Why it ended without a payload (FAILED or TIMED_OUT)."""
    resolved_by: str | None = None
    """Who resolved it: the name they gave, `token holder`, or `timeout`."""
    created_at: float
    expires_at: float | None = None
    """When a WAITING wait times out, on the server's clock; null without a timeout."""
    resolved_at: float | None = None
    created: bool = False
    """True when this request created the wait (a replay gets the same wait back, False)."""


class WaitList(BaseModel):
    waits: list[Wait]
    server_time: float
    """The server's clock when it answered ("waiting since" is measured against it)."""


class ResolveWait(_Body):
    """Body of `POST /v1/events/{token}`: exactly one of `payload`, `error` or `decision`."""

    payload: Any = None
    """The answer, any JSON value (for `RequestInput`: the JSON form of `DeferredToolResults`)."""
    error: str | None = Field(default=None, min_length=1, max_length=20_000)
    """End the wait with a failure instead: the waiting run raises `ExternalEventError` with it."""
    decision: Literal["approve", "deny"] | None = None
    """For a wait on approvals: approve (the calls in `calls`, default all; the rest are denied) or
    deny them all with `reason`; the server writes the payload from the pending calls."""
    calls: list[str] | None = Field(default=None, max_length=1000)
    reason: str | None = Field(default=None, max_length=20_000)
    """What the model is told about a denied call."""
    by: str | None = Field(default=None, min_length=1, max_length=200, pattern=r"^[^\x00-\x1f]+$")
    """Who resolves it, recorded and shown; `token holder` when not given."""

    @model_validator(mode="after")
    def _one_answer(self) -> ResolveWait:
        given = [name for name in ("payload", "error", "decision") if name in self.model_fields_set]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of `payload` (the answer), `error` (a failure reason) or "
                f"`decision` (approve or deny), not {given or 'none'}"
            )
        if self.decision == "deny" and not self.reason:
            raise ValueError("a denial needs a `reason`: the model is told it")
        if (self.calls is not None or self.reason is not None) and self.decision is None:
            raise ValueError("`calls` and `reason` go with a `decision`")
        return self


def describe_input(input_head: str, complete: bool) -> tuple[str | None, Any, str]:
    """(tool, args, summary) of an execution's input, given its JSON text or the start of it.

    A tool call's input names the tool and its arguments (`tool`/`args`, or `tool_name`/`tool_args`);
    an agent's model request is named as one; any other input is summarised: an object as its
    `name: value` pairs, anything else as its JSON text.
    """
    if not complete:
        return None, None, _cut(input_head + "…")
    value = json.loads(input_head)
    if isinstance(value, dict) and value.get("unit") == "model_request":
        # An agent's model request (durability.py): shown as one, naming the model and the history length.
        count = value.get("messages")
        return "model request", None, _cut(f"{value.get('model')}, {count} message{'' if count == 1 else 's'} in")
    if isinstance(value, dict):
        for tool_key, args_key in (("tool", "args"), ("tool_name", "tool_args")):
            tool = value.get(tool_key)
            if isinstance(tool, str):
                args = value.get(args_key)
                return tool, args, _cut(_compact(args))
        return None, None, _cut(", ".join(f"{k}: {v if isinstance(v, str) else _compact(v)}" for k, v in value.items()))
    return None, None, _cut(_compact(value))


def ran_seconds(execution: Execution) -> float:
    """How long an execution ran: its last attempt, from that claim to its completion (a crash and
    the wait for a resume are not running time)."""
    e = execution
    return max((e.completed_at or 0.0) - (e.attempt_started_at or e.started_at or e.created_at), 0.0)


def before_last_attempt(execution: Execution) -> float:
    """From the first attempt's start to the last one's: earlier attempts and the waits between them."""
    if execution.attempt_started_at is None or execution.started_at is None:
        return 0.0
    return max(execution.attempt_started_at - execution.started_at, 0.0)


def _compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))


def _cut(text: str) -> str:
    return text if len(text) <= SUMMARY_CHARS else text[: SUMMARY_CHARS - 1] + "…"


Execution.model_rebuild()
