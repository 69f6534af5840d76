package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/org/rthub"
)

// ackHandler handles alert:ack, the one event clients emit: it records the
// acknowledgement in the store, audits it and publishes alert:acked to
// staff. The hub has already checked the payload against its schema (id at
// least 1, note at most 200 characters, nothing else) and the policy (staff
// or admin, in the staff room). An unknown alert is answered not_found, an
// alert acknowledged before already_acked.
func ackHandler(store Store, publish func(context.Context, Alert) error, audit func(AuditEntry), log *slog.Logger) rthub.Handler {
	return AlertAck.Handle(func(ctx context.Context, in rthub.Incoming[AlertAckRequest]) error {
		a, err := store.AckAlert(ctx, in.Data.ID, in.Conn.Identity.Subject, in.Data.Note, time.Now())
		switch {
		case errors.Is(err, ErrNotFound):
			return &rthub.ReplyError{Code: "not_found", Message: fmt.Sprintf("no alert %d", in.Data.ID)}
		case errors.Is(err, ErrAlertAcked):
			return &rthub.ReplyError{Code: "already_acked", Message: fmt.Sprintf("alert %d was already acknowledged", in.Data.ID)}
		case err != nil:
			return err // reported to the client as internal
		}
		audit(AuditEntry{Kind: auditAlertAck, Username: in.Conn.Identity.Subject,
			Detail: fmt.Sprintf("alert %d (%s %s)", a.ID, a.Device, a.Metric), RemoteAddr: in.Conn.RemoteAddr})
		log.InfoContext(ctx, "alerts: acknowledged", "alert", a.ID, "by", a.AckedBy)
		return publish(ctx, a)
	})
}
