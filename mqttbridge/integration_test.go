package mqttbridge

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/org/rthub"
)

// corrRecorder records the correlation ID of each publish it passes on.
type corrRecorder struct {
	next rthub.Publisher
	mu   sync.Mutex
	ids  []string
}

func (c *corrRecorder) Publish(ctx context.Context, room, event string, data any, opts ...rthub.PublishOption) error {
	c.mu.Lock()
	c.ids = append(c.ids, CorrelationID(ctx))
	c.mu.Unlock()
	return c.next.Publish(ctx, room, event, data, opts...)
}

func readingRouteAt(p string) Route {
	return Route{
		Topic:  p + "/sensors/{device}/reading",
		Event:  "sensor:data",
		Rooms:  []string{"device:{device}", "staff"},
		Decode: JSONWithVars,
	}
}

// TestIntegration_ReadingToRooms: an external client publishes a reading;
// WebSocket clients of a real hub receive sensor:data in exactly the rooms
// the route names, and the MQTT 5 correlation-id reaches the publisher.
func TestIntegration_ReadingToRooms(t *testing.T) {
	t.Parallel()
	forEachBroker(t, func(t *testing.T, tb *testBroker) {
		hs := newHubServer(t)
		staff := hs.dial(t, "alice", "staff", []string{"device:7"}, "sensor:data")
		viewer := hs.dial(t, "bob", "viewer", []string{"device:8"}, "sensor:data")
		raw := hs.rawDial(t, "carol", "staff")
		rec := &corrRecorder{next: hs.hub}
		p := prefix()
		b := startBridge(t, rec, Config{URL: tb.url, Routes: []Route{readingRouteAt(p)}})

		start := time.Now()
		tb.pub.publish(t, p+"/sensors/7/reading", `{"celsius": 21.5}`, UserProperty{"correlation-id", "req-7"})
		got := fmtEvents(staff.wait(t, 2))
		t.Logf("%s: reading reached the WebSocket client %v after the publish began", tb.name, time.Since(start))
		want := []string{`sensor:data@device:7 {"celsius":21.5,"device":"7"}`, `sensor:data@staff {"celsius":21.5,"device":"7"}`}
		if !slices.Equal(got, want) {
			t.Fatalf("staff got %q, want %q", got, want)
		}

		tb.pub.publish(t, p+"/sensors/8/reading", `{"celsius":-3}`)
		// The viewer is in device:8 only: its first event is device 8's,
		// so device 7's (published before) never reached it.
		if got, want := fmtEvents(viewer.wait(t, 1)), []string{`sensor:data@device:8 {"celsius":-3,"device":"8"}`}; !slices.Equal(got, want) {
			t.Fatalf("viewer got %q, want %q", got, want)
		}
		// Staff is not in device:8: the third event is the staff room's.
		got = fmtEvents(staff.wait(t, 3))
		if len(got) != 3 || got[2] != `sensor:data@staff {"celsius":-3,"device":"8"}` {
			t.Fatalf("staff got %q", got)
		}
		// The correlation ID went through the hub to the client's frame.
		if f := raw.next(t); f.Room != "staff" || f.Cid != "req-7" || f.Event != "sensor:data" {
			t.Errorf("raw frame %+v, want sensor:data in staff with cid req-7", f)
		}
		if f := raw.next(t); f.Cid != "" {
			t.Errorf("second raw frame %+v, want no cid", f)
		}
		rec.mu.Lock()
		ids := slices.Clone(rec.ids)
		rec.mu.Unlock()
		if want := []string{"req-7", "req-7", "", ""}; !slices.Equal(ids, want) {
			t.Errorf("correlation IDs at the publisher %q, want %q", ids, want)
		}
		waitStats(t, b, func(st Stats) bool {
			return st.Received == 2 && st.Sent == 2 && st.Published == 4 && st.Connected && st.Subscribed && st.Connects == 1
		})
	})
}

