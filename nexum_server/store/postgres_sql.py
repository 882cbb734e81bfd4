"""The PostgreSQL store's SQL, every statement in one place; `postgres.py` runs them.

The tables live in their own schema, `nexum`, so a database shared with other applications keeps
theirs untouched. Statements mirror `sqlite_sql.py`; the differences are the dialect's: claims and
lease expiry pick their rows with `FOR UPDATE SKIP LOCKED` (several servers claim at once without
waiting on each other or taking a row twice), and every change another server may be waiting for
sends a notification (`pg_notify`) in the same statement, delivered when it commits.

Notification payloads on `CHANNEL`: `<origin> ready <workflow id>\t<version hash>` (a task became claimable),
`<origin> done <execution id>` (an execution became terminal) and `<origin> deleted <execution id>`
(a session forgotten, or retention); `<origin> done wait:<token>` (a wait was resolved or timed
out). `origin` names the sending server,
which ignores its own: it has already woken its own waiters.
"""

from __future__ import annotations

CHANNEL = "nexum"
LISTEN = f"LISTEN {CHANNEL}"
LIVE = "('PENDING', 'RUNNING', 'INTERRUPTED', 'COMPLETED')"
TERMINAL = "('COMPLETED', 'FAILED', 'CANCELLED')"
# Two servers starting on a new database create the schema one after the other.
SCHEMA_LOCK = "SELECT pg_advisory_xact_lock(hashtext('nexum schema'))"

# Before SCHEMA on a database of an older schema: INTERRUPTED joined the live statuses (schema 5),
# so SCHEMA creates the index again with them.
MIGRATE = """
DROP INDEX IF EXISTS nexum.executions_live_key;
"""

SCHEMA = f"""
CREATE SCHEMA IF NOT EXISTS nexum;
CREATE TABLE IF NOT EXISTS nexum.schema_version (
    version integer NOT NULL
);
CREATE TABLE IF NOT EXISTS nexum.workflows (
    workflow_id  text NOT NULL,
    version_hash text NOT NULL,
    ir           text NOT NULL,
    created_at   double precision NOT NULL,
    PRIMARY KEY (workflow_id, version_hash)
);
CREATE TABLE IF NOT EXISTS nexum.executions (
    seq              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id               text NOT NULL UNIQUE,
    workflow_id      text NOT NULL,
    version_hash     text NOT NULL,
    node_id          text NOT NULL,
    session_id       text NOT NULL,
    key              text NOT NULL,
    input            text NOT NULL,
    status           text NOT NULL,
    attempts         integer NOT NULL DEFAULT 0,
    max_attempts     integer NOT NULL,
    result           text,
    error            text,
    worker_id        text,
    lease_token      text,
    lease_expires_at double precision,
    scheduled_at     double precision NOT NULL,
    created_at       double precision NOT NULL,
    updated_at       double precision NOT NULL,
    started_at       double precision,
    completed_at     double precision,
    FOREIGN KEY (workflow_id, version_hash) REFERENCES nexum.workflows (workflow_id, version_hash)
);
-- At most one live execution per call: the idempotency guarantee lives here, not in code.
CREATE UNIQUE INDEX IF NOT EXISTS executions_live_key ON nexum.executions (workflow_id, session_id, key)
    WHERE status IN {LIVE};
CREATE INDEX IF NOT EXISTS executions_pending ON nexum.executions (scheduled_at, seq) WHERE status = 'PENDING';
CREATE INDEX IF NOT EXISTS executions_leased ON nexum.executions (lease_expires_at) WHERE status = 'RUNNING';
CREATE INDEX IF NOT EXISTS executions_session ON nexum.executions (session_id, seq);
-- The servers using this database, each checking in on the database's clock: a server that starts
-- while another is alive leaves the lease clock to it.
CREATE TABLE IF NOT EXISTS nexum.servers (
    origin  text PRIMARY KEY,
    seen_at timestamptz NOT NULL
);
-- Cached hits, counted in memory and added in batches (schema 3).
ALTER TABLE nexum.executions ADD COLUMN IF NOT EXISTS hits integer NOT NULL DEFAULT 0;
ALTER TABLE nexum.executions ADD COLUMN IF NOT EXISTS last_hit_at double precision;
-- When the last attempt began (schema 5): a call's running time is its last attempt's alone.
ALTER TABLE nexum.executions ADD COLUMN IF NOT EXISTS attempt_started_at double precision;
-- Retention deletes the oldest terminal executions first, in small batches, without a table scan.
CREATE INDEX IF NOT EXISTS executions_done ON nexum.executions (completed_at) WHERE completed_at IS NOT NULL;
-- Each session's latest cached hit (schema 4): only the batched writes of hit counts change it.
CREATE INDEX IF NOT EXISTS executions_hits ON nexum.executions (session_id, last_hit_at)
    WHERE last_hit_at IS NOT NULL;
-- The one live agent run of each session: its token fences the run's in-process executions.
CREATE TABLE IF NOT EXISTS nexum.session_runs (
    session_id       text PRIMARY KEY,
    run_token        text NOT NULL,
    holder           text NOT NULL,
    started_at       double precision NOT NULL,
    lease_expires_at double precision NOT NULL
);-- Schema 5: messages stored once by content hash, the sessions that refer to each (what forget and
-- retention collect by), a request's list of messages as additions to an earlier one's, fork origins.
ALTER TABLE nexum.executions ADD COLUMN IF NOT EXISTS sent_base text;
ALTER TABLE nexum.executions ADD COLUMN IF NOT EXISTS sent_added text;
ALTER TABLE nexum.executions ADD COLUMN IF NOT EXISTS sent_count integer;
ALTER TABLE nexum.executions ADD COLUMN IF NOT EXISTS sent_digest text;
CREATE INDEX IF NOT EXISTS executions_sent_base ON nexum.executions (sent_base) WHERE sent_base IS NOT NULL;
CREATE TABLE IF NOT EXISTS nexum.messages (
    hash text PRIMARY KEY,
    body text NOT NULL
);
CREATE TABLE IF NOT EXISTS nexum.session_messages (
    session_id text NOT NULL,
    hash       text NOT NULL REFERENCES nexum.messages (hash),
    PRIMARY KEY (session_id, hash)
);
CREATE INDEX IF NOT EXISTS session_messages_hash ON nexum.session_messages (hash);
CREATE TABLE IF NOT EXISTS nexum.session_forks (
    session_id  text PRIMARY KEY,
    forked_from text NOT NULL,
    fork_until  integer,
    created_at  double precision NOT NULL
);
-- A run waiting for an answer from outside (schema 5): one per (session, key), see sqlite_sql.py.
CREATE TABLE IF NOT EXISTS nexum.waits (
    seq         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    token       text NOT NULL UNIQUE,
    session_id  text NOT NULL,
    key         text NOT NULL,
    name        text NOT NULL,
    request     text NOT NULL,
    status      text NOT NULL,
    payload     text,
    error       text,
    resolved_by text,
    created_at  double precision NOT NULL,
    expires_at  double precision,
    resolved_at double precision,
    UNIQUE (session_id, key)
);
CREATE INDEX IF NOT EXISTS waits_waiting ON nexum.waits (expires_at) WHERE status = 'WAITING';
CREATE INDEX IF NOT EXISTS waits_resolved ON nexum.waits (resolved_at) WHERE resolved_at IS NOT NULL;
"""

