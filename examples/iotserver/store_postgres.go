package main

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// PGStore is the PostgreSQL [Store] (pgx v5). [OpenPostgres] applies the
// embedded migrations (migrations/NNNN_name.sql, recorded in the table
// schema_migrations) before returning, under an advisory lock so that
// several nodes starting together migrate once.
type PGStore struct {
	pool   *pgxpool.Pool
	schema string
}

var _ Store = (*PGStore)(nil)

// OpenPostgres connects to url and migrates. schema, if not empty, is
// created if needed and used as the search_path of every connection (the
// tests give each run its own); empty means the server's default (public).
func OpenPostgres(ctx context.Context, url, schema string) (*PGStore, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	if schema != "" {
		cfg.ConnConfig.RuntimeParams["search_path"] = schema
	}
	cfg.ConnConfig.RuntimeParams["application_name"] = "rthub-iotserver"
	if cfg.MaxConns > 8 {
		cfg.MaxConns = 8
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	s := &PGStore{pool: pool, schema: schema}
	if err := s.init(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	return s, nil
}

func (s *PGStore) init(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := s.pool.Ping(ctx); err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	return s.migrate(ctx)
}

// migration is one embedded SQL file.
type migration struct {
	version int
	name    string
	sql     string
}

// migrations returns the embedded migrations sorted by version. File names
// are NNNN_name.sql; versions must be unique.
func migrations() ([]migration, error) {
	files, err := fs.Glob(migrationFS, "migrations/*.sql")
	if err != nil {
		return nil, err
	}
	var out []migration
	seen := map[int]string{}
	for _, f := range files {
		base := strings.TrimPrefix(f, "migrations/")
		num, _, ok := strings.Cut(base, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("migration %s: name must be NNNN_name.sql", base)
		}
		if prev, dup := seen[v]; dup {
			return nil, fmt.Errorf("migrations %s and %s have the same version", prev, base)
		}
		seen[v] = base
		b, err := migrationFS.ReadFile(f)
		if err != nil {
			return nil, err
		}
		out = append(out, migration{version: v, name: base, sql: string(b)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].version < out[j].version })
	return out, nil
}

// migrate applies the migrations not yet recorded, each in its own
// transaction with its schema_migrations row, so a failed one leaves the
// ones before it applied and nothing of itself.
func (s *PGStore) migrate(ctx context.Context) error {
	ms, err := migrations()
	if err != nil {
		return err
	}
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	defer conn.Release()
	// A session lock, per schema, held across the schema's creation and
	// all the transactions below (concurrent CREATE SCHEMA IF NOT EXISTS
	// can fail on its own).
	lockKey := "rthub-iotserver-migrate:" + s.schema
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock(hashtext($1))", lockKey); err != nil {
		return fmt.Errorf("postgres: migration lock: %w", err)
	}
	defer func() {
		_, _ = conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock(hashtext($1))", lockKey)
	}()
	if s.schema != "" {
		if _, err := conn.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+pgx.Identifier{s.schema}.Sanitize()); err != nil {
			return fmt.Errorf("postgres: create schema: %w", err)
		}
	}
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    integer PRIMARY KEY,
		name       text NOT NULL,
		applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return fmt.Errorf("postgres: schema_migrations: %w", err)
	}
	applied := map[int]bool{}
	rows, err := conn.Query(ctx, "SELECT version FROM schema_migrations")
	if err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	vs, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	for _, v := range vs {
		applied[int(v)] = true
	}
	for _, m := range ms {
		if applied[m.version] {
			continue
		}
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, m.sql); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", m.version, m.name)
			return err
		})
		if err != nil {
			return fmt.Errorf("postgres: migration %s: %w", m.name, err)
		}
	}
	return nil
}

// Kind implements Store.
func (s *PGStore) Kind() string { return "postgres" }

// Ping implements Store.
func (s *PGStore) Ping(ctx context.Context) error { return s.pool.Ping(ctx) }

// Close implements Store.
func (s *PGStore) Close() { s.pool.Close() }