// TestIntegration_BadMessagesNotDelivered: malformed payloads and topics
// whose device cannot be a room are counted and never reach clients.
func TestIntegration_BadMessagesNotDelivered(t *testing.T) {
	t.Parallel()
	forEachBroker(t, func(t *testing.T, tb *testBroker) {
		hs := newHubServer(t)
		staff := hs.dial(t, "alice", "staff", []string{"device:1"}, "sensor:data")
		p := prefix()
		b := startBridge(t, hs.hub, Config{URL: tb.url, Routes: []Route{readingRouteAt(p)}})

		tb.pub.publish(t, p+"/sensors/1/reading", `not json`)
		tb.pub.publish(t, p+"/sensors/1/reading", `{"celsius":`)
		tb.pub.publish(t, p+"/sensors/1/reading", `[1,2]`) // not an object: JSONWithVars refuses it
		tb.pub.publish(t, p+"/sensors/1:admin/reading", `{"celsius":1}`)
		tb.pub.publish(t, p+"/sensors/a b/reading", `{"celsius":1}`)
		tb.pub.publish(t, p+"/sensors/1/reading", `{"celsius":1}`)
		// The good message came last, on the same route, in order: once it
		// is here, the bad ones were processed and dropped.
		got := fmtEvents(staff.wait(t, 2))
		want := []string{`sensor:data@device:1 {"celsius":1,"device":"1"}`, `sensor:data@staff {"celsius":1,"device":"1"}`}
		if !slices.Equal(got, want) {
			t.Fatalf("got %q, want %q", got, want)
		}
		st := waitStats(t, b, func(st Stats) bool {
			return st.Received == 6 && st.DecodeErrors == 3 && st.InvalidTopic == 2 && st.Published == 2 && st.Sent == 1
		})
		if !errors.Is(st.LastError, ErrDecode) && !errors.Is(st.LastError, ErrInvalidTopic) {
			t.Fatalf("LastError = %v", st.LastError)
		}
	})
}

// TestIntegration_LastWillOnChange: a device's status is published on change
// only, and killing its connection makes the broker publish its Last Will,
// which reaches clients as device:status offline.
func TestIntegration_LastWillOnChange(t *testing.T) {
	t.Parallel()
	forEachBroker(t, func(t *testing.T, tb *testBroker) {
		hs := newHubServer(t)
		staff := hs.dial(t, "alice", "staff", nil, "device:status")
		p := prefix()
		b := startBridge(t, hs.hub, Config{URL: tb.url, Routes: []Route{{
			Topic:    p + "/devices/{device}/status",
			Event:    "device:status",
			Rooms:    []string{"device:{device}", "staff"},
			Key:      "{device}",
			OnChange: true,
			Decode: func(ctx context.Context, m *Message) (any, error) {
				s, err := Text(ctx, m)
				if err != nil {
					return nil, err
				}
				return map[string]any{"device": m.Vars["device"], "status": s}, nil
			},
		}}})

		dev := tb.pub.device(t, "dev-"+randHex(6), p+"/devices/42/status", "offline")
		dev.send(t, "online")
		dev.send(t, "online") // unchanged: not published
		staff.wait(t, 1)
		waitFor(t, "the repeated status", func() bool { return b.Stats().Unchanged == 1 })

		dev.kill(t)
		got := fmtEvents(staff.wait(t, 2))
		want := []string{`device:status@staff {"device":"42","status":"online"}`, `device:status@staff {"device":"42","status":"offline"}`}
		if !slices.Equal(got, want) {
			t.Fatalf("got %q, want %q", got, want)
		}
		waitStats(t, b, func(st Stats) bool { return st.Received == 3 && st.Sent == 2 && st.Unchanged == 1 })
	})
}

