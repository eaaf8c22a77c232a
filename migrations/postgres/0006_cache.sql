-- The pull-through cache (common/src/metadata/cache.rs; docs/cache.md). Cached content is
-- ordinary content (manifests, tags, links, reference rows); these tables hold what only a
-- cache needs.

-- Manifests that came from an upstream registry: which one, and when they were last pulled
-- (refreshed coarsely), so that a size cap evicts the least recently pulled first.
CREATE TABLE cached_manifests (
    repository_id BIGINT NOT NULL,
    digest        TEXT   NOT NULL,
    upstream      TEXT   NOT NULL,
    fetched_at    BIGINT NOT NULL,
    pulled_at     BIGINT NOT NULL,
    PRIMARY KEY (repository_id, digest),
    FOREIGN KEY (repository_id, digest)
        REFERENCES manifests(repository_id, digest) ON DELETE CASCADE
);
CREATE INDEX cached_manifests_by_pull ON cached_manifests(upstream, pulled_at);

-- When a tag fetched from an upstream was last checked against it, and the digest it named
-- then: a tag that a push has moved since (another digest) is local and never revalidated.
CREATE TABLE cache_tag_checks (
    repository_id BIGINT NOT NULL,
    tag           TEXT   NOT NULL,
    digest        TEXT   NOT NULL,
    checked_at    BIGINT NOT NULL,
    PRIMARY KEY (repository_id, tag),
    FOREIGN KEY (repository_id, tag) REFERENCES tags(repository_id, name) ON DELETE CASCADE
);

-- References of a cached manifest to content not fetched yet (a layer nobody pulled, the
-- platform manifests of an index): they become manifest_blobs / manifest_children rows in the
-- transaction that stores the content.
CREATE TABLE cache_pending_refs (
    repository_id   BIGINT NOT NULL,
    manifest_digest TEXT   NOT NULL,
    digest          TEXT   NOT NULL,
    kind            TEXT   NOT NULL CHECK (kind IN ('blob', 'child')),
    PRIMARY KEY (repository_id, digest, manifest_digest),
    FOREIGN KEY (repository_id, manifest_digest)
        REFERENCES manifests(repository_id, digest) ON DELETE CASCADE
);

-- One upstream fetch of a blob at a time, across instances: the holder renews its lease while
-- the bytes arrive; an expired lease (its instance died) may be taken over.
CREATE TABLE cache_fetch_leases (
    digest     TEXT   PRIMARY KEY,
    holder     TEXT   NOT NULL,
    expires_at BIGINT NOT NULL
);
