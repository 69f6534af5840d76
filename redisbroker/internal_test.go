package redisbroker

import (
	"fmt"
	"strings"
	"testing"
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
	tests := []struct {
		msg  string
		ok   bool
		off  uint64
		ep   string
		data string
	}{
		{"1:5:abc:{\"x\":1}", true, 5, "abc", `{"x":1}`},
		{"1:1:e:", true, 1, "e", ""},
		{"1:12:e:a:b:c", true, 12, "e", "a:b:c"},
		{"2:1:e:x", false, 0, "", ""},
		{"1:x:e:x", false, 0, "", ""},
		{"1:1", false, 0, "", ""},
		{"1:1:e", false, 0, "", ""},
		{"", false, 0, "", ""},
	}
	for _, tt := range tests {
		p, ok := decode("r", tt.msg)
		if ok != tt.ok || (ok && (p.Offset != tt.off || p.Epoch != tt.ep || string(p.Data) != tt.data || p.Room != "r")) {
			t.Errorf("decode(%q) = %+v, %v", tt.msg, p, ok)
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add("1:5:abc:data")
	f.Add("1::x:")
	f.Fuzz(func(t *testing.T, msg string) {
		p, ok := decode("r", msg)
		if !ok {
			return
		}
		if strings.Contains(p.Epoch, ":") || !strings.HasSuffix(msg, ":"+p.Epoch+":"+string(p.Data)) || !strings.HasPrefix(msg, "1:") {
			t.Fatalf("decode(%q) = %+v", msg, p)
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
