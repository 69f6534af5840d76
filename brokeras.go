package rthub

// maxUnwrap bounds the chain [BrokerAs] follows.
const maxUnwrap = 16

// BrokerAs returns b as a T when b is one, or else the first broker in the
// chain of brokers b wraps that is one. A wrapper — a Broker that adds to
// another one's methods, as otelrthub's tracing broker does — names the
// broker it wraps with a method
//
//	Unwrap() Broker
//
// The hub finds a broker's optional extras ([PresenceStore], [StateBroker],
// [ControlBroker], [IdempotencyStore], [NodeRelay]) with BrokerAs, so a wrapper need not
// repeat the extras it leaves alone: the hub calls them on the wrapped
// broker. BrokerAs follows at most 16 wrappers; a nil Unwrap ends the chain.
func BrokerAs[T any](b Broker) (T, bool) {
	for range maxUnwrap {
		if b == nil {
			break
		}
		if t, ok := b.(T); ok {
			return t, true
		}
		u, ok := b.(interface{ Unwrap() Broker })
		if !ok {
			break
		}
		b = u.Unwrap()
	}
	var zero T
	return zero, false
}
