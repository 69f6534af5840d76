-- Devices, readings, alerts, users and the audit log.

CREATE TABLE devices (
    id         text PRIMARY KEY,
    name       text NOT NULL DEFAULT '',
    kind       text NOT NULL DEFAULT '',
    status     text NOT NULL DEFAULT 'unknown',
    status_at  timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- One row per metric of a reading: narrow rows make per-metric aggregates
-- plain SQL.
CREATE TABLE readings (
    device_id text NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    at        timestamptz NOT NULL,
    metric    text NOT NULL,
    value     double precision NOT NULL
);
-- Time-range queries per device (history API, latest reading).
CREATE INDEX readings_device_at ON readings (device_id, at);
-- Retention deletes and the analytics window scan by time alone.
CREATE INDEX readings_at ON readings (at);

CREATE TABLE alerts (
    id             bigserial PRIMARY KEY,
    device_id      text NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    metric         text NOT NULL,
    rule           text NOT NULL,
    threshold      double precision NOT NULL,
    value          double precision NOT NULL,
    state          text NOT NULL CHECK (state IN ('open', 'resolved')),
    opened_at      timestamptz NOT NULL,
    resolved_at    timestamptz,
    resolved_value double precision
);
-- At most one open alert per device and metric, even with several nodes.
CREATE UNIQUE INDEX alerts_one_open ON alerts (device_id, metric) WHERE state = 'open';
CREATE INDEX alerts_opened_at ON alerts (opened_at);

CREATE TABLE users (
    username      text PRIMARY KEY,
    display_name  text NOT NULL,
    roles         text[] NOT NULL,
    password_hash text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE audit_log (
    id          bigserial PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    kind        text NOT NULL,
    username    text NOT NULL DEFAULT '',
    detail      text NOT NULL DEFAULT '',
    remote_addr text NOT NULL DEFAULT ''
);
CREATE INDEX audit_log_at ON audit_log (at);
