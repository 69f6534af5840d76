// Package contract generates the machine-readable contract of a hub from
// the Go code that defines it: the events (declared with [rthub.NewEvent],
// described with [eventdoc.Describe]) and the [rthub.Policy]. It writes
//
//   - TypeScript declarations ([Contract.WriteTypeScript]): an interface per
//     Go payload type, the Events and Emits maps (event name → payload type),
//     the roles with the rooms each may join and the events it may receive
//     and emit, and Contract / ContractFor, the type parameter of the
//     @rthub/client package;
//   - a JSON Schema 2020-12 document ([Contract.WriteJSONSchema]): one file
//     whose $defs hold each Go type and, under the event's name, each event's
//     payload;
//   - an AsyncAPI 3.0 document ([Contract.WriteAsyncAPI]): the WebSocket
//     channel, a message per event and emit, the operations, the reply
//     frame and the JWT security schemes.
//
// Go types map to JSON by encoding/json's rules (package documentation of
// the schemas in docs/contract.md); the same schemas back
// Options.ValidateEmits of the hub. Run the generator from a test (run by
// a go:generate line), so the committed files cannot drift from the code
// (see examples/iotserver/contract_test.go).
package contract

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"

	"github.com/org/rthub"
	"github.com/org/rthub/eventdoc"
	"github.com/org/rthub/internal/jsonschema"
)

// ErrInvalid is wrapped by every error of [New]: a spec it cannot describe.
var ErrInvalid = errors.New("contract: invalid spec")

// Event is one event of a contract.
type Event struct {
	// Name is the event's name on the wire, e.g. "sensor:data".
	Name string
	// Type is the payload's Go type.
	Type reflect.Type
	// Summary is a one-line description, used in doc comments.
	Summary string
	// Rooms lists the room patterns the server sends the event to ("staff",
	// "device:{id}": a placeholder other than {sub} counts as a one-segment
	// wildcard, like "*"). A role receives the event when one of its join
	// patterns overlaps one of these rooms. No rooms means any room.
	Rooms []string
	// EmitOnly marks an event the server never sends: clients emit it (the
	// policy says who) and a handler consumes it. It is left out of Events.
	EmitOnly bool
}

// Declared returns every event declared with [rthub.NewEvent] in this
// process with what [eventdoc.Describe] recorded, sorted by name; the events
// named in emitOnly get EmitOnly set.
func Declared(emitOnly ...string) []Event {
	var out []Event
	for _, e := range eventdoc.Declared() {
		out = append(out, Event{Name: e.Name, Type: e.Type, Summary: e.Summary, Rooms: e.Rooms,
			EmitOnly: slices.Contains(emitOnly, e.Name)})
	}
	return out
}

// RPC is one RPC of a contract (see [rthub.NewRPC]).
type RPC struct {
	// Name is the RPC's name on the wire, e.g. "device:set-threshold".
	Name string
	// Request and Response are the Go types of its request and result.
	Request, Response reflect.Type
	// Summary is a one-line description, used in doc comments.
	Summary string
}

// DeclaredRPCs returns every RPC declared with [rthub.NewRPC] in this
// process, sorted by name, with the summaries given by name in summaries
// (which may be nil).
func DeclaredRPCs(summaries map[string]string) []RPC {
	var out []RPC
	for info := range rthub.RPCs() {
		out = append(out, RPC{Name: info.Name, Request: info.Request, Response: info.Response, Summary: summaries[info.Name]})
	}
	return out
}

// Spec is what a contract is generated from.
type Spec struct {
	// Title names the hub in the AsyncAPI and JSON Schema documents.
	// Default "rthub hub".
	Title string
	// Version is the API version of the AsyncAPI document. Default "1.0.0".
	Version string
	// Description, if set, goes to the AsyncAPI document's info.
	Description string
	// Events are the events of the hub (e.g. [Declared]).
	Events []Event
	// RPCs are the RPCs of the hub (e.g. [DeclaredRPCs]); a role may call
	// those its policy's Call patterns match. Without RPCs the documents
	// are what they were before RPCs existed.
	RPCs []RPC
	// Policy gives the roles, the rooms each may join and the events each
	// may emit. Rules of the role "*" apply to every role, and are listed
	// under "*" too.
	Policy rthub.Policy
	// Host is the AsyncAPI server's host. Default "localhost:8080".
	Host string
	// Protocol is the AsyncAPI server's protocol, "ws" or "wss". Default "ws".
	Protocol string
	// Path is the hub's WebSocket path. Default "/ws".
	Path string
	// SchemaID is the $id of the JSON Schema document. Default
	// "urn:rthub:contract:schema".
	SchemaID string
}

