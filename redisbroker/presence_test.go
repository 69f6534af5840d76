package redisbroker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/org/rthub"
	"github.com/org/rthub/client"
	"github.com/org/rthub/redisbroker"
)

var presenceSecret = []byte("rthub-presence-test-secret-0123456789")

// presenceNode starts a hub on a Redis broker with presence on in "staff".
func presenceNode(t *testing.T, url, prefix string) (*rthub.Hub, *redisbroker.Broker, string) {
	t.Helper()
	b, err := redisbroker.New(redisbroker.Options{Shards: []redisbroker.Shard{{URL: url}}, Prefix: prefix, ProbeInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	h, err := rthub.New(rthub.Options{
		Auth: rthub.AuthOptions{Keys: map[string]any{"": presenceSecret}},
		Policy: rthub.Policy{
			Roles:    map[string]rthub.RoleRules{"staff": {Join: []string{"staff"}, AutoJoin: []string{"staff"}}},
			Presence: []string{"staff"},
		},
		Broker:   b,
		Presence: rthub.PresenceOptions{TTL: time.Second},
		Logger:   slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(func() {
		h.Close()
		srv.Close()
	})
	return h, b, "ws" + strings.TrimPrefix(srv.URL, "http")
}

func presenceToken(t *testing.T, sub string) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": sub, "roles": []string{"staff"},
		"exp": time.Now().Add(time.Hour).Unix()}).SignedString(presenceSecret)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// presenceLog collects "event user" strings of presence events and markers.
type presenceLog struct {
	mu      sync.Mutex
	got     []string
	lastSeq uint64   // of the last online/offline event
	badSeq  []string // online/offline events whose seq did not grow
}

func (l *presenceLog) on(e client.Event) {
	var d struct {
		User, N string
		Seq     uint64
	}
	_ = json.Unmarshal(e.Data, &d)
	l.mu.Lock()
	l.got = append(l.got, strings.TrimSpace(e.Name+" "+d.User+d.N))
	if e.Name != "marker" {
		if d.Seq <= l.lastSeq {
			l.badSeq = append(l.badSeq, fmt.Sprintf("%s %s seq %d after %d", e.Name, d.User, d.Seq, l.lastSeq))
		}
		l.lastSeq = max(l.lastSeq, d.Seq)
	}
	l.mu.Unlock()
}

func (l *presenceLog) take() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	g := l.got
	l.got = nil
	return g
}

// TestClusterPresence: two hubs on one Redis. A person's online and offline
// events fire once across both, whichever node their tabs are on; lists
// show every node's connections; a crashed node's people go offline.
func TestClusterPresence(t *testing.T) {
	url := redisURL(t)
	prefix := uniquePrefix(t, url)
	hubA, brA, urlA := presenceNode(t, url, prefix)
	hubB, _, urlB := presenceNode(t, url, prefix)
	ctx := t.Context()

	var log presenceLog
	dial := func(url, sub string) *client.Client {
		t.Helper()
		c, err := client.Dial(ctx, url, client.Options{Token: presenceToken(t, sub)})
		if err != nil {
			t.Fatalf("dial %s: %v", sub, err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	watcher := dial(urlA, "watcher")
	for _, ev := range []string{"user:online", "user:offline", "marker"} {
		watcher.On(ev, log.on)
	}
	marks := 0
	// sync publishes a marker through node A and returns the presence events
	// the watcher got before it.
	sync := func() []string {
		t.Helper()
		marks++
		want := fmt.Sprintf("marker %d", marks)
		if err := hubA.Publish(ctx, "staff", "marker", map[string]string{"n": fmt.Sprint(marks)}); err != nil {
			t.Fatal(err)
		}
		var before []string
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			for _, g := range log.take() {
				if g == want {
					return before
				}
				before = append(before, g)
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Fatalf("marker %d never came; got %v", marks, before)
		return nil
	}
	sync()
	// expect waits for the presence events want (in order), then checks with
	// a marker that nothing else came.
	expect := func(what string, want ...string) {
		t.Helper()
		var got []string
		deadline := time.Now().Add(10 * time.Second)
		for len(got) < len(want) && time.Now().Before(deadline) {
			got = append(got, log.take()...)
			time.Sleep(10 * time.Millisecond)
		}
		got = append(got, sync()...)
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("%s: got %v, want %v", what, got, want)
		}
	}
	waitConns := func(h *rthub.Hub, n int) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for h.Stats().Connections != n {
			if time.Now().After(deadline) {
				t.Fatalf("%d connections, want %d", h.Stats().Connections, n)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	tab1 := dial(urlB, "alice")
	expect("alice's first tab (node B)", "user:online alice")
	tab2 := dial(urlA, "alice")
	expect("alice's second tab (node A)")
	p, err := watcher.Presence(ctx, "staff")
	if err != nil {
		t.Fatal(err)
	}
	if p.Count != 2 || p.Users[0].User != "alice" || len(p.Users[0].Conns) != 2 {
		t.Fatalf("presence %+v, want alice with a tab on each node, and watcher", p)
	}
	tab1.Close()
	waitConns(hubB, 0)
	expect("closing one tab")
	tab2.Close()
	expect("closing the last tab", "user:offline alice")

	// A crashed node leaves an entry nobody renews: it expires, and exactly
	// one node publishes the offline event.
	first, _, err := brA.PresenceAdd(ctx, "staff", rthub.PresenceMember{User: "ghost", Conn: "crashed-node-1"}, time.Second)
	if err != nil || !first {
		t.Fatalf("PresenceAdd = %v, %v", first, err)
	}
	expect("a crashed node's user", "user:offline ghost")
	time.Sleep(1500 * time.Millisecond) // more sweeps on both nodes: still once
	expect("later sweeps")
	if p, _ := watcher.Presence(ctx, "staff"); p.Count != 1 {
		t.Fatalf("presence after the sweep %+v, want only the watcher", p)
	}
	// The events came one after another, so their seqs grew, whichever
	// node (or sweep) published them.
	log.mu.Lock()
	defer log.mu.Unlock()
	if len(log.badSeq) > 0 || log.lastSeq == 0 {
		t.Errorf("presence seqs did not grow: %q (last %d)", log.badSeq, log.lastSeq)
	}
}

// TestPresenceStore checks the store's answers directly.
func TestPresenceStore(t *testing.T) {
	url := redisURL(t)
	b := node(t, redisbroker.Options{Prefix: uniquePrefix(t, url)}, url)
	ctx := context.Background()
	// Every transition (first connection, last one gone) gets a larger seq
	// than the one before it; other calls get 0.
	var lastSeq uint64
	checkSeq := func(what string, transition bool, seq uint64) {
		t.Helper()
		switch {
		case !transition && seq != 0:
			t.Errorf("%s: seq %d without a transition", what, seq)
		case transition && seq <= lastSeq:
			t.Errorf("%s: seq %d after %d, want larger", what, seq, lastSeq)
		case transition:
			lastSeq = seq
		}
	}
	add := func(user, conn string, ttl time.Duration) bool {
		t.Helper()
		first, seq, err := b.PresenceAdd(ctx, "r", rthub.PresenceMember{User: user, Conn: conn, Name: strings.ToUpper(user)}, ttl)
		if err != nil {
			t.Fatal(err)
		}
		checkSeq("add "+user+"/"+conn, first, seq)
		return first
	}
	remove := func(user, conn string) bool {
		t.Helper()
		last, seq, err := b.PresenceRemove(ctx, "r", user, conn)
		if err != nil {
			t.Fatal(err)
		}
		checkSeq("remove "+user+"/"+conn, last, seq)
		return last
	}
	if !add("u", "c1", time.Minute) || add("u", "c2", time.Minute) || add("u", "c1", time.Minute) || !add("v", "c3", time.Minute) {
		t.Fatal("first flags wrong")
	}
	ms, err := b.PresenceList(ctx, "r")
	if err != nil || len(ms) != 3 {
		t.Fatalf("list %+v %v", ms, err)
	}
	if remove("u", "c1") {
		t.Fatal("removing one of two: last")
	}
	if remove("u", "c1") {
		t.Fatal("removing twice: last")
	}
	if !remove("u", "c2") {
		t.Fatal("removing the last: not last")
	}
	add("w", "c4", 300*time.Millisecond)
	if err := b.PresenceTouch(ctx, "r", []string{"c3"}, 300*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	gone, err := b.PresenceExpire(ctx, "r")
	var users []string
	for _, g := range gone {
		users = append(users, g.User)
		checkSeq("expire "+g.User, true, g.Seq)
	}
	if err != nil || fmt.Sprint(users) != "[v w]" && fmt.Sprint(users) != "[w v]" {
		t.Fatalf("expired %v %v, want v and w", gone, err)
	}
	if gone, _ := b.PresenceExpire(ctx, "r"); len(gone) != 0 {
		t.Fatalf("second sweep %v", gone)
	}
	if ms, _ := b.PresenceList(ctx, "r"); len(ms) != 0 {
		t.Fatalf("list after expiry %+v", ms)
	}
}
