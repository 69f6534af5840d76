package rthub

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
)

func TestAction_String(t *testing.T) {
	t.Parallel()
	tests := []struct {
		a    Action
		want string
	}{
		{ActionJoin, "join"},
		{ActionEmit, "emit"},
		{0, "Action(0)"},
		{7, "Action(7)"},
	}
	for _, tt := range tests {
		if got := tt.a.String(); got != tt.want {
			t.Errorf("Action(%d).String() = %q, want %q", uint8(tt.a), got, tt.want)
		}
	}
}

// productPolicy is the policy of the product, as in the design.
func productPolicy() Policy {
	return Policy{Roles: map[string]RoleRules{
		"staff": {
			Join:     []string{"staff", "device:*"},
			AutoJoin: []string{"staff", "user:{sub}"},
			Emit:     []EmitRule{{Events: []string{"chat:message"}, Rooms: []string{"staff"}}},
		},
		"admin": {
			Join: []string{"admin", "device:**"},
			Emit: []EmitRule{{Events: []string{"device:command"}, Rooms: []string{"device:*"}}},
		},
		"*": {
			Join: []string{"public"},
		},
	}}
}

func mustCompile(t testing.TB, p Policy) *policy {
	t.Helper()
	cp, err := compilePolicy(p)
	if err != nil {
		t.Fatalf("compilePolicy: %v", err)
	}
	return cp
}

