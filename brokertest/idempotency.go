package brokertest

import (
	"bytes"
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/org/rthub"
)

// This file holds the conformance cases of the shared memory of
// idempotency keys ([rthub.IdempotencyStore]); they are skipped for a
// broker without it.

// idemCases are the idempotency conformance cases, run by Run.
func (s *suite) idemCases() []struct {
	name string
	fn   func(t *testing.T)
} {
	return []struct {
		name string
		fn   func(t *testing.T)
	}{
		{"IdempotencyClaimOnceAcrossNodes", s.idemClaimOnce},
		{"IdempotencyRelease", s.idemRelease},
		{"IdempotencyPerUser", s.idemPerUser},
		{"IdempotencyMaxKeysPerUser", s.idemMaxKeys},
		{"IdempotencyMaxBytesPerUser", s.idemMaxBytes},
		{"IdempotencyTTLAndLease", s.idemTTL},
	}
}

// idemNode returns a started node as an IdempotencyStore, or skips t.
func (s *suite) idemNode(t *testing.T) rthub.IdempotencyStore {
	t.Helper()
	b, _ := s.node(t)
	is, ok := rthub.BrokerAs[rthub.IdempotencyStore](b)
	if !ok {
		t.Skipf("%T does not implement rthub.IdempotencyStore", b)
	}
	return is
}

// user returns a user name no other test uses.
func (s *suite) user() string {
	return "user-bt" + s.run + "-" + strconv.FormatInt(s.rooms.Add(1), 10)
}

// idemLimits are the bounds the cases complete keys with.
func idemLimits() rthub.IdempotencyOptions {
	return rthub.IdempotencyOptions{TTL: time.Minute, MaxKeysPerUser: 1000, MaxBytesPerUser: 1 << 20, MaxBytes: 64 << 20}
}

func claim(t *testing.T, is rthub.IdempotencyStore, user, key, fp string, lease time.Duration) rthub.KeyClaim {
	t.Helper()
	cl, err := is.ClaimKey(ctx(t), user, key, fp, lease)
	if err != nil {
		t.Fatalf("ClaimKey(%q, %q): %v", user, key, err)
	}
	return cl
}

func complete(t *testing.T, is rthub.IdempotencyStore, user, key, fp, outcome string, lim rthub.IdempotencyOptions) {
	t.Helper()
	if err := is.CompleteKey(ctx(t), user, key, fp, []byte(outcome), lim); err != nil {
		t.Fatalf("CompleteKey(%q, %q): %v", user, key, err)
	}
}

// remembered reports whether key's outcome is outcome; a key found free is
// released again (no trace left).
func remembered(t *testing.T, is rthub.IdempotencyStore, user, key, outcome string) bool {
	t.Helper()
	cl := claim(t, is, user, key, "fp", time.Minute)
	if cl.Claimed {
		if err := is.ReleaseKey(ctx(t), user, key); err != nil {
			t.Fatal(err)
		}
		return false
	}
	if !bytes.Equal(cl.Outcome, []byte(outcome)) {
		t.Fatalf("key %q holds outcome %q, want %q", key, cl.Outcome, outcome)
	}
	return true
}

func (s *suite) idemClaimOnce(t *testing.T) {
	a := s.idemNode(t)
	b := s.idemNode(t) // another node on the same backend
	user := s.user()
	fp := "call\x00device:set\x00"
	if cl := claim(t, a, user, "k1", fp, time.Minute); !cl.Claimed {
		t.Fatalf("first claim = %+v, want Claimed", cl)
	}
	if cl := claim(t, b, user, "k1", "emit\x00other\x00room", time.Minute); cl.Claimed || cl.Fingerprint != fp || cl.Outcome != nil {
		t.Fatalf("claim on another node during the run = %+v, want the first fingerprint and no outcome", cl)
	}
	outcome := `{"d":{"ok":true,"s":"\u00e9 \"quoted\" ` + strings.Repeat("x", 100) + `"}}`
	complete(t, a, user, "k1", fp, outcome, idemLimits())
	cl := claim(t, b, user, "k1", fp, time.Minute)
	if cl.Claimed || cl.Fingerprint != fp || string(cl.Outcome) != outcome {
		t.Fatalf("claim after the run = %+v, want the outcome %q", cl, outcome)
	}
	// Releasing a completed key changes nothing.
	if err := b.ReleaseKey(ctx(t), user, "k1"); err != nil {
		t.Fatal(err)
	}
	if !remembered(t, a, user, "k1", outcome) {
		t.Fatal("ReleaseKey forgot a completed key")
	}
}

