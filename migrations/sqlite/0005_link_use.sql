-- Two facts about a repository's link to a blob (common/src/metadata/blobs.rs; the garbage
-- collection protocol in jobs/src/lib.rs).

-- The last time a client could have relied on the link: its upload or mount, a HEAD/GET of
-- the blob in the repository while no manifest referenced the link (refreshed coarsely), and
-- the moment its last manifest went. The collector's grace period counts from here.
ALTER TABLE repository_blobs ADD COLUMN used_at INTEGER NOT NULL DEFAULT 0;
UPDATE repository_blobs SET used_at = created_at;

-- Set when a blob DELETE asked for the link while manifests still referenced it: the link
-- goes with its last manifest (or at the collector's next run), never before.
ALTER TABLE repository_blobs ADD COLUMN unlink_requested_at INTEGER;
CREATE INDEX repository_blobs_unlink_requested ON repository_blobs(repository_id)
    WHERE unlink_requested_at IS NOT NULL;