func TestPolicy_matrix(t *testing.T) {
	t.Parallel()
	var (
		alice      = &Identity{Subject: "alice", Roles: []string{"staff"}}
		bob        = &Identity{Subject: "bob", Roles: []string{"staff"}}
		root       = &Identity{Subject: "root", Roles: []string{"admin"}}
		both       = &Identity{Subject: "carol", Roles: []string{"staff", "admin"}}
		noRoles    = &Identity{Subject: "dave"}
		unknown    = &Identity{Subject: "eve", Roles: []string{"guest"}}
		emptyRoles = &Identity{Subject: "frank", Roles: []string{""}}
	)
	join, emit := ActionJoin, ActionEmit
	tests := []struct {
		name  string
		id    *Identity
		act   Action
		room  string
		event string
		want  bool
	}{
		// staff
		{"staffJoinsStaff", alice, join, "staff", "", true},
		{"staffJoinsDevice", alice, join, "device:7", "", true},
		{"staffDeviceSubroom", alice, join, "device:7:temp", "", false},
		{"staffJoinsAdmin", alice, join, "admin", "", false},
		{"staffJoinsPublic", alice, join, "public", "", true},
		{"staffJoinsOwnUserRoom", alice, join, "user:alice", "", true},
		{"staffJoinsOtherUserRoom", alice, join, "user:bob", "", false},
		{"bobJoinsOwnUserRoom", bob, join, "user:bob", "", true},
		{"bobJoinsAliceUserRoom", bob, join, "user:alice", "", false},
		{"staffJoinsUnlisted", alice, join, "random", "", false},
		{"staffJoinsBadRoom", alice, join, "staff ", "", false},
		{"staffEmitsChat", alice, emit, "staff", "chat:message", true},
		{"staffEmitsUnlistedEvent", alice, emit, "staff", "chat:delete", false},
		{"staffEmitsChatToUnlistedRoom", alice, emit, "public", "chat:message", false},
		{"staffEmitsCommand", alice, emit, "device:7", "device:command", false},
		{"staffEmitsBadEvent", alice, emit, "staff", "chat:*", false},
		// admin
		{"adminJoinsAdmin", root, join, "admin", "", true},
		{"adminJoinsDevice", root, join, "device:7", "", true},
		{"adminJoinsDeviceSubroom", root, join, "device:7:temp", "", true},
		{"adminJoinsDeviceBare", root, join, "device", "", false},
		{"adminJoinsStaff", root, join, "staff", "", false},
		{"adminJoinsPublic", root, join, "public", "", true},
		{"adminJoinsOwnUserRoom", root, join, "user:root", "", false},
		{"adminEmitsCommand", root, emit, "device:7", "device:command", true},
		{"adminEmitsCommandToSubroom", root, emit, "device:7:temp", "device:command", false},
		{"adminEmitsChat", root, emit, "staff", "chat:message", false},
		// staff+admin: the union
		{"bothJoinsStaff", both, join, "staff", "", true},
		{"bothJoinsAdmin", both, join, "admin", "", true},
		{"bothJoinsDeviceSubroom", both, join, "device:7:temp", "", true},
		{"bothJoinsOwnUserRoom", both, join, "user:carol", "", true},
		{"bothEmitsChat", both, emit, "staff", "chat:message", true},
		{"bothEmitsCommand", both, emit, "device:7", "device:command", true},
		{"bothEmitsChatToDevice", both, emit, "device:7", "chat:message", false},
		{"bothEmitsCommandToStaff", both, emit, "staff", "device:command", false},
		// no roles, unknown role, empty role: only "*"
		{"noRolesJoinsPublic", noRoles, join, "public", "", true},
		{"noRolesJoinsStaff", noRoles, join, "staff", "", false},
		{"noRolesJoinsOwnUserRoom", noRoles, join, "user:dave", "", false},
		{"noRolesEmits", noRoles, emit, "public", "chat:message", false},
		{"unknownRoleJoinsPublic", unknown, join, "public", "", true},
		{"unknownRoleJoinsDevice", unknown, join, "device:7", "", false},
		{"emptyRoleJoinsPublic", emptyRoles, join, "public", "", true},
		{"emptyRoleJoinsStaff", emptyRoles, join, "staff", "", false},
		// nil identity and bad actions
		{"nilIdentityJoinsPublic", nil, join, "public", "", false},
		{"zeroAction", alice, 0, "staff", "", false},
		{"unknownAction", alice, 9, "staff", "chat:message", false},
	}
	cp := mustCompile(t, productPolicy())
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			switch tt.act {
			case ActionJoin:
				if got := cp.allowJoin(tt.id, tt.room); got != tt.want {
					t.Errorf("allowJoin(%v, %q) = %v, want %v", tt.id, tt.room, got, tt.want)
				}
			case ActionEmit:
				if got := cp.allowEmit(tt.id, tt.event, tt.room); got != tt.want {
					t.Errorf("allowEmit(%v, %q, %q) = %v, want %v", tt.id, tt.event, tt.room, got, tt.want)
				}
			}
			err := cp.authorize(context.Background(), tt.id, tt.act, tt.room, tt.event)
			if tt.want {
				if err != nil {
					t.Errorf("authorize = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, ErrForbidden) {
				t.Errorf("authorize = %v, want error wrapping ErrForbidden", err)
			}
			if got := ErrorCode(err); got != "forbidden" {
				t.Errorf("ErrorCode(authorize) = %q, want forbidden", got)
			}
		})
	}
}

func TestPolicy_authorizeMessage(t *testing.T) {
	t.Parallel()
	cp := mustCompile(t, productPolicy())
	alice := &Identity{Subject: "alice", Roles: []string{"staff"}}
	tests := []struct {
		act         Action
		room, event string
		want        string // client message
	}{
		{ActionJoin, "admin", "", `role may not join room "admin"`},
		{ActionEmit, "staff", "chat:delete", `role may not emit event "chat:delete" to room "staff"`},
		{ActionJoin, strings.Repeat("z", 200), "", `role may not join room "` + strings.Repeat("z", 64) + `"... (200 bytes)`},
		{0, "staff", "", "unknown action Action(0)"},
	}
	for i, tt := range tests {
		err := cp.authorize(context.Background(), alice, tt.act, tt.room, tt.event)
		var re *ReplyError
		if !errors.As(err, &re) {
			t.Fatalf("%d: authorize = %v, want an error matching *ReplyError", i, err)
		}
		if re.Code != "forbidden" || re.Message != tt.want {
			t.Errorf("%d: reply error = {%q, %q}, want {forbidden, %q}", i, re.Code, re.Message, tt.want)
		}
		if want := "rthub: forbidden: " + tt.want; err.Error() != want {
			t.Errorf("%d: Error() = %q, want %q", i, err, want)
		}
	}
}

