-- The registry's metadata on PostgreSQL (production). The same tables as the SQLite schema,
-- in PostgreSQL's types; names and tags sort by byte ("C" collation) as the spec's
-- pagination expects. Timestamps are unix milliseconds, as on SQLite.

CREATE TABLE repositories (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        TEXT COLLATE "C" NOT NULL UNIQUE,
    created_at  BIGINT NOT NULL
);
COMMENT ON TABLE repositories IS 'A repository exists from its first upload, mount or manifest';
COMMENT ON COLUMN repositories.name IS 'Full repository name, e.g. project/app/web';
COMMENT ON COLUMN repositories.created_at IS 'Unix milliseconds';

CREATE TABLE blobs (
    digest      TEXT PRIMARY KEY,
    size        BIGINT NOT NULL CHECK (size >= 0),
    created_at  BIGINT NOT NULL
);
COMMENT ON TABLE blobs IS 'Content-addressed blobs, stored once whatever the number of repositories using them';
COMMENT ON COLUMN blobs.digest IS 'algorithm:hex';
COMMENT ON COLUMN blobs.size IS 'Bytes';

CREATE TABLE repository_blobs (
    repository_id BIGINT NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    digest        TEXT   NOT NULL REFERENCES blobs(digest),
    created_at    BIGINT NOT NULL,
    PRIMARY KEY (repository_id, digest)
);
CREATE INDEX repository_blobs_by_digest ON repository_blobs(digest);
COMMENT ON TABLE repository_blobs IS 'A blob is readable in a repository only through a link';

CREATE TABLE manifests (
    repository_id  BIGINT NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    digest         TEXT   NOT NULL,
    media_type     TEXT   NOT NULL,
    artifact_type  TEXT,
    subject_digest TEXT,
    annotations    TEXT,
    size           BIGINT NOT NULL,
    payload        BYTEA  NOT NULL,
    created_at     BIGINT NOT NULL,
    PRIMARY KEY (repository_id, digest)
);
CREATE INDEX manifests_by_subject ON manifests(repository_id, subject_digest)
    WHERE subject_digest IS NOT NULL;
COMMENT ON COLUMN manifests.digest IS 'Digest of payload';
COMMENT ON COLUMN manifests.media_type IS 'Served as Content-Type';
COMMENT ON COLUMN manifests.artifact_type IS 'artifactType, or the config mediaType (referrers API)';
COMMENT ON COLUMN manifests.subject_digest IS 'Digest of the subject descriptor (referrers API)';
COMMENT ON COLUMN manifests.annotations IS 'Annotations object as JSON text (referrers API)';
COMMENT ON COLUMN manifests.size IS 'Bytes of payload';
COMMENT ON COLUMN manifests.payload IS 'The manifest exactly as pushed';

CREATE TABLE manifest_blobs (
    repository_id   BIGINT NOT NULL,
    manifest_digest TEXT   NOT NULL,
    blob_digest     TEXT   NOT NULL,
    PRIMARY KEY (repository_id, manifest_digest, blob_digest),
    FOREIGN KEY (repository_id, manifest_digest)
        REFERENCES manifests(repository_id, digest) ON DELETE CASCADE,
    FOREIGN KEY (repository_id, blob_digest)
        REFERENCES repository_blobs(repository_id, digest)
);
CREATE INDEX manifest_blobs_by_blob ON manifest_blobs(repository_id, blob_digest);
COMMENT ON TABLE manifest_blobs IS 'Manifest -> config and layers, written in the push transaction; the foreign key keeps a used blob linked';

CREATE TABLE manifest_children (
    repository_id   BIGINT NOT NULL,
    manifest_digest TEXT   NOT NULL,
    child_digest    TEXT   NOT NULL,
    PRIMARY KEY (repository_id, manifest_digest, child_digest),
    FOREIGN KEY (repository_id, manifest_digest)
        REFERENCES manifests(repository_id, digest) ON DELETE CASCADE,
    FOREIGN KEY (repository_id, child_digest)
        REFERENCES manifests(repository_id, digest)
);
CREATE INDEX manifest_children_by_child ON manifest_children(repository_id, child_digest);
COMMENT ON TABLE manifest_children IS 'Index -> child manifests; a listed child cannot be deleted';

CREATE TABLE tags (
    repository_id   BIGINT NOT NULL,
    name            TEXT COLLATE "C" NOT NULL,
    manifest_digest TEXT   NOT NULL,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    PRIMARY KEY (repository_id, name),
    FOREIGN KEY (repository_id, manifest_digest)
        REFERENCES manifests(repository_id, digest) ON DELETE CASCADE
);
CREATE INDEX tags_by_manifest ON tags(repository_id, manifest_digest);
COMMENT ON TABLE tags IS 'Tag -> manifest; moving a tag is one row update';

CREATE TABLE upload_sessions (
    id            TEXT   PRIMARY KEY,
    repository_id BIGINT NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    byte_offset   BIGINT NOT NULL,
    hash_state    BYTEA  NOT NULL,
    parts         TEXT   NOT NULL,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);
CREATE INDEX upload_sessions_by_updated ON upload_sessions(updated_at);
COMMENT ON COLUMN upload_sessions.id IS 'UUID from the Location URL';
COMMENT ON COLUMN upload_sessions.byte_offset IS 'Bytes received and durably stored';
COMMENT ON COLUMN upload_sessions.hash_state IS 'Serialized sha256 state after byte_offset bytes';
COMMENT ON COLUMN upload_sessions.parts IS 'JSON array of {"name","size"} in order';
