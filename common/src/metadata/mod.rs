//! The metadata repository layer: the only place SQL appears. One implementation over sqlx's
//! `Any` driver, whose statements are written in the dialect SQLite and PostgreSQL share.
//!
//! SQLite allows one writer at a time, so writes go through a pool of one connection (they
//! queue in the pool instead of failing with `SQLITE_BUSY`) and reads through a wider pool;
//! WAL lets readers proceed while the writer works. Every write transaction begins with a
//! write, so it holds the write lock from its first statement.
//!
//! # Crash consistency
//!
//! Each operation a client sees is one transaction, so a process killed at any point leaves
//! the old state or the new one (per operation in docs/crash-consistency.md):
//!
//! - a `PATCH` moves its session by one conditional `UPDATE`, after its part is durable;
//! - a finished upload closes the session and records blob row, link and event in one
//!   transaction under the digest's lock ([`BlobLock`]), after checking that the object is
//!   in storage: a blob is visible (linked) only once its bytes are durable and verified;
//! - a manifest push writes the manifest, its reference rows and its tag (a tag move is this
//!   upsert) in one transaction whose checks and foreign keys require every referenced blob
//!   to be linked and every child manifest stored: a manifest is visible only when all it
//!   references is;
//! - a manifest delete, a tag delete and a blob unlink are one transaction each; a GC step is
//!   one statement per link, or one transaction per blob under its lock.
//!
//! Acknowledged means on disk: PostgreSQL with `synchronous_commit` on (its default), SQLite
//! in WAL mode with `synchronous = FULL` (`SQLITE_PRAGMAS`).

mod blob_lock;
mod blobs;
mod cache;
mod events;
mod imports;
mod maintenance;
mod management;
mod manifests;
mod repositories;
mod uploads;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, Executor};

use crate::config::DbConfig;

pub use blob_lock::BlobLock;
pub use blobs::{Deletion, LINK_USE_REFRESH};
pub use cache::{CachedManifest, EvictionCandidate, TaggedManifest};
pub use events::{
    Claim, ClaimedDelivery, DeadLetter, DeliveryOutcome, EventBacklog, EventsPurged, NewEvent,
    UnfannedEvent,
};
pub use imports::{ImportKind, ImportedItem};
pub use maintenance::{Indexed, LinkRef, ManifestRow, StaleUpload, cutoff};
pub use management::{ManifestSummaryRow, RepositoryRow, TagRow, UploadParts};
pub use manifests::{ManifestPut, NewManifest, ReferrerRow, StoredManifest};
pub use uploads::{PartRecord, UploadRow};

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("../migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("../migrations/postgres");

/// The database engine behind a URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

impl Engine {
    pub fn of_url(url: &str) -> Option<Engine> {
        if url.starts_with("sqlite:") {
            Some(Engine::Sqlite)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Some(Engine::Postgres)
        } else {
            None
        }
    }
}

/// A failure of the metadata database.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error("connecting to the metadata database")]
    Connect(#[source] sqlx::Error),
    #[error("applying migrations")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    #[error("metadata query failed: {context}")]
    Query {
        context: &'static str,
        #[source]
        source: sqlx::Error,
    },
    #[error("unsupported DATABASE_URL scheme (expected sqlite:// or postgres://)")]
    UnsupportedUrl,
    #[error("stored row is corrupt: {0}")]
    Corrupt(String),
}

impl MetadataError {
    pub(crate) fn query(context: &'static str) -> impl FnOnce(sqlx::Error) -> Self {
        move |source| MetadataError::Query { context, source }
    }
}

/// Whether an error is a foreign-key violation (a row still in use, or a parent gone).
pub(crate) fn is_foreign_key_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.kind() == sqlx::error::ErrorKind::ForeignKeyViolation)
}

/// Handle to the metadata database.
#[derive(Debug, Clone)]
pub struct Metadata {
    engine: Engine,
    read: AnyPool,
    write: AnyPool,
}

/// WAL with `synchronous = FULL`: each commit fsyncs the WAL before it returns, so a `201`
/// means the rows are on disk. `NORMAL` syncs only at checkpoints, which keeps the database
/// consistent but can lose the last acknowledged commits on a power loss (a manifest the
/// client was told is stored, a blob row whose upload session is already gone). A `SIGKILL`
/// alone loses nothing in either mode (the WAL is in the page cache); `FULL` is for the box
/// losing power.
const SQLITE_PRAGMAS: &str = "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
     PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 30000;";

