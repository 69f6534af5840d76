package rthub

import (
	"context"
	"errors"
	"runtime"
	"testing"
	"time"
)

type ctxKey struct{}

// TestConnContext: the conn's own context behaves as context.WithCancel on
// the hub's connection parent: values from the parent, Done and Err after
// cancel, children cancelled with it (through AfterFunc: no goroutine), and
// AfterFunc's stop.
func TestConnContext(t *testing.T) {
	h := &Hub{connCtx: context.WithoutCancel(context.WithValue(context.Background(), ctxKey{}, "v"))}
	c := &conn{hub: h, id: "n-1"}
	c.initContext()
	ctx := c.ctx
	if ctx.Err() != nil || ctx.Value(ctxKey{}) != "v" {
		t.Fatalf("fresh: err %v, value %v", ctx.Err(), ctx.Value(ctxKey{}))
	}
	if _, ok := ctx.Deadline(); ok {
		t.Fatal("deadline")
	}
	g0 := runtime.NumGoroutine()
	child, stopChild := context.WithCancelCause(ctx)
	defer stopChild(nil)
	timed, stopTimed := context.WithTimeout(ctx, time.Hour)
	defer stopTimed()
	if g := runtime.NumGoroutine(); g != g0 {
		t.Fatalf("children started %d goroutines", g-g0)
	}
	ran := make(chan struct{})
	context.AfterFunc(ctx, func() { close(ran) })
	stopped := false
	stop := context.AfterFunc(ctx, func() { stopped = true })
	if !stop() || stop() {
		t.Fatal("stop did not report once")
	}
	done := ctx.Done()
	select {
	case <-done:
		t.Fatal("done before cancel")
	default:
	}
	c.cancel()
	c.cancel() // idempotent
	for _, cx := range []context.Context{ctx, child, timed} {
		select {
		case <-cx.Done():
		case <-time.After(5 * time.Second):
			t.Fatalf("%v not done", cx)
		}
		if !errors.Is(cx.Err(), context.Canceled) {
			t.Fatalf("%v: err %v", cx, cx.Err())
		}
	}
	if !errors.Is(context.Cause(child), context.Canceled) {
		t.Fatalf("cause %v", context.Cause(child))
	}
	<-ran
	if stopped {
		t.Fatal("a stopped AfterFunc ran")
	}
	// After cancel: Done is closed, new children are cancelled at once.
	<-ctx.Done()
	late, stopLate := context.WithCancel(ctx)
	defer stopLate()
	<-late.Done()
}