# Read inside the schema lock: whether the schema exists, what it holds, and its version.
SCHEMA_STATE = """
SELECT (SELECT count(*) FROM pg_tables WHERE schemaname = 'nexum') AS tables,
       (SELECT count(*) FROM pg_tables WHERE schemaname = 'nexum' AND tablename = 'schema_version') AS versioned
"""
SELECT_SCHEMA_VERSION = "SELECT coalesce(max(version), 0) FROM nexum.schema_version"
CLEAR_SCHEMA_VERSION = "DELETE FROM nexum.schema_version"
SET_SCHEMA_VERSION = "INSERT INTO nexum.schema_version VALUES (%s)"

COLUMNS = (
    "id, workflow_id, version_hash, node_id, session_id, key, input, status, attempts, max_attempts, result, "
    "error, worker_id, lease_token, lease_expires_at, scheduled_at, created_at, updated_at, "
    "started_at, completed_at, attempt_started_at"
)
NEW_TOKEN = "replace(gen_random_uuid()::text, '-', '')"
# The workflows a worker runs, as two parallel arrays.
WORKFLOWS_IN = "(workflow_id, version_hash) IN (SELECT * FROM unnest(%(workflow_ids)s::text[], %(hashes)s::text[]))"
# The workflow version rides along, so only a poll that can claim the task is woken; a tab never
# occurs in a workflow id or version (`models.Name`).
NOTIFY_READY = f"pg_notify('{CHANNEL}', %(origin)s || ' ready ' || workflow_id || chr(9) || version_hash)"
NOTIFY_DONE = f"pg_notify('{CHANNEL}', %(origin)s || ' done ' || id)"
# Per returned row: a terminal one wakes its waiters, a requeued one wakes pollers.
NOTIFY_OUTCOME = f"CASE WHEN status IN {TERMINAL} THEN {NOTIFY_DONE} WHEN status = 'PENDING' THEN {NOTIFY_READY} END"

