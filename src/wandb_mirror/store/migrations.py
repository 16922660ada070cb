"""Versioned catalog schema. Append a migration, never edit one that has shipped.

JSON columns hold W&B's JSON text (config in W&B's wrapped form `{"k": {"value": v, "desc": null}}`)
as strict JSON: NaN and infinities are spelled as wandb_mirror/jsontext.py says (since the analyst_catalog migration), and
turned back into W&B's tokens when read, so a served store answers what the upstream answered.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

import sqlite_utils

from .analyst_schema import declare_foreign_keys_and_strict_json

# (name, SQL script). Each runs in one transaction together with its bookkeeping row.
MIGRATIONS: list[tuple[str, str]] = []
# name -> function(conn) returning SQL run before the migration's own, in its transaction.
PYTHON_STEPS: dict[str, Callable[[sqlite3.Connection], str]] = {}


def migration(name: str, sql: str) -> None:
    MIGRATIONS.append((name, sql))


migration(
    "m001_initial",
    """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);

CREATE TABLE entities (
    name TEXT PRIMARY KEY,
    id TEXT,
    is_team INTEGER DEFAULT 0,
    created_at TEXT
);

CREATE TABLE users (
    username TEXT PRIMARY KEY,
    id TEXT,
    name TEXT,
    email TEXT,
    entity TEXT,
    admin INTEGER DEFAULT 0,
    teams TEXT DEFAULT '[]'
);

CREATE TABLE projects (
    pk INTEGER PRIMARY KEY,
    entity TEXT NOT NULL,
    name TEXT NOT NULL,
    id TEXT,
    internal_id TEXT,
    description TEXT,
    created_at TEXT,
    updated_at TEXT,
    username TEXT,
    tombstoned_at TEXT,
    UNIQUE (entity, name)
);

CREATE TABLE runs (
    pk INTEGER PRIMARY KEY,
    project_pk INTEGER NOT NULL REFERENCES projects(pk),
    name TEXT NOT NULL,
    storage_id TEXT,
    display_name TEXT,
    state TEXT,
    config TEXT DEFAULT '{}',
    summary TEXT DEFAULT '{}',
    system_metrics TEXT DEFAULT '{}',
    tags TEXT DEFAULT '[]',
    notes TEXT,
    description TEXT,
    group_name TEXT,
    job_type TEXT,
    host TEXT,
    commit_hash TEXT,
    username TEXT,
    user_name TEXT,
    sweep_name TEXT,
    read_only INTEGER DEFAULT 0,
    created_at TEXT,
    heartbeat_at TEXT,
    updated_at TEXT,
    history_keys TEXT DEFAULT '{}',
    last_step INTEGER DEFAULT -1,
    history_line_count INTEGER DEFAULT 0,
    events_line_count INTEGER DEFAULT 0,
    mirrored_at TEXT,
    tombstoned_at TEXT,
    UNIQUE (project_pk, name)
);
CREATE INDEX runs_created ON runs (project_pk, created_at);
CREATE INDEX runs_sweep ON runs (project_pk, sweep_name);

CREATE TABLE history (
    run_pk INTEGER NOT NULL,
    step INTEGER NOT NULL,
    row TEXT NOT NULL,
    PRIMARY KEY (run_pk, step)
) WITHOUT ROWID;

CREATE TABLE events (
    run_pk INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    row TEXT NOT NULL,
    PRIMARY KEY (run_pk, seq)
) WITHOUT ROWID;

CREATE TABLE files (
    pk INTEGER PRIMARY KEY,
    run_pk INTEGER NOT NULL REFERENCES runs(pk),
    name TEXT NOT NULL,
    id TEXT,
    size INTEGER NOT NULL,
    md5 TEXT NOT NULL,
    mimetype TEXT,
    updated_at TEXT,
    mirrored_at TEXT,
    tombstoned_at TEXT,
    UNIQUE (run_pk, name)
);
CREATE INDEX files_md5 ON files (md5);

-- every version of a run file ever mirrored; `files` points at the newest one
CREATE TABLE file_versions (
    pk INTEGER PRIMARY KEY,
    run_pk INTEGER NOT NULL,
    name TEXT NOT NULL,
    size INTEGER NOT NULL,
    md5 TEXT NOT NULL,
    updated_at TEXT,
    mirrored_at TEXT,
    UNIQUE (run_pk, name, md5)
);
CREATE INDEX file_versions_md5 ON file_versions (md5);

