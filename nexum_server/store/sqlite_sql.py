"""The SQLite store's SQL, every statement in one place; `sqlite.py` runs them."""

from __future__ import annotations

LIVE = "('PENDING', 'RUNNING', 'COMPLETED')"

# Retention deletes the oldest terminal executions first, in small batches, without a table scan.
RETENTION_INDEX = ("CREATE INDEX IF NOT EXISTS executions_done ON executions (completed_at) "
                   "WHERE completed_at IS NOT NULL")
# Each session's latest cached hit, read without the table (schema 4). Only the batched writes of
# hit counts change it, never a start, claim or report.
HITS_INDEX = ("CREATE INDEX IF NOT EXISTS executions_hits ON executions (session_id, last_hit_at) "
              "WHERE last_hit_at IS NOT NULL")

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
    hits             INTEGER NOT NULL DEFAULT 0,
    last_hit_at      REAL,
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
"""

# Columns added to an existing table, by the schema version that added them: a file older than
# that gains them, then SCHEMA (all IF NOT EXISTS) adds the tables and indexes it lacks.
ADDED_COLUMNS = {
    3: """
ALTER TABLE executions ADD COLUMN hits INTEGER NOT NULL DEFAULT 0;
ALTER TABLE executions ADD COLUMN last_hit_at REAL;
""",
}

# One statement, so both are read from one snapshot while another server may be creating the schema.
SCHEMA_STATE = ("SELECT (SELECT user_version FROM pragma_user_version), "
                "(SELECT count(*) FROM sqlite_master WHERE type = 'table')")

COLUMNS = (
    "id, workflow_id, version_hash, node_id, session_id, key, input, status, attempts, max_attempts, result, "
    "error, worker_id, lease_token, lease_expires_at, scheduled_at, created_at, updated_at, "
    "started_at, completed_at"
)

SELECT_WORKFLOW = "SELECT ir FROM workflows WHERE workflow_id = ? AND version_hash = ?"
SELECT_WORKFLOW_ANY = "SELECT 1 FROM workflows WHERE workflow_id = ? LIMIT 1"
INSERT_WORKFLOW = "INSERT INTO workflows (workflow_id, version_hash, ir, created_at) VALUES (?, ?, ?, ?)"

# Selecting from `workflows` makes an unregistered version insert nothing, and names the node.
INSERT_EXECUTION = f"""
INSERT INTO executions (id, workflow_id, version_hash, node_id, session_id, key, input, status,
                        max_attempts, scheduled_at, created_at, updated_at)
SELECT :id, workflow_id, version_hash, json_extract(ir, '$.nodes[0].id'), :session_id, :key, :input,
       'PENDING', :max_attempts, :now, :now, :now
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
WHERE id = :id AND status IN ('PENDING', 'RUNNING')
RETURNING {COLUMNS}
"""

# A held task whose holder is gone (its lease ran out, its agent run ended) goes back to the queue,
# or is FAILED when that was its last attempt.
REQUEUE_OR_FAIL = """status = CASE WHEN attempts >= max_attempts THEN 'FAILED' ELSE 'PENDING' END,
    completed_at = CASE WHEN attempts >= max_attempts THEN :now END,
    scheduled_at = :now, lease_token = NULL, lease_expires_at = NULL, updated_at = :now"""
# A claim: one more attempt, under a new random lease token.
LEASE = """status = 'RUNNING',
    attempts = attempts + 1,
    lease_token = lower(hex(randomblob(16))),
    lease_expires_at = :now + :lease_seconds,
    started_at = COALESCE(started_at, :now),
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
# is gone held was put back to PENDING by RUN_GONE; one a live previous run holds is finished by it.
# Its worker_id names the run, `run:<token>`.
CLAIM_FOR_RUN = f"""
UPDATE executions
SET {LEASE}, worker_id = 'run:' || :token
WHERE id = :id AND status = 'PENDING'
  AND EXISTS (SELECT 1 FROM session_runs WHERE session_id = :session_id AND run_token = :token)
RETURNING {COLUMNS}
"""
# The run's process is gone (its presence connection closed): what it held is claimable at once.
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
# One row per session. Tool time saved: each hit of a COMPLETED execution saved the time it ran.
# Last activity: the session's newest call started, or its latest cached hit.
SESSION_COUNTS = """
count(*) AS calls,
sum(status = 'COMPLETED') AS completed,
sum(status = 'FAILED') AS failed,
sum(status = 'RUNNING') AS running,
sum(status = 'PENDING') AS pending,
sum(status = 'CANCELLED') AS cancelled,
sum(hits) AS cached_hits,
sum(CASE WHEN status = 'COMPLETED' AND started_at IS NOT NULL
         THEN hits * (completed_at - started_at) ELSE 0 END) AS seconds_saved,
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
       created_at, updated_at, started_at, completed_at, scheduled_at, length(result) AS result_length
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
DELETE_TERMINAL_BEFORE = """
DELETE FROM executions
WHERE seq IN (
    SELECT seq FROM executions
    WHERE completed_at IS NOT NULL AND completed_at < :cutoff AND status IN ('COMPLETED', 'FAILED', 'CANCELLED')
    ORDER BY completed_at
    LIMIT :limit)
RETURNING workflow_id, session_id, key
"""
