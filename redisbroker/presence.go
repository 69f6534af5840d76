package redisbroker

import (
	"context"
	"encoding/json"
	"strconv"
	"time"

	"github.com/org/rthub"
	"github.com/redis/rueidis"
)

// Cluster presence. Each room with presence has three keys on its shard (same
// hash tag as its stream):
//
//	<prefix>{room}:pc  sorted set: connection → expiry (Redis time, ms)
//	<prefix>{room}:pm  hash: connection → JSON of its rthub.PresenceMember
//	<prefix>{room}:pu  hash: user → number of its live connections
//
// The scripts keep the three in step, with Redis's own clock, so the answers
// "first connection of this user" and "last one" are exact across nodes, and a
// crashed node's connections are swept (by any node) once their TTL passes.

var _ rthub.PresenceStore = (*Broker)(nil)

// presenceAddScript: KEYS pc pm pu; ARGV conn json user ttl_ms.
// Returns 1 when the user had no other live connection.
var presenceAddScript = rueidis.NewLuaScript(`
local pc, pm, pu = KEYS[1], KEYS[2], KEYS[3]
local conn, member, user, ttl = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local t = redis.call('time')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local first = 0
if not redis.call('zscore', pc, conn) then
  if redis.call('hincrby', pu, user, 1) == 1 then first = 1 end
end
redis.call('zadd', pc, now + ttl, conn)
redis.call('hset', pm, conn, member)
for _, k in ipairs(KEYS) do redis.call('pexpire', k, ttl * 4) end
return first
`)

// presenceRemoveScript: KEYS pc pm pu; ARGV conn user. Returns 1 when it was
// the user's last live connection.
var presenceRemoveScript = rueidis.NewLuaScript(`
local pc, pm, pu = KEYS[1], KEYS[2], KEYS[3]
local conn, user = ARGV[1], ARGV[2]
if redis.call('zrem', pc, conn) == 0 then return 0 end
redis.call('hdel', pm, conn)
if redis.call('hincrby', pu, user, -1) <= 0 then
  redis.call('hdel', pu, user)
  return 1
end
return 0
`)

// presenceTouchScript: KEYS pc pm pu; ARGV ttl_ms conn... Renews entries that
// still exist (a swept one is not brought back).
var presenceTouchScript = rueidis.NewLuaScript(`
local pc = KEYS[1]
local ttl = tonumber(ARGV[1])
local t = redis.call('time')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for i = 2, #ARGV do redis.call('zadd', pc, 'XX', now + ttl, ARGV[i]) end
for _, k in ipairs(KEYS) do redis.call('pexpire', k, ttl * 4) end
return 0
`)

// presenceExpireScript: KEYS pc pm pu. Removes expired connections and
// returns the users left with none.
var presenceExpireScript = rueidis.NewLuaScript(`
local pc, pm, pu = KEYS[1], KEYS[2], KEYS[3]
local t = redis.call('time')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local gone = {}
for _, conn in ipairs(redis.call('zrangebyscore', pc, '-inf', now, 'LIMIT', 0, 1000)) do
  local m = redis.call('hget', pm, conn)
  redis.call('zrem', pc, conn)
  redis.call('hdel', pm, conn)
  if m then
    local user = cjson.decode(m).user
    if redis.call('hincrby', pu, user, -1) <= 0 then
      redis.call('hdel', pu, user)
      table.insert(gone, user)
    end
  end
end
return gone
`)

// presenceListScript: KEYS pc pm. The members of live connections.
var presenceListScript = rueidis.NewLuaScript(`
local pc, pm = KEYS[1], KEYS[2]
local t = redis.call('time')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local conns = redis.call('zrangebyscore', pc, '(' .. now, '+inf')
if #conns == 0 then return {} end
return redis.call('hmget', pm, unpack(conns))
`)

func (b *Broker) presenceKeys(room string) []string {
	return []string{b.names.prefix + "{" + room + "}:pc", b.names.prefix + "{" + room + "}:pm", b.names.prefix + "{" + room + "}:pu"}
}

func ttlMs(d time.Duration) string { return strconv.FormatInt(max(d.Milliseconds(), 1), 10) }

// PresenceAdd implements [rthub.PresenceStore].
func (b *Broker) PresenceAdd(ctx context.Context, room string, m rthub.PresenceMember, ttl time.Duration) (bool, error) {
	if err := b.check(ctx, room); err != nil {
		return false, err
	}
	js, err := json.Marshal(m)
	if err != nil {
		return false, err
	}
	n, err := presenceAddScript.Exec(ctx, b.shardOf(room).client, b.presenceKeys(room),
		[]string{m.Conn, string(js), m.User, ttlMs(ttl)}).AsInt64()
	if err != nil {
		return false, b.wrap(ctx, "presence add", room, err)
	}
	return n == 1, nil
}

// PresenceRemove implements [rthub.PresenceStore].
func (b *Broker) PresenceRemove(ctx context.Context, room, user, conn string) (bool, error) {
	if err := b.check(ctx, room); err != nil {
		return false, err
	}
	n, err := presenceRemoveScript.Exec(ctx, b.shardOf(room).client, b.presenceKeys(room), []string{conn, user}).AsInt64()
	if err != nil {
		return false, b.wrap(ctx, "presence remove", room, err)
	}
	return n == 1, nil
}

// PresenceTouch implements [rthub.PresenceStore].
func (b *Broker) PresenceTouch(ctx context.Context, room string, conns []string, ttl time.Duration) error {
	if err := b.check(ctx, room); err != nil {
		return err
	}
	for len(conns) > 0 {
		n := min(len(conns), 500)
		args := append([]string{ttlMs(ttl)}, conns[:n]...)
		if err := presenceTouchScript.Exec(ctx, b.shardOf(room).client, b.presenceKeys(room), args).Error(); err != nil {
			return b.wrap(ctx, "presence touch", room, err)
		}
		conns = conns[n:]
	}
	return nil
}

// PresenceExpire implements [rthub.PresenceStore].
func (b *Broker) PresenceExpire(ctx context.Context, room string) ([]string, error) {
	if err := b.check(ctx, room); err != nil {
		return nil, err
	}
	users, err := presenceExpireScript.Exec(ctx, b.shardOf(room).client, b.presenceKeys(room), nil).AsStrSlice()
	if err != nil && !rueidis.IsRedisNil(err) {
		return nil, b.wrap(ctx, "presence expire", room, err)
	}
	return users, nil
}

// PresenceList implements [rthub.PresenceStore].
func (b *Broker) PresenceList(ctx context.Context, room string) ([]rthub.PresenceMember, error) {
	if err := b.check(ctx, room); err != nil {
		return nil, err
	}
	vals, err := presenceListScript.Exec(ctx, b.shardOf(room).client, b.presenceKeys(room)[:2], nil).ToArray()
	if err != nil && !rueidis.IsRedisNil(err) {
		return nil, b.wrap(ctx, "presence list", room, err)
	}
	out := make([]rthub.PresenceMember, 0, len(vals))
	for _, v := range vals {
		s, err := v.ToString()
		if err != nil {
			continue // swept between the two reads
		}
		var m rthub.PresenceMember
		if json.Unmarshal([]byte(s), &m) == nil {
			out = append(out, m)
		}
	}
	return out, nil
}