// Contract is a validated spec with the schemas of its events, ready to be
// written in any of the formats. Its methods are deterministic: the same
// spec writes the same bytes.
type Contract struct {
	spec   Spec
	events []Event // sorted by name
	b      *jsonschema.Builder
	schema map[string]*jsonschema.Schema // payload schema by event name
	rpcs   []RPC                         // sorted by name
	req    map[string]*jsonschema.Schema // request schema by RPC name
	res    map[string]*jsonschema.Schema // result schema by RPC name
	roles  []role
}

// role is one role of the policy, with its rules merged with "*"'s.
type role struct {
	name    string
	join    []string // patterns, Join then AutoJoin, "*"'s after
	emits   []emit
	receive []string // event names
	calls   []string // RPC names
}

// emit is what a role may emit: an event and the rooms it may go to.
type emit struct {
	event string
	rooms []string
}

// tsReserved are the names the TypeScript file declares itself.
var tsReserved = []string{"Events", "Emits", "Calls", "Role", "Roles", "Contract", "ContractFor"}

// rpcDef is the $defs key of an RPC's request or result schema (part
// "request" or "response").
func rpcDef(name, part string) string { return name + "." + part }

// New checks spec and builds the schemas of its events' payload types. The
// error, wrapping [ErrInvalid], lists every problem: an invalid or
// duplicate event name, a payload type without a JSON encoding or with a
// bad jsonschema tag (see docs/contract.md), an invalid pattern in the
// policy or in an event's rooms.
func New(spec Spec) (*Contract, error) {
	if spec.Title == "" {
		spec.Title = "rthub hub"
	}
	if spec.Version == "" {
		spec.Version = "1.0.0"
	}
	if spec.Host == "" {
		spec.Host = "localhost:8080"
	}
	if spec.Protocol == "" {
		spec.Protocol = "ws"
	}
	if spec.Path == "" {
		spec.Path = "/ws"
	}
	if spec.SchemaID == "" {
		spec.SchemaID = "urn:rthub:contract:schema"
	}
	var errs []error
	problem := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...))
	}
	if spec.Protocol != "ws" && spec.Protocol != "wss" {
		problem("Protocol %q: want ws or wss", spec.Protocol)
	}
	c := &Contract{spec: spec, schema: map[string]*jsonschema.Schema{}}
	c.events = slices.Clone(spec.Events)
	slices.SortStableFunc(c.events, func(a, b Event) int { return strings.Compare(a.Name, b.Name) })
	reserved := slices.Clone(tsReserved)
	for i, e := range c.events {
		if err := rthub.ValidRoom(e.Name); err != nil {
			problem("event %q: %v", e.Name, err)
		}
		if i > 0 && c.events[i-1].Name == e.Name {
			problem("event %q listed twice", e.Name)
		}
		reserved = append(reserved, e.Name)
		for _, r := range e.Rooms {
			if err := rthub.ValidPattern(placeholdersAsWildcards(r)); err != nil {
				problem("event %q: room %q: %v", e.Name, r, err)
			}
		}
	}
	c.rpcs = slices.Clone(spec.RPCs)
	slices.SortStableFunc(c.rpcs, func(a, b RPC) int { return strings.Compare(a.Name, b.Name) })
	for i, r := range c.rpcs {
		if err := rthub.ValidRoom(r.Name); err != nil {
			problem("RPC %q: %v", r.Name, err)
		}
		if i > 0 && c.rpcs[i-1].Name == r.Name {
			problem("RPC %q listed twice", r.Name)
		}
		for _, part := range []string{"request", "response"} {
			if slices.Contains(reserved, rpcDef(r.Name, part)) {
				problem("RPC %q: its %s schema's name %q is an event's", r.Name, part, rpcDef(r.Name, part))
			}
			reserved = append(reserved, rpcDef(r.Name, part))
		}
	}
	c.b = jsonschema.NewBuilder(reserved...)
	for _, e := range c.events {
		if e.Type == nil {
			problem("event %q: no Type", e.Name)
			continue
		}
		s, err := c.b.Add(e.Type)
		if err != nil {
			problem("event %q: payload type %v: %v", e.Name, e.Type, err)
			continue
		}
		c.schema[e.Name] = s
	}
	c.req, c.res = map[string]*jsonschema.Schema{}, map[string]*jsonschema.Schema{}
	for _, r := range c.rpcs {
		for _, x := range []struct {
			part string
			t    reflect.Type
			into map[string]*jsonschema.Schema
		}{{"request", r.Request, c.req}, {"response", r.Response, c.res}} {
			if x.t == nil {
				problem("RPC %q: no %s type", r.Name, x.part)
				continue
			}
			s, err := c.b.Add(x.t)
			if err != nil {
				problem("RPC %q: %s type %v: %v", r.Name, x.part, x.t, err)
				continue
			}
			x.into[r.Name] = s
		}
	}
	roles, perrs := compileRoles(spec.Policy, c.events, c.rpcs)
	for _, err := range perrs {
		problem("%v", err)
	}
	c.roles = roles
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return c, nil
}