impl Metadata {
    /// Opens the database at `url`, applying migrations when configured to.
    ///
    /// PostgreSQL pools connect lazily (a cold start opens no connection until a request
    /// needs one) with the configured bounds. SQLite gets a one-connection write pool and a
    /// read pool, both opened at once (the file is local).
    pub async fn connect(url: &str, config: &DbConfig) -> Result<Self, MetadataError> {
        install_default_drivers();
        let engine = Engine::of_url(url).ok_or(MetadataError::UnsupportedUrl)?;
        let options = AnyPoolOptions::new()
            .min_connections(config.db_min_connections)
            .acquire_timeout(Duration::from_secs(config.db_acquire_timeout_secs))
            .idle_timeout(Some(Duration::from_secs(config.db_idle_timeout_secs)));
        let metadata = match engine {
            Engine::Postgres => {
                let url = socket_form_with_host(url);
                let pool = options
                    .max_connections(config.db_max_connections.max(1))
                    .connect_lazy(&url)
                    .map_err(MetadataError::Connect)?;
                Metadata {
                    engine,
                    read: pool.clone(),
                    write: pool,
                }
            }
            Engine::Sqlite => {
                // A connection to a local file cannot go stale: no ping before each use
                // (a ping is a round trip to the connection's worker thread).
                let options = options
                    .test_before_acquire(false)
                    .after_connect(|conn, _meta| {
                        Box::pin(async move {
                            conn.execute(sqlx::raw_sql(SQLITE_PRAGMAS)).await?;
                            Ok(())
                        })
                    });
                let write = options
                    .clone()
                    .max_connections(1)
                    .connect(url)
                    .await
                    .map_err(MetadataError::Connect)?;
                let read = options
                    .max_connections(config.db_max_connections.max(1))
                    .connect(url)
                    .await
                    .map_err(MetadataError::Connect)?;
                Metadata {
                    engine,
                    read,
                    write,
                }
            }
        };
        if config.db_migrate_on_start {
            metadata.migrate().await?;
        }
        Ok(metadata)
    }

    /// Applies pending migrations of the engine's schema.
    pub async fn migrate(&self) -> Result<(), MetadataError> {
        let migrator = match self.engine {
            Engine::Sqlite => &SQLITE_MIGRATIONS,
            Engine::Postgres => &POSTGRES_MIGRATIONS,
        };
        migrator
            .run(&self.write)
            .await
            .map_err(MetadataError::Migrate)
    }

    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// Closes both pools, waiting for queries in flight.
    pub async fn close(&self) {
        self.write.close().await;
        self.read.close().await;
    }
}

/// The Cloud SQL socket form `postgres://user:pass@/db?host=/cloudsql/…` has an empty host,
/// which URL parsing rejects; a placeholder host lets it parse, and the `host` parameter (a
/// socket directory) still decides where to connect.
fn socket_form_with_host(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let rest = &url[scheme_end..];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    if rest[..authority_end].ends_with('@') {
        format!(
            "{}{}localhost{}",
            &url[..scheme_end],
            &rest[..authority_end],
            &rest[authority_end..]
        )
    } else {
        url.to_owned()
    }
}

/// A query on a request's hot path, with the kinds of its parameters: kept here so that a
/// test can show each one's plan uses an index (`common/tests/query_plans.rs`).
#[derive(Debug, Clone, Copy)]
pub struct HotQuery {
    pub name: &'static str,
    pub sql: &'static str,
    /// `t` a text parameter, `i` an integer one, in order.
    pub params: &'static str,
}

/// Every hot-path query (the management API's listings count: a dashboard pages through them).
pub const HOT_QUERIES: [HotQuery; 11] = [
    HotQuery {
        name: "manifest by tag",
        sql: manifests::MANIFEST_BY_TAG,
        params: "tt",
    },
    HotQuery {
        name: "manifest by digest",
        sql: manifests::MANIFEST_BY_DIGEST,
        params: "tt",
    },
    HotQuery {
        name: "blob link",
        sql: blobs::LINKED_BLOB,
        params: "tti",
    },
    HotQuery {
        name: "tags page",
        sql: repositories::TAGS_PAGE,
        params: "iti",
    },
    HotQuery {
        name: "catalog page",
        sql: repositories::CATALOG_PAGE,
        params: "ti",
    },
    HotQuery {
        name: "referrers",
        sql: manifests::REFERRERS,
        params: "ttt",
    },
    HotQuery {
        name: "upload by id",
        sql: uploads::UPLOAD_BY_ID,
        params: "tt",
    },
    HotQuery {
        name: "management: project repositories page",
        sql: management::REPOSITORIES_PAGE,
        params: "tti",
    },
    HotQuery {
        name: "management: tags page",
        sql: management::TAG_ROWS_PAGE,
        params: "iti",
    },
    HotQuery {
        name: "management: manifests page",
        sql: management::MANIFESTS_PAGE,
        params: "iiti",
    },
    HotQuery {
        name: "management: repository size",
        sql: management::REPOSITORY_SIZE,
        params: "i",
    },
];

/// Milliseconds since the Unix epoch, the timestamp unit of every table.
pub(crate) fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Sizes are stored as signed 64-bit integers.
pub(crate) fn to_db_size(size: u64) -> i64 {
    i64::try_from(size).unwrap_or(i64::MAX)
}

pub(crate) fn from_db_size(size: i64) -> u64 {
    u64::try_from(size).unwrap_or(0)
}

#[cfg(test)]
mod engine_tests;
#[cfg(test)]
mod events_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_form_urls_get_a_placeholder_host() {
        assert_eq!(
            socket_form_with_host("postgres://u:p@/db?host=/cloudsql/p:r:i"),
            "postgres://u:p@localhost/db?host=/cloudsql/p:r:i"
        );
        assert_eq!(
            socket_form_with_host("postgres://u@h:5/db"),
            "postgres://u@h:5/db"
        );
        assert_eq!(
            socket_form_with_host("postgres:///db?host=/x"),
            "postgres:///db?host=/x"
        );
    }
}
