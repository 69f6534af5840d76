package mqttbridge

import (
	"slices"
	"strings"
	"testing"

	"github.com/org/rthub"
)

func TestParsePattern(t *testing.T) {
	t.Parallel()
	tests := []struct {
		pattern string
		filter  string
		vars    []string
		err     string // substring of the error; "" for valid
	}{
		{"sensors/{device}/reading", "sensors/+/reading", []string{"device"}, ""},
		{"devices/{device}/status", "devices/+/status", []string{"device"}, ""},
		{"site/{site}/+/{device}/#", "site/+/+/+/#", []string{"site", "device"}, ""},
		{"#", "#", nil, ""},
		{"+", "+", nil, ""},
		{"a/b/c", "a/b/c", nil, ""},
		{"/leading/empty", "/leading/empty", nil, ""},
		{"$SYS/broker/+", "$SYS/broker/+", nil, ""},
		{"{_x9}", "+", []string{"_x9"}, ""},
		{"a//b", "a//b", nil, ""},

		{"", "", nil, "empty"},
		{"a/#/b", "", nil, "'#' must be the last level"},
		{"a/dev+/b", "", nil, "mixes text"},
		{"a/dev{id}", "", nil, "mixes text"},
		{"a/{id}x", "", nil, "mixes text"},
		{"a/b#", "", nil, "mixes text"},
		{"a/{}/b", "", nil, "bad variable name"},
		{"a/{9x}/b", "", nil, "bad variable name"},
		{"a/{x-y}/b", "", nil, "bad variable name"},
		{"{id}/{id}", "", nil, "appears twice"},
		{"a/\x00", "", nil, "NUL"},
		{"a/\xff", "", nil, "UTF-8"},
		{"$share/g/a/b", "", nil, "ShareGroup"},
		{strings.Repeat("a", maxTopicLen+1), "", nil, "longer than"},
	}
	for _, tt := range tests {
		t.Run(tt.pattern, func(t *testing.T) {
			p, err := parsePattern(tt.pattern)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("parsePattern(%q) err = %v, want it to mention %q", tt.pattern, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("parsePattern(%q): %v", tt.pattern, err)
			}
			if p.filter != tt.filter || !slices.Equal(p.vars, tt.vars) {
				t.Fatalf("parsePattern(%q) = filter %q vars %q, want %q %q", tt.pattern, p.filter, p.vars, tt.filter, tt.vars)
			}
		})
	}
}

func TestPatternMatch(t *testing.T) {
	t.Parallel()
	tests := []struct {
		pattern, topic string
		match          bool
		vars           []string
	}{
		{"sensors/{device}/reading", "sensors/7/reading", true, []string{"7"}},
		{"sensors/{device}/reading", "sensors/7/status", false, nil},
		{"sensors/{device}/reading", "sensors/7/reading/x", false, nil},
		{"sensors/{device}/reading", "sensors/reading", false, nil},
		{"sensors/{device}/reading", "sensors//reading", true, []string{""}},
		{"sensors/{device}/reading", "sensors/a:b/reading", true, []string{"a:b"}},
		{"a/#", "a", true, nil},
		{"a/#", "a/b/c", true, nil},
		{"a/#", "ab", false, nil},
		{"a/+", "a/", true, nil},
		{"a/+", "a", false, nil},
		{"#", "anything/at/all", true, nil},
		{"#", "$SYS/x", false, nil},
		{"+/x", "$SYS/x", false, nil},
		{"{v}/x", "$SYS/x", false, nil},
		{"$SYS/+", "$SYS/x", true, nil},
		{"{a}/{b}/#", "1/2/3/4", true, []string{"1", "2"}},
		{"{a}/{b}/#", "1/2", true, []string{"1", "2"}},
		{"{a}/{b}/#", "1", false, nil},
		{"a/b", "", false, nil},
		{"/x", "/x", true, nil},
	}
	for _, tt := range tests {
		t.Run(tt.pattern+" "+tt.topic, func(t *testing.T) {
			p, err := parsePattern(tt.pattern)
			if err != nil {
				t.Fatal(err)
			}
			vals := make([]string, len(p.vars))
			if got := p.match(tt.topic, vals); got != tt.match {
				t.Fatalf("match(%q, %q) = %v, want %v", tt.pattern, tt.topic, got, tt.match)
			}
			if tt.match && tt.vars != nil && !slices.Equal(vals, tt.vars) {
				t.Fatalf("match(%q, %q) vars = %q, want %q", tt.pattern, tt.topic, vals, tt.vars)
			}
			if got := refMatch(p.filter, tt.topic); got != tt.match {
				t.Fatalf("reference matcher disagrees with the table: refMatch(%q, %q) = %v", p.filter, tt.topic, got)
			}
		})
	}
}