// devicesHook allows device rooms only for devices listed in the "devices" claim
// (a JSON array of numbers).
func devicesHook(_ context.Context, id *Identity, _ Action, room, _ string) error {
	rest, ok := strings.CutPrefix(room, "device:")
	if !ok {
		return nil
	}
	dev, _, _ := strings.Cut(rest, ":")
	list, _ := id.Claims["devices"].([]any)
	for _, v := range list {
		if f, ok := v.(float64); ok && strconv.FormatFloat(f, 'f', -1, 64) == dev {
			return nil
		}
	}
	return fmt.Errorf("%w: device %s not in token", ErrForbidden, dev)
}

func TestPolicy_hookNarrows(t *testing.T) {
	t.Parallel()
	p := productPolicy()
	p.Authorize = devicesHook
	cp := mustCompile(t, p)
	alice := &Identity{Subject: "alice", Roles: []string{"staff"}, Claims: map[string]any{"devices": []any{1.0, 2.0}}}
	root := &Identity{Subject: "root", Roles: []string{"admin"}, Claims: map[string]any{"devices": []any{2.0}}}
	tests := []struct {
		id          *Identity
		act         Action
		room, event string
		want        bool
	}{
		{alice, ActionJoin, "device:1", "", true},
		{alice, ActionJoin, "device:2", "", true},
		{alice, ActionJoin, "device:3", "", false},
		{alice, ActionJoin, "staff", "", true},
		{alice, ActionJoin, "admin", "", false}, // rules refuse; the hook cannot widen
		{root, ActionJoin, "device:2:temp", "", true},
		{root, ActionJoin, "device:1:temp", "", false},
		{root, ActionEmit, "device:2", "device:command", true},
		{root, ActionEmit, "device:1", "device:command", false},
	}
	for i, tt := range tests {
		err := cp.authorize(context.Background(), tt.id, tt.act, tt.room, tt.event)
		if got := err == nil; got != tt.want {
			t.Errorf("%d: authorize(%s, %s %q %q) = %v, want allowed=%v", i, tt.id.Subject, tt.act, tt.room, tt.event, err, tt.want)
		}
		if err != nil && !errors.Is(err, ErrForbidden) {
			t.Errorf("%d: authorize = %v, want ErrForbidden", i, err)
		}
	}
}

func TestPolicy_hookErrors(t *testing.T) {
	t.Parallel()
	errDB := errors.New("db down")
	tests := []struct {
		name    string
		hookErr error
		wantMsg string // client message
	}{
		{"plainError", errDB, `not authorized to join room "staff"`},
		{"wrapsForbidden", fmt.Errorf("%w: %w", ErrForbidden, errDB), `not authorized to join room "staff"`},
		{"replyForbidden", &ReplyError{Code: "forbidden", Message: "shift over"}, "shift over"},
		{"replyInternal", &ReplyError{Code: "internal", Message: "secret detail"}, `not authorized to join room "staff"`},
		{"replyForbiddenNoMessage", &ReplyError{Code: "forbidden"}, `not authorized to join room "staff"`},
	}
	alice := &Identity{Subject: "alice", Roles: []string{"staff"}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := productPolicy()
			p.Authorize = func(context.Context, *Identity, Action, string, string) error { return tt.hookErr }
			cp := mustCompile(t, p)
			err := cp.authorize(context.Background(), alice, ActionJoin, "staff", "")
			if !errors.Is(err, ErrForbidden) {
				t.Errorf("authorize = %v, want ErrForbidden", err)
			}
			if !errors.Is(err, tt.hookErr) {
				t.Errorf("authorize = %v, want the hook's error in the chain", err)
			}
			if got := ErrorCode(err); got != "forbidden" {
				t.Errorf("ErrorCode = %q, want forbidden", got)
			}
			var re *ReplyError
			if !errors.As(err, &re) || re.Code != "forbidden" || re.Message != tt.wantMsg {
				t.Errorf("errors.As ReplyError = %+v, want {forbidden %q}", re, tt.wantMsg)
			}
			if !strings.Contains(err.Error(), tt.hookErr.Error()) {
				t.Errorf("Error() = %q, want it to include the hook's error %q", err, tt.hookErr)
			}
		})
	}
	t.Run("emitMessage", func(t *testing.T) {
		t.Parallel()
		p := productPolicy()
		p.Authorize = func(context.Context, *Identity, Action, string, string) error { return errDB }
		cp := mustCompile(t, p)
		err := cp.authorize(context.Background(), alice, ActionEmit, "staff", "chat:message")
		var re *ReplyError
		want := `not authorized to emit event "chat:message" to room "staff"`
		if !errors.As(err, &re) || re.Message != want {
			t.Errorf("authorize = %v, want client message %q", err, want)
		}
	})
}

