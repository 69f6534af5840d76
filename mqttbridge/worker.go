package mqttbridge

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/org/rthub"
)

// onPublish receives every message on the MQTT client's delivery goroutine:
// it finds the route, resolves rooms and key, and queues the message. It
// blocks only for a full [Block] route. Returning makes the client
// acknowledge a QoS 1 or 2 message.
func (b *Bridge) onPublish(pr paho.PublishReceived) (bool, error) {
	select {
	case <-b.stopIntake:
		return true, nil
	default:
	}
	p := pr.Packet
	statusSeen := false
	if c := b.cmd; c != nil {
		var dev [1]string
		if c.reply.match(p.Topic, dev[:]) {
			b.onReply(dev[0], p)
			return true, nil
		}
		if c.status.match(p.Topic, dev[:]) {
			b.onStatus(dev[0], p.Payload)
			statusSeen = true
		}
	}
	vals := make([]string, b.nvars)
	var r *route
	for _, rt := range b.routes {
		if rt.pat.match(p.Topic, vals[:len(rt.pat.vars)]) {
			r = rt
			break
		}
	}
	if r == nil && statusSeen {
		return true, nil
	}
	if r == nil {
		// Only a subscription the bridge did not make (e.g. a stale session
		// of the same client ID) delivers such a topic.
		b.unrouted.Add(1)
		b.noteErr(fmt.Errorf("%w: %q matches no route", ErrInvalidTopic, truncate(p.Topic, 128)))
		if ok, n := b.unroutedLog.allow(time.Now()); ok {
			b.log.Warn("mqttbridge: message matches no route", slog.String("topic", truncate(p.Topic, 128)), slog.Int("suppressed", n))
		}
		return true, nil
	}
	r.stats.received.Add(1)
	vals = vals[:len(r.pat.vars)]
	rooms, key, why := r.resolve(p.Topic, vals)
	if why != "" {
		r.stats.invalidTopic.Add(1)
		err := fmt.Errorf("%w: route %q, topic %q: %s", ErrInvalidTopic, r.Name, truncate(p.Topic, 128), why)
		b.noteErr(err)
		if ok, n := r.topicLog.allow(time.Now()); ok {
			b.log.Warn("mqttbridge: topic not published", slog.String("route", r.Name), slog.Any("err", err), slog.Int("suppressed", n))
		}
		return true, nil
	}
	m := &Message{
		Route:    r.Name,
		Topic:    p.Topic,
		Payload:  p.Payload,
		QoS:      p.QoS,
		Retained: p.Retain,
		Received: time.Now(),
	}
	if len(vals) > 0 {
		m.Vars = make(map[string]string, len(vals))
		for i, v := range vals {
			m.Vars[r.pat.vars[i]] = v
		}
	}
	if pp := p.Properties; pp != nil {
		m.ContentType = pp.ContentType
		for _, u := range pp.User {
			m.UserProperties = append(m.UserProperties, UserProperty{Key: u.Key, Value: u.Value})
		}
		m.CorrelationID = m.Property(b.cfg.CorrelationProperty)
		if m.CorrelationID == "" {
			m.CorrelationID = correlationFromData(pp.CorrelationData)
		}
	}
	res := r.queue.push(&entry{msg: m, key: key, rooms: rooms, size: m.size()}, b.stopIntake)
	if res.merged {
		r.stats.merged.Add(1)
	}
	if res.dropped > 0 {
		r.stats.dropped.Add(uint64(res.dropped))
		if ok, n := r.dropLog.allow(time.Now()); ok {
			b.log.Warn("mqttbridge: queue full; messages dropped", slog.String("route", r.Name),
				slog.String("policy", r.Overflow.String()), slog.Int("suppressed", n))
		}
	}
	return true, nil
}

// runRoute is a route's goroutine: it publishes the queue's messages in
// order until the bridge drains (then it empties the queue first) or is
// aborted.
func (b *Bridge) runRoute(r *route) {
	var batch []*entry
	for {
		if b.ctx.Err() != nil { // aborted: Shutdown counts what is left as dropped
			return
		}
		if r.BatchInterval <= 0 {
			if e := r.queue.pop(); e != nil {
				b.process(r, e)
				continue
			}
		} else if n, _, _ := r.queue.len(); n > 0 {
			// The first message starts the batch; collect for the interval
			// (or less, when the bridge is stopping).
			t := time.NewTimer(r.BatchInterval)
			select {
			case <-t.C:
			case <-b.drain:
				t.Stop()
			case <-b.ctx.Done():
				t.Stop()
				return
			}
			batch = r.queue.popN(batch[:0], r.QueueSize)
			b.processBatch(r, batch)
			clear(batch)
			continue
		}
		select {
		case <-r.queue.notify:
		case <-b.drain:
			if n, _, _ := r.queue.len(); n == 0 {
				return
			}
		case <-b.ctx.Done():
			return
		}
	}
}

