-- The registry's metadata on SQLite (the embedded default). Timestamps are unix milliseconds.

-- A repository exists from its first upload, mount or manifest.
CREATE TABLE repositories (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT    NOT NULL UNIQUE,      -- full name, e.g. project/app/web
    created_at  INTEGER NOT NULL
);

-- Content-addressed blobs, stored once whatever the number of repositories using them.
CREATE TABLE blobs (
    digest      TEXT    PRIMARY KEY,          -- algorithm:hex
    size        INTEGER NOT NULL,             -- bytes
    created_at  INTEGER NOT NULL
);

-- A blob is readable in a repository only through a link.
CREATE TABLE repository_blobs (
    repository_id INTEGER NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    digest        TEXT    NOT NULL REFERENCES blobs(digest),
    created_at    INTEGER NOT NULL,
    PRIMARY KEY (repository_id, digest)
);
CREATE INDEX repository_blobs_by_digest ON repository_blobs(digest);

-- Manifests, payload included: a manifest GET is one indexed query.
CREATE TABLE manifests (
    repository_id  INTEGER NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    digest         TEXT    NOT NULL,          -- digest of payload
    media_type     TEXT    NOT NULL,          -- served as Content-Type
    artifact_type  TEXT,                      -- artifactType, or config mediaType (referrers)
    subject_digest TEXT,                      -- subject descriptor's digest (referrers)
    annotations    TEXT,                      -- annotations object as JSON (referrers)
    size           INTEGER NOT NULL,          -- bytes of payload
    payload        BLOB    NOT NULL,
    created_at     INTEGER NOT NULL,
    PRIMARY KEY (repository_id, digest)
);
CREATE INDEX manifests_by_subject ON manifests(repository_id, subject_digest)
    WHERE subject_digest IS NOT NULL;

-- Manifest -> config and layer blobs, recorded at push time. The foreign key on the link
-- means a blob cannot be unlinked from a repository while one of its manifests uses it.
CREATE TABLE manifest_blobs (
    repository_id   INTEGER NOT NULL,
    manifest_digest TEXT    NOT NULL,
    blob_digest     TEXT    NOT NULL,
    PRIMARY KEY (repository_id, manifest_digest, blob_digest),
    FOREIGN KEY (repository_id, manifest_digest)
        REFERENCES manifests(repository_id, digest) ON DELETE CASCADE,
    FOREIGN KEY (repository_id, blob_digest)
        REFERENCES repository_blobs(repository_id, digest)
);
CREATE INDEX manifest_blobs_by_blob ON manifest_blobs(repository_id, blob_digest);

-- Index -> child manifests. A child cannot be deleted while an index lists it.
CREATE TABLE manifest_children (
    repository_id   INTEGER NOT NULL,
    manifest_digest TEXT    NOT NULL,
    child_digest    TEXT    NOT NULL,
    PRIMARY KEY (repository_id, manifest_digest, child_digest),
    FOREIGN KEY (repository_id, manifest_digest)
        REFERENCES manifests(repository_id, digest) ON DELETE CASCADE,
    FOREIGN KEY (repository_id, child_digest)
        REFERENCES manifests(repository_id, digest)
);
CREATE INDEX manifest_children_by_child ON manifest_children(repository_id, child_digest);

-- Tags: moving a tag is one row update.
CREATE TABLE tags (
    repository_id   INTEGER NOT NULL,
    name            TEXT    NOT NULL,
    manifest_digest TEXT    NOT NULL,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    PRIMARY KEY (repository_id, name),
    FOREIGN KEY (repository_id, manifest_digest)
        REFERENCES manifests(repository_id, digest) ON DELETE CASCADE
);
CREATE INDEX tags_by_manifest ON tags(repository_id, manifest_digest);

-- Upload sessions: any instance can continue any upload from this row.
CREATE TABLE upload_sessions (
    id            TEXT    PRIMARY KEY,        -- UUID from the Location URL
    repository_id INTEGER NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    byte_offset   INTEGER NOT NULL,           -- bytes received and durably stored
    hash_state    BLOB    NOT NULL,           -- serialized sha256 state after byte_offset bytes
    parts         TEXT    NOT NULL,           -- JSON array of {"name","size"}, in order
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);
CREATE INDEX upload_sessions_by_updated ON upload_sessions(updated_at);
