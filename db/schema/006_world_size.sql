-- v6: profiles on several ranks (profile under launch or torchrun) record their world size and
-- layout; rows without them ran on one rank. The views key on both, so a P-rank latency model
-- never mixes with a one-rank one.
DROP VIEW latency;
DROP VIEW method_latency;
DROP VIEW newest_profiles;

-- The newest profile run of each (card, model, size, world size, layout, method, budget).
CREATE VIEW newest_profiles AS
SELECT max(p.id) AS run_id
FROM runs p
WHERE p.kind = 'profile'
GROUP BY p.device, json_extract(p.config_json, '$.model'), json_extract(p.config_json, '$.frames'),
         json_extract(p.config_json, '$.height'), json_extract(p.config_json, '$.width'),
         coalesce(json_extract(p.config_json, '$.world_size'), 1),
         coalesce(json_extract(p.config_json, '$.parallel'), 'one rank'),
         coalesce(json_extract(p.config_json, '$.method'), 'astraea'), json_extract(p.config_json, '$.budget');

-- One row per (model, size, card, world size, layout, method, budget), as in v5. dense_step_ms is
-- the dense step on the same ranks; one_rank_dense_ms the newest one-rank dense step of the same
-- model, size and card, when profiled: the base of a speedup across world sizes.
CREATE VIEW method_latency AS
SELECT model, size, device, world_size, parallel, method, method_params, budget, step_ms,
       step_ms / dense_step_ms AS of_dense, noise, created_at, coalesce(noisy, 0) AS noisy,
       coalesce(inverted, 0) AS inverted, dense_step_ms, frames, height, width, run_id
FROM (
  SELECT json_extract(r.config_json, '$.model') AS model,
         json_extract(r.config_json, '$.frames') || 'x' || json_extract(r.config_json, '$.height') || 'x' ||
           json_extract(r.config_json, '$.width') AS size,
         r.device AS device,
         coalesce(json_extract(r.config_json, '$.world_size'), 1) AS world_size,
         coalesce(json_extract(r.config_json, '$.parallel'), 'one rank') AS parallel,
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

-- The latency model the tuner and the report read: ASTRAEA's step time at each budget, per world
-- size and layout.
CREATE VIEW latency AS
SELECT model, size, device, world_size, parallel, budget, step_ms, of_dense, noise, created_at, noisy, inverted,
       dense_step_ms, frames, height, width, run_id
FROM method_latency
WHERE method = 'astraea' AND budget IS NOT NULL;

-- Speedups across world sizes: each (model, size, card, world size, layout)'s dense step and its
-- fastest ASTRAEA budget step, against the one-rank dense step of the same model, size and card.
CREATE VIEW world_speedup AS
SELECT l.model, l.size, l.device, l.world_size, l.parallel, max(l.dense_step_ms) AS dense_step_ms,
       one.dense_ms AS one_rank_dense_ms, one.dense_ms / max(l.dense_step_ms) AS dense_speedup
FROM latency l
LEFT JOIN (
  SELECT model, size, device, max(dense_step_ms) AS dense_ms FROM latency WHERE world_size = 1
  GROUP BY model, size, device
) one ON one.model = l.model AND one.size = l.size AND one.device = l.device
GROUP BY l.model, l.size, l.device, l.world_size, l.parallel;
