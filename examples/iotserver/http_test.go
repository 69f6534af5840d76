package main

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/org/rthub"
	"github.com/org/rthub/client"
)

// TestServer_API drives one zero-setup server (embedded broker, memory
// store, two simulated devices) through its REST API, roles and audit log.
func TestServer_API(t *testing.T) {
	t.Parallel()
	s := startServer(t, nil)
	staff, admin := s.token(t, "alice"), s.token(t, "admin")

	t.Run("liveness", func(t *testing.T) {
		if code := s.do(t, "GET", "/healthz", "", nil, nil); code != 200 {
			t.Fatalf("/healthz: %d", code)
		}
		eventually(t, 10*time.Second, "/readyz 200", func() bool { return s.do(t, "GET", "/readyz", "", nil, nil) == 200 })
	})

	t.Run("dashboard", func(t *testing.T) {
		res, err := http.Get(s.url("/"))
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != 200 || !strings.Contains(res.Header.Get("Content-Security-Policy"), "default-src 'self'") {
			t.Fatalf("GET /: %d, CSP %q", res.StatusCode, res.Header.Get("Content-Security-Policy"))
		}
		for _, f := range []string{"/static/vendor/rthub-client.js", "/static/app.js", "/static/chart.js", "/static/style.css"} {
			if code := s.do(t, "GET", f, "", nil, nil); code != 200 {
				t.Errorf("GET %s: %d", f, code)
			}
		}
	})

	t.Run("login", func(t *testing.T) {
		var bad struct {
			Error struct{ Code string }
		}
		if code := s.do(t, "POST", "/api/login", "", loginRequest{"alice", "wrong"}, &bad); code != 401 || bad.Error.Code != "bad_login" {
			t.Fatalf("wrong password: %d %+v", code, bad)
		}
		if code := s.do(t, "POST", "/api/login", "", loginRequest{"nobody", "x"}, nil); code != 401 {
			t.Fatalf("unknown user: %d", code)
		}
		if code := s.do(t, "POST", "/api/login", "", map[string]int{"username": 1}, nil); code != 400 {
			t.Fatalf("bad body: %d", code)
		}
		var ok tokenResponse
		if code := s.do(t, "POST", "/api/login", "", loginRequest{"bob", "bob-pw"}, &ok); code != 200 {
			t.Fatalf("login: %d", code)
		}
		c, err := verifyToken(s.cfg.Secret, ok.Token)
		if err != nil || c.Subject != "bob" || c.Name != "Bob" || !c.hasRole("staff") || ok.User.Name != "Bob" {
			t.Fatalf("token claims %+v (%v), response %+v", c, err, ok)
		}
		if d := time.Until(ok.Expires); d < 14*time.Minute || d > 16*time.Minute {
			t.Fatalf("token expires in %v, want TOKEN_TTL (15 min)", d)
		}
		var me userInfo
		if code := s.do(t, "GET", "/api/me", ok.Token, nil, &me); code != 200 || me.Username != "bob" {
			t.Fatalf("/api/me: %d %+v", code, me)
		}
		var fresh tokenResponse
		if code := s.do(t, "POST", "/api/token", ok.Token, nil, &fresh); code != 200 || fresh.Token == "" {
			t.Fatalf("refresh: %d", code)
		}
		if code := s.do(t, "POST", "/api/token", "garbage", nil, nil); code != 401 {
			t.Fatalf("refresh with a bad token: %d", code)
		}
		if code := s.do(t, "GET", "/api/devices", "", nil, nil); code != 401 {
			t.Fatalf("devices without a token: %d", code)
		}
	})

	t.Run("devicesAndReadings", func(t *testing.T) {
		var devs struct{ Devices []Device }
		eventually(t, 10*time.Second, "2 devices online with readings", func() bool {
			s.do(t, "GET", "/api/devices", staff, nil, &devs)
			n := 0
			for _, d := range devs.Devices {
				if d.Status == statusOnline && d.Last != nil {
					n++
				}
			}
			return n == 2
		})
		if devs.Devices[0].ID != "dev-01" || devs.Devices[0].Name != "climate 1" || devs.Devices[0].Kind != "climate" {
			t.Fatalf("device %+v", devs.Devices[0])
		}
		var rs struct{ Readings []ReadingEvent }
		if code := s.do(t, "GET", "/api/devices/dev-01/readings?limit=3", staff, nil, &rs); code != 200 || len(rs.Readings) == 0 || len(rs.Readings) > 3 {
			t.Fatalf("readings: %d, %d readings", code, len(rs.Readings))
		}
		if r := rs.Readings[0]; r.Values["temperature"] == 0 || r.Values["humidity"] == 0 {
			t.Fatalf("reading %+v: want temperature and humidity", r)
		}
		for _, q := range []string{"?limit=0", "?limit=x", "?from=yesterday"} {
			if code := s.do(t, "GET", "/api/devices/dev-01/readings"+q, staff, nil, nil); code != 400 {
				t.Errorf("readings%s: %d, want 400", q, code)
			}
		}
		var as struct {
			Alerts []Alert
			Rules  []string
		}
		if code := s.do(t, "GET", "/api/alerts?state=all", staff, nil, &as); code != 200 || len(as.Rules) != 3 || as.Alerts == nil {
			t.Fatalf("alerts: %d %+v", code, as)
		}
		var an Analytics
		if code := s.do(t, "GET", "/api/analytics", staff, nil, &an); code != 200 || an.Window != 3600 {
			t.Fatalf("analytics: %d %+v", code, an)
		}
		var h Health
		if code := s.do(t, "GET", "/api/health", staff, nil, &h); code != 200 || h.MQTT.Broker != "embedded" || h.DB.Kind != "memory" || h.DB.Status != "ok" {
			t.Fatalf("health: %d %+v", code, h)
		}
	})

	t.Run("adminOnly", func(t *testing.T) {
		if code := s.do(t, "GET", "/api/audit", staff, nil, nil); code != 403 {
			t.Fatalf("staff GET /api/audit: %d, want 403", code)
		}
		if code := s.do(t, "POST", "/api/devices/dev-01/dropout", staff, nil, nil); code != 403 {
			t.Fatalf("staff dropout: %d, want 403", code)
		}
		if code := s.do(t, "POST", "/api/devices/nope/dropout", admin, nil, nil); code != 404 {
			t.Fatalf("dropout of an unknown device: %d, want 404", code)
		}
		var a struct{ Entries []AuditEntry }
		eventually(t, 5*time.Second, "audit entries", func() bool {
			s.do(t, "GET", "/api/audit", admin, nil, &a)
			return auditHas(a.Entries, auditAdminDenied, "alice", "/api/audit") &&
				auditHas(a.Entries, auditLoginFailed, "alice", "wrong") &&
				auditHas(a.Entries, auditLogin, "bob", "staff")
		})
	})

	// A staff client cannot join the admin room (the connection stays up);
	// the refusal reaches the audit log through rthub's OnRefused, and the
	// admins watching the admin room see it live.
	t.Run("forbiddenJoinAudited", func(t *testing.T) {
		ad := s.dial(t, "admin")
		live := collect(ad, AuditEvent.Name())
		c := s.dial(t, "alice")
		err := c.Join(t.Context(), "admin")
		if !errors.Is(err, rthub.ErrForbidden) {
			t.Fatalf("staff join admin: %v, want forbidden", err)
		}
		if err := c.Join(t.Context(), "device:dev-01"); err != nil {
			t.Fatalf("after the refusal, a permitted join: %v", err)
		}
		ev := live.next(t, 5*time.Second, "audit:entry for the refused join", func(ev client.Event) bool {
			e := decode[AuditEntry](t, ev)
			return e.Kind == auditForbidden && e.Username == "alice" && strings.Contains(e.Detail, `join "admin"`)
		})
		if ev.Room != roomAdmin {
			t.Fatalf("audit:entry went to %q, want admin", ev.Room)
		}
		// Staff do not receive it.
		staffAudit := collect(c, AuditEvent.Name())
		_ = c.Join(t.Context(), "admin")
		staffAudit.none(t, 300*time.Millisecond, "audit:entry at a staff client", nil)
	})

	t.Run("staffReceivesReadings", func(t *testing.T) {
		c := s.dial(t, "bob", "device:dev-02")
		data := collect(c, SensorData.Name())
		rooms := map[string]bool{}
		for len(rooms) < 2 {
			ev := data.next(t, 5*time.Second, "sensor:data of dev-02 in both rooms", func(ev client.Event) bool {
				return decode[ReadingEvent](t, ev).Device == "dev-02"
			})
			rooms[ev.Room] = true
		}
		if !rooms["staff"] || !rooms["device:dev-02"] {
			t.Fatalf("sensor:data rooms %v, want staff and device:dev-02", rooms)
		}
	})

	// Presence in the staff room, as the dashboard's online list uses it.
	t.Run("presence", func(t *testing.T) {
		a := s.dial(t, "alice")
		evs := collect(a, "user:viewing")
		b := s.dial(t, "bob")
		eventually(t, 5*time.Second, "bob in alice's presence list", func() bool {
			p, err := a.Presence(t.Context(), roomStaff)
			if err != nil {
				t.Fatal(err)
			}
			for _, u := range p.Users {
				if u.User == "bob" {
					return true
				}
			}
			return false
		})
		if err := b.Viewing(t.Context(), "device:dev-01"); err != nil {
			t.Fatal(err)
		}
		evs.next(t, 5*time.Second, "user:viewing of bob", func(ev client.Event) bool {
			v := decode[struct{ User, Viewing string }](t, ev)
			return ev.Room == roomStaff && v.User == "bob" && v.Viewing == "device:dev-01"
		})
		if _, err := a.Presence(t.Context(), roomAdmin); !errors.Is(err, rthub.ErrForbidden) && !errors.Is(err, rthub.ErrBadRequest) {
			t.Fatalf("staff presence of admin: %v, want refused", err)
		}
	})

	// An admin closes a user's connections: 4101, which the user's clients
	// (and pages) take as "do not reconnect"; audited.
	t.Run("disconnectUser", func(t *testing.T) {
		c := s.dial(t, "bob")
		if code := s.do(t, "POST", "/api/users/bob/disconnect", staff, nil, nil); code != 403 {
			t.Fatalf("staff disconnecting bob: %d, want 403", code)
		}
		if code := s.do(t, "POST", "/api/users/nobody/disconnect", admin, nil, nil); code != 404 {
			t.Fatalf("disconnecting a user with no connection: %d, want 404", code)
		}
		var r struct{ Closed int }
		if code := s.do(t, "POST", "/api/users/bob/disconnect", admin, nil, &r); code != 200 || r.Closed < 1 {
			t.Fatalf("admin disconnecting bob: %d %+v", code, r)
		}
		select {
		case <-c.Done():
		case <-time.After(5 * time.Second):
			t.Fatal("bob's client still running 5 s after the disconnect")
		}
		if code := rthub.CloseStatus(c.Err()); code != rthub.CloseDisconnected {
			t.Fatalf("bob's client stopped with %v, want close 4101", c.Err())
		}
		var a struct{ Entries []AuditEntry }
		eventually(t, 5*time.Second, "the disconnect audited", func() bool {
			s.do(t, "GET", "/api/audit", admin, nil, &a)
			return auditHas(a.Entries, auditDisconnect, "admin", "disconnected bob")
		})
	})

	t.Run("badToken", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		_, err := client.Dial(ctx, "ws://"+s.addr+"/ws", client.Options{Token: "x.y.z"})
		if !errors.Is(err, rthub.ErrTokenMalformed) {
			t.Fatalf("dial with a bad token: %v", err)
		}
		var a struct{ Entries []AuditEntry }
		eventually(t, 5*time.Second, "unauthorized handshake audited", func() bool {
			s.do(t, "GET", "/api/audit", admin, nil, &a)
			return auditHas(a.Entries, auditUnauthorized, "", "handshake")
		})
	})
}