SELECT_WORKFLOW = "SELECT 1 FROM nexum.workflows WHERE workflow_id = %s AND version_hash = %s"
SELECT_WORKFLOW_ANY = "SELECT 1 FROM nexum.workflows WHERE workflow_id = %s LIMIT 1"
INSERT_WORKFLOW = """
INSERT INTO nexum.workflows (workflow_id, version_hash, ir, created_at) VALUES (%s, %s, %s, %s)
ON CONFLICT DO NOTHING
RETURNING 1
"""

# Selecting from `workflows` makes an unregistered version insert nothing, and names the node.
INSERT_EXECUTION = f"""
WITH inserted AS (
    INSERT INTO nexum.executions (id, workflow_id, version_hash, node_id, session_id, key, input, status,
                                  max_attempts, scheduled_at, created_at, updated_at,
                                  sent_base, sent_added, sent_count, sent_digest)
    SELECT %(id)s, workflow_id, version_hash, ir::json -> 'nodes' -> 0 ->> 'id', %(session_id)s, %(key)s,
           %(input)s, 'PENDING', %(max_attempts)s, %(now)s, %(now)s, %(now)s,
           %(sent_base)s, %(sent_added)s, %(sent_count)s, %(sent_digest)s
    FROM nexum.workflows WHERE workflow_id = %(workflow_id)s AND version_hash = %(version_hash)s
    ON CONFLICT (workflow_id, session_id, key) WHERE status IN {LIVE} DO NOTHING
    RETURNING {COLUMNS})
SELECT *, {NOTIFY_READY} AS notified FROM inserted
"""
SELECT_LIVE = f"""
SELECT {COLUMNS} FROM nexum.executions
WHERE workflow_id = %s AND session_id = %s AND key = %s AND status IN {LIVE}
"""
SELECT_EXECUTION = f"SELECT {COLUMNS} FROM nexum.executions WHERE id = %s"
# Lists never carry results (a page of 1,000 large results was a 190 MB answer held whole in memory):
# their length only; `GET /v1/executions/{id}` has the result.
LIST_COLUMNS = COLUMNS.replace(" result,", " NULL AS result, length(result) AS result_chars,")
LIST_EXECUTIONS = f"""
SELECT {LIST_COLUMNS} FROM nexum.executions
WHERE (%(session_id)s::text IS NULL OR session_id = %(session_id)s)
  AND (%(status)s::text IS NULL OR status = %(status)s)
  AND (%(key)s::text IS NULL OR key = %(key)s)
  AND (%(id_prefix)s::text IS NULL OR left(id, length(%(id_prefix)s)) = %(id_prefix)s)
ORDER BY seq DESC LIMIT %(limit)s
"""
TERMINAL_AMONG = f"SELECT id FROM nexum.executions WHERE id = ANY(%s) AND status IN {TERMINAL}"
# Re-checks: what a lost notification would have said, in one statement for all held requests.
PRESENT_AMONG = "SELECT id FROM nexum.executions WHERE id = ANY(%s)"
READY_BY_WORKFLOW = f"""
SELECT workflow_id, version_hash, count(*) FROM nexum.executions
WHERE status = 'PENDING' AND scheduled_at <= %(now)s AND {WORKFLOWS_IN}
GROUP BY workflow_id, version_hash
"""
CANCEL = f"""
WITH cancelled AS (
    UPDATE nexum.executions
    SET status = 'CANCELLED', lease_token = NULL, lease_expires_at = NULL, completed_at = %(now)s,
        updated_at = %(now)s
    WHERE id = %(id)s AND status IN ('PENDING', 'RUNNING', 'INTERRUPTED')
    RETURNING {COLUMNS})
SELECT *, {NOTIFY_DONE} AS notified FROM cancelled
"""

# A held task whose holder is gone (its lease ran out, its agent run ended) goes back to the queue,
# or is FAILED when that was its last attempt. An agent run's own (in-process) execution is no
# worker's work: it is INTERRUPTED until the session's next run claims it.
REQUEUE_OR_FAIL = """status = CASE WHEN attempts >= max_attempts THEN 'FAILED'
                      WHEN starts_with(worker_id, 'run:') THEN 'INTERRUPTED' ELSE 'PENDING' END,
        completed_at = CASE WHEN attempts >= max_attempts THEN %(now)s END,
        scheduled_at = %(now)s, lease_token = NULL, lease_expires_at = NULL, updated_at = %(now)s"""
