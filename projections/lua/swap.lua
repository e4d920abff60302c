-- Switch a caught-up shadow read model onto the live keys, atomically.
--
-- ARGV[1] n_ckpt, ARGV[2] n_pairs, ARGV[3] n_stale, ARGV[4] n_revs
-- KEYS, in order:
--   n_ckpt pairs (live checkpoint, shadow checkpoint)
--   n_pairs pairs (shadow key, live key)        renamed shadow -> live (RENAME overwrites)
--   n_stale live keys                            deleted (not present in the shadow)
--   n_revs live revision counters               incremented, then {"reload": true, "rev": n} published
-- ARGV[5 .. 4+n_revs]: the change channel of each revision counter.
--
-- Refuses (returns {"behind", partition index}) unless every shadow checkpoint is at or beyond
-- the live one: the shadow then reflects a longer prefix of the same log, so switching never
-- moves the read model back in time. Returns {"switched", n_pairs}.

local n_ckpt, n_pairs, n_stale, n_revs = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local k = 0
for i = 1, n_ckpt do
  local live = tonumber(redis.call('GET', KEYS[k + 1]) or '0') or 0
  local shadow = tonumber(redis.call('GET', KEYS[k + 2]) or '0') or 0
  if shadow < live then
    return {'behind', i}
  end
  k = k + 2
end
for _ = 1, n_pairs do
  redis.call('RENAME', KEYS[k + 1], KEYS[k + 2])
  k = k + 2
end
for _ = 1, n_stale do
  redis.call('DEL', KEYS[k + 1])
  k = k + 1
end
for i = 1, n_revs do
  local rev = redis.call('INCR', KEYS[k + 1])
  redis.call('PUBLISH', ARGV[4 + i], cjson.encode({reload = true, rev = rev}))
  k = k + 1
end
return {'switched', n_pairs}
