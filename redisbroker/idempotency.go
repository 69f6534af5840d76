package redisbroker

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/org/rthub"
	"github.com/redis/rueidis"
)

// The broker keeps the hubs' idempotency keys (rthub.IdempotencyStore), so
// that a retry of an emit or call that reaches another node than its first
// attempt is answered from the first run. A user's keys, with the default
// prefix and h the first 32 hex digits of SHA-256 of the user (token
// subject):
//
//	rthub:idem:{h}:k:<key>  string  "R<fingerprint>" while the first run goes on (TTL: the lease),
//	                                "D<n>:<fingerprint><outcome>" once it ended (TTL: IdempotencyOptions.TTL)
//	rthub:idem:{h}:o        zset    completed keys scored by completion time (ms), oldest first
//	rthub:idem:{h}:z        hash    key = its cost; "" = the user's total
//
// All three are on one shard (by h) and expire with the user's last outcome.

// idemLua: forget(k) drops a completed key from the order and sizes and its
// entry, unless the entry is a new run's claim.
const idemLua = `
local function forget(order, sizes, kp, k)
  local s = tonumber(redis.call('hget', sizes, k)) or 0
  redis.call('zrem', order, k)
  redis.call('hdel', sizes, k)
  if s > 0 then redis.call('hincrby', sizes, '', -s) end
  local v = redis.call('get', kp .. k)
  if v and string.sub(v, 1, 1) == 'D' then redis.call('del', kp .. k) end
end
`

// claimScript: KEYS[1] entry; ARGV[1] fingerprint, ARGV[2] lease ms. It
// returns the entry, or nil after claiming it.
var claimScript = rueidis.NewLuaScript(`
local v = redis.call('get', KEYS[1])
if v then return v end
redis.call('set', KEYS[1], 'R' .. ARGV[1], 'PX', ARGV[2])
return false
`)

// completeScript: KEYS[1] entry, KEYS[2] order, KEYS[3] sizes; ARGV[1]
// fingerprint, ARGV[2] outcome, ARGV[3] TTL ms, ARGV[4] MaxKeysPerUser,
// ARGV[5] MaxBytesPerUser, ARGV[6] key, ARGV[7] cost, ARGV[8] the entries'
// prefix. It drops the user's outcomes past their TTL, stores this one and
// forgets the oldest while over a bound. It returns 1, or 0 when the
// outcome alone is over MaxBytesPerUser (the key is forgotten).
var completeScript = rueidis.NewLuaScript(idemLua + `
local entry, order, sizes = KEYS[1], KEYS[2], KEYS[3]
local fp, out, ttl, maxk, maxb = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local key, size, kp = ARGV[6], tonumber(ARGV[7]), ARGV[8]
local t = redis.call('time')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for _, k in ipairs(redis.call('zrangebyscore', order, '-inf', now - ttl)) do forget(order, sizes, kp, k) end
if redis.call('zscore', order, key) then forget(order, sizes, kp, key) end
if size > maxb then
  redis.call('del', entry)
  return 0
end
redis.call('set', entry, 'D' .. #fp .. ':' .. fp .. out, 'PX', ttl)
redis.call('zadd', order, now, key)
redis.call('hset', sizes, key, size)
local total = redis.call('hincrby', sizes, '', size)
while redis.call('zcard', order) > maxk or total > maxb do
  local oldest = redis.call('zrange', order, 0, 0)[1]
  if not oldest or oldest == key then break end
  forget(order, sizes, kp, oldest)
  total = tonumber(redis.call('hget', sizes, '')) or 0
end
redis.call('pexpire', order, ttl)
redis.call('pexpire', sizes, ttl)
return 1
`)

// releaseScript: KEYS[1] entry. It deletes the entry if it is a claim.
var releaseScript = rueidis.NewLuaScript(`
local v = redis.call('get', KEYS[1])
if v and string.sub(v, 1, 1) == 'R' then redis.call('del', KEYS[1]) end
return 0
`)

// idemEntryCost is what an outcome counts against MaxBytesPerUser besides
// its key and bytes, as in the hub's own memory.
const idemEntryCost = 160

var _ rthub.IdempotencyStore = (*Broker)(nil)

