package rthub

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
)

// MaxRoomLen is the maximum length, in bytes, of a room name, an event name and a
// room or event pattern: 128.
const MaxRoomLen = 128

// maxSegments is the most segments a valid name or pattern can have: every segment
// but the last takes at least two bytes (one character and a ':').
const maxSegments = (MaxRoomLen + 1) / 2

// roomChars marks the bytes allowed inside a segment: ASCII letters, digits and
// "_-.@/". The separator ':' is handled on its own.
var roomChars = func() (t [256]bool) {
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
	}
	for c := 'A'; c <= 'Z'; c++ {
		t[c] = true
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for _, c := range "_-.@/" {
		t[c] = true
	}
	return t
}()

// ValidRoom reports whether name is a legal room name, and why not.
//
// A room name is 1 to [MaxRoomLen] (128) bytes of ASCII letters, digits and the
// characters _ - . : @ /. The colon separates segments ("device:42:temp" has three),
// and no segment may be empty: no leading or trailing ':' and no "::". Wildcards
// ('*') and placeholders ('{sub}') belong to patterns, never to room names. Event
// names follow the same rules.
//
// The returned error wraps [ErrBadRoom] and says what is wrong; it quotes at most
// the first 64 bytes of name. ValidRoom does not allocate when name is valid.
func ValidRoom(name string) error {
	if msg, at := checkName(name); msg != "" {
		return badName("", name, msg, at)
	}
	return nil
}

// ValidPattern checks the syntax of a room or event pattern. The error wraps
// [ErrBadRoom] and says what is wrong, quoting at most 64 bytes of pattern.
//
// A pattern is 1 to [MaxRoomLen] bytes of segments separated by ':', none empty.
// Each segment is one of:
//
//   - a literal, in the room name character set (see [ValidRoom]);
//   - "*", which matches exactly one segment of the room;
//   - "{sub}", which matches the segment equal to the connection's subject
//     ([Identity].Subject); a pattern with {sub} never matches for an empty subject
//     or a subject containing ':', and never matches through [Match];
//   - "**", only as the last segment, which matches one or more remaining segments.
//
// A wildcard or placeholder inside a literal ("dev*", "user{sub}") is invalid.
func ValidPattern(pattern string) error {
	var buf [maxSegments]patSeg
	if _, msg, at := parsePattern(pattern, buf[:0]); msg != "" {
		return badName("pattern ", pattern, msg, at)
	}
	return nil
}

// Match reports whether room matches pattern (syntax in [ValidPattern]). It is false
// when pattern or room is invalid, and for every pattern containing {sub}, since
// Match knows no subject. Examples: "device:*" matches "device:42" but neither
// "device" nor "device:42:temp"; "device:**" matches "device:42" and
// "device:42:temp"; "*" matches every single-segment room.
//
// Match parses pattern on each call, without allocating; the hub compiles its
// policy's patterns once instead.
func Match(pattern, room string) bool {
	if msg, _ := checkName(room); msg != "" {
		return false
	}
	var buf [maxSegments]patSeg
	segs, msg, _ := parsePattern(pattern, buf[:0])
	if msg != "" {
		return false
	}
	return matchSegs(segs, room, "")
}

// checkName checks a room or event name. It returns "" if name is valid, otherwise
// a short reason and the offset of the offending byte (-1 if none applies).
func checkName(name string) (msg string, at int) {
	switch {
	case name == "":
		return "empty", -1
	case len(name) > MaxRoomLen:
		return "longer than 128 bytes", -1
	case name[0] == ':':
		return "leading ':'", -1
	case name[len(name)-1] == ':':
		return "trailing ':'", -1
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c == ':' {
			if name[i-1] == ':' { // i > 0: name[0] != ':'
				return "empty segment '::'", i
			}
			continue
		}
		if !roomChars[c] {
			return "illegal", i
		}
	}
	return "", -1
}

