CREATE TABLE project_storage (
    project    TEXT COLLATE "C" PRIMARY KEY,
    size       BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
COMMENT ON TABLE project_storage IS 'Bytes per project (first path component), written by the project-storage job';
COMMENT ON COLUMN project_storage.size IS 'Bytes of the distinct blobs linked in the project';
COMMENT ON COLUMN project_storage.updated_at IS 'Unix milliseconds of the job run that wrote it';
-- Garbage collection scans links and blobs by age.
CREATE INDEX repository_blobs_by_created ON repository_blobs(created_at);
CREATE INDEX blobs_by_created ON blobs(created_at);