func TestOverlaps(t *testing.T) {
	t.Parallel()
	tests := []struct {
		a, b string
		want bool
	}{
		{"sensors/{d}/reading", "devices/{d}/status", false},
		{"sensors/{d}/reading", "sensors/{d}/status", false},
		{"sensors/{d}/reading", "sensors/7/reading", true},
		{"sensors/{d}/reading", "sensors/#", true},
		{"sensors/{d}/reading", "#", true},
		{"sensors/{d}/reading", "sensors/+", false},
		{"a/#", "a", true},
		{"a/b/#", "a", false},
		{"a/+/c", "a/b/+", true},
		{"a/b", "a/b/c", false},
		{"#", "$SYS/x", false},
		{"+/x", "$SYS/x", false},
		{"$SYS/#", "$SYS/x", true},
		{"a", "a", true},
	}
	for _, tt := range tests {
		t.Run(tt.a+" "+tt.b, func(t *testing.T) {
			a, err := parsePattern(tt.a)
			if err != nil {
				t.Fatal(err)
			}
			b, err := parsePattern(tt.b)
			if err != nil {
				t.Fatal(err)
			}
			if got := overlaps(a, b); got != tt.want {
				t.Errorf("overlaps(%q, %q) = %v, want %v", tt.a, tt.b, got, tt.want)
			}
			if got := overlaps(b, a); got != tt.want {
				t.Errorf("overlaps(%q, %q) = %v, want %v", tt.b, tt.a, got, tt.want)
			}
		})
	}
}