// UpsertDevice implements Store.
func (s *PGStore) UpsertDevice(ctx context.Context, d Device) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO devices (id, name, kind) VALUES ($1, $2, $3)
		ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, kind = EXCLUDED.kind`, d.ID, d.Name, d.Kind)
	return err
}

// SetDeviceStatus implements Store. The update is conditional, so of two
// nodes recording the same change only one sees changed.
func (s *PGStore) SetDeviceStatus(ctx context.Context, id, status string, at time.Time) (bool, error) {
	tag, err := s.pool.Exec(ctx, `UPDATE devices SET status = $2, status_at = $3 WHERE id = $1 AND status <> $2`, id, status, at)
	if err != nil {
		return false, err
	}
	if tag.RowsAffected() == 1 {
		return true, nil
	}
	var exists bool
	if err := s.pool.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM devices WHERE id = $1)", id).Scan(&exists); err != nil {
		return false, err
	}
	if !exists {
		return false, fmt.Errorf("device %q: %w", id, ErrNotFound)
	}
	return false, nil
}

// Devices implements Store. The latest reading of each device comes from
// the (device_id, at) index.
func (s *PGStore) Devices(ctx context.Context) ([]Device, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT d.id, d.name, d.kind, d.status, d.status_at, l.at,
		       (SELECT jsonb_object_agg(r.metric, r.value) FROM readings r WHERE r.device_id = d.id AND r.at = l.at)
		FROM devices d
		LEFT JOIN LATERAL (SELECT max(at) AS at FROM readings WHERE device_id = d.id) l ON true
		ORDER BY d.id`)
	if err != nil {
		return nil, err
	}
	out := []Device{}
	for rows.Next() {
		var d Device
		var statusAt, lastAt *time.Time
		var values map[string]float64
		if err := rows.Scan(&d.ID, &d.Name, &d.Kind, &d.Status, &statusAt, &lastAt, &values); err != nil {
			rows.Close()
			return nil, err
		}
		if statusAt != nil {
			d.StatusAt = statusAt.UTC()
		}
		if lastAt != nil && values != nil {
			d.Last = &ReadingEvent{Device: d.ID, At: lastAt.UTC(), Values: values}
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// AddReadings implements Store with COPY: one round trip for a batch.
func (s *PGStore) AddReadings(ctx context.Context, rs []ReadingEvent) error {
	var rows [][]any
	for _, r := range rs {
		for m, v := range r.Values {
			rows = append(rows, []any{r.Device, r.At, m, v})
		}
	}
	if len(rows) == 0 {
		return nil
	}
	_, err := s.pool.CopyFrom(ctx, pgx.Identifier{"readings"}, []string{"device_id", "at", "metric", "value"}, pgx.CopyFromRows(rows))
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "23503" { // foreign_key_violation
		return fmt.Errorf("%w: %v", ErrNotFound, err)
	}
	return err
}

// Readings implements Store.
func (s *PGStore) Readings(ctx context.Context, device string, from, to time.Time, limit int) ([]ReadingEvent, error) {
	if limit <= 0 {
		limit = 1 << 30
	}
	// The newest limit distinct times in the range, then their samples.
	rows, err := s.pool.Query(ctx, `
		WITH ts AS (
			SELECT DISTINCT at FROM readings
			WHERE device_id = $1 AND at >= $2 AND at < $3
			ORDER BY at DESC LIMIT $4)
		SELECT r.at, r.metric, r.value FROM readings r JOIN ts ON r.at = ts.at
		WHERE r.device_id = $1 ORDER BY r.at, r.metric`, device, from, to, limit)
	if err != nil {
		return nil, err
	}
	out := []ReadingEvent{}
	for rows.Next() {
		var at time.Time
		var m string
		var v float64
		if err := rows.Scan(&at, &m, &v); err != nil {
			rows.Close()
			return nil, err
		}
		if n := len(out); n == 0 || !out[n-1].At.Equal(at) {
			out = append(out, ReadingEvent{Device: device, At: at.UTC(), Values: map[string]float64{}})
		}
		out[len(out)-1].Values[m] = v
	}
	return out, rows.Err()
}

// DeleteReadingsBefore implements Store.
func (s *PGStore) DeleteReadingsBefore(ctx context.Context, t time.Time) (int64, error) {
	tag, err := s.pool.Exec(ctx, "DELETE FROM readings WHERE at < $1", t)
	return tag.RowsAffected(), err
}

const alertColumns = "id, device_id, metric, rule, threshold, value, state, opened_at, resolved_at, resolved_value, acked_at, acked_by, ack_note"

func scanAlert(row pgx.Row) (Alert, error) {
	var a Alert
	var resolvedAt, ackedAt *time.Time
	err := row.Scan(&a.ID, &a.Device, &a.Metric, &a.Rule, &a.Threshold, &a.Value, &a.State, &a.OpenedAt, &resolvedAt, &a.ResolvedValue,
		&ackedAt, &a.AckedBy, &a.AckNote)
	a.OpenedAt = a.OpenedAt.UTC()
	if resolvedAt != nil {
		a.ResolvedAt = resolvedAt.UTC()
	}
	if ackedAt != nil {
		a.AckedAt = ackedAt.UTC()
	}
	return a, err
}

// AckAlert implements Store. The first acknowledgement wins, also between
// nodes: the UPDATE only matches an alert not acknowledged yet.
func (s *PGStore) AckAlert(ctx context.Context, id int64, user, note string, at time.Time) (Alert, error) {
	row := s.pool.QueryRow(ctx, `UPDATE alerts SET acked_at = $2, acked_by = $3, ack_note = $4
		WHERE id = $1 AND acked_at IS NULL RETURNING `+alertColumns, id, at, user, note)
	a, err := scanAlert(row)
	if errors.Is(err, pgx.ErrNoRows) {
		var exists bool
		if err := s.pool.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM alerts WHERE id = $1)", id).Scan(&exists); err != nil {
			return Alert{}, err
		}
		if exists {
			return Alert{}, fmt.Errorf("alert %d: %w", id, ErrAlertAcked)
		}
		return Alert{}, fmt.Errorf("alert %d: %w", id, ErrNotFound)
	}
	return a, err
}

