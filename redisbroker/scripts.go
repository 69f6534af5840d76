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
//	KEYS[3] state hash {key = entry}   KEYS[4] state order zset {key: offset}
//	ARGV[8] the state key ('' : none)   ARGV[9] state MaxKeys ('0': the room keeps no state)
//	ARGV[10] state MaxBytes   ARGV[11] state TTL ms   ARGV[12] the entry's cost
//
// It returns {offset, epoch}. A missing meta hash means the room's stream was
// lost (or never existed): a new epoch starts and any stale stream is
// dropped. If the stream's last entry is not below the new offset (meta and
// stream disagree, which only outside interference causes), a new epoch
// starts too rather than publishing an offset the stream cannot hold. A new
// epoch drops the room's state too.
//
// A keyed publication of a room with state replaces its key's entry
// "<ms>:<cost>:<offset>:<m>:<metadata><data>" (ms: Redis TIME of the update)
// and moves the key to the end of the order zset (score: offset); then
// the oldest keys go while the room is over MaxKeys or MaxBytes or their TTL
// passed. The meta hash's field "sb" counts the state's bytes.
var publishScript = rueidis.NewLuaScript(stateLua + `
local meta, stream = KEYS[1], KEYS[2]
local data, size, ttl, metattl, channel, md = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[7]
local m = redis.call('hmget', meta, 'e', 'o')
local e, o = m[1], tonumber(m[2]) or 0
if not e then
  e, o = ARGV[6], 0
  redis.call('del', stream, KEYS[3], KEYS[4])
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
    redis.call('del', stream, KEYS[3], KEYS[4])
    redis.call('xadd', stream, 'MAXLEN', '~', size, '1-0', unpack(fields))
  end
  redis.call('pexpire', stream, ttl)
end
redis.call('hset', meta, 'e', e, 'o', o)
if ARGV[8] ~= '' and ARGV[9] ~= '0' then
  local sh, sz, key, cost = KEYS[3], KEYS[4], ARGV[8], tonumber(ARGV[12])
  local now = nowms()
  local sb = statebytes(meta, sz)
  local old = redis.call('hget', sh, key)
  if old then
    sb = sb - tonumber(string.match(old, '^%d+:(%d+):'))
  end
  redis.call('hset', sh, key, now .. ':' .. cost .. ':' .. o .. ':' .. #md .. ':' .. md .. data)
  redis.call('zadd', sz, o, key)
  sb = evict(sh, sz, sb + cost, tonumber(ARGV[9]), tonumber(ARGV[10]), tonumber(ARGV[11]), now)
  redis.call('hset', meta, 'sb', sb)
  redis.call('pexpire', sh, metattl)
  redis.call('pexpire', sz, metattl)
end
redis.call('pexpire', meta, metattl)
if md == '' then
  redis.call('publish', channel, '1:' .. o .. ':' .. e .. ':' .. data)
else
  redis.call('publish', channel, '2:' .. o .. ':' .. e .. ':' .. #md .. ':' .. md .. data)
end
return {o, e}
`)

// stateLua is shared by the scripts that keep or read a room's state.
const stateLua = `
local function nowms()
  local t = redis.call('time')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function statebytes(meta, sz)
  if redis.call('zcard', sz) == 0 then
    return 0
  end
  return tonumber(redis.call('hget', meta, 'sb')) or 0
end
local function evict(sh, sz, sb, maxk, maxb, ttl, now)
  while true do
    local n = redis.call('zcard', sz)
    if n == 0 then
      return 0
    end
    local head = redis.call('zrange', sz, 0, 0)[1]
    local v = redis.call('hget', sh, head)
    local t, c = 0, 0
    if v then
      local ts, cs = string.match(v, '^(%d+):(%d+):')
      t, c = tonumber(ts) or 0, tonumber(cs) or 0
    end
    if v and n <= maxk and sb <= maxb and t + ttl > now then
      return sb
    end
    redis.call('hdel', sh, head)
    redis.call('zrem', sz, head)
    sb = sb - c
  end
end
`

// stateScript reads a room's position and state.
//
//	KEYS[1] meta hash   KEYS[2] stream   KEYS[3] state hash   KEYS[4] state order zset
//	ARGV[1] position TTL ms   ARGV[2] epoch to use if the meta is missing
//	ARGV[3] state MaxKeys   ARGV[4] state MaxBytes   ARGV[5] state TTL ms
//
// It returns {offset, epoch, {key, entry, ...}} after dropping the expired
// keys. A missing meta hash starts the room's stream, as historyScript does.
var stateScript = rueidis.NewLuaScript(stateLua + `
local meta, stream, sh, sz = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local m = redis.call('hmget', meta, 'e', 'o')
local e, o = m[1], m[2]
if not e then
  e, o = ARGV[2], '0'
  redis.call('del', stream, sh, sz)
  redis.call('hset', meta, 'e', e, 'o', 0)
end
redis.call('pexpire', meta, ARGV[1])
local sb = evict(sh, sz, statebytes(meta, sz), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), nowms())
redis.call('hset', meta, 'sb', sb)
return {o, e, redis.call('hgetall', sh)}
`)

// historyScript reads a room's position and, when since's epoch is the
// current one, up to COUNT stream entries from an offset on.
//
//	KEYS[1] meta hash   KEYS[2] stream   KEYS[3] state hash   KEYS[4] state order zset
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
  redis.call('del', stream, KEYS[3], KEYS[4])
  redis.call('hset', meta, 'e', e, 'o', 0)
end
redis.call('pexpire', meta, ARGV[4])
if ARGV[1] == '' or ARGV[1] ~= e then
  return {o, e, {}}
end
return {o, e, redis.call('xrange', stream, ARGV[2], '+', 'COUNT', ARGV[3])}
`)