// validSegment reports whether s can stand as one segment of a room name: what
// {sub} requires of a subject.
func validSegment(s string) bool {
	if s == "" || len(s) > MaxRoomLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !roomChars[s[i]] {
			return false
		}
	}
	return true
}

// badName builds the error of ValidRoom and ValidPattern.
func badName(kind, s, msg string, at int) error {
	if msg == "illegal" {
		msg = "illegal " + describeByte(s[at])
	}
	if at >= 0 {
		msg = fmt.Sprintf("%s at offset %d", msg, at)
	}
	return fmt.Errorf("%w: %s%s: %s", ErrBadRoom, kind, quoteTrunc(s), msg)
}

// quoteTrunc quotes s for an error message, ASCII only, cut to its first 64 bytes.
func quoteTrunc(s string) string {
	const limit = 64
	if len(s) <= limit {
		return fmt.Sprintf("%+q", s)
	}
	return fmt.Sprintf("%+q... (%d bytes)", s[:limit], len(s))
}

// describeByte names a byte for an error message.
func describeByte(c byte) string {
	if c >= 0x20 && c < 0x7f {
		return fmt.Sprintf("character %q", rune(c))
	}
	return fmt.Sprintf("byte 0x%02x", c)
}

// segKind is the kind of one pattern segment.
type segKind uint8

const (
	segLit   segKind = iota // literal text
	segStar                 // "*": exactly one segment
	segSub                  // "{sub}": the segment equal to the subject
	segDStar                // "**", last only: one or more segments
)

// patSeg is one segment of a parsed pattern.
type patSeg struct {
	lit  string // for segLit
	kind segKind
}

// parsePattern splits pattern into segs (appending to segs, which needs room for
// maxSegments to avoid allocating). msg is "" on success, otherwise a reason and
// the offset of the offending byte (-1 if none applies).
func parsePattern(pattern string, segs []patSeg) (_ []patSeg, msg string, at int) {
	switch {
	case pattern == "":
		return segs, "empty", -1
	case len(pattern) > MaxRoomLen:
		return segs, "longer than 128 bytes", -1
	}
	for start := 0; start <= len(pattern); {
		end := strings.IndexByte(pattern[start:], ':')
		if end < 0 {
			end = len(pattern)
		} else {
			end += start
		}
		seg := pattern[start:end]
		switch seg {
		case "":
			switch {
			case start == 0:
				return segs, "leading ':'", -1
			case end == len(pattern):
				return segs, "trailing ':'", -1
			default:
				return segs, "empty segment '::'", start
			}
		case "*":
			segs = append(segs, patSeg{kind: segStar})
		case "{sub}":
			segs = append(segs, patSeg{kind: segSub})
		case "**":
			if end != len(pattern) {
				return segs, "'**' is allowed only as the last segment", start
			}
			segs = append(segs, patSeg{kind: segDStar})
		default:
			for i := 0; i < len(seg); i++ {
				switch c := seg[i]; {
				case roomChars[c]:
				case c == '*':
					return segs, "'*' or '**' must be a whole segment", start + i
				case c == '{' || c == '}':
					return segs, "the only placeholder is '{sub}', as a whole segment", start + i
				default:
					return segs, "illegal", start + i
				}
			}
			segs = append(segs, patSeg{kind: segLit, lit: seg})
		}
		start = end + 1
	}
	return segs, "", -1
}

// matchSegs matches a parsed pattern against room, which must be a valid room name;
// sub is the subject {sub} stands for ("" never matches). It does not allocate.
func matchSegs(segs []patSeg, room, sub string) bool {
	pos := 0 // start of the next room segment; len(room)+1 once all are consumed
	for _, sg := range segs {
		if pos > len(room) {
			return false // the room has fewer segments than the pattern
		}
		if sg.kind == segDStar {
			return true // a valid room has at least one non-empty segment left
		}
		end := strings.IndexByte(room[pos:], ':')
		if end < 0 {
			end = len(room)
		} else {
			end += pos
		}
		seg := room[pos:end]
		switch sg.kind {
		case segLit:
			if seg != sg.lit {
				return false
			}
		case segStar:
			if seg == "" {
				return false
			}
		case segSub:
			if sub == "" || seg != sub {
				return false
			}
		}
		pos = end + 1
	}
	return pos == len(room)+1
}