// OpenAlert implements Store. The partial unique index alerts_one_open
// keeps one open alert per device and metric across nodes.
func (s *PGStore) OpenAlert(ctx context.Context, a Alert) (Alert, error) {
	row := s.pool.QueryRow(ctx, `INSERT INTO alerts (device_id, metric, rule, threshold, value, state, opened_at)
		VALUES ($1, $2, $3, $4, $5, 'open', $6) RETURNING `+alertColumns,
		a.Device, a.Metric, a.Rule, a.Threshold, a.Value, a.OpenedAt)
	out, err := scanAlert(row)
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case "23505": // unique_violation
			return Alert{}, ErrAlertOpen
		case "23503": // foreign_key_violation
			return Alert{}, fmt.Errorf("device %q: %w", a.Device, ErrNotFound)
		}
	}
	return out, err
}

// ResolveAlert implements Store.
func (s *PGStore) ResolveAlert(ctx context.Context, id int64, at time.Time, value float64) (Alert, error) {
	row := s.pool.QueryRow(ctx, `UPDATE alerts SET state = 'resolved', resolved_at = $2, resolved_value = $3
		WHERE id = $1 AND state = 'open' RETURNING `+alertColumns, id, at, value)
	a, err := scanAlert(row)
	if errors.Is(err, pgx.ErrNoRows) {
		return Alert{}, fmt.Errorf("open alert %d: %w", id, ErrNotFound)
	}
	return a, err
}