# Runs before every claim, in the same transaction, and on its own on a timer. Each server may
# run it at the same moment: rows another server is expiring are skipped (it counts them), and a
# row that is no longer RUNNING with an expired lease when its lock is taken is re-checked and left.
EXPIRE_LEASES = f"""
WITH due AS (
    SELECT seq FROM nexum.executions
    WHERE status = 'RUNNING' AND lease_expires_at <= %(now)s
    FOR UPDATE SKIP LOCKED
), expired AS (
    UPDATE nexum.executions e
    SET {REQUEUE_OR_FAIL},
        error = 'lease expired on attempt ' || e.attempts || ' of ' || e.max_attempts || ' (worker '
                || COALESCE(e.worker_id, '?') || ' stopped or hung without reporting)'
    FROM due WHERE e.seq = due.seq
    RETURNING e.*)
SELECT {COLUMNS}, {NOTIFY_OUTCOME} AS notified FROM expired
"""
# One statement claims: rows locked by another server's claim are skipped, not waited for, and a
# row is locked before it is changed, so two workers can never hold the same task. Every claimed
# row gets its own new random lease token.
CLAIM = f"""
WITH candidates AS (
    SELECT seq FROM nexum.executions
    WHERE status = 'PENDING' AND scheduled_at <= %(now)s AND {WORKFLOWS_IN}
    ORDER BY scheduled_at, seq
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), claimed AS (
    UPDATE nexum.executions e
    SET status = 'RUNNING',
        attempts = e.attempts + 1,
        lease_token = {NEW_TOKEN},
        lease_expires_at = %(now)s + %(lease_seconds)s,
        worker_id = %(worker_id)s,
        started_at = COALESCE(e.started_at, %(now)s),
        attempt_started_at = %(now)s,
        updated_at = %(now)s
    FROM candidates WHERE e.seq = candidates.seq
    RETURNING e.*)
SELECT {COLUMNS} FROM claimed ORDER BY scheduled_at, seq
"""
# Most polls find nothing (a worker re-polls as soon as it has taken work): one read answers them,
# with when to look again, without a transaction. It also says whether any lease has run out.
CLAIMABLE = f"""
SELECT EXISTS (SELECT 1 FROM nexum.executions
               WHERE status = 'PENDING' AND scheduled_at <= %(now)s AND {WORKFLOWS_IN}),
       EXISTS (SELECT 1 FROM nexum.executions WHERE status = 'RUNNING' AND lease_expires_at <= %(now)s),
       least(
           (SELECT min(scheduled_at) FROM nexum.executions WHERE status = 'PENDING' AND scheduled_at > %(now)s),
           (SELECT min(lease_expires_at) FROM nexum.executions WHERE status = 'RUNNING'))
"""
SERVERS_LOCK = "SELECT pg_advisory_xact_lock(hashtext('nexum servers'))"
OTHER_SERVERS_ALIVE = """
SELECT count(*) FROM nexum.servers
WHERE origin <> %(origin)s AND seen_at > clock_timestamp() - make_interval(secs => %(alive_seconds)s)
"""
SERVER_SEEN = """
INSERT INTO nexum.servers (origin, seen_at) VALUES (%(origin)s, clock_timestamp())
ON CONFLICT (origin) DO UPDATE SET seen_at = excluded.seen_at
"""
SERVER_GONE = "DELETE FROM nexum.servers WHERE origin = %(origin)s"
# A server starting while no other is alive: no worker could heartbeat meanwhile, so the lease clock
# must not have run. Never shortens a lease.
RENEW_RUNNING_LEASES = """
UPDATE nexum.executions SET lease_expires_at = greatest(lease_expires_at, %(now)s + %(lease_seconds)s),
    updated_at = %(now)s
WHERE status = 'RUNNING'
"""
RENEW_SESSION_LEASES = """
UPDATE nexum.session_runs SET lease_expires_at = greatest(lease_expires_at, %(now)s + %(lease_seconds)s)
"""
SERVER_NAME_PREFIX = "nexum-server "
"""`application_name` of every connection a server opens, then the server's origin id."""
NEXT_LEASE_EXPIRY = "SELECT min(lease_expires_at) FROM nexum.executions WHERE status = 'RUNNING'"
NEXT_DUE = """
SELECT least(
    (SELECT min(scheduled_at) FROM nexum.executions WHERE status = 'PENDING' AND scheduled_at > %(now)s),
    (SELECT min(lease_expires_at) FROM nexum.executions WHERE status = 'RUNNING'))
"""
HEARTBEAT = """
UPDATE nexum.executions SET lease_expires_at = %(now)s + %(lease_seconds)s, updated_at = %(now)s
WHERE id = %(id)s AND status = 'RUNNING' AND lease_token = %(token)s
RETURNING lease_expires_at
"""
COMPLETE = f"""
WITH completed AS (
    UPDATE nexum.executions
    SET status = 'COMPLETED', result = %(output)s, error = NULL, lease_token = NULL, lease_expires_at = NULL,
        completed_at = %(now)s, updated_at = %(now)s
    WHERE id = %(id)s AND status = 'RUNNING' AND lease_token = %(token)s
    RETURNING {COLUMNS})
SELECT *, {NOTIFY_DONE} AS notified FROM completed
"""
FAIL = f"""
WITH failed AS (
    UPDATE nexum.executions
    SET status = CASE WHEN %(retryable)s AND attempts < max_attempts THEN 'PENDING' ELSE 'FAILED' END,
        scheduled_at = %(now)s + least(%(backoff)s * (1 << (attempts - 1)), %(backoff_max)s),
        completed_at = CASE WHEN %(retryable)s AND attempts < max_attempts THEN NULL ELSE %(now)s END,
        error = %(error)s, lease_token = NULL, lease_expires_at = NULL, updated_at = %(now)s
    WHERE id = %(id)s AND status = 'RUNNING' AND lease_token = %(token)s
    RETURNING {COLUMNS})
SELECT *, {NOTIFY_OUTCOME} AS notified FROM failed
"""
RELEASE = f"""
WITH released AS (
    UPDATE nexum.executions
    SET status = 'PENDING', attempts = attempts - 1, scheduled_at = %(now)s, worker_id = NULL,
        lease_token = NULL, lease_expires_at = NULL, updated_at = %(now)s
    WHERE id = %(id)s AND status = 'RUNNING' AND lease_token = %(token)s
    RETURNING {COLUMNS})
SELECT *, {NOTIFY_READY} AS notified FROM released
"""
COUNT_BY_STATUS = "SELECT status, count(*) FROM nexum.executions GROUP BY status"

