-- Apply one event to the read model, atomically: a compare-and-set on the stream's version.
--
-- KEYS[1]  state key of the stream            (fs:state:{stream})
-- KEYS[2]  checkpoint key                     (fs:checkpoint:{group}:{topic}:{partition}; ignored if ARGV[3] == "")
-- KEYS[3]  environments set                   (fs:environments)
-- KEYS[2+2i], KEYS[3+2i]  hash and revision counter of write i (i = 1..n)
-- ARGV[1]  version of the event
-- ARGV[2]  the new state JSON (written only when the event is the next one)
-- ARGV[3]  checkpoint value (Kafka offset + 1), or "" for none
-- ARGV[4]  checkpoint floor: the checkpoint the projector believes is stored ("" = no check)
-- ARGV[5]  number of writes n
-- ARGV[6+4(i-1)] .. ARGV[9+4(i-1)]: field, document ("" = delete), channel, environment ("" = none)
--
-- Returns {outcome, stored_version}: "applied" (stored == version - 1), "duplicate"
-- (stored >= version: nothing but the checkpoint changes), "gap" (stored < version - 1: nothing
-- changes, not even the checkpoint), "behind" (the stored checkpoint is below the floor: the read
-- model lost data, e.g. Redis was wiped; nothing changes and the projector must rewind).

local stored = 0
local raw = redis.call('GET', KEYS[1])
if raw then
  stored = tonumber(cjson.decode(raw)['version']) or 0
end
local version = tonumber(ARGV[1])

if ARGV[4] ~= '' then
  local stored_checkpoint = tonumber(redis.call('GET', KEYS[2]) or '0') or 0
  if stored_checkpoint < tonumber(ARGV[4]) then
    return {'behind', stored}
  end
end

local function move_checkpoint()
  if ARGV[3] ~= '' then
    local current = tonumber(redis.call('GET', KEYS[2]) or '0') or 0
    if tonumber(ARGV[3]) > current then
      redis.call('SET', KEYS[2], ARGV[3])
    end
  end
end

if stored >= version then
  move_checkpoint()
  return {'duplicate', stored}
end
if stored < version - 1 then
  return {'gap', stored}
end
if ARGV[2] == '' then
  return {'stale_plan', stored}
end

redis.call('SET', KEYS[1], ARGV[2])
local n = tonumber(ARGV[5])
for i = 1, n do
  local hash_key = KEYS[2 + 2 * i]
  local rev_key = KEYS[3 + 2 * i]
  local base = 5 + 4 * (i - 1)
  local field, doc, channel, env = ARGV[base + 1], ARGV[base + 2], ARGV[base + 3], ARGV[base + 4]
  if doc == '' then
    redis.call('HDEL', hash_key, field)
  else
    redis.call('HSET', hash_key, field, doc)
  end
  local notice
  local rev = redis.call('INCR', rev_key)
  if env ~= '' then
    redis.call('SADD', KEYS[3], env)
    notice = cjson.encode({flag_key = field, version = version, rev = rev})
  else
    notice = cjson.encode({segment_key = field, version = version, rev = rev})
  end
  redis.call('PUBLISH', channel, notice)
end
move_checkpoint()
return {'applied', stored}