// Alerts implements Store.
func (s *PGStore) Alerts(ctx context.Context, openOnly bool, limit int) ([]Alert, error) {
	if limit <= 0 {
		limit = 1 << 30
	}
	rows, err := s.pool.Query(ctx, `SELECT `+alertColumns+` FROM alerts
		WHERE NOT $1 OR state = 'open' ORDER BY id DESC LIMIT $2`, openOnly, limit)
	if err != nil {
		return nil, err
	}
	out := []Alert{}
	for rows.Next() {
		a, err := scanAlert(rows)
		if err != nil {
			rows.Close()
			return nil, err
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

// Aggregates implements Store.
func (s *PGStore) Aggregates(ctx context.Context, since time.Time) ([]Aggregate, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT device_id, metric, count(*), min(value), max(value), avg(value),
		       (array_agg(value ORDER BY at DESC))[1], max(at)
		FROM readings WHERE at >= $1
		GROUP BY device_id, metric ORDER BY device_id, metric`, since)
	if err != nil {
		return nil, err
	}
	out := []Aggregate{}
	for rows.Next() {
		var a Aggregate
		if err := rows.Scan(&a.Device, &a.Metric, &a.Count, &a.Min, &a.Max, &a.Avg, &a.Last, &a.LastAt); err != nil {
			rows.Close()
			return nil, err
		}
		a.LastAt = a.LastAt.UTC()
		out = append(out, a)
	}
	return out, rows.Err()
}

// AlertCounts implements Store.
func (s *PGStore) AlertCounts(ctx context.Context, since time.Time) (AlertCounts, error) {
	var c AlertCounts
	err := s.pool.QueryRow(ctx, `SELECT
		count(*) FILTER (WHERE state = 'open'),
		count(*) FILTER (WHERE opened_at >= $1),
		count(*) FILTER (WHERE state = 'resolved' AND resolved_at >= $1)
		FROM alerts`, since).Scan(&c.Open, &c.Opened, &c.Resolved)
	return c, err
}

// CachedAnalytics implements Store.
func (s *PGStore) CachedAnalytics(ctx context.Context, key string, notBefore time.Time) (json.RawMessage, time.Time, bool, error) {
	var body []byte
	var at time.Time
	err := s.pool.QueryRow(ctx, "SELECT body, computed_at FROM analytics_cache WHERE key = $1 AND computed_at >= $2", key, notBefore).Scan(&body, &at)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, time.Time{}, false, nil
	}
	if err != nil {
		return nil, time.Time{}, false, err
	}
	return body, at.UTC(), true, nil
}

// SaveAnalytics implements Store. An older computation never replaces a
// newer one.
func (s *PGStore) SaveAnalytics(ctx context.Context, key string, body json.RawMessage, at time.Time) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO analytics_cache (key, computed_at, body) VALUES ($1, $2, $3)
		ON CONFLICT (key) DO UPDATE SET computed_at = EXCLUDED.computed_at, body = EXCLUDED.body
		WHERE analytics_cache.computed_at < EXCLUDED.computed_at`, key, at, []byte(body))
	return err
}

// UpsertUser implements Store.
func (s *PGStore) UpsertUser(ctx context.Context, u User) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO users (username, display_name, roles, password_hash) VALUES ($1, $2, $3, $4)
		ON CONFLICT (username) DO UPDATE SET display_name = EXCLUDED.display_name, roles = EXCLUDED.roles,
		password_hash = EXCLUDED.password_hash`, u.Username, u.Name, u.Roles, u.PasswordHash)
	return err
}

// User implements Store.
func (s *PGStore) User(ctx context.Context, username string) (User, error) {
	var u User
	err := s.pool.QueryRow(ctx, "SELECT username, display_name, roles, password_hash FROM users WHERE username = $1", username).
		Scan(&u.Username, &u.Name, &u.Roles, &u.PasswordHash)
	if errors.Is(err, pgx.ErrNoRows) {
		return User{}, fmt.Errorf("user %q: %w", username, ErrNotFound)
	}
	return u, err
}

// AddAudit implements Store.
func (s *PGStore) AddAudit(ctx context.Context, e AuditEntry) (AuditEntry, error) {
	if e.At.IsZero() {
		e.At = time.Now()
	}
	err := s.pool.QueryRow(ctx, `INSERT INTO audit_log (at, kind, username, detail, remote_addr) VALUES ($1, $2, $3, $4, $5)
		RETURNING id, at`, e.At, e.Kind, e.Username, e.Detail, e.RemoteAddr).Scan(&e.ID, &e.At)
	e.At = e.At.UTC()
	return e, err
}

// Audit implements Store.
func (s *PGStore) Audit(ctx context.Context, limit int) ([]AuditEntry, error) {
	if limit <= 0 {
		limit = 1 << 30
	}
	rows, err := s.pool.Query(ctx, "SELECT id, at, kind, username, detail, remote_addr FROM audit_log ORDER BY id DESC LIMIT $1", limit)
	if err != nil {
		return nil, err
	}
	out := []AuditEntry{}
	for rows.Next() {
		var e AuditEntry
		if err := rows.Scan(&e.ID, &e.At, &e.Kind, &e.Username, &e.Detail, &e.RemoteAddr); err != nil {
			rows.Close()
			return nil, err
		}
		e.At = e.At.UTC()
		out = append(out, e)
	}
	return out, rows.Err()
}