# A new run always takes the session: the previous run, live or dead, is fenced from here on.
# The old row is read under the row lock the upsert takes, so two runs taking one session at once
# each see the one before them.
TAKE_SESSION = """
WITH previous AS (
    SELECT holder, lease_expires_at FROM nexum.session_runs WHERE session_id = %(session_id)s FOR UPDATE
), taken AS (
    INSERT INTO nexum.session_runs (session_id, run_token, holder, started_at, lease_expires_at)
    VALUES (%(session_id)s, %(token)s, %(holder)s, %(now)s, %(now)s + %(lease_seconds)s)
    ON CONFLICT (session_id) DO UPDATE
    SET run_token = excluded.run_token, holder = excluded.holder, started_at = excluded.started_at,
        lease_expires_at = excluded.lease_expires_at
    RETURNING 1)
SELECT (SELECT holder FROM previous) AS holder, (SELECT lease_expires_at FROM previous) AS lease_expires_at,
       (SELECT count(*) FROM taken) AS taken,
       (SELECT forked_from FROM nexum.session_forks WHERE session_id = %(session_id)s) AS forked_from,
       (SELECT fork_until FROM nexum.session_forks WHERE session_id = %(session_id)s) AS fork_until
"""
RENEW_SESSION = """
UPDATE nexum.session_runs SET lease_expires_at = %(now)s + %(lease_seconds)s
WHERE session_id = %(session_id)s AND run_token = %(token)s
RETURNING lease_expires_at
"""
END_SESSION_RUN = "DELETE FROM nexum.session_runs WHERE session_id = %(session_id)s AND run_token = %(token)s"
SESSION_RUN_IS = "SELECT 1 FROM nexum.session_runs WHERE session_id = %(session_id)s AND run_token = %(token)s"
# The current run of the session claims an in-process execution nobody holds. One that a run which
# is gone held was made INTERRUPTED by RUN_GONE; one a live previous run holds is finished by it.
# Its worker_id names the run, `run:<token>`. FOR SHARE: a takeover committing meanwhile is waited for.
CLAIM_FOR_RUN = f"""
UPDATE nexum.executions
SET status = 'RUNNING',
    attempts = attempts + 1,
    lease_token = {NEW_TOKEN},
    lease_expires_at = %(now)s + %(lease_seconds)s,
    worker_id = 'run:' || %(token)s,
    started_at = COALESCE(started_at, %(now)s),
    attempt_started_at = %(now)s,
    updated_at = %(now)s
WHERE id = %(id)s AND status IN ('PENDING', 'INTERRUPTED')
  AND EXISTS (SELECT 1 FROM nexum.session_runs WHERE session_id = %(session_id)s AND run_token = %(token)s
              FOR SHARE)
RETURNING {COLUMNS}
"""
# The run's process is gone (its presence connection closed): what it held is INTERRUPTED, for the
# session's next run to claim at once.
RUN_GONE = f"""
WITH gone AS (
    UPDATE nexum.executions
    SET {REQUEUE_OR_FAIL},
        error = 'the agent run holding it ended on attempt ' || attempts || ' of ' || max_attempts
    WHERE session_id = %(session_id)s AND status = 'RUNNING' AND worker_id = 'run:' || %(token)s
    RETURNING *)
SELECT {COLUMNS}, {NOTIFY_OUTCOME} AS notified FROM gone
"""
SESSION_RUN_GONE = """
UPDATE nexum.session_runs SET lease_expires_at = LEAST(lease_expires_at, %(now)s)
WHERE session_id = %(session_id)s AND run_token = %(token)s
"""

