package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/org/rthub/mqttbridge"
)

// pgCommandStore is the PostgreSQL [mqttbridge.CommandStore] (table
// device_commands, migration 0004): queued commands survive a restart of
// the server, and nodes sharing the database send each command once (Claim
// is a conditional UPDATE) and record its outcome once (Finish, Expire).
type pgCommandStore struct {
	pool *pgxpool.Pool
	// keep is how long finished commands are kept (and their IDs refused).
	keep time.Duration
}

var _ mqttbridge.CommandStore = (*pgCommandStore)(nil)

// Commands returns the store's command queue.
func (s *PGStore) Commands() mqttbridge.CommandStore {
	return &pgCommandStore{pool: s.pool, keep: 24 * time.Hour}
}

const commandCols = `id, device, name, args, state, created, expires, sent_at, finished_at, reply, error`

func scanCommand(row pgx.Row) (mqttbridge.Result, error) {
	var r mqttbridge.Result
	var args, reply *string
	var state string
	var sent, finished *time.Time
	if err := row.Scan(&r.ID, &r.Device, &r.Name, &args, &state, &r.Created, &r.Expires, &sent, &finished, &reply, &r.Error); err != nil {
		return r, err
	}
	r.State = mqttbridge.CommandState(state)
	r.Created, r.Expires = r.Created.UTC(), r.Expires.UTC()
	if args != nil {
		r.Args = json.RawMessage(*args)
	}
	if reply != nil {
		r.Reply = json.RawMessage(*reply)
	}
	if sent != nil {
		r.SentAt = sent.UTC()
	}
	if finished != nil {
		r.FinishedAt = finished.UTC()
	}
	return r, nil
}

func collectCommands(rows pgx.Rows) ([]mqttbridge.Result, error) {
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (mqttbridge.Result, error) { return scanCommand(row) })
}

func nullText(b json.RawMessage) *string {
	if len(b) == 0 {
		return nil
	}
	s := string(b)
	return &s
}

// Add implements mqttbridge.CommandStore. The bounds are checked and the
// row inserted under a transaction-scoped advisory lock, so that nodes
// adding at once cannot pass them together.
func (s *pgCommandStore) Add(ctx context.Context, c mqttbridge.Result, perDevice, total int) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock(hashtext('rthub-iotserver-commands'))"); err != nil {
			return err
		}
		var dup bool
		var dev, all int
		err := tx.QueryRow(ctx, `SELECT
			EXISTS (SELECT 1 FROM device_commands WHERE id = $1),
			(SELECT count(*) FROM device_commands WHERE device = $2 AND state IN ('queued', 'sent')),
			(SELECT count(*) FROM device_commands WHERE state IN ('queued', 'sent'))`, c.ID, c.Device).Scan(&dup, &dev, &all)
		switch {
		case err != nil:
			return err
		case dup:
			return mqttbridge.ErrDuplicateCommand
		case dev >= perDevice:
			return mqttbridge.ErrQueueFullDevice(c.Device, perDevice)
		case all >= total:
			return mqttbridge.ErrQueueFullTotal(total)
		}
		_, err = tx.Exec(ctx, `INSERT INTO device_commands (id, device, name, args, state, created, expires)
			VALUES ($1, $2, $3, $4, 'queued', $5, $6)`, c.ID, c.Device, c.Name, nullText(c.Args), c.Created, c.Expires)
		return err
	})
}

// Queued implements mqttbridge.CommandStore.
func (s *pgCommandStore) Queued(ctx context.Context, device string, now time.Time, n int) ([]mqttbridge.Result, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+commandCols+` FROM device_commands
		WHERE device = $1 AND state = 'queued' AND expires > $2 ORDER BY created, id LIMIT $3`, device, now, n)
	if err != nil {
		return nil, err
	}
	return collectCommands(rows)
}

// Waiting implements mqttbridge.CommandStore.
func (s *pgCommandStore) Waiting(ctx context.Context, now time.Time, n int) ([]string, error) {
	rows, err := s.pool.Query(ctx, `SELECT DISTINCT device FROM device_commands
		WHERE state = 'queued' AND expires > $1 LIMIT $2`, now, n)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// Claim implements mqttbridge.CommandStore: one conditional UPDATE, so of
// two nodes claiming the same command only one changes the row.
func (s *pgCommandStore) Claim(ctx context.Context, id string, at time.Time) (bool, error) {
	tag, err := s.pool.Exec(ctx, `UPDATE device_commands SET state = 'sent', sent_at = $2
		WHERE id = $1 AND state = 'queued' AND expires > $2`, id, at)
	if err != nil {
		return false, err
	}
	return tag.RowsAffected() == 1, nil
}

// Release implements mqttbridge.CommandStore.
func (s *pgCommandStore) Release(ctx context.Context, id string) error {
	_, err := s.pool.Exec(ctx, `UPDATE device_commands SET state = 'queued', sent_at = NULL WHERE id = $1 AND state = 'sent'`, id)
	return err
}

// Finish implements mqttbridge.CommandStore.
func (s *pgCommandStore) Finish(ctx context.Context, id, device string, state mqttbridge.CommandState, reply json.RawMessage, errMsg string, at time.Time) (mqttbridge.Result, bool, error) {
	r, err := scanCommand(s.pool.QueryRow(ctx, `UPDATE device_commands SET state = $3, reply = $4, error = $5, finished_at = $6
		WHERE id = $1 AND device = $2 AND state IN ('queued', 'sent') RETURNING `+commandCols,
		id, device, string(state), nullText(reply), errMsg, at))
	if errors.Is(err, pgx.ErrNoRows) {
		return mqttbridge.Result{}, false, nil
	}
	if err != nil {
		return mqttbridge.Result{}, false, err
	}
	return r, true, nil
}

// Expire implements mqttbridge.CommandStore. SKIP LOCKED lets nodes
// sweeping at once take different rows. It also deletes the commands
// finished more than keep ago.
func (s *pgCommandStore) Expire(ctx context.Context, now time.Time, n int) ([]mqttbridge.Result, error) {
	if _, err := s.pool.Exec(ctx, `DELETE FROM device_commands WHERE id IN (
		SELECT id FROM device_commands WHERE finished_at < $1 LIMIT 1000)`, now.Add(-s.keep)); err != nil {
		return nil, fmt.Errorf("delete finished commands: %w", err)
	}
	rows, err := s.pool.Query(ctx, `UPDATE device_commands SET state = 'expired', finished_at = $1
		WHERE id IN (SELECT id FROM device_commands WHERE state IN ('queued', 'sent') AND expires <= $1
			ORDER BY expires LIMIT $2 FOR UPDATE SKIP LOCKED)
		RETURNING `+commandCols, now, n)
	if err != nil {
		return nil, err
	}
	out, err := collectCommands(rows)
	slices.SortFunc(out, func(a, b mqttbridge.Result) int { return a.Expires.Compare(b.Expires) })
	return out, err
}

// Get implements mqttbridge.CommandStore.
func (s *pgCommandStore) Get(ctx context.Context, id string) (mqttbridge.Result, error) {
	r, err := scanCommand(s.pool.QueryRow(ctx, `SELECT `+commandCols+` FROM device_commands WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return r, mqttbridge.ErrUnknownCommand
	}
	return r, err
}
