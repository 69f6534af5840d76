package redisbroker

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"

	"github.com/org/rthub"
)

// This file holds the Redis broker's keyed latest state (see
// [rthub.StateBroker]): a hash of the latest entry per key and a zset of
// the keys in update order, next to the room's stream, written by the
// publish script in the same step that assigns the offset.

var _ rthub.StateBroker = (*Broker)(nil)

// State implements [rthub.StateBroker]: one EVALSHA on the room's shard
// reads the position and the state together, so they agree.
func (b *Broker) State(ctx context.Context, room string) ([]rthub.Publication, rthub.StreamPosition, error) {
	if err := b.check(ctx, room); err != nil {
		return nil, rthub.StreamPosition{}, err
	}
	s := b.shardOf(room)
	hl := b.opts.History.Limits(room)
	sl, keeps := b.opts.State.Limits(room, b.opts.History)
	if !keeps {
		_, pos, err := b.History(ctx, room, rthub.StreamPosition{}, 0)
		if err != nil {
			return nil, pos, err
		}
		return nil, pos, fmt.Errorf("redisbroker: %w: %q", rthub.ErrNoState, room)
	}
	keys := []string{b.names.meta(room), b.names.stream(room), b.names.state(room), b.names.order(room)}
	args := []string{ms(hl.MetaTTL), newEpoch(), strconv.Itoa(sl.MaxKeys), strconv.Itoa(sl.MaxBytes), ms(sl.TTL)}
	res, err := stateScript.Exec(ctx, s.client, keys, args).ToArray()
	var cur rthub.StreamPosition
	var flat []string
	if err == nil {
		if cur, err = position(res); err == nil && len(res) > 2 {
			flat, err = res[2].AsStrSlice()
		}
	}
	if err != nil {
		return nil, rthub.StreamPosition{}, b.wrap(ctx, "state", room, err)
	}
	entries := make([]rthub.Publication, 0, len(flat)/2)
	for i := 0; i+1 < len(flat); i += 2 {
		p, ok := decodeEntry(room, cur.Epoch, flat[i+1])
		if !ok || p.Key != flat[i] || p.Offset > cur.Offset {
			// Only outside interference writes one; leave it out.
			b.opts.Logger.LogAttrs(ctx, slog.LevelError, "redisbroker: malformed state entry",
				slog.String("room", room), slog.String("key", flat[i]))
			continue
		}
		entries = append(entries, p)
	}
	slices.SortFunc(entries, func(a, b rthub.Publication) int { return cmp.Compare(a.Offset, b.Offset) })
	return entries, cur, nil
}

// decodeEntry parses a state entry "<ms>:<cost>:<offset>:<m>:<metadata><data>".
func decodeEntry(room, epoch, v string) (rthub.Publication, bool) {
	_, v, ok1 := strings.Cut(v, ":")
	_, v, ok2 := strings.Cut(v, ":")
	off, v, ok3 := strings.Cut(v, ":")
	m, v, ok4 := strings.Cut(v, ":")
	n, err := strconv.ParseUint(off, 10, 64)
	size, ok := parseLen(m)
	if m == "0" {
		size, ok = 0, true
	}
	if !ok1 || !ok2 || !ok3 || !ok4 || err != nil || !ok || size > len(v) {
		return rthub.Publication{}, false
	}
	p := rthub.Publication{Room: room, Offset: n, Epoch: epoch}
	if !decodeMeta(v[:size], &p.Message) {
		return rthub.Publication{}, false
	}
	p.Data = []byte(v[size:])
	return p, true
}