# --- sessions, forget and retention ---------------------------------------------------------------

# A cached start is answered from memory; its hits are counted there and added here in batches.
ADD_HITS = """
UPDATE nexum.executions SET hits = hits + %(hits)s, last_hit_at = greatest(coalesce(last_hit_at, 0), %(at)s)
WHERE id = %(id)s
"""
# One row per session. Time saved: each hit of a COMPLETED execution saved the running time of its
# last attempt (earlier attempts and the waits between them would not have run again), model
# requests apart from tool calls.
# Last activity: the session's newest call started, or its latest cached hit.
SESSION_COUNTS = """
count(*) AS calls,
count(*) FILTER (WHERE status = 'COMPLETED') AS completed,
count(*) FILTER (WHERE status = 'FAILED') AS failed,
count(*) FILTER (WHERE status = 'RUNNING') AS running,
count(*) FILTER (WHERE status = 'PENDING') AS pending,
count(*) FILTER (WHERE status = 'INTERRUPTED') AS interrupted,
count(*) FILTER (WHERE status = 'CANCELLED') AS cancelled,
sum(hits)::bigint AS cached_hits,
coalesce(sum(hits * (completed_at - coalesce(attempt_started_at, started_at)))
         FILTER (WHERE status = 'COMPLETED' AND hits > 0), 0) AS seconds_saved,
coalesce(sum(hits * (completed_at - coalesce(attempt_started_at, started_at)))
         FILTER (WHERE status = 'COMPLETED' AND hits > 0 AND input::json ->> 'unit' = 'model_request'), 0)
    AS model_seconds_saved,
min(created_at) AS first_activity
"""
# As on SQLite: the page's sessions are picked from the indexes, then only their rows are counted.
LIST_SESSIONS = f"""
WITH newest AS (
    SELECT session_id, max(seq) AS seq FROM nexum.executions
    WHERE %(contains)s::text IS NULL OR strpos(session_id, %(contains)s) > 0
    GROUP BY session_id
), hit AS (
    SELECT session_id, max(last_hit_at) AS at FROM nexum.executions WHERE last_hit_at IS NOT NULL
    GROUP BY session_id
), activity AS (
    SELECT newest.session_id, greatest(started.created_at, coalesce(hit.at, 0)) AS last_activity
    FROM newest JOIN nexum.executions AS started ON started.seq = newest.seq
    LEFT JOIN hit ON hit.session_id = newest.session_id
), page AS (
    SELECT session_id, last_activity FROM activity
    WHERE %(after_at)s::double precision IS NULL OR last_activity < %(after_at)s
       OR (last_activity = %(after_at)s AND session_id < %(after_id)s)
    ORDER BY last_activity DESC, session_id DESC
    LIMIT %(limit)s
)
SELECT page.session_id, {SESSION_COUNTS}, page.last_activity
FROM page JOIN nexum.executions e ON e.session_id = page.session_id
GROUP BY page.session_id, page.last_activity
ORDER BY page.last_activity DESC, page.session_id DESC
"""
GET_SESSION = f"""
SELECT session_id, {SESSION_COUNTS}, greatest(max(created_at), coalesce(max(last_hit_at), 0)) AS last_activity
FROM nexum.executions WHERE session_id = %s GROUP BY session_id
"""
LIST_CALLS = """
SELECT seq, id, workflow_id, key, substr(input, 1, %(input_chars)s) AS input_head, length(input) AS input_length,
       status, attempts, max_attempts, substr(error, 1, %(error_chars)s) AS error, worker_id, hits,
       created_at, updated_at, started_at, completed_at, attempt_started_at, scheduled_at,
       length(result) AS result_length
FROM nexum.executions
WHERE session_id = %(session_id)s AND (%(before)s::bigint IS NULL OR seq < %(before)s)
ORDER BY seq DESC
LIMIT %(limit)s
"""
# Live: executions still pending or running, and an agent run holding the session (its lease not run out).
SESSION_LIVE = """
SELECT (SELECT count(*) FROM nexum.executions
        WHERE session_id = %(session_id)s AND status IN ('PENDING', 'RUNNING')) AS live,
       (SELECT holder FROM nexum.session_runs
        WHERE session_id = %(session_id)s AND lease_expires_at > %(now)s) AS holder
"""
# Every deleted execution is announced (`<origin> deleted <id>`): other servers drop it from their
# completed-results cache, so its call runs again whichever server it reaches.
NOTIFY_DELETED = f"pg_notify('{CHANNEL}', %(origin)s || ' deleted ' || id)"
# Terminal and interrupted ones only: an execution another server starts meanwhile is not deleted
# with the others.
FORGET_SESSION = f"""
WITH deleted AS (
    DELETE FROM nexum.executions
    WHERE session_id = %(session_id)s AND (status IN {TERMINAL} OR status = 'INTERRUPTED')
    RETURNING id, workflow_id, session_id, key)
SELECT workflow_id, session_id, key, {NOTIFY_DELETED} AS notified FROM deleted
"""
# A request whose list of messages a request that stays is stored against (directly or along the
# chain) stays too, until that one goes.
DELETE_TERMINAL_BEFORE = f"""
WITH RECURSIVE kept (id) AS (
    SELECT sent_base FROM nexum.executions
    WHERE sent_base IS NOT NULL
      AND NOT (completed_at IS NOT NULL AND completed_at < %(cutoff)s AND status IN {TERMINAL})
    UNION
    SELECT e.sent_base FROM nexum.executions e JOIN kept ON e.id = kept.id WHERE e.sent_base IS NOT NULL
), deleted AS (
    DELETE FROM nexum.executions
    WHERE seq IN (
        SELECT seq FROM nexum.executions
        WHERE completed_at IS NOT NULL AND completed_at < %(cutoff)s AND status IN {TERMINAL}
          AND id NOT IN (SELECT id FROM kept WHERE id IS NOT NULL)
        ORDER BY completed_at
        LIMIT %(limit)s
        FOR UPDATE SKIP LOCKED)
    RETURNING id, workflow_id, session_id, key)
SELECT workflow_id, session_id, key, {NOTIFY_DELETED} AS notified FROM deleted
"""