// TestIntegration_Burst sends bursts through a bridge whose hub publishes are
// held, so the queue fills, and checks each overflow policy's documented
// outcome and that the queue never grows past its bound.
func TestIntegration_Burst(t *testing.T) {
	t.Parallel()
	forEachBroker(t, func(t *testing.T, tb *testBroker) {
		t.Run("conflate10k", func(t *testing.T) {
			// 10 devices × 1000 readings; one queued reading per device.
			hs := newHubServer(t)
			staff := hs.dial(t, "alice", "staff", nil, "sensor:data")
			gate := newGate(hs.hub)
			p := prefix()
			route := readingRouteAt(p)
			route.Rooms = []string{"staff"}
			route.Key, route.Conflate, route.QueueSize = "{device}", true, 16
			b := startBridge(t, gate, Config{URL: tb.url, Routes: []Route{route}})

			// Ten devices stream at once; every 25 readings each the test
			// waits for the bridge to have them, so that no broker queue
			// limit (Mosquitto's max_queued_messages, 1000) drops any when
			// the machine is slow: the point is the bridge's own queue, which
			// the held hub cannot empty.
			var devs []testDevice
			for d := range 10 {
				devs = append(devs, tb.pub.device(t, "dev-"+randHex(6), fmt.Sprintf("%s/sensors/%d/reading", p, d), ""))
			}
			all := seqPayloads(1000, `{"seq":%d}`)
			for round := range 40 {
				var wg sync.WaitGroup
				for _, dev := range devs {
					wg.Go(func() { dev.send(t, all[round*25:(round+1)*25]...) })
				}
				wg.Wait()
				want := uint64(250 * (round + 1))
				waitFor(t, fmt.Sprintf("%d messages", want), func() bool { return b.Stats().Received == want })
			}
			st := b.Stats()
			if rs := st.Routes[0]; rs.QueueHighWater > 10 || rs.Queued > 10 || rs.Dropped != 0 {
				t.Fatalf("queue: %+v (want at most one entry per device)", rs)
			}
			gate.release()
			waitFor(t, "the queue to empty", func() bool { st = b.Stats(); return st.Sent+st.Merged == 10000 })
			evs := staff.wait(t, int(st.Sent))
			if st.Sent > 11 || st.Sent < 10 || st.Dropped != 0 || st.DecodeErrors != 0 {
				t.Fatalf("stats: %+v", st)
			}
			last := map[string]int{}
			for _, e := range evs {
				var r struct {
					Seq    int    `json:"seq"`
					Device string `json:"device"`
				}
				if err := json.Unmarshal(e.Data, &r); err != nil {
					t.Fatal(err)
				}
				if prev, ok := last[r.Device]; ok && r.Seq <= prev {
					t.Fatalf("device %s: seq %d after %d", r.Device, r.Seq, prev)
				}
				last[r.Device] = r.Seq
			}
			if len(last) != 10 {
				t.Fatalf("readings of %d devices, want 10", len(last))
			}
			for d, seq := range last {
				if seq != 999 {
					t.Errorf("device %s: last reading %d, want the newest, 999", d, seq)
				}
			}
			t.Logf("%s: 10,000 readings → %d events, %d merged, queue high water %d",
				tb.name, st.Sent, st.Merged, st.Routes[0].QueueHighWater)
		})

		policy := func(t *testing.T, ov Overflow, n int, want func(seqs []int) bool, describe string) *Bridge {
			hs := newHubServer(t)
			staff := hs.dial(t, "alice", "staff", nil, "sensor:data")
			gate := newGate(hs.hub)
			p := prefix()
			route := readingRouteAt(p)
			route.Rooms = []string{"staff"}
			route.QueueSize, route.Overflow = 8, ov
			b := startBridge(t, gate, Config{URL: tb.url, Routes: []Route{route}})
			topic := p + "/sensors/1/reading"

			// Message 0 goes first and is held in the route's hands, so the
			// queue then fills deterministically.
			dev := tb.pub.device(t, "dev-"+randHex(6), topic, "")
			all := seqPayloads(n, `{"seq":%d}`)
			dev.send(t, all[0])
			waitFor(t, "the first message in the route's hands", func() bool {
				st := b.Stats()
				return st.Received == 1 && st.Queued == 0
			})
			if ov == Block {
				dev.send(t, all[1:]...)
				// 1 in hand + 8 queued + 1 waiting for room: the bridge
				// stops reading and the broker keeps the rest.
				waitFor(t, "the bridge to block", func() bool { return b.Stats().Received == 10 })
				time.Sleep(300 * time.Millisecond)
				if st := b.Stats(); st.Received != 10 || st.Dropped != 0 {
					t.Fatalf("Block: stats while blocked %+v", st)
				}
			} else {
				for from := 1; from < n; from += 200 {
					to := min(from+200, n)
					dev.send(t, all[from:to]...)
					waitFor(t, fmt.Sprintf("%d messages", to), func() bool { return b.Stats().Received == uint64(to) })
				}
			}
			gate.release()
			var st Stats
			waitFor(t, "the queue to empty", func() bool {
				st = b.Stats()
				return st.Sent+st.Dropped == uint64(n)
			})
			var seqs []int
			for _, e := range staff.wait(t, int(st.Sent)) {
				var r struct{ Seq int }
				if err := json.Unmarshal(e.Data, &r); err != nil {
					t.Fatal(err)
				}
				seqs = append(seqs, r.Seq)
			}
			if !want(seqs) {
				t.Fatalf("%v: published %v, want %s (stats %+v)", ov, seqs, describe, st)
			}
			if hw := st.Routes[0].QueueHighWater; hw > 8 {
				t.Fatalf("queue high water %d over QueueSize 8", hw)
			}
			return b
		}
		t.Run("dropOldest", func(t *testing.T) {
			b := policy(t, DropOldest, 1000, func(s []int) bool {
				return slices.Equal(s, append([]int{0}, seqRange(992, 1000)...))
			}, "0 then the newest 8")
			if st := b.Stats(); st.Dropped != 991 {
				t.Fatalf("Dropped = %d, want 991", st.Dropped)
			}
		})
		t.Run("dropNewest", func(t *testing.T) {
			b := policy(t, DropNewest, 1000, func(s []int) bool { return slices.Equal(s, seqRange(0, 9)) }, "0 to 8")
			if st := b.Stats(); st.Dropped != 991 {
				t.Fatalf("Dropped = %d, want 991", st.Dropped)
			}
		})
		t.Run("block", func(t *testing.T) {
			b := policy(t, Block, 300, func(s []int) bool { return slices.Equal(s, seqRange(0, 300)) }, "all 300 in order")
			if st := b.Stats(); st.Dropped != 0 {
				t.Fatalf("Dropped = %d, want 0", st.Dropped)
			}
		})
	})
}