// idemKeys returns the shard and the key names of user's idempotency key.
func (b *Broker) idemKeys(user, key string) (s *shard, entry, order, sizes, entries string) {
	sum := sha256.Sum256([]byte(user))
	h := hex.EncodeToString(sum[:16])
	p := b.names.prefix + "idem:{" + h + "}:"
	return b.shards[shardIndex(b.keys, "idem\x00"+h)], p + "k:" + key, p + "o", p + "z", p + "k:"
}

// idemCheck refuses calls on a closed broker or with an ended ctx, and keys
// the hub would refuse.
func (b *Broker) idemCheck(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if b.closed.Load() {
		return rthub.ErrBrokerClosed
	}
	if key == "" || len(key) > rthub.MaxIdempotencyKeyLen {
		return fmt.Errorf("redisbroker: bad idempotency key of %d bytes", len(key))
	}
	return nil
}

// idemErr adds context to a Redis error, as wrap does for rooms.
func (b *Broker) idemErr(ctx context.Context, op string, err error) error {
	if b.closed.Load() {
		err = errors.Join(rthub.ErrBrokerClosed, err)
	}
	if ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
		err = errors.Join(ctx.Err(), err)
	}
	return fmt.Errorf("redisbroker: %s: %w", op, err)
}

// ClaimKey implements [rthub.IdempotencyStore].
func (b *Broker) ClaimKey(ctx context.Context, user, key, fingerprint string, lease time.Duration) (rthub.KeyClaim, error) {
	if err := b.idemCheck(ctx, key); err != nil {
		return rthub.KeyClaim{}, err
	}
	s, entry, _, _, _ := b.idemKeys(user, key)
	v, err := claimScript.Exec(ctx, s.client, []string{entry}, []string{fingerprint, ms(lease)}).ToString()
	if rueidis.IsRedisNil(err) {
		return rthub.KeyClaim{Claimed: true}, nil
	}
	if err != nil {
		return rthub.KeyClaim{}, b.idemErr(ctx, "claim key", err)
	}
	cl, ok := parseIdemEntry(v)
	if !ok {
		return rthub.KeyClaim{}, b.idemErr(ctx, "claim key", fmt.Errorf("malformed entry %.40q", v))
	}
	return cl, nil
}

// parseIdemEntry reads "R<fingerprint>" or "D<n>:<fingerprint><outcome>".
func parseIdemEntry(v string) (rthub.KeyClaim, bool) {
	switch {
	case strings.HasPrefix(v, "R"):
		return rthub.KeyClaim{Fingerprint: v[1:]}, true
	case strings.HasPrefix(v, "D"):
		n, rest, ok := strings.Cut(v[1:], ":")
		fl, err := strconv.Atoi(n)
		if !ok || err != nil || fl < 0 || fl > len(rest) {
			return rthub.KeyClaim{}, false
		}
		return rthub.KeyClaim{Fingerprint: rest[:fl], Outcome: []byte(rest[fl:])}, true
	}
	return rthub.KeyClaim{}, false
}

// CompleteKey implements [rthub.IdempotencyStore]. lim.MaxBytes (the hub's
// total) does not apply: in Redis the keys are bounded per user, and by
// Redis's own maxmemory.
func (b *Broker) CompleteKey(ctx context.Context, user, key, fingerprint string, outcome []byte, lim rthub.IdempotencyOptions) error {
	if err := b.idemCheck(ctx, key); err != nil {
		return err
	}
	s, entry, order, sizes, entries := b.idemKeys(user, key)
	cost := idemEntryCost + len(key) + len(fingerprint) + len(outcome)
	args := []string{fingerprint, string(outcome), ms(lim.TTL), strconv.Itoa(max(lim.MaxKeysPerUser, 1)),
		strconv.Itoa(lim.MaxBytesPerUser), key, strconv.Itoa(cost), entries}
	if err := completeScript.Exec(ctx, s.client, []string{entry, order, sizes}, args).Error(); err != nil {
		return b.idemErr(ctx, "complete key", err)
	}
	return nil
}

// ReleaseKey implements [rthub.IdempotencyStore].
func (b *Broker) ReleaseKey(ctx context.Context, user, key string) error {
	if err := b.idemCheck(ctx, key); err != nil {
		return err
	}
	s, entry, _, _, _ := b.idemKeys(user, key)
	if err := releaseScript.Exec(ctx, s.client, []string{entry}, nil).Error(); err != nil {
		return b.idemErr(ctx, "release key", err)
	}
	return nil
}