CREATE TABLE artifact_types (
    pk INTEGER PRIMARY KEY,
    project_pk INTEGER NOT NULL,
    name TEXT NOT NULL,
    id TEXT,
    description TEXT,
    created_at TEXT,
    UNIQUE (project_pk, name)
);

CREATE TABLE artifact_collections (
    pk INTEGER PRIMARY KEY,
    project_pk INTEGER NOT NULL,
    name TEXT NOT NULL,
    id TEXT,
    type_name TEXT NOT NULL,
    kind TEXT DEFAULT 'SEQUENCE',
    description TEXT,
    tags TEXT DEFAULT '[]',
    created_at TEXT,
    updated_at TEXT,
    tombstoned_at TEXT,
    UNIQUE (project_pk, name)
);

CREATE TABLE artifacts (
    pk INTEGER PRIMARY KEY,
    collection_pk INTEGER NOT NULL REFERENCES artifact_collections(pk),
    id TEXT NOT NULL UNIQUE,
    membership_id TEXT,
    version_index INTEGER NOT NULL,
    type_name TEXT NOT NULL,
    aliases TEXT DEFAULT '[]',
    tags TEXT DEFAULT '[]',
    state TEXT DEFAULT 'COMMITTED',
    digest TEXT,
    digest_algorithm TEXT DEFAULT 'MANIFEST_MD5',
    description TEXT,
    metadata TEXT DEFAULT '{}',
    size INTEGER DEFAULT 0,
    file_count INTEGER DEFAULT 0,
    commit_hash TEXT,
    history_step INTEGER,
    ttl_duration_seconds INTEGER DEFAULT -1,
    created_at TEXT,
    updated_at TEXT,
    manifest_md5 TEXT,
    producer_run_pk INTEGER,
    mirrored_at TEXT,
    tombstoned_at TEXT,
    UNIQUE (collection_pk, version_index)
);

-- the manifest entries, denormalised for serving and verification (the manifest itself is an object)
CREATE TABLE artifact_files (
    artifact_pk INTEGER NOT NULL,
    path TEXT NOT NULL,
    digest TEXT NOT NULL,
    size INTEGER NOT NULL,
    md5 TEXT,               -- object key; NULL for reference entries
    ref TEXT,
    birth_artifact_id TEXT,
    extra TEXT DEFAULT '{}',
    PRIMARY KEY (artifact_pk, path)
) WITHOUT ROWID;
CREATE INDEX artifact_files_md5 ON artifact_files (md5);

CREATE TABLE artifact_usage (
    artifact_pk INTEGER NOT NULL,
    run_pk INTEGER NOT NULL,
    PRIMARY KEY (artifact_pk, run_pk)
) WITHOUT ROWID;

CREATE TABLE sweeps (
    pk INTEGER PRIMARY KEY,
    project_pk INTEGER NOT NULL,
    name TEXT NOT NULL,
    id TEXT,
    display_name TEXT,
    config TEXT,            -- YAML, as W&B stores it
    method TEXT,
    state TEXT,
    description TEXT,
    best_loss REAL,
    metric_name TEXT,
    metric_goal TEXT,
    run_count INTEGER DEFAULT 0,
    run_count_expected INTEGER,
    created_at TEXT,
    updated_at TEXT,
    tombstoned_at TEXT,
    UNIQUE (project_pk, name)
);

CREATE TABLE reports (
    pk INTEGER PRIMARY KEY,
    project_pk INTEGER NOT NULL,
    id TEXT NOT NULL,
    name TEXT,
    display_name TEXT,
    description TEXT,
    spec TEXT DEFAULT '{}',
    username TEXT,
    created_at TEXT,
    updated_at TEXT,
    tombstoned_at TEXT,
    UNIQUE (project_pk, id)
);

-- sync bookkeeping ------------------------------------------------------------------------
CREATE TABLE passes (
    id INTEGER PRIMARY KEY,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    status TEXT NOT NULL DEFAULT 'running',   -- running | ok | errors | failed
    requests INTEGER DEFAULT 0,
    stats TEXT DEFAULT '{}',
    errors TEXT DEFAULT '[]'
);

