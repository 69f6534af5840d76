package redisbroker

import (
	"strconv"
	"strings"
)

// Key and channel names. With the default prefix "rthub:" the room
// "device:42" has:
//
//	rthub:{device:42}:m   hash    e = epoch, o = last offset (position; TTL MetaTTL)
//	rthub:{device:42}:s   stream  entry "<offset>-0" {d = data, m = metadata if any} (history; MAXLEN ~Size, TTL)
//	rthub:{device:42}:t   hash    key = "<ms>:<cost>:<offset>:<m>:<metadata><data>" (keyed state; TTL MetaTTL)
//	rthub:{device:42}:u   zset    key scored by its entry's offset (update order of the state)
//	rthub:{device:42}     channel "1:<offset>:<epoch>:<data>" for each publication, or
//	                              "2:<offset>:<epoch>:<len>:<metadata><data>" (see message.go)
//	rthub:node:<id>:<i>   channel a node's liveness probes on its i-th shard
//	rthub:relay:<node>    channel messages relayed to a hub node (rthub.NodeRelay; relay.go)
//
// The braces make the room name a Redis Cluster hash tag, so every key of a
// room lands in one slot; room names cannot contain braces, so no room's names
// collide with another's or with a node channel. Pub/sub channels are global
// to a Redis server (not per database), hence the shard number in the probe
// channel: two shards may be two databases of one server.
type names struct{ prefix string }

func (n names) meta(room string) string    { return n.prefix + "{" + room + "}:m" }
func (n names) stream(room string) string  { return n.prefix + "{" + room + "}:s" }
func (n names) state(room string) string   { return n.prefix + "{" + room + "}:t" }
func (n names) order(room string) string   { return n.prefix + "{" + room + "}:u" }
func (n names) channel(room string) string { return n.prefix + "{" + room + "}" }
func (n names) probe(node string, shard int) string {
	return n.prefix + "node:" + node + ":" + strconv.Itoa(shard)
}

func (n names) relay(node string) string { return n.prefix + "relay:" + node }

// room returns the room of a channel name, or "" if it is not a room channel.
func (n names) room(channel string) string {
	rest, ok := strings.CutPrefix(channel, n.prefix+"{")
	if !ok || !strings.HasSuffix(rest, "}") {
		return ""
	}
	return rest[:len(rest)-1]
}

// shardIndex picks the shard of a room by rendezvous (highest random weight)
// hashing: every shard scores the room and the highest score wins. Adding or
// removing a shard moves only the rooms it wins or held; the order of shards
// in the options does not matter, only their names. The hash is FNV-1a over
// the shard name and the room, finished with a 64-bit mixer, so all nodes
// agree without coordination.
func shardIndex(shards []string, room string) int {
	if len(shards) == 1 {
		return 0
	}
	best, bestScore := 0, uint64(0)
	for i, name := range shards {
		h := fnv1a(fnv1a(offset64, name), "\x00"+room)
		if s := mix64(h); i == 0 || s > bestScore {
			best, bestScore = i, s
		}
	}
	return best
}

const (
	offset64 = 14695981039346656037
	prime64  = 1099511628211
)

func fnv1a(h uint64, s string) uint64 {
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= prime64
	}
	return h
}

// mix64 is the splitmix64 finaliser: it spreads FNV's weak high bits.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