func TestTemplate(t *testing.T) {
	t.Parallel()
	p, err := parsePattern("site/{site}/{device}/reading")
	if err != nil {
		t.Fatal(err)
	}
	vals := []string{"north", "7"}
	tests := []struct {
		tpl, want, err string
	}{
		{"device:{device}", "device:7", ""},
		{"staff", "staff", ""},
		{"site:{site}:device:{device}", "site:north:device:7", ""},
		{"dev-{device}", "dev-7", ""},
		{"{site}{device}", "north7", ""},
		{"device:{id}", "", "unknown variable {id}"},
		{"device:{device", "", "'{' without '}'"},
		{"device:device}", "", "'}' without '{'"},
	}
	for _, tt := range tests {
		t.Run(tt.tpl, func(t *testing.T) {
			tp, err := parseTemplate(tt.tpl, p)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("parseTemplate(%q) err = %v, want %q", tt.tpl, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := tp.expand(vals); got != tt.want {
				t.Fatalf("expand = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestValidRoomTemplate(t *testing.T) {
	t.Parallel()
	p, _ := parsePattern("x/{device}")
	for tpl, ok := range map[string]bool{
		"device:{device}":  true,
		"staff":            true,
		"device::{device}": false,
		"device:{device}:": false,
		"device {device}":  false,
		"device:*":         false,
		":{device}":        false,
	} {
		tp, err := parseTemplate(tpl, p)
		if err != nil {
			t.Fatal(err)
		}
		if err := validRoomTemplate(tp, len(p.vars)); (err == nil) != ok {
			t.Errorf("validRoomTemplate(%q) = %v, want ok=%v", tpl, err, ok)
		}
	}
}

func TestRouteResolve(t *testing.T) {
	t.Parallel()
	cfg := Config{QueueSize: 1, QueueBytes: 1 << 20, MaxPayload: 1024}
	rt, errs := compileRoute(Route{
		Topic: "sensors/{device}/{kind}",
		Event: "sensor:data",
		Rooms: []string{"device:{device}", "staff"},
		Key:   "{device}",
	}, 0, &cfg)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	tests := []struct {
		device, kind string
		rooms        []string
		bad          bool
	}{
		{"7", "reading", []string{"device:7", "staff"}, false},
		// {kind} is in no room, so any level goes.
		{"7", "a b:c", []string{"device:7", "staff"}, false},
		{"7:admin", "reading", nil, true}, // no extra room segment
		{"", "reading", nil, true},
		{"a b", "reading", nil, true},
		{"dev*", "reading", nil, true},
		{strings.Repeat("x", 200), "reading", nil, true},
		{"käse", "reading", nil, true},
	}
	for _, tt := range tests {
		rooms, key, why := rt.resolve("t", []string{tt.device, tt.kind})
		if (why != "") != tt.bad || !slices.Equal(rooms, tt.rooms) {
			t.Errorf("resolve(%q, %q) = %q, %q, want %q (bad=%v)", tt.device, tt.kind, rooms, why, tt.rooms, tt.bad)
		}
		if !tt.bad && key != tt.device {
			t.Errorf("key = %q, want %q", key, tt.device)
		}
	}
}

// refMatch is a plain reference implementation of MQTT topic filter matching.
func refMatch(filter, topic string) bool {
	if topic == "" {
		return false
	}
	f, tl := strings.Split(filter, "/"), strings.Split(topic, "/")
	if strings.HasPrefix(topic, "$") && (f[0] == "+" || f[0] == "#") {
		return false
	}
	for i, fl := range f {
		if fl == "#" {
			return true
		}
		if i >= len(tl) || fl != "+" && fl != tl[i] {
			return false
		}
	}
	return len(f) == len(tl)
}

// FuzzPattern checks the topic pattern parser and matcher against the
// reference matcher, and that the captured variables put back into the
// pattern give the topic again.
func FuzzPattern(f *testing.F) {
	for _, s := range [][2]string{
		{"sensors/{device}/reading", "sensors/7/reading"},
		{"a/#", "a"},
		{"{a}/+/{b}/#", "x/y/z/w/v"},
		{"#", "$SYS/x"},
		{"a//{b}", "a//"},
		{"+", ""},
		{"a/{b}", "a/b/c"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pat, topic string) {
		p, err := parsePattern(pat)
		if err != nil {
			return
		}
		if strings.ContainsAny(topic, "+#") || strings.ContainsRune(topic, 0) {
			return // not a topic a broker delivers
		}
		vals := make([]string, len(p.vars))
		got := p.match(topic, vals)
		if want := refMatch(p.filter, topic); got != want {
			t.Fatalf("match(%q, %q) = %v, reference says %v (filter %q)", pat, topic, got, want, p.filter)
		}
		if !got || strings.Contains(p.filter, "+") && len(p.vars) == 0 || strings.HasSuffix(p.filter, "#") {
			return
		}
		// Without anonymous wildcards, the variables rebuild the topic.
		var levels []string
		for _, l := range p.levels {
			switch l.kind {
			case levelLiteral:
				levels = append(levels, l.text)
			case levelVar:
				levels = append(levels, vals[l.vari])
			case levelPlus:
				return
			}
		}
		if rebuilt := strings.Join(levels, "/"); rebuilt != topic {
			t.Fatalf("pattern %q, topic %q: variables %q rebuild %q", pat, topic, vals, rebuilt)
		}
	})
}

// FuzzOverlap checks that two patterns a topic matches both are reported as
// overlapping (New relies on it to give each message one route).
func FuzzOverlap(f *testing.F) {
	f.Add("sensors/{d}/reading", "sensors/#", "sensors/1/reading")
	f.Add("a/#", "a", "a")
	f.Add("+/b", "a/+", "a/b")
	f.Fuzz(func(t *testing.T, pa, pb, topic string) {
		a, err := parsePattern(pa)
		if err != nil {
			return
		}
		b, err := parsePattern(pb)
		if err != nil {
			return
		}
		if a.match(topic, make([]string, len(a.vars))) && b.match(topic, make([]string, len(b.vars))) && !overlaps(a, b) {
			t.Fatalf("topic %q matches %q and %q, but overlaps says no", topic, pa, pb)
		}
	})
}

// FuzzTopicToRoom feeds arbitrary topics to the product's reading route: a
// topic is either refused or mapped to valid rooms, and never to a room with
// more segments than the template has.
func FuzzTopicToRoom(f *testing.F) {
	for _, s := range []string{"sensors/7/reading", "sensors/7:admin/reading", "sensors//reading",
		"sensors/../reading", "sensors/a b/reading", "sensors/\u00e9/reading", "x"} {
		f.Add(s)
	}
	cfg := Config{QueueSize: 1, QueueBytes: 1 << 20, MaxPayload: 1024}
	rt, errs := compileRoute(Route{Topic: "sensors/{device}/reading", Event: "sensor:data",
		Rooms: []string{"device:{device}", "staff"}}, 0, &cfg)
	if len(errs) > 0 {
		f.Fatal(errs)
	}
	f.Fuzz(func(t *testing.T, topic string) {
		vals := make([]string, 1)
		if !rt.pat.match(topic, vals) {
			return
		}
		rooms, key, why := rt.resolve(topic, vals)
		if why != "" {
			if rooms != nil {
				t.Fatalf("refused topic %q yet rooms %q", topic, rooms)
			}
			return
		}
		if len(rooms) != 2 || rooms[1] != "staff" || key != topic {
			t.Fatalf("topic %q: rooms %q key %q", topic, rooms, key)
		}
		if err := rthub.ValidRoom(rooms[0]); err != nil || strings.Count(rooms[0], ":") != 1 || rooms[0] != "device:"+vals[0] {
			t.Fatalf("topic %q: room %q (valid: %v)", topic, rooms[0], err)
		}
	})
}