func (s *suite) idemRelease(t *testing.T) {
	is := s.idemNode(t)
	user := s.user()
	claim(t, is, user, "k", "fp", time.Minute)
	if err := is.ReleaseKey(ctx(t), user, "k"); err != nil {
		t.Fatal(err)
	}
	if cl := claim(t, is, user, "k", "fp", time.Minute); !cl.Claimed {
		t.Fatalf("claim after a release = %+v, want Claimed", cl)
	}
}

func (s *suite) idemPerUser(t *testing.T) {
	is := s.idemNode(t)
	alice, bob := s.user(), s.user()
	claim(t, is, alice, "same", "fp", time.Minute)
	complete(t, is, alice, "same", "fp", "a", idemLimits())
	if cl := claim(t, is, bob, "same", "fp", time.Minute); !cl.Claimed {
		t.Fatalf("bob's claim of alice's key = %+v, want Claimed (keys are per user)", cl)
	}
}

func (s *suite) idemMaxKeys(t *testing.T) {
	is := s.idemNode(t)
	user := s.user()
	lim := idemLimits()
	lim.MaxKeysPerUser = 2
	for _, k := range []string{"k1", "k2", "k3"} {
		claim(t, is, user, k, "fp", time.Minute)
		complete(t, is, user, k, "fp", "o-"+k, lim)
	}
	if remembered(t, is, user, "k1", "o-k1") || !remembered(t, is, user, "k2", "o-k2") || !remembered(t, is, user, "k3", "o-k3") {
		t.Fatal("past MaxKeysPerUser 2 the oldest key was not the one forgotten")
	}
}

func (s *suite) idemMaxBytes(t *testing.T) {
	is := s.idemNode(t)
	user := s.user()
	lim := idemLimits()
	lim.MaxBytesPerUser = 1000
	big := strings.Repeat("x", 500) // two do not fit in 1000 bytes with their overhead
	for _, k := range []string{"b1", "b2"} {
		claim(t, is, user, k, "fp", time.Minute)
		complete(t, is, user, k, "fp", big, lim)
	}
	if remembered(t, is, user, "b1", big) || !remembered(t, is, user, "b2", big) {
		t.Fatal("past MaxBytesPerUser the oldest key was not the one forgotten")
	}
	claim(t, is, user, "huge", "fp", time.Minute)
	complete(t, is, user, "huge", "fp", strings.Repeat("y", 1000), lim)
	if remembered(t, is, user, "huge", "") {
		t.Fatal("an outcome over MaxBytesPerUser on its own was stored")
	}
}

func (s *suite) idemTTL(t *testing.T) {
	is := s.idemNode(t)
	user := s.user()
	lim := idemLimits()
	lim.TTL = 300 * time.Millisecond
	claim(t, is, user, "t", "fp", time.Minute)
	complete(t, is, user, "t", "fp", "o", lim)
	claim(t, is, user, "lease", "fp", 300*time.Millisecond) // never completed: a crashed node
	if !remembered(t, is, user, "t", "o") {
		t.Fatal("outcome forgotten before its TTL")
	}
	if cl := claim(t, is, user, "lease", "fp", time.Minute); cl.Claimed {
		t.Fatal("a claim was taken again within its lease")
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		c1, err1 := is.ClaimKey(context.Background(), user, "t", "fp", time.Minute)
		c2, err2 := is.ClaimKey(context.Background(), user, "lease", "fp", time.Minute)
		if err1 != nil || err2 != nil {
			t.Fatal(err1, err2)
		}
		if c1.Claimed && c2.Claimed {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after TTL and lease: outcome claimable %v, lease claimable %v", c1.Claimed, c2.Claimed)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
