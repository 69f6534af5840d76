package rthub

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// sameShardRooms returns n room names that hash to one shard of b.
func sameShardRooms(b *MemoryBroker, n int) []string {
	want := b.store.shard("room:0")
	rooms := []string{"room:0"}
	for i := 1; len(rooms) < n; i++ {
		if name := fmt.Sprintf("room:%d", i); b.store.shard(name) == want {
			rooms = append(rooms, name)
		}
	}
	return rooms
}

// startedMemory returns a started memory broker, closed when the test ends.
func startedMemory(t *testing.T, opts MemoryBrokerOptions) *MemoryBroker {
	t.Helper()
	b, err := NewMemoryBroker(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(t.Context(), nopHandler{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close(context.Background()) })
	return b
}

type nopHandler struct{}

func (nopHandler) HandlePublication(Publication) {}
func (nopHandler) HandleResync([]string)         {}

// TestMemoryBrokerHistoryBudget: past MaxHistoryBytes, the history of the
// room that published least recently goes first, whole; resuming it is
// refused as unrecoverable, the others resume; Stats tells.
func TestMemoryBrokerHistoryBudget(t *testing.T) {
	const perShard = 3000 // bytes
	b := startedMemory(t, MemoryBrokerOptions{MaxHistoryBytes: perShard * memoryShards})
	ctx := context.Background()
	var err error
	rooms := sameShardRooms(b, 3)
	data := []byte(`"` + strings.Repeat("x", 398) + `"`) // 400 bytes: 500 counted
	publish := func(room string, n int) StreamPosition {
		t.Helper()
		var pos StreamPosition
		for range n {
			if pos, err = b.Publish(ctx, room, Message{Data: data}); err != nil {
				t.Fatal(err)
			}
		}
		return pos
	}
	start := make([]StreamPosition, len(rooms))
	for i, r := range rooms {
		start[i] = publish(r, 1) // the first publication of each room: offset 1
	}
	publish(rooms[0], 1)
	publish(rooms[1], 2) // 2 + 3 + 1 publications × 500 = 3000 bytes in the shard: at the budget
	if s := b.Stats(); s.HistoryBytes != perShard || s.HistoryEvictions != 0 {
		t.Fatalf("at the budget: %+v", s)
	}
	publish(rooms[2], 1)                                                           // over: rooms[0] published least recently
	if s := b.Stats(); s.HistoryEvictions != 1 || s.HistoryBytes != perShard-500 { // 3500 - rooms[0]'s 1000
		t.Fatalf("after going over: %+v, want 1 eviction and %d bytes", s, perShard-500)
	}
	if _, _, err := b.History(ctx, rooms[0], start[0], -1); !errors.Is(err, ErrUnrecoverable) {
		t.Errorf("history of the evicted room: %v, want ErrUnrecoverable", err)
	}
	for i, want := range map[int]int{1: 2, 2: 1} {
		pubs, _, err := b.History(ctx, rooms[i], start[i], -1)
		if err != nil || len(pubs) != want {
			t.Errorf("history of %s: %d publications, %v; want %d", rooms[i], len(pubs), err, want)
		}
	}
	// One room alone over the budget keeps no history, and the shard stays
	// within its share.
	publish(rooms[2], 10)
	if s := b.Stats(); s.HistoryBytes > perShard {
		t.Errorf("one busy room: %d history bytes, budget %d", s.HistoryBytes, perShard)
	}
	// The rest of the stream lives on: positions keep counting.
	if pos := publish(rooms[0], 1); pos.Offset != 3 || pos.Epoch != start[0].Epoch {
		t.Errorf("evicted room's next position %v, want offset 3 of epoch %s", pos, start[0].Epoch)
	}
}

// TestMemoryBrokerHistoryUnbounded: a negative MaxHistoryBytes evicts
// nothing.
func TestMemoryBrokerHistoryUnbounded(t *testing.T) {
	b := startedMemory(t, MemoryBrokerOptions{MaxHistoryBytes: -1})
	ctx := context.Background()
	big := []byte(`"` + strings.Repeat("x", 1<<20) + `"`)
	for range 3 {
		if _, err := b.Publish(ctx, "room:a", Message{Data: big}); err != nil {
			t.Fatal(err)
		}
	}
	if s := b.Stats(); s.HistoryEvictions != 0 || s.HistoryBytes < 3<<20 {
		t.Errorf("unbounded: %+v", s)
	}
	// The default bound (64 MiB) applies to the zero value.
	d, _ := NewMemoryBroker(MemoryBrokerOptions{})
	if d.store.shardBudget != DefaultMaxHistoryBytes/memoryShards {
		t.Errorf("default budget per shard %d", d.store.shardBudget)
	}
}

// TestMemoryBrokerHistoryBudgetCountsMetadata: a kept publication's Except
// and Header count against MaxHistoryBytes, so metadata cannot grow the
// history past its bound.
func TestMemoryBrokerHistoryBudgetCountsMetadata(t *testing.T) {
	b := startedMemory(t, MemoryBrokerOptions{MaxHistoryBytes: -1})
	ctx := context.Background()
	for _, tt := range []struct {
		name string
		msg  Message
		want int64
	}{
		{"dataOnly", Message{Data: []byte("12345")}, 5 + pubOverhead},
		{"except", Message{Data: []byte("12345"), Except: "conn-1"}, 5 + 6 + pubOverhead},
		{"header", Message{Data: []byte("12345"), Header: map[string]string{"k": "vv", "key": ""}},
			5 + 1 + 2 + 3 + pubOverhead + headerOverhead + 2*headerEntryOverhead},
		{"emptyHeader", Message{Data: []byte("12345"), Header: map[string]string{}}, 5 + pubOverhead},
	} {
		before := b.Stats().HistoryBytes
		if _, err := b.Publish(ctx, "budget:"+tt.name, tt.msg); err != nil {
			t.Fatal(err)
		}
		if got := b.Stats().HistoryBytes - before; got != tt.want {
			t.Errorf("%s: %d bytes counted, want %d", tt.name, got, tt.want)
		}
	}
}
