-- Acknowledgement of an alert (alert:ack): when, by whom, with what note.
ALTER TABLE alerts
    ADD COLUMN acked_at timestamptz,
    ADD COLUMN acked_by text NOT NULL DEFAULT '',
    ADD COLUMN ack_note text NOT NULL DEFAULT '';
