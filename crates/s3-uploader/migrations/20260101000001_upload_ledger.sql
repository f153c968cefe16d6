-- One row per file the uploader has taken on. A path has at most one live row (any state but
-- deleted or abandoned); finished rows stay as history until pruned.
CREATE TABLE files (
    id              INTEGER PRIMARY KEY,
    path            TEXT    NOT NULL,
    size            INTEGER NOT NULL,
    mtime_ms        INTEGER NOT NULL,
    bucket          TEXT    NOT NULL,
    object_key      TEXT    NOT NULL,
    state           TEXT    NOT NULL
        CHECK (state IN ('pending', 'uploading', 'uploaded', 'deleted', 'abandoned')),
    upload_id       TEXT,
    part_size       INTEGER,
    etag            TEXT,
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    next_attempt_ms INTEGER NOT NULL DEFAULT 0,
    created_ms      INTEGER NOT NULL,
    updated_ms      INTEGER NOT NULL
);

CREATE UNIQUE INDEX files_live_path ON files (path)
    WHERE state NOT IN ('deleted', 'abandoned');
CREATE INDEX files_state ON files (state, updated_ms);

-- Parts of a multipart upload S3 has acknowledged, with the ETag it answered and the MD5 of
-- the bytes sent (to compute the ETag the completed object must have).
CREATE TABLE parts (
    file_id     INTEGER NOT NULL REFERENCES files (id) ON DELETE CASCADE,
    part_number INTEGER NOT NULL,
    size        INTEGER NOT NULL,
    etag        TEXT    NOT NULL,
    md5_hex     TEXT    NOT NULL,
    PRIMARY KEY (file_id, part_number)
);