func TestPolicy_hookPanics(t *testing.T) {
	t.Parallel()
	for _, v := range []any{"boom", nil, errors.New("bad")} {
		p := productPolicy()
		p.Authorize = func(context.Context, *Identity, Action, string, string) error { panic(v) }
		cp := mustCompile(t, p)
		err := cp.authorize(context.Background(), &Identity{Subject: "a", Roles: []string{"staff"}}, ActionJoin, "staff", "")
		if !errors.Is(err, ErrForbidden) {
			t.Errorf("panic(%v): authorize = %v, want ErrForbidden", v, err)
		}
		if ErrorCode(err) != "forbidden" || !strings.Contains(err.Error(), "panicked") {
			t.Errorf("panic(%v): authorize = %v (code %q), want a forbidden error mentioning the panic", v, err, ErrorCode(err))
		}
	}
}

func TestPolicy_hookCalls(t *testing.T) {
	t.Parallel()
	type ctxKey struct{}
	var calls atomic.Int32
	var got struct {
		id          *Identity
		act         Action
		room, event string
		ctxVal      any
	}
	p := productPolicy()
	p.Authorize = func(ctx context.Context, id *Identity, act Action, room, event string) error {
		calls.Add(1)
		got.id, got.act, got.room, got.event, got.ctxVal = id, act, room, event, ctx.Value(ctxKey{})
		return nil
	}
	cp := mustCompile(t, p)
	alice := &Identity{Subject: "alice", Roles: []string{"staff"}}
	ctx := context.WithValue(context.Background(), ctxKey{}, "v")

	// Rules refuse: the hook is not called.
	for _, c := range []struct {
		act         Action
		room, event string
	}{
		{ActionJoin, "admin", ""},
		{ActionEmit, "staff", "chat:delete"},
		{ActionEmit, "public", "chat:message"},
		{0, "staff", ""},
	} {
		if err := cp.authorize(ctx, alice, c.act, c.room, c.event); !errors.Is(err, ErrForbidden) {
			t.Errorf("authorize(%s %q %q) = %v, want ErrForbidden", c.act, c.room, c.event, err)
		}
	}
	if err := cp.authorize(ctx, nil, ActionJoin, "public", ""); !errors.Is(err, ErrForbidden) {
		t.Errorf("authorize(nil identity) = %v, want ErrForbidden", err)
	}
	if n := calls.Load(); n != 0 {
		t.Fatalf("hook called %d times for refused actions, want 0", n)
	}

	// Rules allow: the hook is called with the arguments.
	if err := cp.authorize(ctx, alice, ActionEmit, "staff", "chat:message"); err != nil {
		t.Fatalf("authorize emit = %v", err)
	}
	if calls.Load() != 1 || got.id != alice || got.act != ActionEmit || got.room != "staff" ||
		got.event != "chat:message" || got.ctxVal != "v" {
		t.Errorf("hook saw %+v after %d calls, want alice emit staff chat:message with ctx value", got, calls.Load())
	}
	if err := cp.authorize(ctx, alice, ActionJoin, "user:alice", ""); err != nil {
		t.Fatalf("authorize join = %v", err)
	}
	if calls.Load() != 2 || got.act != ActionJoin || got.room != "user:alice" || got.event != "" {
		t.Errorf("hook saw %+v after %d calls, want alice join user:alice", got, calls.Load())
	}
}