// compileRoles lists the policy's roles, sorted, each with "*"'s rules
// added, the events it receives and the declared events it may emit.
func compileRoles(p rthub.Policy, events []Event, rpcs []RPC) ([]role, []error) {
	var errs []error
	names := make([]string, 0, len(p.Roles))
	for name, rr := range p.Roles {
		names = append(names, name)
		for i, s := range slices.Concat(rr.Join, rr.AutoJoin) {
			if err := rthub.ValidPattern(s); err != nil {
				errs = append(errs, fmt.Errorf("policy: role %q: room %d: %v", name, i, err))
			}
		}
		for i, s := range rr.Call {
			if err := rthub.ValidPattern(s); err != nil {
				errs = append(errs, fmt.Errorf("policy: role %q: Call[%d]: %v", name, i, err))
			}
		}
		for i, er := range rr.Emit {
			for _, s := range slices.Concat(er.Events, er.Rooms) {
				if err := rthub.ValidPattern(s); err != nil {
					errs = append(errs, fmt.Errorf("policy: role %q: Emit[%d]: %v", name, i, err))
				}
			}
		}
	}
	slices.Sort(names)
	every := p.Roles["*"]
	var out []role
	for _, name := range names {
		rr := p.Roles[name]
		r := role{name: name}
		add := func(ss ...[]string) {
			for _, s := range slices.Concat(ss...) {
				if !slices.Contains(r.join, s) {
					r.join = append(r.join, s)
				}
			}
		}
		add(rr.Join, rr.AutoJoin)
		rules := slices.Clone(rr.Emit)
		calls := slices.Clone(rr.Call)
		if name != "*" {
			add(every.Join, every.AutoJoin)
			rules = append(rules, every.Emit...)
			calls = append(calls, every.Call...)
		}
		for _, rpc := range rpcs {
			if anyOverlap(calls, []string{rpc.Name}) {
				r.calls = append(r.calls, rpc.Name)
			}
		}
		for _, e := range events {
			if !e.EmitOnly && receives(r.join, e.Rooms) {
				r.receive = append(r.receive, e.Name)
			}
			var rooms []string
			for _, er := range rules {
				if anyOverlap(er.Events, []string{e.Name}) {
					for _, rm := range er.Rooms {
						if !slices.Contains(rooms, rm) {
							rooms = append(rooms, rm)
						}
					}
				}
			}
			if rooms != nil {
				r.emits = append(r.emits, emit{event: e.Name, rooms: rooms})
			}
		}
		out = append(out, r)
	}
	return out, errs
}

// receives reports whether a role joining the join patterns receives an
// event sent to rooms (any room when there are none).
func receives(join, rooms []string) bool {
	if len(join) == 0 {
		return false
	}
	return len(rooms) == 0 || anyOverlap(join, rooms)
}

// emits returns the events some role may emit, sorted by name.
func (c *Contract) emits() []Event {
	var out []Event
	for _, e := range c.events {
		for _, r := range c.roles {
			if slices.ContainsFunc(r.emits, func(m emit) bool { return m.event == e.Name }) {
				out = append(out, e)
				break
			}
		}
	}
	return out
}

// sent returns the events the server sends (not EmitOnly).
func (c *Contract) sent() []Event {
	var out []Event
	for _, e := range c.events {
		if !e.EmitOnly {
			out = append(out, e)
		}
	}
	return out
}
