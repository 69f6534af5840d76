package rthub

import (
	"runtime"
	"testing"
	"time"
	"weak"
)

// A closed connection must not stay reachable: the expiry clock held every
// connection (two closures each) until its token's exp, which with 1 h
// tokens kept 1.5–2.2 KB per closed connection for an hour under churn.
func TestClock_ClosedConnUnreachable(t *testing.T) {
	t.Parallel()
	h, url := testHub(t, func(o *Options) { o.Policy.Presence = []string{"staff"} })
	var refs []weak.Pointer[conn]
	for i := range 20 {
		c := dial(t, url, testToken(t, "churn", time.Hour, "staff"))
		c.readType("welcome")
		if i%2 == 0 { // a refresh must not add entries either
			for range 3 {
				if r := c.cmd("refresh", map[string]any{"token": testToken(t, "churn", 2*time.Hour, "staff")}); !r.OK {
					t.Fatalf("refresh: %+v", r)
				}
			}
		}
		if n := h.clock.len(); n != 1 {
			t.Errorf("connection %d: the clock holds %d entries for one connection (after refreshes), want 1", i, n)
		}
		h.mu.RLock()
		for _, sc := range h.conns {
			if len(refs) == i {
				refs = append(refs, weak.Make(sc))
			}
		}
		h.mu.RUnlock()
		c.c.CloseNow()
		waitConnCount(t, h, 0)
	}
	if n := h.clock.len(); n != 0 {
		t.Errorf("clock holds %d entries with no connection open, want 0", n)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		runtime.GC()
		alive := 0
		for _, r := range refs {
			if r.Value() != nil {
				alive++
			}
		}
		if alive == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d closed connections still reachable after GC", alive, len(refs))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// The expiring warning still comes once, before exp, after a refresh moved it.
func TestClock_WarningAfterRefresh(t *testing.T) {
	t.Parallel()
	_, url := testHub(t, func(o *Options) { o.Auth.ExpiryWarning = 1500 * time.Millisecond })
	c := dial(t, url, testToken(t, "ann", time.Hour, "staff"))
	c.readType("welcome")
	if r := c.cmd("refresh", map[string]any{"token": testToken(t, "ann", 2*time.Second, "staff")}); !r.OK {
		t.Fatalf("refresh: %+v", r)
	}
	m := c.readType("expiring")
	if m.Expires == 0 {
		t.Fatalf("expiring without expires: %+v", m)
	}
	if code := c.closeCode(); code != int(CloseTokenExpired) {
		t.Fatalf("close code %d, want %d", code, CloseTokenExpired)
	}
}

// len returns the number of scheduled entries.
func (d *deadlines) len() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.items)
}
