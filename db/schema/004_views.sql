-- v4: the store's views, read by `query`, the tuner and the report. Callers bind their values
-- (a study's name, a model and size) as parameters; none is spliced into SQL text.

-- The newest profile run of each (card, model, size, budget): the latency model's rows.
CREATE VIEW newest_profiles AS
SELECT max(p.id) AS run_id
FROM runs p
WHERE p.kind = 'profile'
GROUP BY p.device, json_extract(p.config_json, '$.model'), json_extract(p.config_json, '$.frames'),
         json_extract(p.config_json, '$.height'), json_extract(p.config_json, '$.width'),
         json_extract(p.config_json, '$.budget');

-- The latency model: one row per (model, size, card, budget), with what a reader judges it by.
-- noisy: the noise stayed above the profile's target; inverted: the profile found the budget out
-- of order with another beyond their noise (the tuner then uses the work-proportional model).
CREATE VIEW latency AS
SELECT model, size, device, budget, step_ms, step_ms / dense_step_ms AS of_dense, noise, created_at,
       coalesce(noisy, 0) AS noisy, coalesce(inverted, 0) AS inverted, dense_step_ms, frames, height, width, run_id
FROM (
  SELECT json_extract(r.config_json, '$.model') AS model,
         json_extract(r.config_json, '$.frames') || 'x' || json_extract(r.config_json, '$.height') || 'x' ||
           json_extract(r.config_json, '$.width') AS size,
         r.device AS device,
         json_extract(r.config_json, '$.budget') AS budget,
         r.created_at AS created_at,
         json_extract(r.config_json, '$.frames') AS frames,
         json_extract(r.config_json, '$.height') AS height,
         json_extract(r.config_json, '$.width') AS width,
         r.id AS run_id,
         (SELECT m.value FROM measurements m WHERE m.run_id = r.id AND m.name = 'step_ms' ORDER BY m.id DESC LIMIT 1) AS step_ms,
         (SELECT m.value FROM measurements m WHERE m.run_id = r.id AND m.name = 'dense_step_ms' ORDER BY m.id DESC LIMIT 1) AS dense_step_ms,
         (SELECT m.value FROM measurements m WHERE m.run_id = r.id AND m.name = 'step_noise' ORDER BY m.id DESC LIMIT 1) AS noise,
         (SELECT m.value FROM measurements m WHERE m.run_id = r.id AND m.name = 'noisy' ORDER BY m.id DESC LIMIT 1) AS noisy,
         (SELECT m.value FROM measurements m WHERE m.run_id = r.id AND m.name = 'inverted' ORDER BY m.id DESC LIMIT 1) AS inverted
  FROM runs r
  WHERE r.id IN (SELECT run_id FROM newest_profiles)
)
WHERE step_ms IS NOT NULL;

-- Every run with its count of measurements.
CREATE VIEW run_summary AS
SELECT r.id, r.kind, r.created_at, r.device, r.seed, r.status, r.git_revision,
       (SELECT count(*) FROM measurements m WHERE m.run_id = r.id) AS measurements
FROM runs r;

-- Every study with its trial count and best fitness so far.
CREATE VIEW study_summary AS
SELECT s.id, s.name, s.created_at,
       (SELECT count(*) FROM trials t WHERE t.study_id = s.id) AS trials,
       (SELECT max(t.fitness) FROM trials t WHERE t.study_id = s.id AND t.state = 'complete') AS best_fitness
FROM studies s;

-- Trials with their study's name, to select by.
CREATE VIEW study_trials AS
SELECT s.name AS study, t.*
FROM trials t JOIN studies s ON s.id = t.study_id;

-- The best complete trial of each study, by the tuner's rule (tuner::ranks_above): higher fitness,
-- then lower predicted cost, then the earlier trial.
CREATE VIEW study_best AS
SELECT a.*
FROM study_trials a
WHERE a.state = 'complete' AND NOT EXISTS (
  SELECT 1 FROM study_trials b
  WHERE b.study_id = a.study_id AND b.state = 'complete'
    AND (b.fitness > a.fitness OR (b.fitness = a.fitness AND (b.predicted_cost < a.predicted_cost OR
         (b.predicted_cost = a.predicted_cost AND b.number < a.number)))));

-- The Pareto front of each study over (predicted cost: lower is better, fitness: higher is better):
-- the complete trials that no other complete trial beats on one and matches or beats on the other.
CREATE VIEW study_pareto AS
SELECT a.*
FROM study_trials a
WHERE a.state = 'complete' AND NOT EXISTS (
  SELECT 1 FROM study_trials b
  WHERE b.study_id = a.study_id AND b.state = 'complete'
    AND b.predicted_cost <= a.predicted_cost AND b.fitness >= a.fitness
    AND (b.predicted_cost < a.predicted_cost OR b.fitness > a.fitness));
