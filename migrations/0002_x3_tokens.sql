-- The current OAuth2 access token of each X3 connection, shared by every worker process: when it
-- nears expiry one process refreshes (holding the connections row FOR UPDATE) and the others
-- wait for, then use, its result instead of stampeding the token endpoint. The refresh token
-- itself stays in connections.secret.

CREATE TABLE x3_tokens (
    connection      text PRIMARY KEY REFERENCES connections(name) ON DELETE CASCADE,
    access_token    bytea,            -- MultiFernet token of {"access_token": ...}, same keys
    expires_at      timestamptz,      -- server clock (now() + expires_in): hosts may disagree
    lifetime        double precision, -- expires_in of the last refresh: sizes the early margin
    refreshed_at    timestamptz,
    refreshes       bigint NOT NULL DEFAULT 0,
    -- sha256 of a refresh token the token endpoint refused: every worker fails fast with
    -- "re-authorise" instead of sending it again; a new refresh token does not match it.
    refused_refresh text
);
