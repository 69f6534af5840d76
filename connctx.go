package rthub

import (
	"context"
	"sync"
	"time"
)

// A WebSocket connection's context is the conn itself (connContext): no
// context object per connection until something asks for its Done channel
// or hangs a child context on it, which is rare for an idle connection. The
// semantics are context.WithCancel's on the hub's connection parent
// (Hub.connCtx): values come from the parent, Err is context.Canceled once
// cancelled, Done closes then, and child contexts attach through AfterFunc
// (the context package's afterFuncer), so they start no goroutine.
type connContext conn

// connCtxState is the part of a connection's context that exists only once
// used: the Done channel, the cancellation, the children's callbacks. The
// HTTP stream transport's connections, whose context is a real one (it
// follows the hub's), keep its cancel function here.
type connCtxState struct {
	mu     sync.Mutex
	done   chan struct{}
	err    error
	afters map[*func()]struct{} // AfterFunc callbacks not yet run or stopped: one per live child
	cancel context.CancelFunc   // the HTTP stream transport's real context; nil for connContext
}

// initContext gives c its context: the conn itself.
func (c *conn) initContext() { c.ctx = (*connContext)(c) }

// initContextFrom gives c a real context derived from parent (the HTTP
// stream transport's, which follows the hub's own cancellation).
func (c *conn) initContextFrom(parent context.Context) {
	ctx, cancel := context.WithCancel(parent)
	c.ctx = ctx
	c.cx.Store(&connCtxState{cancel: cancel})
}

// ctxState returns c's context state, making it.
func (c *conn) ctxState() *connCtxState {
	if st := c.cx.Load(); st != nil {
		return st
	}
	c.cx.CompareAndSwap(nil, &connCtxState{})
	return c.cx.Load()
}

// cancel cancels c's context; later calls do nothing. The callbacks of
// child contexts run after the lock is released.
func (c *conn) cancel() {
	st := c.ctxState()
	if st.cancel != nil {
		st.cancel()
		return
	}
	st.mu.Lock()
	if st.err != nil {
		st.mu.Unlock()
		return
	}
	st.err = context.Canceled
	if st.done != nil {
		close(st.done)
	}
	afters := st.afters
	st.afters = nil
	st.mu.Unlock()
	for f := range afters {
		(*f)()
	}
}

func (c *connContext) conn() *conn { return (*conn)(c) }

// Deadline reports no deadline.
func (c *connContext) Deadline() (time.Time, bool) { return time.Time{}, false }

// Done returns a channel closed when the connection's context is cancelled.
func (c *connContext) Done() <-chan struct{} {
	st := c.conn().ctxState()
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.done == nil {
		st.done = make(chan struct{})
		if st.err != nil {
			close(st.done)
		}
	}
	return st.done
}

// Err returns context.Canceled once the context is cancelled, nil before.
func (c *connContext) Err() error {
	st := c.cx.Load()
	if st == nil {
		return nil
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.err
}

// Value returns the hub's value for key (the parent's).
func (c *connContext) Value(key any) any { return c.hub.connCtx.Value(key) }

// AfterFunc arranges for f to run once the context is cancelled (at once,
// in its own goroutine, if it already is); stop unregisters it and reports
// whether it did so before f ran. The context package uses it to attach
// child contexts without a goroutine.
func (c *connContext) AfterFunc(f func()) (stop func() bool) {
	st := c.conn().ctxState()
	st.mu.Lock()
	if st.err != nil {
		st.mu.Unlock()
		go f()
		return func() bool { return false }
	}
	key := &f
	if st.afters == nil {
		st.afters = make(map[*func()]struct{})
	}
	st.afters[key] = struct{}{}
	st.mu.Unlock()
	return func() bool {
		st.mu.Lock()
		defer st.mu.Unlock()
		if _, ok := st.afters[key]; !ok {
			return false
		}
		delete(st.afters, key)
		return true
	}
}

// String names the context for %v (context.WithCancel's style).
func (c *connContext) String() string { return "rthub.conn(" + c.id + ").WithCancel" }
