package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/org/rthub/internal/doccheck"
	"github.com/org/rthub/internal/testenv"
)

// TestDocs_commands: every documented `go run ./examples/iotserver` (the
// READMEs, docs/onboarding.md, docs/operations.md) sets only variables the
// server reads, with values it accepts.
func TestDocs_commands(t *testing.T) {
	t.Parallel()
	n := doccheck.CheckEnvCommands(t, "examples/iotserver", func(getenv func(string) string) error {
		_, err := configFromEnv(getenv)
		return err
	})
	t.Logf("%d documented iotserver commands", n)
}

// TestDocs_withServices runs the README's "with real services" command as a
// process: its variables (JWT_SECRET from `openssl rand`, SEED_USERS), with
// the services of RTHUB_POSTGRES_URL and RTHUB_MQTT_URL, a free port, and a
// schema and topic prefix of its own so that it shares the services with
// other tests. The seeded user logs in as an admin; with JWT_SECRET set,
// the demo users do not exist.
func TestDocs_withServices(t *testing.T) {
	t.Parallel()
	pgURL := testenv.URL(t, testenv.Postgres)
	mqURL := testenv.URL(t, testenv.MQTT)
	need(t, "openssl", "the README's JWT_SECRET=$(openssl rand -hex 32)")
	var doc *doccheck.Command
	for _, c := range doccheck.GoRuns(t, "examples/iotserver") {
		if c.File == "examples/iotserver/README.md" && c.Env["RTHUB_POSTGRES_URL"] != "" {
			doc = &c
			break
		}
	}
	if doc == nil {
		t.Fatal("examples/iotserver/README.md has no go run with RTHUB_POSTGRES_URL")
	}
	get := doc.Getenv(t)
	env := map[string]string{}
	for k := range doc.Env {
		env[k] = get(k)
	}
	if len(env["JWT_SECRET"]) < 32 {
		t.Fatalf("%s:%d: JWT_SECRET expands to %q", doc.File, doc.Line, env["JWT_SECRET"])
	}
	user, rest, _ := strings.Cut(env["SEED_USERS"], ":")
	role, rest, _ := strings.Cut(rest, ":")
	password, _, _ := strings.Cut(rest, ":")
	schema := testSchema()
	var rb [4]byte
	_, _ = rand.Read(rb[:])
	t.Cleanup(func() { dropSchema(t, pgURL, schema) }) // after the process stopped
	env["RTHUB_POSTGRES_URL"], env["RTHUB_MQTT_URL"] = pgURL, mqURL
	env["POSTGRES_SCHEMA"] = schema
	env["MQTT_TOPIC_PREFIX"] = fmt.Sprintf("iot-docs-%x/", rb)
	env["ADDR"] = "127.0.0.1:0"
	env["LOG_LEVEL"] = "warn"
	p := startProcess(t, env)
	s := &testServer{addr: p.addr}
	eventually(t, 15*time.Second, "/readyz", func() bool { return s.do(t, "GET", "/readyz", "", nil, nil) == 200 })
	var tok tokenResponse
	if code := s.do(t, "POST", "/api/login", "", loginRequest{user, password}, &tok); code != 200 || tok.Token == "" || !slices.Contains(tok.User.Roles, role) {
		t.Fatalf("login %s from SEED_USERS: %d, roles %v", user, code, tok.User.Roles)
	}
	if code := s.do(t, "POST", "/api/login", "", loginRequest{"alice", "alice"}, nil); code != 401 {
		t.Errorf("demo login alice/alice with JWT_SECRET set: %d, want 401", code)
	}
	if strings.Contains(p.out.String(), "demo mode") {
		t.Errorf("demo mode with JWT_SECRET set:\n%s", p.out)
	}
	p.terminate(t, 20*time.Second)
}

