package rthub

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"
)

func TestRoomInfos(t *testing.T) {
	h, url := presenceHub(t, nil)
	if got := h.RoomInfos(); got != nil {
		t.Fatalf("RoomInfos before any connection = %+v, want nil", got)
	}
	for _, tok := range []string{
		testToken(t, "alice", time.Hour, "staff"),
		testToken(t, "alice", time.Hour, "staff"),
		testToken(t, "bob", time.Hour, "admin"),
	} {
		dial(t, url, tok).readType("welcome")
	}
	tests := []struct {
		room              string
		members, people   int
		presence, present bool
	}{
		{room: "admin", members: 1, present: true},
		{room: "staff", members: 3, people: 2, presence: true, present: true},
		{room: "user:alice", members: 2, present: true},
		{room: "user:bob", members: 1, present: true},
		{room: "device:1", present: false},
		{room: "bad::name", present: false},
	}
	infos := h.RoomInfos()
	var names []string
	for _, ri := range infos {
		names = append(names, ri.Name)
	}
	if fmt.Sprint(names) != "[admin staff user:alice user:bob]" {
		t.Fatalf("RoomInfos names = %v", names)
	}
	for _, tt := range tests {
		ri, ok := h.RoomInfo(tt.room)
		if ok != tt.present {
			t.Errorf("RoomInfo(%q) ok = %v, want %v", tt.room, ok, tt.present)
			continue
		}
		if got := h.RoomMembers(tt.room); got != tt.members {
			t.Errorf("RoomMembers(%q) = %d, want %d", tt.room, got, tt.members)
		}
		if !ok {
			continue
		}
		if ri.Name != tt.room || ri.Members != tt.members || ri.People != tt.people || ri.Presence != tt.presence ||
			!ri.Live || ri.Joining != 0 || ri.Overflow != "close" {
			t.Errorf("RoomInfo(%q) = %+v, want members %d, people %d, presence %v, live", tt.room, ri, tt.members, tt.people, tt.presence)
		}
	}
	if err := h.Publish(context.Background(), "staff", "chat:message", chatMessage{Text: "hi"}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		ri, _ := h.RoomInfo("staff")
		if ri.Position.Offset == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("staff position = %v after a publication, want offset 1", ri.Position)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if n, err := h.DisconnectUser(context.Background(), "alice", ""); err != nil || n != 2 {
		t.Fatalf("DisconnectUser = %d, %v", n, err)
	}
	for {
		if h.RoomMembers("staff") == 1 {
			if _, ok := h.RoomInfo("user:alice"); !ok {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("after alice left: staff has %d members, RoomInfos %+v", h.RoomMembers("staff"), h.RoomInfos())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestRoomHistory(t *testing.T) {
	h, _ := testHub(t, func(o *Options) {
		mb, err := NewMemoryBroker(MemoryBrokerOptions{History: HistoryPolicy{Default: HistoryLimits{Size: 10}}})
		if err != nil {
			t.Fatal(err)
		}
		o.Broker = mb
	})
	ctx := context.Background()
	if pubs, pos, err := h.RoomHistory(ctx, "staff", StreamPosition{}, 5); err != nil || len(pubs) != 0 || pos.Offset != 0 {
		t.Fatalf("empty room: %d publications, %v, %v", len(pubs), pos, err)
	}
	for i := 1; i <= 25; i++ {
		if err := h.Publish(ctx, "staff", "chat:message", chatMessage{Text: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name        string
		since       StreamPosition
		limit       int
		first, last uint64 // offsets; 0, 0: none
		err         error
	}{
		{name: "newest", limit: 3, first: 23, last: 25},
		{name: "more than kept", limit: 100, first: 16, last: 25},
		{name: "exactly kept", limit: 10, first: 16, last: 25},
		{name: "since", since: StreamPosition{Offset: 20}, limit: 2, first: 21, last: 22},
		{name: "since lost", since: StreamPosition{Offset: 2}, limit: 5, err: ErrUnrecoverable},
		{name: "limit 0", limit: 0, err: ErrBadRequest},
		{name: "limit too big", limit: MaxHistoryRead + 1, err: ErrBadRequest},
	}
	_, cur, err := h.RoomHistory(ctx, "staff", StreamPosition{}, 1)
	if err != nil || cur.Offset != 25 {
		t.Fatalf("current = %v, %v", cur, err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			since := tt.since
			if !since.IsZero() {
				since.Epoch = cur.Epoch
			}
			pubs, pos, err := h.RoomHistory(ctx, "staff", since, tt.limit)
			if !errors.Is(err, tt.err) {
				t.Fatalf("err = %v, want %v", err, tt.err)
			}
			if tt.err != nil {
				return
			}
			if pos != cur || len(pubs) == 0 || pubs[0].Offset != tt.first || pubs[len(pubs)-1].Offset != tt.last {
				t.Fatalf("got %d publications (%v), position %v; want %d..%d at %v", len(pubs), offsets(pubs), pos, tt.first, tt.last, cur)
			}
		})
	}
	if _, _, err := h.RoomHistory(ctx, "bad::room", StreamPosition{}, 1); !errors.Is(err, ErrBadRoom) {
		t.Errorf("bad room: %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, _, err := h.RoomHistory(cctx, "staff", StreamPosition{}, 1); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled ctx: %v", err)
	}
	h.Close()
	if _, _, err := h.RoomHistory(ctx, "staff", StreamPosition{}, 1); !errors.Is(err, ErrHubClosed) {
		t.Errorf("closed hub: %v", err)
	}
}

func offsets(pubs []Publication) []uint64 {
	out := make([]uint64, len(pubs))
	for i, p := range pubs {
		out[i] = p.Offset
	}
	return out
}

func TestVerifyRequest(t *testing.T) {
	h, _ := testHub(t, nil)
	good := testToken(t, "ann", time.Hour, "admin")
	tests := []struct {
		name   string
		header []string // Authorization values
		query  string
		sub    string
		err    error
	}{
		{name: "bearer", header: []string{"Bearer " + good}, sub: "ann"},
		{name: "scheme case", header: []string{"bearer " + good}, sub: "ann"},
		{name: "second value", header: []string{"Basic eDp5", "Bearer " + good}, sub: "ann"},
		{name: "missing", err: ErrTokenMissing},
		{name: "query ignored", query: "token=" + good, err: ErrTokenMissing},
		{name: "other scheme", header: []string{"Basic eDp5"}, err: ErrTokenMissing},
		{name: "expired", header: []string{"Bearer " + testToken(t, "ann", -time.Hour, "admin")}, err: ErrTokenExpired},
		{name: "garbage", header: []string{"Bearer abc"}, err: ErrTokenMalformed},
		{name: "oversized header", header: []string{"Bearer " + good, string(make([]byte, 9<<10))}, err: ErrTokenMissing},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, _ := http.NewRequest(http.MethodGet, "http://x/?"+tt.query, nil)
			for _, v := range tt.header {
				r.Header.Add("Authorization", v)
			}
			id, err := h.VerifyRequest(r)
			if !errors.Is(err, tt.err) {
				t.Fatalf("err = %v, want %v", err, tt.err)
			}
			if tt.err == nil && (id.Subject != tt.sub || !id.HasRole("admin")) {
				t.Fatalf("identity = %+v", id)
			}
		})
	}
	if _, err := h.VerifyRequest(nil); !errors.Is(err, ErrTokenMissing) {
		t.Errorf("nil request: %v", err)
	}
}