-- per-project watermarks and other resumable sync state
CREATE TABLE sync_state (
    project_pk INTEGER NOT NULL,
    key TEXT NOT NULL,
    value TEXT,
    PRIMARY KEY (project_pk, key)
) WITHOUT ROWID;

-- the change log: typed events, in commit order; plugins consume it through durable cursors
CREATE TABLE changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    pass_id INTEGER,
    at TEXT NOT NULL,
    kind TEXT NOT NULL,
    entity TEXT,
    project TEXT,
    run TEXT,          -- run name (id) when the change is about a run
    subject TEXT,      -- file name, artifact id, sweep name, ... when there is one
    payload TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX changes_run ON changes (entity, project, run, seq);
CREATE INDEX changes_kind ON changes (kind, seq);

-- upstream items that failed verification or were unsafe; never stored as good
CREATE TABLE quarantine (
    pk INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    pass_id INTEGER,
    kind TEXT NOT NULL,
    upstream_path TEXT NOT NULL,
    reason TEXT NOT NULL,
    detail TEXT
);

-- plugins: delivery cursors and the journal of upstream writes
CREATE TABLE plugin_cursors (
    plugin TEXT PRIMARY KEY,
    seq INTEGER NOT NULL DEFAULT 0,
    failures INTEGER NOT NULL DEFAULT 0,
    disabled_at TEXT,
    last_error TEXT
);

CREATE TABLE journal (
    pk INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    plugin TEXT NOT NULL,
    action TEXT NOT NULL,        -- summary | config | tags | notes | delete_files | alias_add | alias_remove
    target TEXT NOT NULL,        -- entity/project/run[/file] or entity/project/collection:vN
    before TEXT,
    after TEXT,
    dry_run INTEGER NOT NULL,
    result TEXT NOT NULL         -- ok | dry-run | error: ...
);
""",
)


# plugins helper: per-plugin key/value state (the `store.state` of the hook API), retry bookkeeping
# for delivery, and `best_runs`, a view over the best_run plugin's state so the choice is queryable.
migration(
    "m002_plugin_state",
    """
CREATE TABLE plugin_state (
    plugin TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,          -- JSON
    updated_at TEXT NOT NULL,
    PRIMARY KEY (plugin, key)
) WITHOUT ROWID;

ALTER TABLE plugin_cursors ADD COLUMN updated_at TEXT;
ALTER TABLE plugin_cursors ADD COLUMN retry_at TEXT;

CREATE INDEX journal_plugin ON journal (plugin, pk);

CREATE VIEW best_runs AS
SELECT json_extract(value, '$.entity') AS entity,
       json_extract(value, '$.project') AS project,
       json_extract(value, '$.sweep') AS sweep,
       json_extract(value, '$.run') AS run,
       json_extract(value, '$.metric') AS metric,
       json_extract(value, '$.goal') AS goal,
       json_extract(value, '$.value') AS value,
       json_extract(value, '$.source') AS source,
       json_extract(value, '$.previous_run') AS previous_run,
       json_extract(value, '$.chosen_at') AS chosen_at
FROM plugin_state WHERE plugin = 'best_run' AND key LIKE 'best:%';
""",
)


# The rest of the Public API (issue 15): the organization, its teams' members, registries (projects
# named wandb-registry-NAME in the organization's entity) and the versions linked into their
# collections, runs' console output, automations and integrations. Secrets are never stored:
# integrations keep names and URLs only.
migration(
    "m003_org_registry_console",
    """
CREATE TABLE organizations (
    name TEXT PRIMARY KEY,
    id TEXT,
    org_entity TEXT NOT NULL,
    org_entity_id TEXT,
    mirrored_at TEXT
);
ALTER TABLE entities ADD COLUMN organization TEXT;

CREATE TABLE team_members (
    team TEXT NOT NULL,
    username TEXT NOT NULL,
    id TEXT,
    name TEXT,
    email TEXT,
    admin INTEGER DEFAULT 0,
    pending INTEGER DEFAULT 0,
    account_type TEXT,
    role TEXT,
    tombstoned_at TEXT,
    PRIMARY KEY (team, username)
);

CREATE TABLE registries (
    project_pk INTEGER PRIMARY KEY REFERENCES projects(pk),
    access TEXT,
    allow_all_types INTEGER DEFAULT 0,
    artifact_types TEXT DEFAULT '[]'
);

