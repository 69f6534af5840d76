package rthub_test

import (
	"testing"

	"github.com/org/rthub"
)

// wrapper is a Broker wrapping another one, as a tracing broker does.
type wrapper struct {
	rthub.Broker
	inner rthub.Broker
}

func (w wrapper) Unwrap() rthub.Broker { return w.inner }

// opaqueBroker hides b's extras, as a wrapper without an Unwrap method does.
func opaqueBroker(b rthub.Broker) rthub.Broker { return struct{ rthub.Broker }{b} }

func TestBrokerAs(t *testing.T) {
	mb, err := rthub.NewMemoryBroker(rthub.MemoryBrokerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var loop wrapper // unwraps to itself forever: BrokerAs gives up
	loop.inner = &loop
	deep := rthub.Broker(mb)
	for range 16 {
		deep = wrapper{Broker: opaqueBroker(deep), inner: deep}
	}
	for _, tc := range []struct {
		name string
		b    rthub.Broker
		want bool
	}{
		{"the broker itself", mb, true},
		{"one wrapper", wrapper{Broker: opaqueBroker(mb), inner: mb}, true},
		{"two wrappers", wrapper{Broker: opaqueBroker(mb), inner: wrapper{Broker: opaqueBroker(mb), inner: mb}}, true},
		{"no Unwrap", opaqueBroker(mb), false},
		{"nil Unwrap", wrapper{Broker: opaqueBroker(mb)}, false},
		{"past 16 wrappers", wrapper{Broker: opaqueBroker(mb), inner: deep}, false},
		{"a cycle", &loop, false},
		{"nil", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cb, ok := rthub.BrokerAs[rthub.ControlBroker](tc.b)
			if ok != tc.want || (ok && cb != rthub.ControlBroker(mb)) {
				t.Fatalf("BrokerAs[ControlBroker] = %v, %v; want found %v (the memory broker)", cb, ok, tc.want)
			}
		})
	}
}
