package rthub

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// OptionsError is the error [New] returns for invalid options: every problem
// found, each testable with [errors.Is] (for example [ErrBadRoom] for a bad
// pattern). It wraps [ErrInvalidOptions].
type OptionsError struct {
	Problems []error
}

// Error lists the problems, one per line, without repeating the package
// prefix of each.
func (e *OptionsError) Error() string {
	var b strings.Builder
	b.WriteString("rthub: invalid options:")
	for _, p := range e.Problems {
		for line := range strings.SplitSeq(p.Error(), "\n") {
			b.WriteString("\n  - ")
			b.WriteString(strings.ReplaceAll(line, "rthub: ", ""))
		}
	}
	return b.String()
}

// Unwrap returns ErrInvalidOptions and the problems, for [errors.Is] and
// [errors.As].
func (e *OptionsError) Unwrap() []error {
	return append([]error{ErrInvalidOptions}, e.Problems...)
}

// checkPolicyUse reports options that are valid one by one but cannot work
// together, mistakes a newcomer would otherwise meet only once clients
// connect: a policy that lets nobody into any room, and an emit rule for an
// event no handler handles (clients would get unknown_event). A handler that
// no emit rule reaches is allowed: its clients get forbidden, which is what
// the policy says.
func checkPolicyUse(p Policy, handlers map[string]Handler, publishOnly bool) []error {
	var errs []error
	grants := false
	for _, r := range p.Roles {
		if len(r.Join) > 0 || len(r.AutoJoin) > 0 {
			grants = true
		}
	}
	if !grants && !publishOnly {
		errs = append(errs, errors.New("rthub: Policy: no role may join or auto-join any room, so no client could "+
			"receive an event (set Policy.Roles, e.g. \"staff\": {AutoJoin: []string{\"staff\"}}, or "+
			"Options.PublishOnly for a hub that serves no clients)"))
	}
	names := make([]string, 0, len(handlers))
	for name := range handlers {
		names = append(names, name)
	}
	slices.Sort(names)
	roles := make([]string, 0, len(p.Roles))
	for name := range p.Roles {
		roles = append(roles, name)
	}
	slices.Sort(roles)
	for _, role := range roles {
		for i, rule := range p.Roles[role].Emit {
			for _, ev := range rule.Events {
				hit := false
				for _, name := range names {
					if Match(ev, name) {
						hit = true
					}
				}
				if !hit && ValidPattern(ev) == nil {
					errs = append(errs, fmt.Errorf("rthub: Policy: role %q: Emit[%d]: no handler in Options.Handlers "+
						"handles event %q: clients' emits would be refused as unknown_event", role, i, ev))
				}
			}
		}
	}
	return errs
}