// TestDocs_demoCommands runs, against the server started as
// `go run ./examples/iotserver` does (demo mode, on a free port instead of
// 8080), every documented curl to localhost:8080 with what it is piped to
// (grep: some line matches; jq -r .token: a token), and
// docs/onboarding.md's wscat session: the token its login returned, the
// subprotocol and header of its wscat line, then the commands of its JSON
// block, of which the last is refused (forbidden) while the connection
// stays. $ADMIN_TOKEN (docs/operations.md) is the demo admin's login.
func TestDocs_demoCommands(t *testing.T) {
	t.Parallel()
	p := startProcess(t, map[string]string{
		"ADDR": "127.0.0.1:0", "MQTT_EMBEDDED_ADDR": "127.0.0.1:0", "LOG_LEVEL": "warn",
		"JWT_SECRET": "", "SEED_USERS": "",
	})
	eventually(t, 10*time.Second, "the demo logins printed", func() bool { return strings.Contains(p.out.String(), "admin  admin / admin") })
	s := &testServer{addr: p.addr}
	var admin tokenResponse
	if code := s.do(t, "POST", "/api/login", "", loginRequest{"admin", "admin"}, &admin); code != 200 {
		t.Fatalf("demo login admin/admin: %d", code)
	}
	vars := map[string]string{"ADMIN_TOKEN": admin.Token}

	cmds := doccheck.Commands(t)
	ran := 0
	var wscat *doccheck.Command
	for i, c := range cmds {
		switch {
		case c.Args[0] == "curl":
			var next *doccheck.Command
			if i+1 < len(cmds) && cmds[i+1].File == c.File && cmds[i+1].Line == c.Line {
				next = &cmds[i+1]
			}
			if runCurl(t, c, next, p.addr, vars) {
				ran++
			}
		case len(c.Args) > 1 && c.Args[0] == "npx" && c.Args[1] == "wscat" && strings.Contains(strings.Join(c.Args, " "), ":8080/"):
			wscat = &c
		}
	}
	if ran == 0 || wscat == nil {
		t.Fatalf("ran %d documented curl commands, found wscat line %v: the docs changed, and this test checks nothing", ran, wscat != nil)
	}
	t.Logf("ran %d documented curl commands", ran)
	runWscat(t, *wscat, p.addr, vars)
	p.terminate(t, 20*time.Second)
}

// serverHost reports whether a documented URL is the example server's.
func serverHost(host string) bool { return host == "localhost:8080" || host == "127.0.0.1:8080" }

// runCurl makes the request of a documented curl command to the example
// server at addr, and checks the answer with the command it is piped to. It
// reports false for a curl to another server (Prometheus).
func runCurl(t *testing.T, c doccheck.Command, pipe *doccheck.Command, addr string, vars map[string]string) bool {
	t.Helper()
	where := fmt.Sprintf("%s:%d", c.File, c.Line)
	method, target, body := "", "", ""
	header := http.Header{}
	expand := func(s string) string {
		return os.Expand(s, func(k string) string {
			v, ok := vars[k]
			if !ok {
				t.Fatalf("%s: $%s: not a variable this test knows", where, k)
			}
			return v
		})
	}
	args := c.Args[1:]
	for i := 0; i < len(args); i++ {
		a := args[i]
		value := func() string {
			if i+1 >= len(args) {
				t.Fatalf("%s: %s needs a value", where, a)
			}
			i++
			return args[i]
		}
		switch {
		case a == "-X":
			method = value()
		case strings.HasPrefix(a, "-X"):
			method = a[2:]
		case a == "-H":
			k, v, _ := strings.Cut(expand(value()), ": ")
			header.Set(k, v)
		case a == "-d" || a == "--data":
			body = value()
		case a == "--data-urlencode":
			value()
		case strings.HasPrefix(a, "-"):
		default:
			target = a
		}
	}
	if !strings.Contains(target, "://") {
		target = "http://" + target
	}
	u, err := url.Parse(target)
	if err != nil {
		t.Fatalf("%s: %v", where, err)
	}
	if !serverHost(u.Host) {
		return false
	}
	u.Host = addr
	if method == "" {
		method = "GET"
		if body != "" {
			method = "POST"
		}
	}
	req, err := http.NewRequestWithContext(t.Context(), method, u.String(), strings.NewReader(body))
	if err != nil {
		t.Fatalf("%s: %v", where, err)
	}
	req.Header = header
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s: %s: %v", where, c, err)
	}
	defer res.Body.Close()
	out, _ := io.ReadAll(res.Body)
	if res.StatusCode/100 != 2 {
		t.Errorf("%s: %s: %d %s", where, c, res.StatusCode, out)
		return true
	}
	if pipe == nil {
		return true
	}
	switch pipe.Args[0] {
	case "grep":
		pat := pipe.Args[len(pipe.Args)-1]
		re, err := regexp.Compile("(?m)" + pat)
		if err != nil {
			t.Fatalf("%s: grep %q: %v", where, pat, err)
		}
		if !re.Match(out) {
			t.Errorf("%s: %s | grep %q: no line matches", where, c, pat)
		}
	case "jq":
		field := strings.TrimPrefix(pipe.Args[len(pipe.Args)-1], ".")
		var m map[string]any
		if err := json.Unmarshal(out, &m); err != nil {
			t.Fatalf("%s: %s | jq: %v: %s", where, c, err, out)
		}
		v, _ := m[field].(string)
		if v == "" {
			t.Errorf("%s: %s | jq .%s: empty in %s", where, c, field, out)
		}
		if field == "token" {
			vars["TOKEN"] = v // the onboarding's TOKEN=$(curl … | jq -r .token)
		}
	default:
		t.Fatalf("%s: %s piped to %s: this test does not know how to check it", where, c, pipe.Args[0])
	}
	return true
}

