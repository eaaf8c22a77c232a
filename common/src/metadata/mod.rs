//! The metadata repository layer: the only place SQL appears. One implementation over sqlx's
//! `Any` driver, whose statements are written in the dialect SQLite and PostgreSQL share.
//!
//! SQLite allows one writer at a time, so writes go through a pool of one connection (they
//! queue in the pool instead of failing with `SQLITE_BUSY`) and reads through a wider pool;
//! WAL lets readers proceed while the writer works. Every write transaction begins with a
//! write, so it holds the write lock from its first statement.

mod blobs;
mod manifests;
mod repositories;
mod uploads;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, Executor};

pub use blobs::Deletion;
pub use manifests::{ManifestPut, NewManifest, ReferrerRow, StoredManifest};
pub use uploads::{PartRecord, UploadRow};

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("../migrations/sqlite");

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
    #[error("unsupported DATABASE_URL scheme (expected sqlite://)")]
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
    read: AnyPool,
    write: AnyPool,
}

impl Metadata {
    /// Connects, creating the SQLite file if needed, and applies migrations.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, MetadataError> {
        install_default_drivers();
        if !url.starts_with("sqlite:") {
            return Err(MetadataError::UnsupportedUrl);
        }
        let options = || {
            AnyPoolOptions::new()
                .acquire_timeout(Duration::from_secs(30))
                .after_connect(|conn, _meta| {
                    Box::pin(async move {
                        conn.execute(sqlx::raw_sql(
                            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                             PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 30000;",
                        ))
                        .await?;
                        Ok(())
                    })
                })
        };
        let write = options()
            .max_connections(1)
            .connect(url)
            .await
            .map_err(MetadataError::Connect)?;
        SQLITE_MIGRATIONS
            .run(&write)
            .await
            .map_err(MetadataError::Migrate)?;
        let read = options()
            .max_connections(max_connections.max(1))
            .connect(url)
            .await
            .map_err(MetadataError::Connect)?;
        Ok(Metadata { read, write })
    }

    /// Closes both pools, waiting for queries in flight.
    pub async fn close(&self) {
        self.write.close().await;
        self.read.close().await;
    }
}

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