func TestCompilePolicy_errors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		p    Policy
		want []string // one substring per joined error, in order
	}{
		{
			"badJoinPattern",
			Policy{Roles: map[string]RoleRules{"staff": {Join: []string{"staff", "dev*"}}}},
			[]string{`rthub: policy: role "staff": Join[1]: rthub: bad room name: pattern "dev*": '*' or '**' must be a whole segment at offset 3`},
		},
		{
			"dstarInMiddle",
			Policy{Roles: map[string]RoleRules{"admin": {Join: []string{"device:**:temp"}}}},
			[]string{`role "admin": Join[0]: rthub: bad room name: pattern "device:**:temp": '**' is allowed only as the last segment`},
		},
		{
			"wildcardInAutoJoin",
			Policy{Roles: map[string]RoleRules{"staff": {AutoJoin: []string{"staff", "device:*", "a:**"}}}},
			[]string{
				`role "staff": AutoJoin[1]: rthub: bad room name: "device:*": wildcards are not allowed in auto-join rooms`,
				`role "staff": AutoJoin[2]: rthub: bad room name: "a:**": wildcards`,
			},
		},
		{
			"badAutoJoinName",
			Policy{Roles: map[string]RoleRules{"*": {AutoJoin: []string{"user:{sub"}}}},
			[]string{`role "*": AutoJoin[0]: rthub: bad room name: pattern "user:{sub"`},
		},
		{
			"badEmitPatterns",
			Policy{Roles: map[string]RoleRules{"staff": {Emit: []EmitRule{
				{Events: []string{"chat:message"}, Rooms: []string{"staff"}},
				{Events: []string{"chat:", "ok"}, Rooms: []string{"a b"}},
			}}}},
			[]string{
				`role "staff": Emit[1].Events[0]: rthub: bad room name: pattern "chat:": trailing ':'`,
				`role "staff": Emit[1].Rooms[0]: rthub: bad room name: pattern "a b": illegal character ' ' at offset 1`,
			},
		},
		{
			"emptyEmitRule",
			Policy{Roles: map[string]RoleRules{"staff": {Emit: []EmitRule{{}}}}},
			[]string{`role "staff": Emit[0]: no events`, `role "staff": Emit[0]: no rooms`},
		},
		{
			"emptyRoleName",
			Policy{Roles: map[string]RoleRules{"": {Join: []string{"x"}}}},
			[]string{`rthub: policy: role "": empty role name`},
		},
		{
			"severalRolesSorted",
			Policy{Roles: map[string]RoleRules{
				"zeta":  {Join: []string{"::"}},
				"alpha": {Join: []string{""}, AutoJoin: []string{"*"}},
				"ok":    {Join: []string{"fine"}},
			}},
			[]string{
				`role "alpha": Join[0]: rthub: bad room name: pattern "": empty`,
				`role "alpha": AutoJoin[0]: rthub: bad room name: "*": wildcards`,
				`role "zeta": Join[0]: rthub: bad room name: pattern "::": leading ':'`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cp, err := compilePolicy(tt.p)
			if err == nil {
				t.Fatalf("compilePolicy = %v, nil; want an error", cp)
			}
			if cp != nil {
				t.Errorf("compilePolicy returned a policy with error %v", err)
			}
			joined, ok := err.(interface{ Unwrap() []error })
			if !ok {
				t.Fatalf("error %v (%T) is not an errors.Join", err, err)
			}
			errs := joined.Unwrap()
			if len(errs) != len(tt.want) {
				t.Fatalf("got %d errors, want %d:\n%v", len(errs), len(tt.want), err)
			}
			for i, e := range errs {
				if !strings.Contains(e.Error(), tt.want[i]) {
					t.Errorf("error %d = %q, want it to contain %q", i, e, tt.want[i])
				}
				if !strings.HasPrefix(e.Error(), "rthub: policy: role ") {
					t.Errorf("error %d = %q, want prefix %q", i, e, "rthub: policy: role ")
				}
			}
		})
	}
	// Pattern problems are testable as ErrBadRoom.
	_, err := compilePolicy(Policy{Roles: map[string]RoleRules{"r": {Join: []string{"a:**:b"}}}})
	if !errors.Is(err, ErrBadRoom) {
		t.Errorf("compilePolicy(bad pattern) = %v, want ErrBadRoom", err)
	}
}

