package redisbroker

import (
	"context"
	"encoding/json"
	"fmt"
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
//	<prefix>{room}:ps  string: the seq of the room's last online/offline transition
//
// The scripts keep the three in step, with Redis's own clock, so the answers
// "first connection of this user" and "last one" are exact across nodes, and a
// crashed node's connections are swept (by any node) once their TTL passes.
// Each first-connection and last-connection transition gets a seq in the same
// script (Redis's clock in µs, or one more than the last), so online and
// offline events published by two nodes at once can be put back in order.

// presenceSeqLua assigns the next seq of a transition to the local seq (ps:
// the fourth key; now_us: Redis time in µs). Kept a day: seqs follow the
// clock, so a lost key matters only if Redis's clock steps back.
const presenceSeqLua = `
local function nextseq(ps, now_us)
  local seq = math.max(now_us, (tonumber(redis.call('get', ps)) or 0) + 1)
  redis.call('set', ps, string.format('%.0f', seq), 'PX', 86400000)
  return seq
end
local t = redis.call('time')
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
`

var _ rthub.PresenceStore = (*Broker)(nil)

// presenceAddScript: KEYS pc pm pu ps; ARGV conn json user ttl_ms.
// Returns {1, seq} when the user had no other live connection, else {0, 0}.
var presenceAddScript = rueidis.NewLuaScript(presenceSeqLua + `
local pc, pm, pu, ps = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local conn, member, user, ttl = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local now = math.floor(now_us / 1000)
local first, seq = 0, 0
if not redis.call('zscore', pc, conn) then
  if redis.call('hincrby', pu, user, 1) == 1 then
    first = 1
    seq = nextseq(ps, now_us)
  end
end
redis.call('zadd', pc, now + ttl, conn)
redis.call('hset', pm, conn, member)
for i = 1, 3 do redis.call('pexpire', KEYS[i], ttl * 4) end
return {first, seq}
`)

// presenceRemoveScript: KEYS pc pm pu ps; ARGV conn user. Returns {1, seq}
// when it was the user's last live connection, else {0, 0}.
var presenceRemoveScript = rueidis.NewLuaScript(presenceSeqLua + `
local pc, pm, pu, ps = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local conn, user = ARGV[1], ARGV[2]
if redis.call('zrem', pc, conn) == 0 then return {0, 0} end
redis.call('hdel', pm, conn)
if redis.call('hincrby', pu, user, -1) <= 0 then
  redis.call('hdel', pu, user)
  return {1, nextseq(ps, now_us)}
end
return {0, 0}
`)

// presenceTouchScript: KEYS pc pm pu; ARGV ttl_ms conn... Renews entries that
// still exist (a swept one is not brought back).
var presenceTouchScript = rueidis.NewLuaScript(`
local pc = KEYS[1]
local ttl = tonumber(ARGV[1])
local t = redis.call('time')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for i = 2, #ARGV do redis.call('zadd', pc, 'XX', now + ttl, ARGV[i]) end
for i = 1, 3 do redis.call('pexpire', KEYS[i], ttl * 4) end
return 0
`)

// presenceExpireScript: KEYS pc pm pu ps. Removes expired connections and
// returns the users left with none, each followed by its seq.
var presenceExpireScript = rueidis.NewLuaScript(presenceSeqLua + `
local pc, pm, pu, ps = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local now = math.floor(now_us / 1000)
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
      table.insert(gone, string.format('%.0f', nextseq(ps, now_us)))
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

// presenceKeys returns room's pc, pm, pu and ps keys.
func (b *Broker) presenceKeys(room string) []string {
	p := b.names.prefix + "{" + room + "}:"
	return []string{p + "pc", p + "pm", p + "pu", p + "ps"}
}

func ttlMs(d time.Duration) string { return strconv.FormatInt(max(d.Milliseconds(), 1), 10) }

// PresenceAdd implements [rthub.PresenceStore].
func (b *Broker) PresenceAdd(ctx context.Context, room string, m rthub.PresenceMember, ttl time.Duration) (bool, uint64, error) {
	if err := b.check(ctx, room); err != nil {
		return false, 0, err
	}
	js, err := json.Marshal(m)
	if err != nil {
		return false, 0, err
	}
	r, err := presenceAddScript.Exec(ctx, b.shardOf(room).client, b.presenceKeys(room),
		[]string{m.Conn, string(js), m.User, ttlMs(ttl)}).AsIntSlice()
	if err == nil && len(r) != 2 {
		err = fmt.Errorf("unexpected reply %v", r)
	}
	if err != nil {
		return false, 0, b.wrap(ctx, "presence add", room, err)
	}
	return r[0] == 1, uint64(r[1]), nil
}

// PresenceRemove implements [rthub.PresenceStore].
func (b *Broker) PresenceRemove(ctx context.Context, room, user, conn string) (bool, uint64, error) {
	if err := b.check(ctx, room); err != nil {
		return false, 0, err
	}
	r, err := presenceRemoveScript.Exec(ctx, b.shardOf(room).client, b.presenceKeys(room), []string{conn, user}).AsIntSlice()
	if err == nil && len(r) != 2 {
		err = fmt.Errorf("unexpected reply %v", r)
	}
	if err != nil {
		return false, 0, b.wrap(ctx, "presence remove", room, err)
	}
	return r[0] == 1, uint64(r[1]), nil
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
func (b *Broker) PresenceExpire(ctx context.Context, room string) ([]rthub.PresenceLeft, error) {
	if err := b.check(ctx, room); err != nil {
		return nil, err
	}
	flat, err := presenceExpireScript.Exec(ctx, b.shardOf(room).client, b.presenceKeys(room), nil).AsStrSlice()
	if err != nil && !rueidis.IsRedisNil(err) {
		return nil, b.wrap(ctx, "presence expire", room, err)
	}
	var gone []rthub.PresenceLeft
	for i := 0; i+1 < len(flat); i += 2 {
		seq, err := strconv.ParseUint(flat[i+1], 10, 64)
		if err != nil {
			return gone, b.wrap(ctx, "presence expire", room, fmt.Errorf("bad seq %q", flat[i+1]))
		}
		gone = append(gone, rthub.PresenceLeft{User: flat[i], Seq: seq})
	}
	return gone, nil
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
