/**
 * Schema migrations of the coordinator state DB. MIGRATIONS[i] upgrades user_version i to i+1
 * and runs in one transaction with the user_version bump, so a crash mid-migration leaves the
 * old version intact. Append new migrations; never edit a released one.
 */
export const MIGRATIONS: readonly string[] = [
  /* 1: initial schema */ `
  CREATE TABLE experiments (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    strategy    TEXT NOT NULL,
    config_json TEXT NOT NULL,
    created_at  TEXT NOT NULL
  );

  CREATE TABLE sites (
    id                  TEXT PRIMARY KEY,
    fingerprint         TEXT NOT NULL,          -- public-key fingerprint the site enrolled with
    enrolled_at         TEXT NOT NULL,
    last_seen           TEXT,
    backend             TEXT,                   -- tfjs backend the site trains on
    memory_budget_bytes INTEGER CHECK (memory_budget_bytes IS NULL OR memory_budget_bytes > 0),
    planned_patch_json  TEXT,                   -- [x, y, z] patch size from the site's plan
    planned_batch       INTEGER CHECK (planned_batch IS NULL OR planned_batch > 0),
    online              INTEGER NOT NULL DEFAULT 0 CHECK (online IN (0, 1))
  );

  -- One row per attempt; a retried round gets a new row with attempt + 1, the failed one stays.
  CREATE TABLE rounds (
    id                  INTEGER PRIMARY KEY,
    experiment_id       TEXT NOT NULL REFERENCES experiments(id),
    round               INTEGER NOT NULL CHECK (round >= 0),
    attempt             INTEGER NOT NULL CHECK (attempt >= 1),
    status              TEXT NOT NULL CHECK (status IN ('open', 'aggregating', 'complete', 'failed')),
    started_at          TEXT NOT NULL,
    ended_at            TEXT,
    deadline            TEXT,
    selected_sites_json TEXT NOT NULL,
    checkpoint_version  INTEGER CHECK (checkpoint_version IS NULL OR checkpoint_version >= 1),
    duration_ms         INTEGER,
    failure_reason      TEXT,
    UNIQUE (experiment_id, round, attempt),
    CHECK (status <> 'complete' OR checkpoint_version IS NOT NULL)
  );
  CREATE UNIQUE INDEX rounds_one_complete ON rounds(experiment_id, round) WHERE status = 'complete';
  CREATE UNIQUE INDEX rounds_one_active ON rounds(experiment_id) WHERE status IN ('open', 'aggregating');
  CREATE UNIQUE INDEX rounds_checkpoint_once ON rounds(checkpoint_version) WHERE status = 'complete';

  CREATE TABLE site_updates (
    id           INTEGER PRIMARY KEY,
    round_id     INTEGER NOT NULL REFERENCES rounds(id),
    site_id      TEXT NOT NULL REFERENCES sites(id),
    status       TEXT NOT NULL CHECK (status IN ('accepted', 'rejected')),
    reason       TEXT,
    num_samples  INTEGER CHECK (num_samples IS NULL OR num_samples >= 0),
    bytes        INTEGER CHECK (bytes IS NULL OR bytes >= 0),
    metrics_json TEXT,
    received_at  TEXT NOT NULL
  );
  -- A site may be rejected and retry, but only one of its updates per attempt counts.
  CREATE UNIQUE INDEX site_updates_one_accepted ON site_updates(round_id, site_id) WHERE status = 'accepted';
  CREATE INDEX site_updates_by_round ON site_updates(round_id);

  CREATE TABLE metrics (
    id          INTEGER PRIMARY KEY,
    round_id    INTEGER NOT NULL REFERENCES rounds(id),
    site_id     TEXT REFERENCES sites(id),      -- NULL: a coordinator-side (global) metric
    kind        TEXT NOT NULL,                  -- e.g. 'loss', 'val_dice'
    label       TEXT,                           -- e.g. the label of a per-label Dice
    value       REAL NOT NULL,
    recorded_at TEXT NOT NULL
  );
  CREATE INDEX metrics_by_round ON metrics(round_id);

  CREATE TABLE events (
    id            INTEGER PRIMARY KEY,
    at            TEXT NOT NULL,
    kind          TEXT NOT NULL,
    experiment_id TEXT REFERENCES experiments(id),
    round         INTEGER,
    site_id       TEXT,                         -- no FK: refused enrolments name unknown sites
    message       TEXT NOT NULL
  );
  CREATE INDEX events_by_kind ON events(kind);
  `,
  /* 2: operator resumes of a stopped experiment (patchfed coordinator --resume) */ `
  -- Attempts of a round up to after_attempt no longer count towards maxRoundAttempts.
  CREATE TABLE round_resumes (
    id            INTEGER PRIMARY KEY,
    experiment_id TEXT NOT NULL REFERENCES experiments(id),
    round         INTEGER NOT NULL CHECK (round >= 1),
    after_attempt INTEGER NOT NULL CHECK (after_attempt >= 0),
    at            TEXT NOT NULL,
    reason        TEXT NOT NULL
  );
  `,
];
