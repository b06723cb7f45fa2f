-- tenure-redis compare-and-swap: one script, one round trip.
--
-- KEYS[1]  the lock's key
-- ARGV[1]  "create" or "update"
-- ARGV[2]  the expected version (update only)
-- ARGV[3]  the new record, in tenure's JSON form (written verbatim)
-- ARGV[4]  the channel on which the new value is PUBLISHed
-- ARGV[5]  key expiry in milliseconds; "0" keeps the key forever
--
-- Replies:
--   {"ok", version}         written; version is the new version
--   {"conflict", value}     the key holds another version (value: what it holds)
--   {"absent"}              update of a key that does not exist
--   {"corrupt", reason}     the key holds something that is not ours: untouched
--
-- The stored value is the envelope {"version":N,"record":{...}}. It is built
-- by concatenation, never by cjson.encode, so the record's bytes (and numbers
-- such as leaderTransitions) are kept exactly as the client wrote them.

if redis.replicate_commands then
  pcall(redis.replicate_commands) -- Redis 3.2 to 4: TIME before a write
end

local key = KEYS[1]
local kind = redis.call('TYPE', key)['ok']
local current = nil
local version = nil
if kind ~= 'none' then
  if kind ~= 'string' then
    return {'corrupt', 'the key holds a Redis ' .. kind .. ', not a tenure lock record'}
  end
  current = redis.call('GET', key)
  local ok, decoded = pcall(cjson.decode, current)
  if not ok or type(decoded) ~= 'table' or type(decoded['version']) ~= 'number'
      or type(decoded['record']) ~= 'table'
      or type(decoded['record']['leaseDurationSeconds']) ~= 'number' then
    return {'corrupt', 'the value is not a tenure lock envelope'}
  end
  version = decoded['version']
end

if ARGV[1] == 'create' then
  if current then
    return {'conflict', current}
  end
  -- Versions start at the server's time in microseconds, so a key that was
  -- deleted or expired and created again never repeats an old version.
  local now = redis.call('TIME')
  version = tonumber(now[1]) * 1000000 + tonumber(now[2])
else
  if not current then
    return {'absent'}
  end
  if string.format('%.0f', version) ~= ARGV[2] then
    return {'conflict', current}
  end
  version = version + 1
end

local v = string.format('%.0f', version)
local value = '{"version":' .. v .. ',"record":' .. ARGV[3] .. '}'
-- PUBLISH first: a script is not rolled back, so a PUBLISH refused by an
-- ACL (no channel permission) must fail before anything is written.
redis.call('PUBLISH', ARGV[4], value)
local px = tonumber(ARGV[5])
if px and px > 0 then
  redis.call('SET', key, value, 'PX', px)
else
  redis.call('SET', key, value)
end
return {'ok', v}
