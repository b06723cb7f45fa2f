-- tenure-redis compare-and-swap: one script, one round trip.
--
-- KEYS[1]  the lock's key
-- ARGV[1]  "create" or "update"
-- ARGV[2]  update: the stored value the client read (or wrote) and parsed,
--          byte for byte; the swap happens only if the key holds exactly it
-- ARGV[3]  the new record, in tenure's JSON form (written verbatim)
-- ARGV[4]  the channel on which the new value is PUBLISHed
-- ARGV[5]  key expiry in milliseconds; "0" keeps the key forever
-- ARGV[6]  create: the record's leaderTransitions; the new version is at
--          least this, so the store's token floor (TIME) stays above it
--
-- Replies:
--   {"ok", version}         written; version is the new version
--   {"conflict", value}     the key holds something else (value: what it holds)
--   {"absent"}              update of a key that does not exist
--   {"corrupt", reason}     the key holds something that is not ours: untouched
--
-- The stored value is the envelope {"version":N,"record":{...}}. It is built
-- by concatenation, never by cjson.encode, so the record's bytes (and numbers
-- such as leaderTransitions) are kept exactly as the client wrote them.
--
-- An update compares the exact bytes, not only the version: the client
-- parsed those bytes with tenure's own parser, so a value it could not read
-- (a foreign writer's, even at the expected version) is never overwritten.

if redis.replicate_commands then
  pcall(redis.replicate_commands) -- Redis 3.2 to 4: TIME before a write
end

local key = KEYS[1]
local kind = redis.call('TYPE', key)['ok']
local current = nil
if kind ~= 'none' then
  if kind ~= 'string' then
    return {'corrupt', 'the key holds a Redis ' .. kind .. ', not a tenure lock record'}
  end
  current = redis.call('GET', key)
end

local version
if ARGV[1] == 'create' then
  if current then
    return {'conflict', current}
  end
  -- Versions start at the server's time in microseconds, so a key that was
  -- deleted or expired and created again never repeats an old version, and
  -- the token floor (TIME) stays above every version written.
  local now = redis.call('TIME')
  version = tonumber(now[1]) * 1000000 + tonumber(now[2])
  local floor = tonumber(ARGV[6])
  if floor and floor > version then
    version = floor
  end
else
  if not current then
    return {'absent'}
  end
  if current ~= ARGV[2] then
    return {'conflict', current}
  end
  local ok, decoded = pcall(cjson.decode, current)
  if not ok or type(decoded) ~= 'table' or type(decoded['version']) ~= 'number' then
    return {'corrupt', 'the value is not a tenure lock envelope'}
  end
  version = decoded['version'] + 1
end

local v = string.format('%.0f', version)
local value = '{"version":' .. v .. ',"record":' .. ARGV[3] .. '}'
-- Write first, announce after: a write the server refuses (NOREPLICAS,
-- MISCONF, OOM, READONLY) raises here and is never announced, since an
-- announced version that was never written would hide a later real write.
local px = tonumber(ARGV[5])
if px and px > 0 then
  redis.call('SET', key, value, 'PX', px)
else
  redis.call('SET', key, value)
end
-- A refused announcement (an ACL without the channel) is a missed hint,
-- which watchers tolerate; it must not turn a done write into an error.
redis.pcall('PUBLISH', ARGV[4], value)
return {'ok', v}
