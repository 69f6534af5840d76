-- Analytics computed by one node, read by the others while fresh.
CREATE TABLE analytics_cache (
    key         text PRIMARY KEY,
    computed_at timestamptz NOT NULL,
    body        jsonb NOT NULL
);
