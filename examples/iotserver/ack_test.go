package main

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/org/rthub"
	"github.com/org/rthub/client"
)

// TestServer_AlertAck: a breach over MQTT opens an alert; staff alice
// acknowledges it with alert:ack; everyone in staff gets alert:acked with
// who and the note, the store and the audit log keep it, and a second ack
// is refused. Payloads that do not match the schema (a note over 200
// characters, a string id, an unknown field) are refused with bad_payload
// naming the field, and change nothing.
func TestServer_AlertAck(t *testing.T) {
	t.Parallel()
	s := startServer(t, nil)
	alice := s.dial(t, "alice")
	bob := s.dial(t, "bob")
	news := collect(alice, AlertNew.Name())
	acked := collect(bob, AlertAcked.Name())

	broker := brokerRE.FindStringSubmatch(s.out.String())
	if broker == nil {
		t.Fatalf("no embedded broker address in the server's output:\n%s", s.out)
	}
	mqttPublish(t, broker[1], "devices/lab-3/status", "online")
	mqttPublish(t, broker[1], "sensors/lab-3/reading", `{"values":{"temperature":35}}`)
	alert := decode[Alert](t, news.next(t, 10*time.Second, "alert:new of lab-3", func(ev client.Event) bool {
		return strings.Contains(string(ev.Data), `"lab-3"`)
	}))

	bad := []struct {
		name  string
		data  any
		field string
	}{
		{"noteTooLong", map[string]any{"id": alert.ID, "note": strings.Repeat("x", 201)}, "/note"},
		{"idString", map[string]any{"id": "1"}, "/id"},
		{"idZero", map[string]any{"id": 0}, "/id"},
		{"unknownField", map[string]any{"id": alert.ID, "by": "mallory"}, "/by"},
		{"noID", map[string]any{"note": "x"}, "/id"},
	}
	for _, b := range bad {
		err := alice.Emit(t.Context(), AlertAck.Name(), roomStaff, b.data)
		var re *rthub.ReplyError
		if !errors.As(err, &re) || re.Code != "bad_payload" || re.Field != b.field {
			t.Errorf("%s: err = %v (%+v), want bad_payload at %s", b.name, err, re, b.field)
		}
	}
	if err := alice.Emit(t.Context(), AlertAck.Name(), roomStaff, AlertAckRequest{ID: 1 << 40}); !errors.As(err, new(*rthub.ReplyError)) ||
		!strings.Contains(err.Error(), "not_found") {
		t.Errorf("ack of an unknown alert: %v, want not_found", err)
	}

	if err := alice.Emit(t.Context(), AlertAck.Name(), roomStaff, AlertAckRequest{ID: alert.ID, Note: "on my way"}); err != nil {
		t.Fatalf("alert:ack: %v", err)
	}
	got := decode[Alert](t, acked.next(t, 5*time.Second, "alert:acked", nil))
	if got.ID != alert.ID || got.AckedBy != "alice" || got.AckNote != "on my way" || got.AckedAt.IsZero() {
		t.Errorf("alert:acked = %+v", got)
	}
	err := bob.Emit(t.Context(), AlertAck.Name(), roomStaff, AlertAckRequest{ID: alert.ID})
	if !strings.Contains(fmtErr(err), "already_acked") {
		t.Errorf("second ack: %v, want already_acked", err)
	}
	acked.none(t, 300*time.Millisecond, "alert:acked after a refused ack", nil)

	var list struct{ Alerts []Alert }
	s.do(t, "GET", "/api/alerts", s.token(t, "alice"), nil, &list)
	found := false
	for _, a := range list.Alerts {
		if a.ID == alert.ID {
			found = a.AckedBy == "alice" && a.AckNote == "on my way"
		}
	}
	if !found {
		t.Errorf("GET /api/alerts does not show the acknowledgement: %+v", list)
	}
	admin := s.token(t, "admin")
	eventually(t, 5*time.Second, "audit entry of the ack", func() bool {
		var a struct{ Entries []AuditEntry }
		s.do(t, "GET", "/api/audit", admin, nil, &a)
		return auditHas(a.Entries, auditAlertAck, "alice", "lab-3")
	})
}

func fmtErr(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}
