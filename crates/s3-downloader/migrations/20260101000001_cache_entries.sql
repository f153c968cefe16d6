-- One row per file in the artifact cache directory. The file's name is the key; size and
-- mtime_ns describe the file as it was when md5 was computed, so a later hit can trust md5
-- without reading the file again as long as both still match.
CREATE TABLE cache_entries (
    name         TEXT    PRIMARY KEY NOT NULL,
    size         INTEGER NOT NULL,
    mtime_ns     INTEGER NOT NULL,
    -- Lowercase hex md5 of the content; NULL until something has verified it.
    md5          TEXT,
    created_ms   INTEGER NOT NULL,
    last_used_ms INTEGER NOT NULL,
    hits         INTEGER NOT NULL DEFAULT 0
) STRICT;

CREATE INDEX cache_entries_last_used ON cache_entries (last_used_ms);
