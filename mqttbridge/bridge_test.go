package mqttbridge

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestNew_InvalidConfig(t *testing.T) {
	t.Parallel()
	ok := Config{URL: "tcp://127.0.0.1:1883", Routes: []Route{readingRoute}}
	mod := func(f func(*Config)) Config {
		c := ok
		c.Routes = slices.Clone(ok.Routes)
		f(&c)
		return c
	}
	route := func(f func(*Route)) Config {
		return mod(func(c *Config) { f(&c.Routes[0]) })
	}
	tests := []struct {
		name string
		cfg  Config
		want []string // substrings of the error
	}{
		{"noURL", mod(func(c *Config) { c.URL = "" }), []string{"URL is empty"}},
		{"badScheme", mod(func(c *Config) { c.URL = "http://x:1" }), []string{`scheme "http"`}},
		{"noHost", mod(func(c *Config) { c.URL = "tcp://" }), []string{"has no host"}},
		{"noPort", mod(func(c *Config) { c.URL = "tcp://localhost" }), []string{"has no port"}},
		{"receiveMaximum", mod(func(c *Config) { c.ReceiveMaximum = 70000 }), []string{"ReceiveMaximum 70000"}},
		{"noRoutes", mod(func(c *Config) { c.Routes = nil }), []string{"Routes is empty"}},
		{"passwordOnly", mod(func(c *Config) { c.Password = "x" }), []string{"Password is set without Username"}},
		{"negative", mod(func(c *Config) { c.QueueSize = -1; c.KeepAlive = -time.Second }), []string{"QueueSize is negative", "KeepAlive is negative"}},
		{"qos", mod(func(c *Config) { c.QoS = 4 }), []string{"QoS 4"}},
		{"shareGroup", mod(func(c *Config) { c.ShareGroup = "a/b" }), []string{"ShareGroup"}},
		{"reconnect", mod(func(c *Config) { c.ReconnectMin = time.Minute; c.ReconnectMax = time.Second }), []string{"ReconnectMax"}},
		{"queueBytes", mod(func(c *Config) { c.QueueBytes = 1000 }), []string{"cannot hold one message"}},
		{"badPattern", route(func(r *Route) { r.Topic = "sensors/dev{id}/x" }), []string{"mixes text"}},
		{"emptyPattern", route(func(r *Route) { r.Topic = "" }), []string{"topic pattern is empty"}},
		{"unknownVar", route(func(r *Route) { r.Rooms = []string{"device:{id}"} }), []string{"unknown variable {id}", "{device}"}},
		{"badRoomTemplate", route(func(r *Route) { r.Rooms = []string{"device::{device}"} }), []string{"cannot produce a valid room"}},
		{"wildcardRoom", route(func(r *Route) { r.Rooms = []string{"device:*"} }), []string{"cannot produce a valid room"}},
		{"noRooms", route(func(r *Route) { r.Rooms = nil }), []string{"Rooms is empty"}},
		{"noEvent", route(func(r *Route) { r.Event = "" }), []string{"Event is empty"}},
		{"badEvent", route(func(r *Route) { r.Event = "sensor data" }), []string{"not a valid event name"}},
		{"badKey", route(func(r *Route) { r.Key = "{nope}" }), []string{"Key:", "unknown variable {nope}"}},
		{"routeQoS", route(func(r *Route) { r.QoS = 9 }), []string{"QoS 9"}},
		{"overflow", route(func(r *Route) { r.Overflow = 7 }), []string{"Overflow 7"}},
		{"batch", route(func(r *Route) { r.BatchInterval = -1; r.BatchMax = -1 }), []string{"BatchInterval is negative", "BatchMax is negative"}},
		{"overlap", mod(func(c *Config) {
			c.Routes = append(c.Routes, Route{Name: "all", Topic: "sensors/#", Event: "x", Rooms: []string{"audit"}})
		}), []string{`Routes[0] ("sensors/{device}/reading") and Routes[1] ("all")`, "overlap"}},
		{"cmdTopic", mod(func(c *Config) { c.Commands = &CommandConfig{Topic: "devices/{id}/cmd"} }), []string{"Commands: Topic", "{device}"}},
		{"cmdWildcard", mod(func(c *Config) { c.Commands = &CommandConfig{ReplyTopic: "devices/{device}/#"} }), []string{"ReplyTopic", "no '+' or '#'"}},
		{"cmdReplyOverlap", mod(func(c *Config) { c.Commands = &CommandConfig{ReplyTopic: "sensors/{device}/reading"} }), []string{"ReplyTopic", "overlaps Routes[0]"}},
		{"cmdStatusOverlap", mod(func(c *Config) { c.Commands = &CommandConfig{StatusTopic: "sensors/reading/{device}"} }), []string{"StatusTopic", "without being the same pattern"}},
		{"cmdStatusShared", mod(func(c *Config) {
			c.ShareGroup = "g"
			c.Commands = &CommandConfig{StatusTopic: "sensors/{device}/reading", ReplyTopic: "r/{device}"}
		}), []string{"StatusTopic", "ShareGroup"}},
		{"cmdBounds", mod(func(c *Config) { c.Commands = &CommandConfig{TTL: time.Hour, MaxTTL: time.Minute, MaxQueued: -1} }), []string{"TTL 1h0m0s is over MaxTTL", "MaxQueued is negative"}},
		{"cmdRooms", mod(func(c *Config) { c.Commands = &CommandConfig{Rooms: []string{"device:{nope}"}, Event: "a b"} }), []string{"Rooms:", "Event \"a b\""}},
		{"several", mod(func(c *Config) { c.URL = ""; c.Routes[0].Event = "" }), []string{"URL is empty", "Event is empty"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b, err := New(&recPublisher{}, tt.cfg)
			if !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("New = %v, %v; want ErrInvalidConfig", b, err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
	// Commands alone (no routes), and a status topic that is a route's
	// (subscribed once).
	for _, tt := range []struct {
		cfg  Config
		subs []string
	}{
		{Config{URL: ok.URL, Commands: &CommandConfig{}}, []string{"devices/+/cmd/reply", "devices/+/status"}},
		{Config{URL: ok.URL, Routes: []Route{{Topic: "devices/{device}/status", Event: "device:status", Rooms: []string{"staff"}}}, Commands: &CommandConfig{}},
			[]string{"devices/+/status", "devices/+/cmd/reply"}},
	} {
		b, err := New(&recPublisher{}, tt.cfg)
		if err != nil {
			t.Fatalf("New(%+v) = %v", tt.cfg, err)
		}
		if got := b.Subscriptions(); !slices.Equal(got, tt.subs) {
			t.Errorf("Subscriptions = %q, want %q", got, tt.subs)
		}
		b.Close()
	}
	if _, err := New(nil, ok); !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "Publisher is nil") {
		t.Errorf("New(nil, ...) = %v", err)
	}
}

func TestNew_Defaults(t *testing.T) {
	t.Parallel()
	cfg := Config{URL: "tcp://127.0.0.1:1883", ShareGroup: "hub", Routes: []Route{
		readingRoute,
		{Name: "status", Topic: "devices/{device}/status", Event: "device:status", Rooms: []string{"staff"}, QoS: AtMostOnce, QueueSize: 8},
	}}
	b, err := New(&recPublisher{}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ClientID != "" || cfg.Routes[0].Name != "" {
		t.Error("New modified the caller's Config")
	}
	if !strings.HasPrefix(b.cfg.ClientID, "rthub-bridge-") || len(b.cfg.ClientID) != len("rthub-bridge-")+16 {
		t.Errorf("ClientID = %q", b.cfg.ClientID)
	}
	if got, want := b.Subscriptions(), []string{"$share/hub/sensors/+/reading", "$share/hub/devices/+/status"}; !slices.Equal(got, want) {
		t.Errorf("Subscriptions = %q, want %q", got, want)
	}
	r0, r1 := b.routes[0], b.routes[1]
	if r0.Name != "sensors/{device}/reading" || r1.Name != "status" {
		t.Errorf("names %q %q", r0.Name, r1.Name)
	}
	if r0.QoS != AtLeastOnce || r1.QoS != AtMostOnce || r0.QoS.wire() != 1 || r1.QoS.wire() != 0 {
		t.Errorf("QoS %d %d", r0.QoS, r1.QoS)
	}
	if r0.QueueSize != 1024 || r1.QueueSize != 8 || r0.QueueBytes != 8<<20 || r0.BatchMax != 100 || r0.Overflow != DropOldest {
		t.Errorf("queue defaults: %+v", r0.Route)
	}
	c := b.cfg
	if c.KeepAlive != 30*time.Second || c.SessionExpiry != time.Minute || c.MaxPayload != 256<<10 ||
		c.CorrelationProperty != "correlation-id" || c.DrainTimeout != 5*time.Second || c.ReconnectMax != 30*time.Second {
		t.Errorf("config defaults: %+v", c)
	}
	st := b.Stats()
	if st.Connected || st.Subscribed || len(st.Routes) != 2 || st.Routes[1].Name != "status" {
		t.Errorf("Stats of a new bridge: %+v", st)
	}
	// A bridge that never started shuts down at once.
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestBackoff(t *testing.T) {
	t.Parallel()
	f := backoff(100*time.Millisecond, time.Second)
	if f(0) != 0 {
		t.Errorf("first attempt waits %v", f(0))
	}
	for n, want := range map[int]time.Duration{1: 100 * time.Millisecond, 2: 200 * time.Millisecond, 4: 800 * time.Millisecond, 5: time.Second, 50: time.Second} {
		for range 20 {
			if d := f(n); d < want*8/10 || d > want*12/10 {
				t.Fatalf("attempt %d waits %v, want %v ± 20%%", n, d, want)
			}
		}
	}
}

func TestNew_CommandDefaults(t *testing.T) {
	t.Parallel()
	in := &CommandConfig{}
	b, err := New(&recPublisher{}, Config{URL: "tcp://127.0.0.1:1883", Commands: in})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if in.TTL != 0 || in.Store != nil || in.Rooms != nil {
		t.Error("New modified the caller's CommandConfig")
	}
	c := b.cmd.cfg
	if c.Topic != "devices/{device}/cmd" || c.ReplyTopic != "devices/{device}/cmd/reply" || c.StatusTopic != "devices/{device}/status" ||
		c.TTL != 5*time.Minute || c.MaxTTL != 24*time.Hour || c.MaxPerDevice != 16 || c.MaxQueued != 10_000 ||
		c.MaxArgs != 16<<10 || c.MaxDevices != 100_000 || c.SweepInterval != time.Second || c.Event != "device:command" ||
		!slices.Equal(c.Rooms, []string{"device:{device}"}) || c.Store == nil || c.Online == nil {
		t.Errorf("defaults: %+v", c)
	}
	if got := b.cmd.commandTopic("7"); got != "devices/7/cmd" {
		t.Errorf("command topic %q", got)
	}
	// No events: an empty, non-nil Rooms.
	b2, err := New(&recPublisher{}, Config{URL: "tcp://127.0.0.1:1883", Commands: &CommandConfig{Rooms: []string{}}})
	if err != nil {
		t.Fatal(err)
	}
	defer b2.Close()
	if len(b2.cmd.rooms) != 0 {
		t.Errorf("rooms %d, want none", len(b2.cmd.rooms))
	}
}
