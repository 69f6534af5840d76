package redisbroker

import (
	"fmt"
	"maps"
	"strings"
	"testing"

	"github.com/org/rthub"
)

func TestShardIndexRendezvous(t *testing.T) {
	shards := []string{"a:6379/0", "b:6379/0", "c:6379/0", "d:6379/0"}
	const rooms = 20000
	home := make([]string, rooms)
	count := map[string]int{}
	for i := range rooms {
		home[i] = shards[shardIndex(shards, fmt.Sprintf("device:%d", i))]
		count[home[i]]++
	}
	for _, s := range shards {
		if n := count[s]; n < rooms/4*9/10 || n > rooms/4*11/10 {
			t.Errorf("shard %s holds %d of %d rooms; want about a quarter", s, n, rooms)
		}
	}
	// Removing a shard moves only its rooms; the order of shards is irrelevant.
	without := []string{"d:6379/0", "a:6379/0", "c:6379/0"}
	for i := range rooms {
		h := without[shardIndex(without, fmt.Sprintf("device:%d", i))]
		if home[i] != "b:6379/0" && h != home[i] {
			t.Fatalf("room %d moved from %s to %s when b was removed", i, home[i], h)
		}
	}
	// Adding a fifth moves about a fifth of them, all to the new one.
	with := append(shards[:4:4], "e:6379/0")
	moved := 0
	for i := range rooms {
		h := with[shardIndex(with, fmt.Sprintf("device:%d", i))]
		if h != home[i] {
			if h != "e:6379/0" {
				t.Fatalf("room %d moved from %s to %s, not to the new shard", i, home[i], h)
			}
			moved++
		}
	}
	if moved < rooms/5*9/10 || moved > rooms/5*11/10 {
		t.Errorf("adding a fifth shard moved %d of %d rooms; want about a fifth", moved, rooms)
	}
}

func TestDecode(t *testing.T) {
	tp := map[string]string{"traceparent": "00-4bf9-00f0-01"}
	tests := []struct {
		msg  string
		ok   bool
		off  uint64
		ep   string
		data string
		exc  string
		hdr  map[string]string
	}{
		{"1:5:abc:{\"x\":1}", true, 5, "abc", `{"x":1}`, "", nil},
		{"1:1:e:", true, 1, "e", "", "", nil},
		{"1:12:e:a:b:c", true, 12, "e", "a:b:c", "", nil},
		{"2:7:e:5:x2:c1data", true, 7, "e", "data", "c1", nil},
		{"2:7:e:34:k11:traceparentv15:00-4bf9-00f0-01{}", true, 7, "e", "{}", "", tp},
		{"2:7:e:38:x1:ck11:traceparentv15:00-4bf9-00f0-012:1:e:", true, 7, "e", "2:1:e:", "c", tp},
		{"2:7:e:16:x1:cq3:newk0:v0:d", true, 7, "e", "d", "c", map[string]string{"": ""}}, // unknown tag q skipped
		{"2:7:e:0:data", false, 0, "", "", "", nil},                                       // format 2 has metadata
		{"2:7:e:9:x2:c1data", false, 0, "", "", "", nil},                                  // length past the items' end
		{"2:7:e:4:x2:c1data", false, 0, "", "", "", nil},                                  // length cuts an item
		{"2:7:e:5x2:c1data", false, 0, "", "", "", nil},                                   // no length
		{"2:7:e:05:x2:c1data", false, 0, "", "", "", nil},                                 // leading zero
		{"2:7:e:+5:x2:c1data", false, 0, "", "", "", nil},
		{"2:7:e:5:k1:av", false, 0, "", "", "", nil},    // a value without its length
		{"2:7:e:4:k1:a", false, 0, "", "", "", nil},     // a key without a value
		{"2:7:e:4:v1:a", false, 0, "", "", "", nil},     // a value without a key
		{"2:7:e:8:k1:ak1:b", false, 0, "", "", "", nil}, // two keys
		{"2:7:e:5:x-1:a", false, 0, "", "", "", nil},    // negative length
		{"3:1:e:x", false, 0, "", "", "", nil},          // a format this reader does not know
		{"1:x:e:x", false, 0, "", "", "", nil},
		{"1:1", false, 0, "", "", "", nil},
		{"1:1:e", false, 0, "", "", "", nil},
		{"", false, 0, "", "", "", nil},
	}
	for _, tt := range tests {
		p, ok := decode("r", tt.msg)
		if ok != tt.ok || (ok && (p.Offset != tt.off || p.Epoch != tt.ep || string(p.Data) != tt.data || p.Room != "r" ||
			p.Except != tt.exc || !maps.Equal(p.Header, tt.hdr) || (tt.hdr == nil) != (p.Header == nil))) {
			t.Errorf("decode(%q) = %+v, %v", tt.msg, p, ok)
		}
	}
}

// encodeLikeScript builds the channel message publishScript sends.
func encodeLikeScript(off uint64, epoch string, m rthub.Message) string {
	meta := appendMeta(nil, m)
	if len(meta) == 0 {
		return fmt.Sprintf("1:%d:%s:%s", off, epoch, m.Data)
	}
	return fmt.Sprintf("2:%d:%s:%d:%s%s", off, epoch, len(meta), meta, m.Data)
}

