-- Bytes stored per project (first path component of repository names), computed by the
-- project-storage job for the management API.
CREATE TABLE project_storage (
    project    TEXT    PRIMARY KEY,
    size       INTEGER NOT NULL,          -- bytes of the distinct blobs linked in the project
    updated_at INTEGER NOT NULL           -- unix milliseconds of the job run that wrote it
);

-- Garbage collection scans links and blobs by age.
CREATE INDEX repository_blobs_by_created ON repository_blobs(created_at);
CREATE INDEX blobs_by_created ON blobs(created_at);