func seqRange(from, to int) []int {
	var s []int
	for i := from; i < to; i++ {
		s = append(s, i)
	}
	return s
}

// TestIntegration_SessionTakeover: another client connects with the bridge's
// client ID and a clean start, which disconnects the bridge and deletes its
// session (subscriptions included). The bridge must reconnect and subscribe
// again to receive.
func TestIntegration_SessionTakeover(t *testing.T) {
	t.Parallel()
	forEachBroker(t, func(t *testing.T, tb *testBroker) {
		if tb.name == "embedded" {
			// Seen flaking in CI (30 s without the bridge getting its session
			// back): mochi-mqtt v2.7.9 races a taken-over client's teardown
			// with the new session. The real Mosquitto variant covers takeover.
			t.Skip("mochi-mqtt v2.7.9 session-takeover race; covered against Mosquitto")
		}
		hs := newHubServer(t)
		staff := hs.dial(t, "alice", "staff", nil, "sensor:data")
		p := prefix()
		route := readingRouteAt(p)
		route.Rooms = []string{"staff"}
		id := "bridge-" + randHex(6)
		b := startBridge(t, hs.hub, Config{URL: tb.url, ClientID: id, Routes: []Route{route}})
		tb.pub.publish(t, p+"/sensors/1/reading", `{"n":1}`)
		staff.wait(t, 1)

		tb.pub.takeover(t, id)
		waitFor(t, "a reconnection and a new subscription", func() bool {
			st := b.Stats()
			return st.Reconnects >= 1 && st.Subscribed
		})
		tb.pub.publish(t, p+"/sensors/1/reading", `{"n":2}`)
		got := fmtEvents(staff.wait(t, 2))
		if got[1] != `sensor:data@staff {"device":"1","n":2}` {
			t.Fatalf("after the takeover got %q", got)
		}
		if st := b.Stats(); !errors.Is(st.LastError, ErrConnect) {
			t.Errorf("LastError = %v, want the disconnection (ErrConnect)", st.LastError)
		}
	})
}

// TestIntegration_BrokerRestart stops the embedded broker and starts a new
// one on the same port, without any session: the bridge notices, reconnects
// and subscribes again.
func TestIntegration_BrokerRestart(t *testing.T) {
	t.Parallel()
	e := startEmbedded(t, "127.0.0.1:0", nil)
	addr := e.addr
	hs := newHubServer(t)
	staff := hs.dial(t, "alice", "staff", nil, "sensor:data")
	p := prefix()
	route := readingRouteAt(p)
	route.Rooms = []string{"staff"}
	b := startBridge(t, hs.hub, Config{URL: "tcp://" + addr, Routes: []Route{route}})
	(&goPublisher{addr: addr}).publish(t, p+"/sensors/1/reading", `{"n":1}`)
	staff.wait(t, 1)

	e.close()
	waitFor(t, "the bridge to see the broker gone", func() bool { return !b.Stats().Connected })
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := b.WaitReady(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitReady with the broker down = %v", err)
	}

	startEmbedded(t, addr, nil)
	ctx, cancel = context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := b.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	(&goPublisher{addr: addr}).publish(t, p+"/sensors/1/reading", `{"n":2}`)
	if got := fmtEvents(staff.wait(t, 2)); got[1] != `sensor:data@staff {"device":"1","n":2}` {
		t.Fatalf("after the restart got %q", got)
	}
	if st := b.Stats(); st.Reconnects < 1 || st.Connects < 2 {
		t.Fatalf("stats: %+v", st)
	}
}