func TestCompilePolicy_zero(t *testing.T) {
	t.Parallel()
	for _, p := range []Policy{{}, {Roles: map[string]RoleRules{}}, {Roles: map[string]RoleRules{"staff": {}}}} {
		cp := mustCompile(t, p)
		id := &Identity{Subject: "alice", Roles: []string{"staff"}}
		for _, room := range []string{"staff", "public", "user:alice", "a"} {
			if cp.allowJoin(id, room) {
				t.Errorf("%+v: allowJoin(%q) = true, want false", p, room)
			}
			if cp.allowEmit(id, "chat:message", room) {
				t.Errorf("%+v: allowEmit(%q) = true, want false", p, room)
			}
			if err := cp.authorize(context.Background(), id, ActionJoin, room, ""); !errors.Is(err, ErrForbidden) {
				t.Errorf("%+v: authorize(%q) = %v, want ErrForbidden", p, room, err)
			}
		}
		if rooms := cp.autoJoin(id); rooms != nil {
			t.Errorf("%+v: autoJoin = %q, want nil", p, rooms)
		}
	}
}

func TestCompilePolicy_copies(t *testing.T) {
	t.Parallel()
	p := productPolicy()
	cp := mustCompile(t, p)
	// Changing the Policy afterwards has no effect on the compiled form.
	p.Roles["staff"].Join[0] = "admin"
	p.Roles["staff"].Emit[0].Events[0] = "x"
	p.Roles["guest"] = RoleRules{Join: []string{"**"}}
	delete(p.Roles, "*")
	alice := &Identity{Subject: "alice", Roles: []string{"staff", "guest"}}
	if !cp.allowJoin(alice, "staff") || cp.allowJoin(alice, "admin") || !cp.allowJoin(alice, "public") {
		t.Error("compiled policy changed with the Policy value")
	}
	if !cp.allowEmit(alice, "chat:message", "staff") {
		t.Error("compiled emit rules changed with the Policy value")
	}
}

