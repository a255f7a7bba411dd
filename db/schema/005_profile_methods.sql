-- v5: profiles name their method (profile --method). Rows before v5 have none: they are ASTRAEA's.
-- The latency model stays ASTRAEA's per-budget curve; method_latency has every method's step.
DROP VIEW latency;
DROP VIEW newest_profiles;

-- The newest profile run of each (card, model, size, method, budget).
CREATE VIEW newest_profiles AS
SELECT max(p.id) AS run_id
FROM runs p
WHERE p.kind = 'profile'
GROUP BY p.device, json_extract(p.config_json, '$.model'), json_extract(p.config_json, '$.frames'),
         json_extract(p.config_json, '$.height'), json_extract(p.config_json, '$.width'),
         coalesce(json_extract(p.config_json, '$.method'), 'astraea'), json_extract(p.config_json, '$.budget');

-- One row per (model, size, card, method, budget): a step's time under the method after a first
-- step, with what a reader judges it by. noisy: the noise stayed above the profile's target;
-- inverted: the profile found the budget out of order with another beyond their noise.
CREATE VIEW method_latency AS
SELECT model, size, device, method, method_params, budget, step_ms, step_ms / dense_step_ms AS of_dense, noise,
       created_at, coalesce(noisy, 0) AS noisy, coalesce(inverted, 0) AS inverted, dense_step_ms, frames, height,
       width, run_id
FROM (
  SELECT json_extract(r.config_json, '$.model') AS model,
         json_extract(r.config_json, '$.frames') || 'x' || json_extract(r.config_json, '$.height') || 'x' ||
           json_extract(r.config_json, '$.width') AS size,
         r.device AS device,
         coalesce(json_extract(r.config_json, '$.method'), 'astraea') AS method,
         coalesce(json_extract(r.config_json, '$.method_params'), '{}') AS method_params,
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

-- The latency model the tuner and the report read: ASTRAEA's step time at each budget, as in v4.
CREATE VIEW latency AS
SELECT model, size, device, budget, step_ms, of_dense, noise, created_at, noisy, inverted, dense_step_ms, frames,
       height, width, run_id
FROM method_latency
WHERE method = 'astraea' AND budget IS NOT NULL;