// TestIntegration_TLSAndAuth runs the bridge over TLS with a username and
// password against an embedded broker that requires both, and checks what a
// wrong password and a refused subscription look like.
func TestIntegration_TLSAndAuth(t *testing.T) {
	t.Parallel()
	serverTLS, roots := testCert(t)
	var tlsAddr string
	startEmbedded(t, "127.0.0.1:0", func(s *mqtt.Server) {
		err := s.AddHook(new(auth.Hook), &auth.Options{Ledger: &auth.Ledger{
			Auth: auth.AuthRules{
				{Username: "bridge", Password: "s3cret", Allow: true},
				{Username: "limited", Password: "pw", Allow: true},
				{Username: "device", Password: "pw", Allow: true},
			},
			ACL: auth.ACLRules{
				{Username: "limited", Filters: auth.Filters{"other/#": auth.ReadOnly, "#": auth.Deny}},
				{Username: "bridge"}, // no filters: everything
				{Username: "device"},
			},
		}})
		if err != nil {
			t.Fatal(err)
		}
		tl := listeners.NewTCP(listeners.Config{ID: "tls", Address: "127.0.0.1:0", TLSConfig: serverTLS})
		if err := s.AddListener(tl); err != nil {
			t.Fatal(err)
		}
		tlsAddr = tl.Address()
	})

	hs := newHubServer(t)
	staff := hs.dial(t, "alice", "staff", nil, "sensor:data")
	p := prefix()
	route := readingRouteAt(p)
	route.Rooms = []string{"staff"}
	clientTLS := &tls.Config{RootCAs: roots}

	t.Run("ok", func(t *testing.T) {
		b := startBridge(t, hs.hub, Config{URL: "tls://" + tlsAddr, TLS: clientTLS, Username: "bridge", Password: "s3cret", Routes: []Route{route}})
		pub := &goPublisher{addr: tlsAddr, tls: clientTLS, user: "device", pass: "pw"}
		pub.publish(t, p+"/sensors/5/reading", `{"ok":true}`)
		if got := fmtEvents(staff.wait(t, 1)); got[0] != `sensor:data@staff {"device":"5","ok":true}` {
			t.Fatalf("got %q", got)
		}
		if st := b.Stats(); st.ConnectErrors != 0 {
			t.Fatalf("stats: %+v", st)
		}
	})

	notReady := func(t *testing.T, cfg Config, wantErr string) {
		t.Helper()
		cfg.Routes = []Route{route}
		cfg.ReconnectMin, cfg.ReconnectMax = 20*time.Millisecond, 100*time.Millisecond
		b, err := New(hs.hub, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		if err := b.Start(); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if err := b.WaitReady(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("WaitReady = %v, want DeadlineExceeded", err)
		}
		waitFor(t, "a recorded error", func() bool { return b.Stats().ConnectErrors > 0 })
		st := b.Stats()
		if st.Subscribed || !errors.Is(st.LastError, ErrConnect) || !strings.Contains(st.LastError.Error(), wantErr) {
			t.Fatalf("stats: Subscribed %v, LastError %v (want %q)", st.Subscribed, st.LastError, wantErr)
		}
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("wrongPassword", func(t *testing.T) {
		notReady(t, Config{URL: "tls://" + tlsAddr, TLS: clientTLS, Username: "bridge", Password: "nope"}, "failed to connect")
	})
	t.Run("untrustedCertificate", func(t *testing.T) {
		notReady(t, Config{URL: "tls://" + tlsAddr, Username: "bridge", Password: "s3cret"}, "certificate")
	})
	t.Run("subscriptionRefused", func(t *testing.T) {
		notReady(t, Config{URL: "tls://" + tlsAddr, TLS: clientTLS, Username: "limited", Password: "pw"}, "refused")
	})
}

// testCert returns a server TLS config with a fresh self-signed certificate
// for 127.0.0.1, and a pool trusting it.
func testCert(t *testing.T) (*tls.Config, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "mqttbridge test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, MinVersion: tls.VersionTLS12}, pool
}

// TestIntegration_Run checks Run's lifecycle against a real broker: it
// returns nil once its context ends, after a graceful stop.
func TestIntegration_Run(t *testing.T) {
	t.Parallel()
	e := startEmbedded(t, "127.0.0.1:0", nil)
	pub := &recPublisher{}
	p := prefix()
	b, err := New(pub, Config{URL: "tcp://" + e.addr, Routes: []Route{readingRouteAt(p)}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	wctx, wcancel := context.WithTimeout(context.Background(), testTimeout)
	defer wcancel()
	if err := b.WaitReady(wctx); err != nil {
		t.Fatal(err)
	}
	(&goPublisher{addr: e.addr}).publish(t, p+"/sensors/3/reading", `{"x":1}`)
	waitFor(t, "the message", func() bool { return len(pub.got()) == 2 })
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run = %v, want nil", err)
		}
	case <-time.After(testTimeout):
		t.Fatal("Run did not return")
	}
	if st := b.Stats(); st.Connected || st.Subscribed {
		t.Fatalf("after Run: %+v", st)
	}
	if err := b.Run(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("second Run = %v, want ErrClosed", err)
	}
}