// pattern is a compiled room or event pattern. It is immutable.
type pattern struct {
	raw    string
	segs   []patSeg
	hasSub bool // some segment is {sub}
	wild   bool // some segment is * or **
}

// compilePattern parses s once for repeated matching.
func compilePattern(s string) (pattern, error) {
	var buf [maxSegments]patSeg
	segs, msg, at := parsePattern(s, buf[:0])
	if msg != "" {
		return pattern{}, badName("pattern ", s, msg, at)
	}
	p := pattern{raw: s, segs: slices.Clone(segs)}
	for _, sg := range segs {
		switch sg.kind {
		case segSub:
			p.hasSub = true
		case segStar, segDStar:
			p.wild = true
		}
	}
	return p, nil
}

// match reports whether the valid room name room matches p, with {sub} standing
// for sub. It does not allocate.
func (p *pattern) match(room, sub string) bool {
	return matchSegs(p.segs, room, sub)
}

// expand returns the concrete room of a pattern without wildcards, {sub} replaced
// by sub; ok is false when the result is not a valid room name (sub empty, with ':'
// or illegal characters, or the result too long).
func (p *pattern) expand(sub string) (room string, ok bool) {
	if !p.hasSub {
		return p.raw, true
	}
	if !validSegment(sub) {
		return "", false
	}
	var b strings.Builder
	for i, sg := range p.segs {
		if i > 0 {
			b.WriteByte(':')
		}
		if sg.kind == segSub {
			b.WriteString(sub)
		} else {
			b.WriteString(sg.lit)
		}
	}
	room = b.String()
	if msg, _ := checkName(room); msg != "" {
		return "", false
	}
	return room, true
}

// Action is what a connection asks to do in a room. The zero value is no action
// and is always refused.
type Action uint8

// Actions checked by the [Policy].
const (
	ActionJoin Action = iota + 1 // join a room (client "join" command)
	ActionEmit                   // emit an event to a room (client "emit" command)
)

// String returns "join", "emit", or "Action(N)" for any other value.
func (a Action) String() string {
	switch a {
	case ActionJoin:
		return "join"
	case ActionEmit:
		return "emit"
	}
	return fmt.Sprintf("Action(%d)", uint8(a))
}

// Policy is the declarative, role-based room policy of a hub: which rooms an
// identity may join, which rooms it joins on connect, and which events it may emit
// to which rooms.
//
// The zero Policy allows nothing: no joins, no emits and no auto-joined rooms.
// Rules are only ever additive: an identity gets the union of the rules of all its
// roles ([Identity].Roles) plus the rules of the role "*", which applies to every
// authenticated identity, including one with no roles. Roles the policy does not
// name add nothing. The Authorize hook can only narrow what the rules allow.
//
// Join, Emit and event patterns may use the segment {sub} for the identity's
// subject: Join: []string{"user:{sub}"} lets every user join their own room and no
// one else's. An emit is allowed when one [EmitRule] lists both the event and the
// room. Event names follow the room name rules of [ValidRoom]. A refused join or
// emit is reported to the client as [ErrForbidden] (code "forbidden").
//
// The hub validates a Policy when it is created (every pattern, auto-join room and
// event pattern) and reports all problems at once; afterwards it uses its own
// compiled copy, so changing the Policy value has no effect. The compiled policy is
// safe for concurrent use.
type Policy struct {
	// Roles maps a role name to what it may do. The rules of all of an identity's
	// roles are combined (union). The key "*" means every authenticated identity.
	// The empty role name is invalid. Nil allows nothing.
	Roles map[string]RoleRules

	// Authorize, if set, is called after the declarative rules ALLOWED an action
	// (never when they refused it), and may refuse it by returning an error, which
	// should wrap [ErrForbidden]; any other error is reported to the client as
	// forbidden too. The client sees the code "forbidden" and a generic message, or
	// the Message of a *[ReplyError] the hook returns with Code "forbidden". The
	// hook's error stays in the returned error's chain for logging.
	//
	// For ActionJoin event is ""; for ActionEmit room is the target room. id must
	// be treated as read-only. Authorize runs on the connection's goroutine, is
	// called concurrently for different connections, and must not block for long.
	// A panic in Authorize is recovered and refuses the action as forbidden.
	//
	// Use it for decisions the rules cannot express, e.g. "only devices listed in
	// the token's claims". Nil means the rules alone decide.
	Authorize func(ctx context.Context, id *Identity, act Action, room, event string) error

	// Presence lists the room patterns (syntax in [ValidPattern], without
	// {sub}) whose rooms track presence: who is there, online/offline and
	// viewing events (see [PresenceOptions]). Presence costs a little memory
	// per person and an event per arrival, so it is off unless listed.
	Presence []string
}

