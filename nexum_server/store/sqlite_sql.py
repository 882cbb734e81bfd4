"""The SQLite store's SQL, every statement in one place; `sqlite.py` runs them."""

from __future__ import annotations

LIVE = "('PENDING', 'RUNNING', 'INTERRUPTED', 'COMPLETED')"

# Retention deletes the oldest terminal executions first, in small batches, without a table scan.
RETENTION_INDEX = (
    "CREATE INDEX IF NOT EXISTS executions_done ON executions (completed_at) WHERE completed_at IS NOT NULL"
)
# Each session's latest cached hit, read without the table (schema 4). Only the batched writes of
# hit counts change it, never a start, claim or report.
HITS_INDEX = (
    "CREATE INDEX IF NOT EXISTS executions_hits ON executions (session_id, last_hit_at) WHERE last_hit_at IS NOT NULL"
)

# Schema 5: messages stored once by content hash, the sessions that refer to each (what forget and
# retention collect by), and where a forked or imported session came from.
JOURNAL_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    hash TEXT PRIMARY KEY,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS session_messages (
    session_id TEXT NOT NULL,
    hash       TEXT NOT NULL REFERENCES messages (hash),
    PRIMARY KEY (session_id, hash)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS session_messages_hash ON session_messages (hash);
CREATE TABLE IF NOT EXISTS session_forks (
    session_id  TEXT PRIMARY KEY,
    forked_from TEXT NOT NULL,
    fork_until  INTEGER,
    created_at  REAL NOT NULL
);
-- Retention keeps a request that a later one's list of messages is stored against.
CREATE INDEX IF NOT EXISTS executions_sent_base ON executions (sent_base) WHERE sent_base IS NOT NULL;
"""

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS workflows (
    workflow_id  TEXT NOT NULL,
    version_hash TEXT NOT NULL,
    ir           TEXT NOT NULL,
    created_at   REAL NOT NULL,
    PRIMARY KEY (workflow_id, version_hash)
);
CREATE TABLE IF NOT EXISTS executions (
    seq              INTEGER PRIMARY KEY,
    id               TEXT NOT NULL UNIQUE,
    workflow_id      TEXT NOT NULL,
    version_hash     TEXT NOT NULL,
    node_id          TEXT NOT NULL,
    session_id       TEXT NOT NULL,
    key              TEXT NOT NULL,
    input            TEXT NOT NULL,
    status           TEXT NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    max_attempts     INTEGER NOT NULL,
    result           TEXT,
    error            TEXT,
    worker_id        TEXT,
    lease_token      TEXT,
    lease_expires_at REAL,
    scheduled_at     REAL NOT NULL,
    created_at       REAL NOT NULL,
    updated_at       REAL NOT NULL,
    started_at       REAL,
    completed_at     REAL,
    attempt_started_at REAL,
    hits             INTEGER NOT NULL DEFAULT 0,
    last_hit_at      REAL,
    sent_base        TEXT,
    sent_added       TEXT,
    sent_count       INTEGER,
    sent_digest      TEXT,
    FOREIGN KEY (workflow_id, version_hash) REFERENCES workflows (workflow_id, version_hash)
);
-- At most one live execution per call: the idempotency guarantee lives here, not in code.
CREATE UNIQUE INDEX IF NOT EXISTS executions_live_key ON executions (workflow_id, session_id, key)
    WHERE status IN {LIVE};
CREATE INDEX IF NOT EXISTS executions_pending ON executions (scheduled_at) WHERE status = 'PENDING';
CREATE INDEX IF NOT EXISTS executions_leased ON executions (lease_expires_at) WHERE status = 'RUNNING';
CREATE INDEX IF NOT EXISTS executions_session ON executions (session_id, seq);
-- The one live agent run of each session: its token fences the run's in-process executions.
CREATE TABLE IF NOT EXISTS session_runs (
    session_id       TEXT PRIMARY KEY,
    run_token        TEXT NOT NULL,
    holder           TEXT NOT NULL,
    started_at       REAL NOT NULL,
    lease_expires_at REAL NOT NULL
);
{RETENTION_INDEX};
{HITS_INDEX};
{JOURNAL_SCHEMA}
-- A run waiting for an answer from outside (schema 5). One per (session, key): a replay of the run
-- finds the same wait, with the same token, instead of making another.
CREATE TABLE IF NOT EXISTS waits (
    seq         INTEGER PRIMARY KEY,
    token       TEXT NOT NULL UNIQUE,
    session_id  TEXT NOT NULL,
    key         TEXT NOT NULL,
    name        TEXT NOT NULL,
    request     TEXT NOT NULL,
    status      TEXT NOT NULL,
    payload     TEXT,
    error       TEXT,
    resolved_by TEXT,
    created_at  REAL NOT NULL,
    expires_at  REAL,
    resolved_at REAL,
    UNIQUE (session_id, key)
);
CREATE INDEX IF NOT EXISTS waits_waiting ON waits (expires_at) WHERE status = 'WAITING';
CREATE INDEX IF NOT EXISTS waits_resolved ON waits (resolved_at) WHERE resolved_at IS NOT NULL;
"""

# Columns added to an existing table, by the schema version that added them: a file older than
# that gains them, then SCHEMA (all IF NOT EXISTS) adds the tables and indexes it lacks.
ADDED_COLUMNS = {
    3: """
ALTER TABLE executions ADD COLUMN hits INTEGER NOT NULL DEFAULT 0;
ALTER TABLE executions ADD COLUMN last_hit_at REAL;
""",
    5: """
ALTER TABLE executions ADD COLUMN sent_base TEXT;
ALTER TABLE executions ADD COLUMN sent_added TEXT;
ALTER TABLE executions ADD COLUMN sent_count INTEGER;
ALTER TABLE executions ADD COLUMN sent_digest TEXT;
DROP INDEX IF EXISTS executions_live_key;
ALTER TABLE executions ADD COLUMN attempt_started_at REAL;
""",
}

# One statement, so both are read from one snapshot while another server may be creating the schema.
SCHEMA_STATE = (
    "SELECT (SELECT user_version FROM pragma_user_version), (SELECT count(*) FROM sqlite_master WHERE type = 'table')"
)

COLUMNS = (
    "id, workflow_id, version_hash, node_id, session_id, key, input, status, attempts, max_attempts, result, "
    "error, worker_id, lease_token, lease_expires_at, scheduled_at, created_at, updated_at, "
    "started_at, completed_at, attempt_started_at"
)

SELECT_WORKFLOW = "SELECT ir FROM workflows WHERE workflow_id = ? AND version_hash = ?"
SELECT_WORKFLOW_ANY = "SELECT 1 FROM workflows WHERE workflow_id = ? LIMIT 1"
INSERT_WORKFLOW = "INSERT INTO workflows (workflow_id, version_hash, ir, created_at) VALUES (?, ?, ?, ?)"

# Selecting from `workflows` makes an unregistered version insert nothing, and names the node.
INSERT_EXECUTION = f"""
INSERT INTO executions (id, workflow_id, version_hash, node_id, session_id, key, input, status,
                        max_attempts, scheduled_at, created_at, updated_at,
                        sent_base, sent_added, sent_count, sent_digest)
SELECT :id, workflow_id, version_hash, json_extract(ir, '$.nodes[0].id'), :session_id, :key, :input,
       'PENDING', :max_attempts, :now, :now, :now, :sent_base, :sent_added, :sent_count, :sent_digest
FROM workflows WHERE workflow_id = :workflow_id AND version_hash = :version_hash
ON CONFLICT (workflow_id, session_id, key) WHERE status IN {LIVE} DO NOTHING
RETURNING {COLUMNS}
"""
SELECT_LIVE = f"""
SELECT {COLUMNS} FROM executions
WHERE workflow_id = ? AND session_id = ? AND key = ? AND status IN {LIVE}
"""
SELECT_EXECUTION = f"SELECT {COLUMNS} FROM executions WHERE id = ?"
# Lists never carry results (a page of 1,000 large results was a 190 MB answer held whole in memory):
# their length only; `GET /v1/executions/{id}` has the result.
LIST_COLUMNS = COLUMNS.replace(" result,", " NULL AS result, length(result) AS result_chars,")
LIST_EXECUTIONS = f"""
SELECT {LIST_COLUMNS} FROM executions
WHERE (:session_id IS NULL OR session_id = :session_id)
  AND (:status IS NULL OR status = :status)
  AND (:key IS NULL OR key = :key)
  AND (:id_prefix IS NULL OR substr(id, 1, length(:id_prefix)) = :id_prefix)
ORDER BY seq DESC LIMIT :limit
"""
TERMINAL_AMONG = """
SELECT id FROM executions
WHERE id IN (SELECT value FROM json_each(?)) AND status IN ('COMPLETED', 'FAILED', 'CANCELLED')
"""
PRESENT_AMONG = "SELECT id FROM executions WHERE id IN (SELECT value FROM json_each(?))"
READY_BY_WORKFLOW = """
SELECT workflow_id, version_hash, count(*) FROM executions
WHERE status = 'PENDING' AND scheduled_at <= :now
  AND (workflow_id, version_hash) IN (
      SELECT json_extract(value, '$.workflow_id'), json_extract(value, '$.version_hash')
      FROM json_each(:workflows))
GROUP BY workflow_id, version_hash
"""
CANCEL = f"""
UPDATE executions
SET status = 'CANCELLED', lease_token = NULL, lease_expires_at = NULL, completed_at = :now, updated_at = :now
WHERE id = :id AND status IN ('PENDING', 'RUNNING', 'INTERRUPTED')
RETURNING {COLUMNS}
"""

# A held task whose holder is gone (its lease ran out, its agent run ended) goes back to the queue,
# or is FAILED when that was its last attempt. An agent run's own (in-process) execution is no
# worker's work: it is INTERRUPTED until the session's next run claims it.
REQUEUE_OR_FAIL = """status = CASE WHEN attempts >= max_attempts THEN 'FAILED'
                  WHEN substr(worker_id, 1, 4) = 'run:' THEN 'INTERRUPTED' ELSE 'PENDING' END,
    completed_at = CASE WHEN attempts >= max_attempts THEN :now END,
    scheduled_at = :now, lease_token = NULL, lease_expires_at = NULL, updated_at = :now"""
# A claim: one more attempt, under a new random lease token.
LEASE = """status = 'RUNNING',
    attempts = attempts + 1,
    lease_token = lower(hex(randomblob(16))),
    lease_expires_at = :now + :lease_seconds,
    started_at = COALESCE(started_at, :now),
    attempt_started_at = :now,
    updated_at = :now"""
# Runs before every claim, in the same transaction: a task whose lease ran out goes back to the
# queue, or is FAILED when that was its last attempt. Its worker may still be running the tool
# (at-least-once); clearing the token makes that worker's late report a 409.
EXPIRE_LEASES = f"""
UPDATE executions
SET {REQUEUE_OR_FAIL},
    error = 'lease expired on attempt ' || attempts || ' of ' || max_attempts || ' (worker '
            || COALESCE(worker_id, '?') || ' stopped or hung without reporting)'
WHERE status = 'RUNNING' AND lease_expires_at <= :now
RETURNING {COLUMNS}
"""
# One statement claims: two workers can never hold the same task. Every claimed row gets its own
# new random lease token.
CLAIM = f"""
UPDATE executions
SET {LEASE}, worker_id = :worker_id
WHERE id IN (
    SELECT id FROM executions
    WHERE status = 'PENDING' AND scheduled_at <= :now
      AND (workflow_id, version_hash) IN (
          SELECT json_extract(value, '$.workflow_id'), json_extract(value, '$.version_hash')
          FROM json_each(:workflows))
    ORDER BY scheduled_at, seq
    LIMIT :limit)
RETURNING {COLUMNS}
"""
# Most polls find nothing (a worker re-polls as soon as it has taken work): a read answers them
# without taking the write lock. The second column says whether a lease ran out, so a claim that
# finds work expires leases only when there is one to expire.
ANYTHING_TO_CLAIM = """
SELECT EXISTS (
           SELECT 1 FROM executions
           WHERE status = 'PENDING' AND scheduled_at <= :now
             AND (workflow_id, version_hash) IN (
                 SELECT json_extract(value, '$.workflow_id'), json_extract(value, '$.version_hash')
                 FROM json_each(:workflows))),
       EXISTS (SELECT 1 FROM executions WHERE status = 'RUNNING' AND lease_expires_at <= :now)
"""
# A server starting on a file no other server uses: while none was up, no worker could heartbeat,
# so the lease clock must not have run. Never shortens a lease.
RENEW_RUNNING_LEASES = """
UPDATE executions SET lease_expires_at = max(lease_expires_at, :now + :lease_seconds), updated_at = :now
WHERE status = 'RUNNING'
"""
RENEW_SESSION_LEASES = """
UPDATE session_runs SET lease_expires_at = max(lease_expires_at, :now + :lease_seconds)
"""
NEXT_LEASE_EXPIRY = "SELECT min(lease_expires_at) FROM executions WHERE status = 'RUNNING'"
NEXT_DUE = """
SELECT min(t) FROM (
    SELECT min(scheduled_at) AS t FROM executions WHERE status = 'PENDING' AND scheduled_at > :now
    UNION ALL
    SELECT min(lease_expires_at) FROM executions WHERE status = 'RUNNING')
"""
HEARTBEAT = """
UPDATE executions SET lease_expires_at = :now + :lease_seconds, updated_at = :now
WHERE id = :id AND status = 'RUNNING' AND lease_token = :token
RETURNING lease_expires_at
"""
COMPLETE = f"""
UPDATE executions
SET status = 'COMPLETED', result = :output, error = NULL, lease_token = NULL, lease_expires_at = NULL,
    completed_at = :now, updated_at = :now
WHERE id = :id AND status = 'RUNNING' AND lease_token = :token
RETURNING {COLUMNS}
"""
FAIL = f"""
UPDATE executions
SET status = CASE WHEN :retryable AND attempts < max_attempts THEN 'PENDING' ELSE 'FAILED' END,
    scheduled_at = :now + min(:backoff * (1 << (attempts - 1)), :backoff_max),
    completed_at = CASE WHEN :retryable AND attempts < max_attempts THEN NULL ELSE :now END,
    error = :error, lease_token = NULL, lease_expires_at = NULL, updated_at = :now
WHERE id = :id AND status = 'RUNNING' AND lease_token = :token
RETURNING {COLUMNS}
"""
RELEASE = f"""
UPDATE executions
SET status = 'PENDING', attempts = attempts - 1, scheduled_at = :now, worker_id = NULL,
    lease_token = NULL, lease_expires_at = NULL, updated_at = :now
WHERE id = :id AND status = 'RUNNING' AND lease_token = :token
RETURNING {COLUMNS}
"""
COUNT_BY_STATUS = "SELECT status, count(*) FROM executions GROUP BY status"

# A new run always takes the session: the previous run, live or dead, is fenced from here on.
SELECT_SESSION_RUN = "SELECT holder, lease_expires_at FROM session_runs WHERE session_id = ?"
TAKE_SESSION = """
INSERT INTO session_runs (session_id, run_token, holder, started_at, lease_expires_at)
VALUES (:session_id, :token, :holder, :now, :now + :lease_seconds)
ON CONFLICT (session_id) DO UPDATE
SET run_token = excluded.run_token, holder = excluded.holder, started_at = excluded.started_at,
    lease_expires_at = excluded.lease_expires_at
"""
RENEW_SESSION = """
UPDATE session_runs SET lease_expires_at = :now + :lease_seconds
WHERE session_id = :session_id AND run_token = :token
RETURNING lease_expires_at
"""
END_SESSION_RUN = "DELETE FROM session_runs WHERE session_id = :session_id AND run_token = :token"
SESSION_RUN_IS = "SELECT 1 FROM session_runs WHERE session_id = :session_id AND run_token = :token"
# The current run of the session claims an in-process execution nobody holds. One that a run which
# is gone held was made INTERRUPTED by RUN_GONE; one a live previous run holds is finished by it.
# Its worker_id names the run, `run:<token>`.
CLAIM_FOR_RUN = f"""
UPDATE executions
SET {LEASE}, worker_id = 'run:' || :token
WHERE id = :id AND status IN ('PENDING', 'INTERRUPTED')
  AND EXISTS (SELECT 1 FROM session_runs WHERE session_id = :session_id AND run_token = :token)
RETURNING {COLUMNS}
"""
# The run's process is gone (its presence connection closed): what it held is INTERRUPTED, for the
# session's next run to claim at once.
RUN_GONE = f"""
UPDATE executions
SET {REQUEUE_OR_FAIL},
    error = 'the agent run holding it ended on attempt ' || attempts || ' of ' || max_attempts
WHERE session_id = :session_id AND status = 'RUNNING' AND worker_id = 'run:' || :token
RETURNING {COLUMNS}
"""
SESSION_RUN_GONE = """
UPDATE session_runs SET lease_expires_at = min(lease_expires_at, :now)
WHERE session_id = :session_id AND run_token = :token
"""

# --- sessions, forget and retention ---------------------------------------------------------------

# A cached start is answered from memory; its hits are counted there and added here in batches.
ADD_HITS = """
UPDATE executions SET hits = hits + :hits, last_hit_at = max(COALESCE(last_hit_at, 0), :at)
WHERE id = :id
"""
# One row per session. Time saved: each hit of a COMPLETED execution saved the running time of its
# last attempt (earlier attempts and the waits between them would not have run again), model
# requests apart from tool calls; only executions with hits have their input read.
# Last activity: the session's newest call started, or its latest cached hit.
SESSION_COUNTS = """
count(*) AS calls,
sum(status = 'COMPLETED') AS completed,
sum(status = 'FAILED') AS failed,
sum(status = 'RUNNING') AS running,
sum(status = 'PENDING') AS pending,
sum(status = 'INTERRUPTED') AS interrupted,
sum(status = 'CANCELLED') AS cancelled,
sum(hits) AS cached_hits,
sum(CASE WHEN status = 'COMPLETED' AND hits > 0 AND started_at IS NOT NULL
         THEN hits * (completed_at - COALESCE(attempt_started_at, started_at)) ELSE 0 END) AS seconds_saved,
sum(CASE WHEN status = 'COMPLETED' AND hits > 0 AND started_at IS NOT NULL
         AND json_extract(input, '$.unit') = 'model_request'
         THEN hits * (completed_at - COALESCE(attempt_started_at, started_at)) ELSE 0 END) AS model_seconds_saved,
min(created_at) AS first_activity
"""
# The page's sessions are picked without reading the table (its rows hold whole results): the
# newest call of each session from the (session_id, seq) index, its start time by primary key,
# its latest hit from the hits index. Only the picked sessions' rows are then counted.
LIST_SESSIONS = f"""
WITH newest AS (
    SELECT session_id, max(seq) AS seq FROM executions
    WHERE :contains IS NULL OR instr(session_id, :contains) > 0
    GROUP BY session_id
), hit AS (
    SELECT session_id, max(last_hit_at) AS at FROM executions WHERE last_hit_at IS NOT NULL GROUP BY session_id
), activity AS (
    SELECT newest.session_id, max(started.created_at, COALESCE(hit.at, 0)) AS last_activity
    FROM newest JOIN executions AS started ON started.seq = newest.seq
    LEFT JOIN hit ON hit.session_id = newest.session_id
), page AS (
    SELECT session_id, last_activity FROM activity
    WHERE :after_at IS NULL OR last_activity < :after_at OR (last_activity = :after_at AND session_id < :after_id)
    ORDER BY last_activity DESC, session_id DESC
    LIMIT :limit
)
SELECT page.session_id, {SESSION_COUNTS}, page.last_activity
FROM page JOIN executions ON executions.session_id = page.session_id
GROUP BY page.session_id
ORDER BY page.last_activity DESC, page.session_id DESC
"""
GET_SESSION = f"""
SELECT session_id, {SESSION_COUNTS}, max(max(created_at), COALESCE(max(last_hit_at), 0)) AS last_activity
FROM executions WHERE session_id = ? GROUP BY session_id
"""
# Inputs are cut to their first characters here: a model request's input can be a whole history,
# and a list of calls only shows a summary of it.
LIST_CALLS = """
SELECT seq, id, workflow_id, key, substr(input, 1, :input_chars) AS input_head, length(input) AS input_length,
       status, attempts, max_attempts, substr(error, 1, :error_chars) AS error, worker_id, hits,
       created_at, updated_at, started_at, completed_at, attempt_started_at, scheduled_at,
       length(result) AS result_length
FROM executions
WHERE session_id = :session_id AND (:before IS NULL OR seq < :before)
ORDER BY seq DESC
LIMIT :limit
"""
# Live: executions still pending or running, and an agent run holding the session (its lease not run out).
SESSION_LIVE = """
SELECT (SELECT count(*) FROM executions WHERE session_id = :session_id AND status IN ('PENDING', 'RUNNING')),
       (SELECT holder FROM session_runs WHERE session_id = :session_id AND lease_expires_at > :now)
"""
FORGET_SESSION = "DELETE FROM executions WHERE session_id = ? RETURNING workflow_id, session_id, key"
# A request whose list of messages a request that stays is stored against (directly or along the
# chain) stays too, until that one goes.
DELETE_TERMINAL_BEFORE = """
DELETE FROM executions
WHERE seq IN (
    WITH RECURSIVE kept (id) AS (
        SELECT sent_base FROM executions
        WHERE sent_base IS NOT NULL AND NOT (completed_at IS NOT NULL AND completed_at < :cutoff
                                             AND status IN ('COMPLETED', 'FAILED', 'CANCELLED'))
        UNION
        SELECT e.sent_base FROM executions AS e JOIN kept ON e.id = kept.id WHERE e.sent_base IS NOT NULL)
    SELECT seq FROM executions
    WHERE completed_at IS NOT NULL AND completed_at < :cutoff AND status IN ('COMPLETED', 'FAILED', 'CANCELLED')
      AND id NOT IN (SELECT id FROM kept)
    ORDER BY completed_at
    LIMIT :limit)
RETURNING workflow_id, session_id, key
"""

# --- the journal: messages stored once, forks, exports ----------------------------------------------

INSERT_MESSAGE = "INSERT INTO messages (hash, body) VALUES (?, ?) ON CONFLICT (hash) DO NOTHING"
# A missing message fails the foreign key: the start names a hash whose body was never sent.
ADD_SESSION_MESSAGES = """
INSERT INTO session_messages (session_id, hash)
SELECT DISTINCT :session_id, value FROM json_each(:hashes) WHERE true
ON CONFLICT DO NOTHING
"""
# The session's latest list of messages: a new request's list is usually it plus what was added since.
PREVIOUS_SENT = """
SELECT id, sent_count, sent_digest FROM executions
WHERE session_id = ? AND sent_count IS NOT NULL ORDER BY seq DESC LIMIT 1
"""
SENT_OF = """
SELECT id, sent_count, sent_digest FROM executions WHERE id = ? AND session_id = ? AND sent_count IS NOT NULL
"""
SESSION_SENT = """
SELECT id, sent_base, sent_added FROM executions WHERE session_id = ? AND sent_count IS NOT NULL ORDER BY seq
"""
JOURNAL = f"SELECT {COLUMNS} FROM executions WHERE session_id = ? ORDER BY seq"
SELECT_MESSAGES = "SELECT hash, body FROM messages WHERE hash IN (SELECT value FROM json_each(?))"
SELECT_FORK = "SELECT forked_from, fork_until FROM session_forks WHERE session_id = ?"
INSERT_FORK = """
INSERT INTO session_forks (session_id, forked_from, fork_until, created_at) VALUES (?, ?, ?, ?)
ON CONFLICT (session_id) DO UPDATE
SET forked_from = excluded.forked_from, fork_until = excluded.fork_until, created_at = excluded.created_at
"""
SESSION_EXISTS = "SELECT EXISTS (SELECT 1 FROM executions WHERE session_id = ?)"
# A copied unit (fork, import): COMPLETED with its result, as recorded in the session it came from.
INSERT_COPY = """
INSERT INTO executions (id, workflow_id, version_hash, node_id, session_id, key, input, status, attempts,
                        max_attempts, result, worker_id, scheduled_at, created_at, updated_at, started_at,
                        completed_at, sent_base, sent_added, sent_count, sent_digest)
SELECT :id, workflow_id, version_hash, json_extract(ir, '$.nodes[0].id'), :session_id, :key, :input,
       'COMPLETED', 1, :max_attempts, :result, :worker_id, :now, :now, :now, :started_at, :completed_at,
       :sent_base, :sent_added, :sent_count, :sent_digest
FROM workflows WHERE workflow_id = :workflow_id AND version_hash = :version_hash
RETURNING id
"""
INSERT_WORKFLOW_IF_NEW = """
INSERT INTO workflows (workflow_id, version_hash, ir, created_at) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING
"""
SELECT_WORKFLOWS_OF = """
SELECT workflow_id, version_hash, ir FROM workflows
WHERE (workflow_id, version_hash) IN (SELECT DISTINCT workflow_id, version_hash FROM executions WHERE session_id = ?)
"""
# Collection after forget or retention: the references of sessions left with no execution, then the
# messages no session refers to any more.
DROP_SESSION_REFS = """
DELETE FROM session_messages
WHERE session_id IN (SELECT value FROM json_each(:sessions))
  AND NOT EXISTS (SELECT 1 FROM executions WHERE executions.session_id = session_messages.session_id)
RETURNING hash
"""
DROP_FORKS = """
DELETE FROM session_forks
WHERE session_id IN (SELECT value FROM json_each(:sessions))
  AND NOT EXISTS (SELECT 1 FROM executions WHERE executions.session_id = session_forks.session_id)
"""
DROP_ORPHAN_MESSAGES = """
DELETE FROM messages
WHERE hash IN (SELECT value FROM json_each(:hashes))
  AND NOT EXISTS (SELECT 1 FROM session_messages WHERE session_messages.hash = messages.hash)
"""
STORED_BYTES = """
SELECT (SELECT count(*) FROM messages) AS messages,
       (SELECT coalesce(sum(length(CAST(hash AS BLOB)) + length(CAST(body AS BLOB))), 0) FROM messages)
           AS message_bytes,
       (SELECT coalesce(sum(length(CAST(input AS BLOB)) + coalesce(length(CAST(result AS BLOB)), 0)
                            + coalesce(length(CAST(sent_added AS BLOB)), 0) + coalesce(length(sent_base), 0)
                            + coalesce(length(sent_digest), 0)), 0) FROM executions) AS execution_bytes,
       (SELECT count(*) FROM session_messages) AS refs
"""

# --- waits ----------------------------------------------------------------------------------------

WAIT_COLUMNS = (
    "token, session_id, key, name, request, status, payload, error, resolved_by, created_at, expires_at, resolved_at"
)
# The UNIQUE (session_id, key) decides: a second create of the same wait inserts nothing and reads it.
CREATE_WAIT = f"""
INSERT INTO waits (token, session_id, key, name, request, status, created_at, expires_at)
VALUES (:token, :session_id, :key, :name, :request, 'WAITING', :now, :now + :timeout_seconds)
ON CONFLICT (session_id, key) DO NOTHING
RETURNING {WAIT_COLUMNS}
"""
SELECT_WAIT_BY_KEY = f"SELECT {WAIT_COLUMNS} FROM waits WHERE session_id = :session_id AND key = :key"
SELECT_WAIT = f"SELECT {WAIT_COLUMNS} FROM waits WHERE token = :token"
# A wait whose timeout ran out is over, whether or not anyone asks: it ends when its time is up
# (resolved_at = expires_at), not when this statement happens to run.
EXPIRE_WAITS = """
UPDATE waits
SET status = 'TIMED_OUT', resolved_at = expires_at, resolved_by = 'timeout',
    error = 'no resolution arrived within ' || (expires_at - created_at) || ' s'
WHERE status = 'WAITING' AND expires_at <= :now
RETURNING token
"""
# The first resolution wins: only a WAITING wait whose time is not up changes.
RESOLVE_WAIT = f"""
UPDATE waits
SET status = :status, payload = :payload, error = :error, resolved_by = :by, resolved_at = :now
WHERE token = :token AND status = 'WAITING' AND (expires_at IS NULL OR expires_at > :now)
RETURNING {WAIT_COLUMNS}
"""
LIST_WAITS = f"""
SELECT {WAIT_COLUMNS} FROM waits
WHERE (:status IS NULL OR status = :status) AND (:session_id IS NULL OR session_id = :session_id)
ORDER BY seq DESC LIMIT :limit
"""
OVER_AMONG = "SELECT token FROM waits WHERE token IN (SELECT value FROM json_each(:tokens)) AND status != 'WAITING'"
SESSION_WAITING = "SELECT count(*) FROM waits WHERE session_id = :session_id AND status = 'WAITING'"
FORGET_WAITS = "DELETE FROM waits WHERE session_id = :session_id AND status != 'WAITING'"
# Retention: never a wait still waiting, however old.
DELETE_WAITS_BEFORE = """
DELETE FROM waits
WHERE seq IN (
    SELECT seq FROM waits WHERE resolved_at IS NOT NULL AND resolved_at < :cutoff AND status != 'WAITING'
    ORDER BY resolved_at LIMIT :limit)
"""
