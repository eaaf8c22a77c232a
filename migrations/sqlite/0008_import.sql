-- `jobs import` (common/src/metadata/imports.rs; the README's "Moving in"): what a run has
-- copied from a source registry, so that a run stopped midway resumes where it was and a
-- run over a source already copied copies nothing.

-- One item of a source done: a blob copied (or found here), a manifest stored with all it
-- references, a tag set. Rows are written only once the item is durable here.
CREATE TABLE import_items (
    -- The source as the report names it (its URL, without credentials).
    source     TEXT   NOT NULL,
    -- The repository (the same name here as at the source).
    repository TEXT   NOT NULL,
    kind       TEXT   NOT NULL CHECK (kind IN ('blob', 'manifest', 'tag')),
    -- A blob's or manifest's digest, or a tag's name.
    item       TEXT   NOT NULL,
    -- The digest a tag named when it was set; a blob's or manifest's digest again.
    digest     TEXT   NOT NULL,
    -- Bytes: a blob's size, a manifest's payload; 0 for a tag.
    size       INTEGER NOT NULL,
    done_at    INTEGER NOT NULL,
    PRIMARY KEY (source, repository, kind, item)
);