// RoleRules is what one role may do. The zero value allows nothing.
type RoleRules struct {
	// Join lists the room patterns (syntax in [ValidPattern]) this role may join.
	Join []string
	// AutoJoin lists the rooms joined automatically on connect: concrete room
	// names, where the segment {sub} stands for the identity's subject (e.g.
	// "user:{sub}"); no wildcards. An auto-joined room is implicitly joinable. A
	// {sub} room is skipped for a subject that is not a valid segment (empty, with
	// ':' or with characters outside the room name set).
	AutoJoin []string
	// Emit lists the events this role may emit, and to which rooms.
	Emit []EmitRule
}

// EmitRule allows emitting the listed events to the listed rooms. Both lists must
// be non-empty.
type EmitRule struct {
	// Events lists event names or patterns, in the room pattern syntax (e.g.
	// "chat:*"; see [ValidPattern]).
	Events []string
	// Rooms lists room patterns. The connection must also be a member of the room
	// to emit to it; the hub checks that separately.
	Rooms []string
}

// policy is the compiled form of a Policy. It is immutable after compilePolicy and
// safe for concurrent use.
type policy struct {
	roles map[string]*rolePolicy // by role name, without "*"
	every *rolePolicy            // rules of the role "*", nil if none
	hook  func(ctx context.Context, id *Identity, act Action, room, event string) error

	presence []pattern // rooms with presence on
}

// rolePolicy is the compiled form of RoleRules.
type rolePolicy struct {
	join     []pattern // Join patterns, then the AutoJoin rooms
	autoJoin []pattern // without wildcards
	emit     []emitRule
}

// emitRule is the compiled form of EmitRule.
type emitRule struct {
	events []pattern
	rooms  []pattern
}

// compilePolicy validates p and compiles its patterns. The error joins every
// problem found (see [errors.Join]); each wraps [ErrBadRoom] when a pattern or
// name is at fault, and starts "rthub: policy: role %q: ".
func compilePolicy(p Policy) (*policy, error) {
	cp := &policy{roles: make(map[string]*rolePolicy, len(p.Roles)), hook: p.Authorize}
	names := make([]string, 0, len(p.Roles))
	for name := range p.Roles {
		names = append(names, name)
	}
	sort.Strings(names)
	var errs []error
	for _, name := range names {
		report := func(field string, err error) {
			errs = append(errs, fmt.Errorf("rthub: policy: role %q: %s: %w", name, field, err))
		}
		if name == "" {
			errs = append(errs, errors.New(`rthub: policy: role "": empty role name`))
		}
		rp := compileRole(p.Roles[name], report)
		if name == "*" {
			cp.every = rp
		} else {
			cp.roles[name] = rp
		}
	}
	for i, s := range p.Presence {
		pt, err := compilePattern(s)
		if err == nil && pt.hasSub {
			err = fmt.Errorf("%w: %s: {sub} is not allowed in presence rooms", ErrBadRoom, quoteTrunc(s))
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("rthub: policy: Presence[%d]: %w", i, err))
			continue
		}
		cp.presence = append(cp.presence, pt)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return cp, nil
}

