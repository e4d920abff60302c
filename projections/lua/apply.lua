-- Apply one event to the read model, atomically: a compare-and-set on the stream's version and hash.
--
-- KEYS[1]  state key of the stream            (fs:state:{stream})
-- KEYS[2]  checkpoint key                     (fs:checkpoint:{group}:{topic}:{partition}; ignored if ARGV[3] == "")
-- KEYS[3]  environments set                   (fs:environments)
-- KEYS[4]  head key of the stream             (fs:head:{stream}: "{version}:{hash}", read without decoding the state)
-- KEYS[5]  log epoch key of the checkpoint    (fs:epoch:{group}:{topic}:{partition}; ignored if ARGV[6] == "")
-- KEYS[4+2i], KEYS[5+2i]  hash and revision counter of write i (i = 1..n)
-- ARGV[1]  version of the event
-- ARGV[2]  the new state JSON (written only when the event is the next one)
-- ARGV[3]  checkpoint value (Kafka offset + 1), or "" for none
-- ARGV[4]  checkpoint floor: the checkpoint the projector believes is stored ("" = no check)
-- ARGV[5]  number of writes n
-- ARGV[6]  log epoch of the record ("" = no check; a missing epoch key is epoch 0)
-- ARGV[7]  prev_hash of the event ("" = no check)
-- ARGV[8]  hash of the event, stored in the head ("" = unknown: the next event's prev_hash is not checked)
-- ARGV[9+4(i-1)] .. ARGV[12+4(i-1)]: field, document ("" = delete), channel, environment ("" = none)
--
-- Returns {outcome, stored_version}: "applied" (stored == version - 1), "duplicate"
-- (stored >= version: nothing but the checkpoint changes), "gap" (stored < version - 1: nothing
-- changes, not even the checkpoint), "chain" (stored == version - 1 but the stored hash is not the
-- event's prev_hash: nothing changes), "behind" (the stored checkpoint is below the floor: the read
-- model lost data, e.g. Redis was wiped; nothing changes and the projector must rewind), or
-- {"epoch", stored_epoch} (the checkpoint belongs to another log epoch: nothing changes).
--
-- A state written before the head key existed (or by an older rebuild) is decoded once; the head
-- is written with the next change.

local version = tonumber(ARGV[1])
local stored, stored_hash = 0, ''
local head = redis.call('GET', KEYS[4])
if head then
  local sep = string.find(head, ':', 1, true)
  stored = tonumber(string.sub(head, 1, sep - 1)) or 0
  stored_hash = string.sub(head, sep + 1)
else
  local raw = redis.call('GET', KEYS[1])
  if raw then
    local decoded = cjson.decode(raw)
    stored = tonumber(decoded['version']) or 0
    if type(decoded['last_hash']) == 'string' then
      stored_hash = decoded['last_hash']
    end
  end
end

if ARGV[6] ~= '' then
  local stored_epoch = tonumber(redis.call('GET', KEYS[5]) or '0') or 0
  if stored_epoch ~= tonumber(ARGV[6]) then
    return {'epoch', stored_epoch}
  end
end

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
if stored > 0 and ARGV[7] ~= '' and stored_hash ~= '' and stored_hash ~= ARGV[7] then
  return {'chain', stored}
end
if ARGV[2] == '' then
  return {'stale_plan', stored}
end

redis.call('SET', KEYS[1], ARGV[2])
redis.call('SET', KEYS[4], ARGV[1] .. ':' .. ARGV[8])
local n = tonumber(ARGV[5])
for i = 1, n do
  local hash_key = KEYS[4 + 2 * i]
  local rev_key = KEYS[5 + 2 * i]
  local base = 8 + 4 * (i - 1)
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
