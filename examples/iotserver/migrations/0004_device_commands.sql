-- Commands to devices (mqttbridge.CommandStore, command_store_postgres.go):
-- queued until the device is online, sent at most once (the conditional
-- UPDATE of Claim), finished by its reply or expired past its TTL.
-- Finished rows are kept 24 h (an ID is refused as a duplicate meanwhile).
CREATE TABLE device_commands (
    id          text PRIMARY KEY,
    device      text NOT NULL,
    name        text NOT NULL,
    args        text,
    state       text NOT NULL CHECK (state IN ('queued', 'sent', 'done', 'failed', 'expired')),
    created     timestamptz NOT NULL,
    expires     timestamptz NOT NULL,
    sent_at     timestamptz,
    finished_at timestamptz,
    reply       text,
    error       text NOT NULL DEFAULT ''
);
CREATE INDEX device_commands_open ON device_commands (device, created) WHERE state IN ('queued', 'sent');
CREATE INDEX device_commands_due ON device_commands (expires) WHERE state IN ('queued', 'sent');
CREATE INDEX device_commands_finished ON device_commands (finished_at) WHERE finished_at IS NOT NULL;