// presenceOn reports whether presence is tracked in the valid room.
func (p *policy) presenceOn(room string) bool {
	return anyMatch(p.presence, room, "")
}

// compileRole compiles one role's rules, reporting every problem with the field it
// is in.
func compileRole(r RoleRules, report func(field string, err error)) *rolePolicy {
	rp := &rolePolicy{}
	patterns := func(field string, ss []string) []pattern {
		var pts []pattern
		for i, s := range ss {
			pt, err := compilePattern(s)
			if err != nil {
				report(fmt.Sprintf("%s[%d]", field, i), err)
				continue
			}
			pts = append(pts, pt)
		}
		return pts
	}
	rp.join = patterns("Join", r.Join)
	for i, s := range r.AutoJoin {
		pt, err := compilePattern(s)
		if err == nil && pt.wild {
			err = fmt.Errorf("%w: %s: wildcards are not allowed in auto-join rooms", ErrBadRoom, quoteTrunc(s))
		}
		if err != nil {
			report(fmt.Sprintf("AutoJoin[%d]", i), err)
			continue
		}
		rp.autoJoin = append(rp.autoJoin, pt)
		rp.join = append(rp.join, pt)
	}
	for i, e := range r.Emit {
		field := fmt.Sprintf("Emit[%d]", i)
		if len(e.Events) == 0 {
			report(field, errors.New("no events"))
		}
		if len(e.Rooms) == 0 {
			report(field, errors.New("no rooms"))
		}
		rp.emit = append(rp.emit, emitRule{
			events: patterns(field+".Events", e.Events),
			rooms:  patterns(field+".Rooms", e.Rooms),
		})
	}
	return rp
}

// canJoin reports whether one role's rules allow joining the valid room.
func (rp *rolePolicy) canJoin(room, sub string) bool {
	for i := range rp.join {
		if rp.join[i].match(room, sub) {
			return true
		}
	}
	return false
}

// canEmit reports whether one role's rules allow emitting the valid event name to
// the valid room: one rule must list both.
func (rp *rolePolicy) canEmit(event, room, sub string) bool {
	for i := range rp.emit {
		if anyMatch(rp.emit[i].events, event, sub) && anyMatch(rp.emit[i].rooms, room, sub) {
			return true
		}
	}
	return false
}

// anyMatch reports whether name matches one of pts.
func anyMatch(pts []pattern, name, sub string) bool {
	for i := range pts {
		if pts[i].match(name, sub) {
			return true
		}
	}
	return false
}

// allowJoin reports whether the declarative rules let id join room (the hook is not
// consulted). It is false for a nil id or an invalid room name. It does not
// allocate.
func (p *policy) allowJoin(id *Identity, room string) bool {
	if id == nil {
		return false
	}
	if msg, _ := checkName(room); msg != "" {
		return false
	}
	if p.every != nil && p.every.canJoin(room, id.Subject) {
		return true
	}
	for _, r := range id.Roles {
		if rp := p.roles[r]; rp != nil && rp.canJoin(room, id.Subject) {
			return true
		}
	}
	return false
}

// allowEmit reports whether the declarative rules let id emit event to room (the
// hook is not consulted; membership is the hub's business). It is false for a nil
// id or an invalid event or room name. It does not allocate.
func (p *policy) allowEmit(id *Identity, event, room string) bool {
	if id == nil {
		return false
	}
	if msg, _ := checkName(room); msg != "" {
		return false
	}
	if msg, _ := checkName(event); msg != "" {
		return false
	}
	if p.every != nil && p.every.canEmit(event, room, id.Subject) {
		return true
	}
	for _, r := range id.Roles {
		if rp := p.roles[r]; rp != nil && rp.canEmit(event, room, id.Subject) {
			return true
		}
	}
	return false
}