func TestPolicy_autoJoin(t *testing.T) {
	t.Parallel()
	cp := mustCompile(t, Policy{Roles: map[string]RoleRules{
		"staff": {AutoJoin: []string{"staff", "user:{sub}", "lobby"}},
		"admin": {AutoJoin: []string{"admin", "user:{sub}", "staff", "inbox:{sub}:all"}},
		"*":     {AutoJoin: []string{"lobby", "{sub}"}},
		"empty": {},
	}})
	long := strings.Repeat("s", 120) // valid subject, but "inbox:<long>:all" is too long
	tests := []struct {
		name string
		id   *Identity
		want []string
	}{
		{"staff", &Identity{Subject: "alice", Roles: []string{"staff"}}, []string{"alice", "lobby", "staff", "user:alice"}},
		{"bob", &Identity{Subject: "bob", Roles: []string{"staff"}}, []string{"bob", "lobby", "staff", "user:bob"}},
		{"union", &Identity{Subject: "carol", Roles: []string{"staff", "admin"}},
			[]string{"admin", "carol", "inbox:carol:all", "lobby", "staff", "user:carol"}},
		{"duplicateRoles", &Identity{Subject: "alice", Roles: []string{"staff", "staff"}}, []string{"alice", "lobby", "staff", "user:alice"}},
		{"noRoles", &Identity{Subject: "dave"}, []string{"dave", "lobby"}},
		{"unknownRole", &Identity{Subject: "dave", Roles: []string{"nope", "empty"}}, []string{"dave", "lobby"}},
		{"emptySubject", &Identity{Subject: "", Roles: []string{"staff"}}, []string{"lobby", "staff"}},
		{"subjectWithColon", &Identity{Subject: "org:alice", Roles: []string{"staff"}}, []string{"lobby", "staff"}},
		{"subjectWithSpace", &Identity{Subject: "al ice", Roles: []string{"staff"}}, []string{"lobby", "staff"}},
		{"subjectUnicode", &Identity{Subject: "zoë", Roles: []string{"staff"}}, []string{"lobby", "staff"}},
		{"subjectTooLongForOne", &Identity{Subject: long, Roles: []string{"admin"}},
			[]string{"admin", "lobby", long, "staff", "user:" + long}},
		{"subjectEmail", &Identity{Subject: "a@b.c", Roles: []string{"staff"}}, []string{"a@b.c", "lobby", "staff", "user:a@b.c"}},
		{"nil", nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := cp.autoJoin(tt.id)
			if !slices.Equal(got, tt.want) {
				t.Errorf("autoJoin = %q, want %q", got, tt.want)
			}
			// Auto-joined rooms are joinable.
			for _, room := range got {
				if !cp.allowJoin(tt.id, room) {
					t.Errorf("auto-joined room %q is not joinable", room)
				}
			}
		})
	}
}

func TestPolicy_noAllocs(t *testing.T) {
	cp := mustCompile(t, productPolicy())
	alice := &Identity{Subject: "alice", Roles: []string{"guest", "staff"}}
	root := &Identity{Subject: "root", Roles: []string{"admin"}}
	tests := []struct {
		name string
		f    func() bool
		want bool
	}{
		{"joinLiteral", func() bool { return cp.allowJoin(alice, "staff") }, true},
		{"joinStar", func() bool { return cp.allowJoin(alice, "device:42") }, true},
		{"joinDstar", func() bool { return cp.allowJoin(root, "device:42:temp") }, true},
		{"joinSub", func() bool { return cp.allowJoin(alice, "user:alice") }, true},
		{"joinSubRefused", func() bool { return cp.allowJoin(alice, "user:bob") }, false},
		{"joinRefused", func() bool { return cp.allowJoin(alice, "admin:x:y") }, false},
		{"joinInvalid", func() bool { return cp.allowJoin(alice, "a b") }, false},
		{"emit", func() bool { return cp.allowEmit(alice, "chat:message", "staff") }, true},
		{"emitRefused", func() bool { return cp.allowEmit(root, "device:command", "device:1:2") }, false},
		{"authorizeAllowed", func() bool { return cp.authorize(context.Background(), alice, ActionJoin, "staff", "") == nil }, true},
		{"match", func() bool { return Match("device:*:temp", "device:42:temp") }, true},
		{"matchDstar", func() bool { return Match("device:**", "device:42:temp") }, true},
		{"validRoom", func() bool { return ValidRoom("device:42:temp") == nil }, true},
		{"validPattern", func() bool { return ValidPattern("user:{sub}:**") == nil }, true},
	}
	for _, tt := range tests {
		var got bool
		allocs := testing.AllocsPerRun(100, func() { got = tt.f() })
		if got != tt.want {
			t.Errorf("%s = %v, want %v", tt.name, got, tt.want)
		}
		if allocs != 0 {
			t.Errorf("%s: %v allocations per run, want 0", tt.name, allocs)
		}
	}
}
