package rthub

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
)

// Action is what a connection asks to do in a room. The zero value is no action
// and is always refused.
type Action uint8

// Actions checked by the [Policy].
const (
	ActionJoin Action = iota + 1 // join a room (client "join" command)
	ActionEmit                   // emit an event to a room (client "emit" command)
	ActionCall                   // call an RPC (client "call" command); room is "", event the RPC's name
)

// String returns "join", "emit", or "Action(N)" for any other value.
func (a Action) String() string {
	switch a {
	case ActionJoin:
		return "join"
	case ActionEmit:
		return "emit"
	case ActionCall:
		return "call"
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
	// For ActionJoin event is ""; for ActionEmit room is the target room; for
	// ActionCall room is "" and event is the RPC's name. id must
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

	// Overflow says, by room pattern, what happens to a room's events on a
	// connection whose send queue is full ([Options].SendQueueMessages,
	// SendQueueBytes): the first rule with a pattern that matches the room
	// decides; a room no rule matches is [OverflowClose], today's ordered
	// behaviour (the connection is closed with 4000 and resumes from
	// history). [OverflowDropOldest] and [OverflowConflate] rooms lose
	// events instead, and the connection gets a "gap" message for the room
	// before the room's next event (docs/protocol.md §2.1). A frame that
	// may not be lost (a reply, an event of an OverflowClose room) makes
	// space by shedding queued events of lossy rooms first; only when none
	// are left is the connection closed. Nothing is shed while the queue
	// has space, and everything queued stays within the queue bounds.
	Overflow []OverflowRule
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
	// Call lists the RPCs this role may call: RPC names or patterns in the
	// room pattern syntax (e.g. "device:*"; see [ValidPattern]), {sub}
	// standing for the identity's subject. A call is not tied to a room.
	Call []string
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
	overflow []overflowRule
}

// rolePolicy is the compiled form of RoleRules.
type rolePolicy struct {
	join     []pattern // Join patterns, then the AutoJoin rooms
	autoJoin []pattern // without wildcards
	emit     []emitRule
	call     []pattern // Call patterns
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
	cp.overflow = compileOverflow(p.Overflow, func(err error) { errs = append(errs, err) })
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
	rp.call = patterns("Call", r.Call)
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

// allowCall reports whether the declarative rules let id call the RPC name
// (the hook is not consulted). It is false for a nil id or an invalid name.
func (p *policy) allowCall(id *Identity, name string) bool {
	if id == nil {
		return false
	}
	if msg, _ := checkName(name); msg != "" {
		return false
	}
	if p.every != nil && anyMatch(p.every.call, name, id.Subject) {
		return true
	}
	for _, r := range id.Roles {
		if rp := p.roles[r]; rp != nil && anyMatch(rp.call, name, id.Subject) {
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
	case ActionCall:
		ok = p.allowCall(id, event)
	default:
		return &forbiddenError{msg: "unknown action " + act.String()}
	}
	if !ok {
		switch act {
		case ActionJoin:
			return &forbiddenError{msg: "role may not join room " + quoteTrunc(room)}
		case ActionCall:
			return &forbiddenError{msg: "role may not call " + quoteTrunc(event)}
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
	case act == ActionCall:
		fe.msg = "not authorized to call " + quoteTrunc(event)
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