// autoJoin returns the rooms id joins on connect: the AutoJoin rooms of its roles
// and of "*", {sub} replaced by id.Subject, deduplicated and sorted. Rooms whose
// substitution is not a valid room name are skipped. Nil if there are none.
func (p *policy) autoJoin(id *Identity) []string {
	if id == nil {
		return nil
	}
	var rooms []string
	add := func(rp *rolePolicy) {
		if rp == nil {
			return
		}
		for i := range rp.autoJoin {
			if room, ok := rp.autoJoin[i].expand(id.Subject); ok {
				rooms = append(rooms, room)
			}
		}
	}
	add(p.every)
	for _, r := range id.Roles {
		add(p.roles[r])
	}
	slices.Sort(rooms)
	return slices.Compact(rooms)
}

// authorize decides whether id may do act in room (and, for ActionEmit, emit
// event): first the declarative rules, then, only if they allow it, the Authorize
// hook. It returns nil, or an error wrapping [ErrForbidden] whose message suits a
// client (e.g. `role may not join room "admin"`). A hook error is kept in the chain
// too, yet [ErrorCode] of the result is always "forbidden" and [errors.As] with a
// *[ReplyError] yields the client's code and message. A panicking hook refuses.
//
// An invalid room or event name is refused as forbidden; the hub reports
// [ErrBadRoom] by calling [ValidRoom] first.
func (p *policy) authorize(ctx context.Context, id *Identity, act Action, room, event string) error {
	var ok bool
	switch act {
	case ActionJoin:
		ok = p.allowJoin(id, room)
	case ActionEmit:
		ok = p.allowEmit(id, event, room)
	default:
		return &forbiddenError{msg: "unknown action " + act.String()}
	}
	if !ok {
		if act == ActionJoin {
			return &forbiddenError{msg: "role may not join room " + quoteTrunc(room)}
		}
		return &forbiddenError{msg: "role may not emit event " + quoteTrunc(event) + " to room " + quoteTrunc(room)}
	}
	if p.hook == nil {
		return nil
	}
	err := p.callHook(ctx, id, act, room, event)
	if err == nil {
		return nil
	}
	fe := &forbiddenError{err: err}
	var re *ReplyError
	switch {
	case errors.As(err, &re) && re.Code == "forbidden" && re.Message != "":
		fe.msg = re.Message
	case act == ActionJoin:
		fe.msg = "not authorized to join room " + quoteTrunc(room)
	default:
		fe.msg = "not authorized to emit event " + quoteTrunc(event) + " to room " + quoteTrunc(room)
	}
	return fe
}

// callHook calls the Authorize hook, turning a panic into an error.
func (p *policy) callHook(ctx context.Context, id *Identity, act Action, room, event string) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("rthub: policy: Authorize hook panicked: %v", r)
		}
	}()
	return p.hook(ctx, id, act, room, event)
}

// forbiddenError is the refusal returned by policy.authorize. It wraps ErrForbidden
// and, when the Authorize hook refused, the hook's error.
type forbiddenError struct {
	msg string // safe to show the client
	err error  // the hook's error (or panic), or nil
}

// Error implements error. It includes the hook's error, for logs.
func (e *forbiddenError) Error() string {
	s := "rthub: forbidden: " + e.msg
	if e.err != nil {
		s += ": " + e.err.Error()
	}
	return s
}

// Unwrap returns ErrForbidden and the hook's error, if any.
func (e *forbiddenError) Unwrap() []error {
	if e.err == nil {
		return []error{ErrForbidden}
	}
	return []error{ErrForbidden, e.err}
}

// As makes errors.As with a **ReplyError yield what the client sees, code
// "forbidden" and the client-safe message, rather than a ReplyError the hook may
// have returned deeper in the chain.
func (e *forbiddenError) As(target any) bool {
	if re, ok := target.(**ReplyError); ok {
		*re = &ReplyError{Code: "forbidden", Message: e.msg}
		return true
	}
	return false
}