// runWscat connects as the documented wscat line does and sends the
// commands of docs/onboarding.md's JSON block after it.
func runWscat(t *testing.T, c doccheck.Command, addr string, vars map[string]string) {
	t.Helper()
	where := fmt.Sprintf("%s:%d", c.File, c.Line)
	var proto, target string
	header := http.Header{}
	for i := 2; i+1 < len(c.Args); i++ {
		switch c.Args[i] {
		case "-s":
			proto = c.Args[i+1]
		case "-H":
			k, v, _ := strings.Cut(os.Expand(c.Args[i+1], func(k string) string { return vars[k] }), ": ")
			header.Set(k, v)
		case "-c":
			target = c.Args[i+1]
		}
	}
	u, err := url.Parse(target)
	if err != nil || !serverHost(u.Host) || proto == "" {
		t.Fatalf("%s: want -s, -H and -c ws://…:8080/…: %s", where, c)
	}
	u.Host = addr
	var commands []string
	for _, b := range doccheck.CodeBlocks(t, c.File) {
		if b.Lang == "json" && b.Line > c.Block {
			commands = b.Lines
			break
		}
	}
	if len(commands) < 2 {
		t.Fatalf("%s: no JSON block of commands after the wscat block", where)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	nc, br, _, err := (&ws.Dialer{Protocols: []string{proto}, Header: ws.HandshakeHeaderHTTP(header)}).Dial(ctx, u.String())
	if err != nil {
		t.Fatalf("%s: %v", where, err)
	}
	defer nc.Close()
	// The frames the server sent right after the handshake may be in br.
	conn := io.ReadWriter(nc)
	if br != nil {
		conn = struct {
			io.Reader
			io.Writer
		}{br, nc}
	}
	_ = nc.SetDeadline(time.Now().Add(20 * time.Second))
	type reply struct {
		Type  string
		ID    int
		OK    bool
		Error *struct{ Code string }
	}
	read := func(id int) reply {
		for {
			data, err := wsutil.ReadServerText(conn)
			if err != nil {
				t.Fatalf("%s: waiting for the reply to %d: %v", where, id, err)
			}
			var r reply
			if err := json.Unmarshal(data, &r); err != nil {
				t.Fatalf("%s: %s: %v", where, data, err)
			}
			if r.Type == "reply" && r.ID == id {
				return r
			}
		}
	}
	for i, line := range append(commands, `{"id":99,"op":"ping"}`) {
		var cmd struct{ ID int }
		if err := json.Unmarshal([]byte(line), &cmd); err != nil {
			t.Fatalf("%s: %q: %v", where, line, err)
		}
		if err := wsutil.WriteClientText(conn, []byte(line)); err != nil {
			t.Fatal(err)
		}
		r := read(cmd.ID)
		switch {
		case i == len(commands)-1: // "The last one is refused (forbidden …) and the connection stays."
			if r.OK || r.Error == nil || r.Error.Code != "forbidden" {
				t.Errorf("%s: %s: %+v, want refused as forbidden", where, line, r)
			}
		case !r.OK:
			t.Errorf("%s: %s: refused: %+v", where, line, r.Error)
		}
	}
}
