-- v1: the base schema: runs with self-describing measurements, studies and their trials.
CREATE TABLE runs (
  id            INTEGER PRIMARY KEY,
  kind          TEXT NOT NULL CHECK (kind <> ''),
  created_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
  config_json   TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(config_json)),
  git_revision  TEXT NOT NULL DEFAULT '',
  seed          INTEGER NOT NULL DEFAULT 0,
  device        TEXT NOT NULL DEFAULT '',
  versions_json TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(versions_json)),
  status        TEXT NOT NULL DEFAULT 'complete' CHECK (status IN ('running', 'complete', 'failed'))
);
CREATE TABLE measurements (
  id     INTEGER PRIMARY KEY,
  run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  name   TEXT NOT NULL CHECK (name <> ''),
  unit   TEXT NOT NULL DEFAULT '',
  value  REAL NOT NULL,
  step   INTEGER,
  block  INTEGER,
  op     TEXT,
  source TEXT NOT NULL DEFAULT ''
);
CREATE INDEX measurements_by_run ON measurements(run_id);
CREATE TABLE studies (
  id          INTEGER PRIMARY KEY,
  name        TEXT NOT NULL UNIQUE CHECK (name <> ''),
  config_json TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(config_json)),
  created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE TABLE trials (
  id             INTEGER PRIMARY KEY,
  study_id       INTEGER NOT NULL REFERENCES studies(id) ON DELETE CASCADE,
  number         INTEGER NOT NULL,
  genome_json    TEXT NOT NULL CHECK (json_valid(genome_json)),
  state          TEXT NOT NULL DEFAULT 'pending'
                 CHECK (state IN ('pending', 'running', 'complete', 'failed')),
  claimed_by     TEXT,
  claimed_at     TEXT,
  predicted_cost REAL,
  fitness        REAL,
  wall_s         REAL,
  device         TEXT,
  UNIQUE (study_id, genome_json),  -- a genome is never evaluated twice
  UNIQUE (study_id, number)
);