// process decodes and publishes one message.
func (b *Bridge) process(r *route, e *entry) {
	ctx := withMessage(b.ctx, e.msg)
	data, ok := b.decode(ctx, r, e)
	if !ok {
		return
	}
	var opts []rthub.PublishOption
	if id := e.msg.CorrelationID; id != "" {
		opts = append(opts, rthub.WithCorrelationID(id))
	}
	for _, room := range e.rooms {
		b.publish(ctx, r, room, data, opts...)
	}
	r.stats.sent.Add(1)
}

// processBatch decodes a batch of messages and publishes, per room, one
// event whose data is the array of their data, in arrival order.
func (b *Bridge) processBatch(r *route, batch []*entry) {
	type roomBatch struct {
		room  string
		items []json.RawMessage
	}
	var order []*roomBatch
	byRoom := make(map[string]*roomBatch)
	for _, e := range batch {
		data, ok := b.decode(withMessage(b.ctx, e.msg), r, e)
		if !ok {
			continue
		}
		for _, room := range e.rooms {
			rb := byRoom[room]
			if rb == nil {
				rb = &roomBatch{room: room}
				byRoom[room] = rb
				order = append(order, rb)
			}
			rb.items = append(rb.items, data)
		}
		r.stats.sent.Add(1)
	}
	ctx := withMessage(b.ctx, nil)
	var buf bytes.Buffer
	for _, rb := range order {
		for items := rb.items; len(items) > 0; {
			n := min(len(items), r.BatchMax)
			buf.Reset()
			buf.WriteByte('[')
			for i, it := range items[:n] {
				if i > 0 {
					buf.WriteByte(',')
				}
				buf.Write(it)
			}
			buf.WriteByte(']')
			b.publish(ctx, r, rb.room, json.RawMessage(bytes.Clone(buf.Bytes())))
			items = items[n:]
		}
	}
}

// decode runs the route's DecodeFunc and, with OnChange, the change check.
// It returns false if the message is not to be published.
func (b *Bridge) decode(ctx context.Context, r *route, e *entry) (json.RawMessage, bool) {
	data, err := runDecode(ctx, r.Decode, e.msg)
	if errors.Is(err, ErrSkip) {
		r.stats.skipped.Add(1)
		return nil, false
	}
	if err != nil {
		r.stats.decodeErrors.Add(1)
		err = fmt.Errorf("%w: route %q, topic %q: %w", ErrDecode, r.Name, truncate(e.msg.Topic, 128), err)
		b.noteErr(err)
		if ok, n := r.decodeLog.allow(time.Now()); ok {
			b.log.Warn("mqttbridge: payload does not decode; not published", slog.String("route", r.Name),
				slog.Any("err", err), slog.Int("suppressed", n))
		}
		return nil, false
	}
	if r.OnChange && !b.changed(r, e.key, data) {
		r.stats.unchanged.Add(1)
		return nil, false
	}
	return data, true
}

// runDecode calls fn, turning its result into JSON and a panic into an error.
func runDecode(ctx context.Context, fn DecodeFunc, m *Message) (data json.RawMessage, err error) {
	defer func() {
		if p := recover(); p != nil {
			data, err = nil, fmt.Errorf("decoder panicked: %v", p)
		}
	}()
	v, err := fn(ctx, m)
	if err != nil {
		return nil, err
	}
	switch d := v.(type) {
	case json.RawMessage:
		if !json.Valid(d) {
			return nil, errors.New("decoder returned invalid JSON")
		}
		return d, nil
	default:
		b, err := json.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("decoded value does not encode as JSON: %v", err)
		}
		return b, nil
	}
}

// changed reports whether data differs from the last data of key, and
// remembers it. Only the route's goroutine calls it.
func (b *Bridge) changed(r *route, key string, data json.RawMessage) bool {
	if last, ok := r.last[key]; ok && bytes.Equal(last, data) {
		return false
	}
	if _, ok := r.last[key]; !ok && len(r.last) >= b.cfg.MaxKeys {
		for k := range r.last { // forget one key, at random
			delete(r.last, k)
			break
		}
	}
	r.last[key] = data
	return true
}

// publish hands one event to the Publisher.
func (b *Bridge) publish(ctx context.Context, r *route, room string, data json.RawMessage, opts ...rthub.PublishOption) {
	if err := b.pub.Publish(ctx, room, r.Event, data, opts...); err != nil {
		r.stats.publishErrors.Add(1)
		err = fmt.Errorf("route %q: publish %s to %q: %w", r.Name, r.Event, room, err)
		b.noteErr(err)
		if ok, n := r.publishLog.allow(time.Now()); ok {
			b.log.Error("mqttbridge: publish failed", slog.String("route", r.Name), slog.Any("err", err), slog.Int("suppressed", n))
		}
		return
	}
	r.stats.published.Add(1)
}