# --- the journal: messages stored once, forks, exports ----------------------------------------------

INSERT_MESSAGES = """
INSERT INTO nexum.messages (hash, body) SELECT * FROM unnest(%(hashes)s::text[], %(bodies)s::text[])
ON CONFLICT (hash) DO NOTHING
"""
# A missing message fails the foreign key: the start names a hash whose body was never sent.
ADD_SESSION_MESSAGES = """
INSERT INTO nexum.session_messages (session_id, hash)
SELECT DISTINCT %(session_id)s, h FROM unnest(%(hashes)s::text[]) AS h
ON CONFLICT DO NOTHING
"""
PREVIOUS_SENT = """
SELECT id, sent_count, sent_digest FROM nexum.executions
WHERE session_id = %s AND sent_count IS NOT NULL ORDER BY seq DESC LIMIT 1
"""
SENT_OF = """
SELECT id, sent_count, sent_digest FROM nexum.executions WHERE id = %s AND session_id = %s AND sent_count IS NOT NULL
"""
SESSION_SENT = """
SELECT id, sent_base, sent_added FROM nexum.executions
WHERE session_id = %s AND sent_count IS NOT NULL ORDER BY seq
"""
JOURNAL = f"SELECT {COLUMNS} FROM nexum.executions WHERE session_id = %s ORDER BY seq"
SELECT_MESSAGES = "SELECT hash, body FROM nexum.messages WHERE hash = ANY(%s)"
SELECT_FORK = "SELECT forked_from, fork_until FROM nexum.session_forks WHERE session_id = %s"
INSERT_FORK = """
INSERT INTO nexum.session_forks (session_id, forked_from, fork_until, created_at) VALUES (%s, %s, %s, %s)
ON CONFLICT (session_id) DO UPDATE
SET forked_from = excluded.forked_from, fork_until = excluded.fork_until, created_at = excluded.created_at
"""
# Two copies into one new session at once: the second waits for the first, then finds it stored.
SESSION_LOCK = "SELECT pg_advisory_xact_lock(hashtext('nexum session ' || %s))"
SESSION_EXISTS = "SELECT EXISTS (SELECT 1 FROM nexum.executions WHERE session_id = %s)"
INSERT_COPY = """
INSERT INTO nexum.executions (id, workflow_id, version_hash, node_id, session_id, key, input, status, attempts,
                              max_attempts, result, worker_id, scheduled_at, created_at, updated_at, started_at,
                              completed_at, sent_base, sent_added, sent_count, sent_digest)
SELECT %(id)s, workflow_id, version_hash, ir::json -> 'nodes' -> 0 ->> 'id', %(session_id)s, %(key)s, %(input)s,
       'COMPLETED', 1, %(max_attempts)s, %(result)s, %(worker_id)s, %(now)s, %(now)s, %(now)s, %(started_at)s,
       %(completed_at)s, %(sent_base)s, %(sent_added)s, %(sent_count)s, %(sent_digest)s
FROM nexum.workflows WHERE workflow_id = %(workflow_id)s AND version_hash = %(version_hash)s
RETURNING id
"""
INSERT_WORKFLOW_IF_NEW = """
INSERT INTO nexum.workflows (workflow_id, version_hash, ir, created_at) VALUES (%s, %s, %s, %s)
ON CONFLICT DO NOTHING
"""
SELECT_WORKFLOWS_OF = """
SELECT workflow_id, version_hash, ir FROM nexum.workflows
WHERE (workflow_id, version_hash) IN (SELECT DISTINCT workflow_id, version_hash FROM nexum.executions
                                      WHERE session_id = %s)
"""
# Collection after forget or retention: the references of sessions left with no execution, then the
# messages no session refers to any more.
DROP_SESSION_REFS = """
DELETE FROM nexum.session_messages s
WHERE s.session_id = ANY(%(sessions)s)
  AND NOT EXISTS (SELECT 1 FROM nexum.executions e WHERE e.session_id = s.session_id)
RETURNING s.hash
"""
DROP_FORKS = """
DELETE FROM nexum.session_forks f
WHERE f.session_id = ANY(%(sessions)s)
  AND NOT EXISTS (SELECT 1 FROM nexum.executions e WHERE e.session_id = f.session_id)
"""
DROP_ORPHAN_MESSAGES = """
DELETE FROM nexum.messages m
WHERE m.hash = ANY(%(hashes)s)
  AND NOT EXISTS (SELECT 1 FROM nexum.session_messages s WHERE s.hash = m.hash)
"""
STORED_BYTES = """
SELECT (SELECT count(*) FROM nexum.messages) AS messages,
       (SELECT coalesce(sum(octet_length(hash) + octet_length(body)), 0) FROM nexum.messages) AS message_bytes,
       (SELECT coalesce(sum(octet_length(input) + coalesce(octet_length(result), 0)
                            + coalesce(octet_length(sent_added), 0) + coalesce(octet_length(sent_base), 0)
                            + coalesce(octet_length(sent_digest), 0)), 0) FROM nexum.executions) AS execution_bytes,
       (SELECT count(*) FROM nexum.session_messages) AS refs
"""