func TestMetaRoundTrip(t *testing.T) {
	for _, m := range []rthub.Message{
		{Data: []byte("d")},
		{Data: []byte("d"), Except: "0a1b-2"},
		{Data: []byte("2:1:e:1:x"), Except: "x9:", Header: map[string]string{"k1:": "v1:", "": "", "\x00": "\xff\n"}},
		{Header: map[string]string{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}},
		{Data: []byte("keyed"), Key: "device:7/temp"},
		{Data: []byte("all"), Key: "y1:k", Except: "c", Header: map[string]string{"a": "b"}},
	} {
		msg := encodeLikeScript(3, "ep", m)
		p, ok := decode("r", msg)
		if !ok || p.Offset != 3 || p.Epoch != "ep" || string(p.Data) != string(m.Data) || p.Except != m.Except || p.Key != m.Key || !maps.Equal(p.Header, m.Header) {
			t.Errorf("decode(encode(%+v)) = %q: %+v, %v", m, msg, p, ok)
		}
	}
	// Sorted keys: one encoding per message.
	m := rthub.Message{Header: map[string]string{"b": "2", "a": "1", "c": "3"}}
	if got := string(appendMeta(nil, m)); got != "k1:av1:1k1:bv1:2k1:cv1:3" {
		t.Errorf("appendMeta = %q", got)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add("1:5:abc:data")
	f.Add("1::x:")
	f.Add("2:7:e:38:x1:ck11:traceparentv15:00-4bf9-00f0-012:1:e:")
	f.Add("2:7:e:16:x1:cq3:newk0:v0:d")
	f.Fuzz(func(t *testing.T, msg string) {
		p, ok := decode("r", msg)
		if !ok {
			return
		}
		noMeta := p.Except == "" && p.Key == "" && p.Header == nil
		if strings.Contains(p.Epoch, ":") || !strings.HasSuffix(msg, string(p.Data)) || msg[0] == '1' && !noMeta {
			t.Fatalf("decode(%q) = %+v", msg, p)
		}
		// What decodes encodes to something that decodes the same.
		again, ok := decode("r", encodeLikeScript(p.Offset, p.Epoch, p.Message))
		if !ok || again.Offset != p.Offset || again.Epoch != p.Epoch || string(again.Data) != string(p.Data) ||
			again.Except != p.Except || again.Key != p.Key || !maps.Equal(again.Header, p.Header) {
			t.Fatalf("decode(%q) = %+v; re-encoded: %+v, %v", msg, p, again, ok)
		}
	})
}

// encodeEntryLikeScript builds a state entry as publishScript stores it.
func encodeEntryLikeScript(ms int64, cost int, off uint64, m rthub.Message) string {
	meta := appendMeta(nil, m)
	return fmt.Sprintf("%d:%d:%d:%d:%s%s", ms, cost, off, len(meta), meta, m.Data)
}

// FuzzDecodeEntry: a state entry read back from Redis never panics, and
// what decodes re-encodes to the same publication.
func FuzzDecodeEntry(f *testing.F) {
	f.Add(encodeEntryLikeScript(1764000000000, 80, 12, rthub.Message{Data: []byte(`{"a":1}`), Key: "d7"}))
	f.Add(encodeEntryLikeScript(1, 2, 3, rthub.Message{Data: []byte("x"), Key: "k", Except: "c", Header: map[string]string{"h": "v"}}))
	f.Add("1:2:3:0:data")
	f.Add("1:2:3:99:short")
	f.Fuzz(func(t *testing.T, v string) {
		p, ok := decodeEntry("r", "e", v)
		if !ok {
			return
		}
		again, ok := decodeEntry("r", "e", encodeEntryLikeScript(0, 0, p.Offset, p.Message))
		if !ok || again.Offset != p.Offset || string(again.Data) != string(p.Data) || again.Key != p.Key ||
			again.Except != p.Except || !maps.Equal(again.Header, p.Header) || p.Room != "r" || p.Epoch != "e" {
			t.Fatalf("decodeEntry(%q) = %+v; re-encoded: %+v, %v", v, p, again, ok)
		}
	})
}

func TestNames(t *testing.T) {
	n := names{"rthub:"}
	for room, want := range map[string][3]string{
		"device:42": {"rthub:{device:42}:m", "rthub:{device:42}:s", "rthub:{device:42}"},
	} {
		if got := [3]string{n.meta(room), n.stream(room), n.channel(room)}; got != want {
			t.Errorf("names of %q: %v, want %v", room, got, want)
		}
		if got := n.room(n.channel(room)); got != room {
			t.Errorf("room(channel(%q)) = %q", room, got)
		}
	}
	for _, ch := range []string{"rthub:node:x", "other:{a}", "rthub:{a", "rthub:a}"} {
		if got := n.room(ch); got != "" {
			t.Errorf("room(%q) = %q, want none", ch, got)
		}
	}
}

// FuzzParseEnvelope: a control message or answer read from Redis never
// panics the parser, and what envelope frames parses back unchanged.
func FuzzParseEnvelope(f *testing.F) {
	f.Add("node-1", "0123456789abcdef", []byte(`{"op":"user"}`), "1:6:node-10123456789abcdef{}")
	f.Add("", "0123456789abcdef", []byte{}, "1:0:")
	f.Add("a:b", "ffffffffffffffff", []byte("\x00\xff"), "1:-1:x")
	f.Add("n", "0123456789abcdef", []byte("x"), "1:99999999999999999999:")
	f.Add("n", "0123456789abcdef", []byte("x"), "1:9223372036854775807:0123456789abcdef")
	f.Fuzz(func(t *testing.T, node, id string, data []byte, raw string) {
		parseEnvelope(raw) // must not panic
		if len(id) != 16 {
			return
		}
		gn, gid, gd, ok := parseEnvelope(envelope(node, id, data))
		if !ok || gn != node || gid != id || string(gd) != string(data) {
			t.Fatalf("round trip of (%q, %q, %q) = (%q, %q, %q, %v)", node, id, data, gn, gid, gd, ok)
		}
	})
}
