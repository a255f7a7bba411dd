-- v2: exported schedules, and an index for "this metric across runs" queries.
CREATE TABLE exported_schedules (
  id            INTEGER PRIMARY KEY,
  study_id      INTEGER NOT NULL REFERENCES studies(id) ON DELETE CASCADE,
  trial_id      INTEGER NOT NULL REFERENCES trials(id) ON DELETE CASCADE,
  path          TEXT NOT NULL CHECK (path <> ''),
  schedule_json TEXT NOT NULL CHECK (json_valid(schedule_json)),
  created_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX measurements_by_name ON measurements(name, run_id);