# --- waits (see sqlite_sql.py for why each statement is shaped so) ----------------------------------

WAIT_COLUMNS = (
    "token, session_id, key, name, request, status, payload, error, resolved_by, created_at, expires_at, resolved_at"
)
NOTIFY_WAIT_OVER = f"pg_notify('{CHANNEL}', %(origin)s || ' done wait:' || token)"
CREATE_WAIT = f"""
INSERT INTO nexum.waits (token, session_id, key, name, request, status, created_at, expires_at)
VALUES (%(token)s, %(session_id)s, %(key)s, %(name)s, %(request)s, 'WAITING', %(now)s,
        %(now)s + %(timeout_seconds)s::double precision)
ON CONFLICT (session_id, key) DO NOTHING
RETURNING {WAIT_COLUMNS}
"""
SELECT_WAIT_BY_KEY = f"SELECT {WAIT_COLUMNS} FROM nexum.waits WHERE session_id = %(session_id)s AND key = %(key)s"
SELECT_WAIT = f"SELECT {WAIT_COLUMNS} FROM nexum.waits WHERE token = %(token)s"
EXPIRE_WAITS = f"""
WITH expired AS (
    UPDATE nexum.waits
    SET status = 'TIMED_OUT', resolved_at = expires_at, resolved_by = 'timeout',
        error = 'no resolution arrived within ' || (expires_at - created_at) || ' s'
    WHERE status = 'WAITING' AND expires_at <= %(now)s
    RETURNING token)
SELECT token, {NOTIFY_WAIT_OVER} AS notified FROM expired
"""
RESOLVE_WAIT = f"""
WITH resolved AS (
    UPDATE nexum.waits
    SET status = %(status)s, payload = %(payload)s, error = %(error)s, resolved_by = %(by)s, resolved_at = %(now)s
    WHERE token = %(token)s AND status = 'WAITING' AND (expires_at IS NULL OR expires_at > %(now)s)
    RETURNING {WAIT_COLUMNS})
SELECT *, {NOTIFY_WAIT_OVER} AS notified FROM resolved
"""
LIST_WAITS = f"""
SELECT {WAIT_COLUMNS} FROM nexum.waits
WHERE (%(status)s::text IS NULL OR status = %(status)s)
  AND (%(session_id)s::text IS NULL OR session_id = %(session_id)s)
ORDER BY seq DESC LIMIT %(limit)s
"""
OVER_AMONG = "SELECT token FROM nexum.waits WHERE token = ANY(%(tokens)s) AND status != 'WAITING'"
SESSION_WAITING = "SELECT count(*) FROM nexum.waits WHERE session_id = %(session_id)s AND status = 'WAITING'"
FORGET_WAITS = "DELETE FROM nexum.waits WHERE session_id = %(session_id)s AND status != 'WAITING'"
DELETE_WAITS_BEFORE = """
DELETE FROM nexum.waits
WHERE seq IN (
    SELECT seq FROM nexum.waits WHERE resolved_at IS NOT NULL AND resolved_at < %(cutoff)s AND status != 'WAITING'
    ORDER BY resolved_at LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED)
"""
