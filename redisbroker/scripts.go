package redisbroker

import "github.com/redis/rueidis"

// The Lua scripts run atomically in Redis, so a room's offset, its stream and
// what its channel carries always agree. Offsets are Lua numbers (doubles) and
// are written with Lua's "%.14g", so they stay exact below 10^14 per room (three
// years at a million publications a second).

// publishScript appends a publication to a room's stream and publishes it
// (formats in message.go).
//
//	KEYS[1] meta hash {e = epoch, o = last offset}   KEYS[2] stream
//	ARGV[1] data  ARGV[2] history size (0: no stream)  ARGV[3] history TTL ms
//	ARGV[4] position TTL ms  ARGV[5] channel  ARGV[6] epoch to use if the meta is missing
//	ARGV[7] the message's encoded metadata ('' : none)
//
// It returns {offset, epoch}. A missing meta hash means the room's stream was
// lost (or never existed): a new epoch starts and any stale stream is
// dropped. If the stream's last entry is not below the new offset (meta and
// stream disagree, which only outside interference causes), a new epoch
// starts too rather than publishing an offset the stream cannot hold.
var publishScript = rueidis.NewLuaScript(`
local meta, stream = KEYS[1], KEYS[2]
local data, size, ttl, metattl, channel, md = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[7]
local m = redis.call('hmget', meta, 'e', 'o')
local e, o = m[1], tonumber(m[2]) or 0
if not e then
  e, o = ARGV[6], 0
  redis.call('del', stream)
end
o = o + 1
if size ~= '0' then
  local fields = {'d', data}
  if md ~= '' then
    fields[3], fields[4] = 'm', md
  end
  local ok = redis.pcall('xadd', stream, 'MAXLEN', '~', size, o .. '-0', unpack(fields))
  if type(ok) == 'table' and ok.err then
    e, o = ARGV[6], 1
    redis.call('del', stream)
    redis.call('xadd', stream, 'MAXLEN', '~', size, '1-0', unpack(fields))
  end
  redis.call('pexpire', stream, ttl)
end
redis.call('hset', meta, 'e', e, 'o', o)
redis.call('pexpire', meta, metattl)
if md == '' then
  redis.call('publish', channel, '1:' .. o .. ':' .. e .. ':' .. data)
else
  redis.call('publish', channel, '2:' .. o .. ':' .. e .. ':' .. #md .. ':' .. md .. data)
end
return {o, e}
`)

// historyScript reads a room's position and, when since's epoch is the
// current one, up to COUNT stream entries from an offset on.
//
//	KEYS[1] meta hash   KEYS[2] stream
//	ARGV[1] since's epoch ('' : position only)   ARGV[2] first offset wanted
//	ARGV[3] count   ARGV[4] position TTL ms   ARGV[5] epoch to use if the meta is missing
//
// It returns {offset, epoch, entries}. A missing meta hash starts the room's
// stream (offset 0, new epoch), so the position given to a client that joins
// an empty room stays valid. Reading refreshes the position's TTL.
var historyScript = rueidis.NewLuaScript(`
local meta, stream = KEYS[1], KEYS[2]
local m = redis.call('hmget', meta, 'e', 'o')
local e, o = m[1], m[2]
if not e then
  e, o = ARGV[5], '0'
  redis.call('del', stream)
  redis.call('hset', meta, 'e', e, 'o', 0)
end
redis.call('pexpire', meta, ARGV[4])
if ARGV[1] == '' or ARGV[1] ~= e then
  return {o, e, {}}
end
return {o, e, redis.call('xrange', stream, ARGV[2], '+', 'COUNT', ARGV[3])}
`)