CREATE TABLE artifact_links (
    pk INTEGER PRIMARY KEY,
    collection_pk INTEGER NOT NULL REFERENCES artifact_collections(pk),
    artifact_pk INTEGER NOT NULL REFERENCES artifacts(pk),
    membership_id TEXT,
    version_index INTEGER NOT NULL,
    aliases TEXT DEFAULT '[]',
    created_at TEXT,
    tombstoned_at TEXT,
    UNIQUE (collection_pk, version_index)
);
CREATE INDEX artifact_links_artifact ON artifact_links (artifact_pk);

CREATE TABLE console_lines (
    run_pk INTEGER NOT NULL,
    number INTEGER NOT NULL,
    timestamp TEXT,
    level TEXT,
    label TEXT,
    line TEXT NOT NULL,
    PRIMARY KEY (run_pk, number)
) WITHOUT ROWID;

CREATE TABLE integrations (
    id TEXT PRIMARY KEY,
    entity TEXT NOT NULL,
    kind TEXT NOT NULL,          -- GenericWebhookIntegration | SlackIntegration
    name TEXT,
    url_endpoint TEXT,
    team_name TEXT,
    channel_name TEXT,
    created_at TEXT,
    tombstoned_at TEXT
);

CREATE TABLE automations (
    id TEXT PRIMARY KEY,
    entity TEXT NOT NULL,
    name TEXT NOT NULL,
    description TEXT,
    enabled INTEGER DEFAULT 1,
    scope TEXT NOT NULL,         -- JSON {"typename", "id", "name"}
    event TEXT NOT NULL,         -- JSON {"eventType", "filter"}
    action TEXT NOT NULL,        -- JSON {"typename", ...the action's fields; integrations by id}
    created_at TEXT,
    updated_at TEXT,
    tombstoned_at TEXT
);
""",
)

# history segments: a run's history as Parquet objects, indexed by step range (store/history.py);
# the `history` table stays as the tail of rows not compacted yet.
migration(
    "m004_history_segments",
    """
CREATE TABLE history_segments (
    run_pk INTEGER NOT NULL,
    first_step INTEGER NOT NULL,
    last_step INTEGER NOT NULL,
    rows INTEGER NOT NULL,
    keys TEXT NOT NULL,           -- JSON list of the segment's columns
    md5 TEXT NOT NULL,            -- the Parquet object
    size INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (run_pk, first_step)
) WITHOUT ROWID;
CREATE INDEX history_segments_md5 ON history_segments (md5);
""",
)

# Strict JSON in every JSON column (wandb_mirror/jsontext.py: NaN and infinities no longer break
# SQLite's JSON functions or datasette), declared foreign keys for every relation (documentation
# and datasette's links: the catalog does not enforce them), indexes for the lookups by run, and
# views for humans: `runs_flat` (one row per run, SDK-aligned names, config and summary unwrapped)
# and `history_long` (one row per run, step and key).
migration(
    "m004_analyst_catalog",
    """
CREATE INDEX IF NOT EXISTS file_versions_run ON file_versions (run_pk, name);
CREATE INDEX IF NOT EXISTS artifact_usage_run ON artifact_usage (run_pk);
CREATE INDEX IF NOT EXISTS artifacts_producer ON artifacts (producer_run_pk);

CREATE VIEW runs_flat AS
SELECT r.pk AS run_pk, p.entity AS entity, p.name AS project, r.name AS id, r.display_name AS name,
       r.state AS state, r.created_at AS created_at, r.heartbeat_at AS heartbeat_at,
       r.updated_at AS updated_at, r.tags AS tags, r.group_name AS "group", r.job_type AS job_type,
       r.sweep_name AS sweep, r.username AS user, r.host AS host, r.notes AS notes,
       r.last_step AS last_step, r.tombstoned_at AS deleted_at,
       (SELECT json_group_object(c.key, CASE json_type(c.value, '$.value')
                 WHEN 'true' THEN json('true') WHEN 'false' THEN json('false')
                 WHEN 'real' THEN json(CASE WHEN json_extract(c.value, '$.value') > 1.7976931348623157e308 THEN '9e999'
                                            WHEN json_extract(c.value, '$.value') < -1.7976931348623157e308 THEN '-9e999'
                                            ELSE CAST(json_extract(c.value, '$.value') AS TEXT) END)
                 ELSE json_extract(c.value, '$.value') END)
          FROM json_each(r.config) AS c WHERE c.key != '_wandb') AS config,
       json_remove(r.summary, '$._wandb') AS summary
FROM runs r JOIN projects p ON p.pk = r.project_pk;

CREATE VIEW history_long AS
SELECT p.entity AS entity, p.name AS project, r.name AS run_id, h.step AS step, j.key AS key,
       j.value AS value, j.type AS type
FROM history h JOIN runs r ON r.pk = h.run_pk JOIN projects p ON p.pk = r.project_pk, json_each(h.row) AS j
WHERE j.key != '_step';
""",
)
PYTHON_STEPS["m004_analyst_catalog"] = declare_foreign_keys_and_strict_json

# Column names that no longer invert the SDK's: `runs.name` held the run id (GraphQL's Run.name,
# the SDK's run.id) and `runs.user_name` the user's display name beside `username`, the login.
# RENAME COLUMN rewrites every reference in the schema: the UNIQUE key, indexes and the views
# (runs_flat, history_long). No other table holds a run id under `name`: files, history,
# artifacts and the rest reference runs by `run_pk`, and `changes.run` already says what it holds.
migration(
    "m005_run_id_columns",
    """
ALTER TABLE runs RENAME COLUMN name TO run_id;
ALTER TABLE runs RENAME COLUMN user_name TO user_display_name;
""",
)


# Several workers on one catalog (store/claims.py): `claims` leases a unit of work (a project, the
# organization, plugin delivery) to one worker at a time until `expires_at` (epoch seconds; a
# worker renews while it works, a dead one's lease runs out and is taken over) and remembers who
# finished it last; `rate_pauses` is the one request budget per API key every worker obeys (a
# salted sha256 of the key, never the key); `passes` say which worker ran them and when it was last
# seen alive, so a pass is marked interrupted only once its worker is gone. Plain SQL that
# PostgreSQL runs as well.
migration(
    "m006_worker_claims",
    """
CREATE TABLE claims (
    key TEXT PRIMARY KEY,         -- project:ENTITY/NAME | organization | compaction | delivery
    worker TEXT,                  -- host:pid holding the lease, NULL once released
    claimed_at TEXT,
    expires_at DOUBLE PRECISION NOT NULL DEFAULT 0,  -- epoch seconds (REAL is 4 bytes on PostgreSQL)
    done_by TEXT,                 -- host:pid that finished the unit last
    done_at TEXT,
    done_status TEXT              -- ok | errors | failed
);

CREATE TABLE rate_pauses (
    key_fingerprint TEXT PRIMARY KEY,
    until_at DOUBLE PRECISION NOT NULL,  -- epoch seconds: no worker sends a request with this key before
    set_by TEXT,
    reason TEXT
);

ALTER TABLE passes ADD COLUMN worker TEXT;
ALTER TABLE passes ADD COLUMN renewed_at DOUBLE PRECISION;
""",
)


def pending(conn: sqlite3.Connection) -> int:
    """How many migrations a catalog lacks; 0 for one without bookkeeping (not a catalog of ours)."""
    try:
        done = conn.execute("SELECT COUNT(*) FROM _migrations").fetchone()[0]
    except sqlite3.DatabaseError:
        return 0
    return max(0, len(MIGRATIONS) - int(done))


def apply(db: sqlite_utils.Database) -> int:
    """Bring the catalog to the newest schema; returns the resulting version."""
    db.execute("CREATE TABLE IF NOT EXISTS _migrations (version INTEGER PRIMARY KEY, name TEXT, applied_at TEXT)")
    done = {row[0] for row in db.execute("SELECT version FROM _migrations").fetchall()}
    for version, (name, sql) in enumerate(MIGRATIONS, start=1):
        if version in done:
            continue
        if name in PYTHON_STEPS:  # rewrites rows or tables: SQL generated from the catalog as it is
            sql = PYTHON_STEPS[name](db.conn) + sql
        # executescript commits any open transaction first; BEGIN/COMMIT make the migration atomic.
        db.conn.executescript(
            f"BEGIN;\n{sql}\nINSERT INTO _migrations (version, name, applied_at) "
            f"VALUES ({version}, '{name}', datetime('now'));\nCOMMIT;"
        )
    return len(MIGRATIONS)
