-- The management API's listings (common/src/metadata/management.rs).

-- listManifests pages a repository's manifests newest first: (created_at, digest) is the
-- keyset, so a page deep into 100k manifests is one index range read.
CREATE INDEX manifests_by_created ON manifests(repository_id, created_at, digest);

-- deleteRepository removes a repository's upload sessions (and the cascade from
-- repositories finds them) without scanning every session.
CREATE INDEX upload_sessions_by_repository ON upload_sessions(repository_id);
