//! The registry's metadata database as the API suites look at it: a snapshot of every row
//! repositories own (to show that a refused request changed nothing), the rows that hold one
//! repository, and repositories far bigger than pushing through HTTP would make in time.

use std::collections::BTreeMap;

use sqlx::Row;

use crate::{OCI_MANIFEST, Registry};

/// The database URL a registry uses: its test PostgreSQL database, or its SQLite file.
pub fn database_url(reg: &Registry) -> String {
    match reg.database() {
        Some(db) => db.url().to_owned(),
        None => format!(
            "sqlite://{}?mode=rwc",
            reg.data_dir().join("registry.db").display()
        ),
    }
}

async fn pool(reg: &Registry) -> sqlx::AnyPool {
    sqlx::any::install_default_drivers();
    sqlx::AnyPool::connect(&database_url(reg))
        .await
        .expect("connect to the registry's database")
}

/// Every metadata row that repositories own, as sorted text lines per table: what a refused
/// request must leave as it was.
pub async fn snapshot(reg: &Registry) -> BTreeMap<&'static str, Vec<String>> {
    let pool = pool(reg).await;
    let queries = [
        ("repositories", "SELECT name FROM repositories"),
        (
            "tags",
            "SELECT r.name || ' ' || t.name || ' ' || t.manifest_digest FROM tags t JOIN repositories r ON r.id = t.repository_id",
        ),
        (
            "manifests",
            "SELECT r.name || ' ' || m.digest FROM manifests m JOIN repositories r ON r.id = m.repository_id",
        ),
        (
            "repository_blobs",
            "SELECT r.name || ' ' || l.digest FROM repository_blobs l JOIN repositories r ON r.id = l.repository_id",
        ),
        (
            "manifest_blobs",
            "SELECT manifest_digest || ' ' || blob_digest FROM manifest_blobs",
        ),
        ("blobs", "SELECT digest FROM blobs"),
        ("upload_sessions", "SELECT id FROM upload_sessions"),
    ];
    let mut out = BTreeMap::new();
    for (table, sql) in queries {
        let mut rows: Vec<String> = sqlx::query(sql)
            .fetch_all(&pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .iter()
            .map(|row| row.get::<String, _>(0))
            .collect();
        rows.sort();
        out.insert(table, rows);
    }
    pool.close().await;
    out
}

/// The id of a repository, when its row exists.
pub async fn repository_id(reg: &Registry, name: &str) -> Option<i64> {
    let pool = pool(reg).await;
    let row = sqlx::query("SELECT id FROM repositories WHERE name = $1")
        .bind(name)
        .fetch_optional(&pool)
        .await
        .expect("select repository id");
    pool.close().await;
    row.map(|r| r.get::<i64, _>(0))
}

/// Rows of each table that hold the repository id.
pub async fn rows_of(reg: &Registry, id: i64) -> BTreeMap<&'static str, i64> {
    let pool = pool(reg).await;
    let mut out = BTreeMap::new();
    for table in [
        "repositories",
        "tags",
        "manifests",
        "manifest_blobs",
        "manifest_children",
        "repository_blobs",
        "upload_sessions",
    ] {
        let column = if table == "repositories" {
            "id"
        } else {
            "repository_id"
        };
        let sql = format!("SELECT count(*) FROM {table} WHERE {column} = $1");
        let count: i64 = sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
            .bind(id)
            .fetch_one(&pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .get(0);
        out.insert(table, count);
    }
    pool.close().await;
    out
}

/// Adds `count` manifests straight into the database of a registry's repository (which must
/// exist and link `blob`), each referencing `blob` and tagged `seed<n>`: a repository far
/// bigger than pushing through HTTP would make in a test's time. Their `created_at` are
/// 1..=count (long ago).
pub async fn seed_manifests(reg: &Registry, repo: &str, count: i64, blob: &str) {
    let id = repository_id(reg, repo)
        .await
        .expect("the repository exists");
    let series = match reg.database() {
        Some(_) => "generate_series(1, $2) AS s(x)".to_owned(),
        None => "(WITH RECURSIVE s(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM s WHERE x < $2) \
                 SELECT x FROM s) AS s"
            .to_owned(),
    };
    let hex = match reg.database() {
        Some(_) => "lpad(to_hex(x), 64, '0')",
        None => "printf('%064x', x)",
    };
    let statements = [
        format!(
            "INSERT INTO manifests (repository_id, digest, media_type, size, payload, created_at) \
             SELECT $1, 'sha256:' || {hex}, '{OCI_MANIFEST}', 2, '{{}}', x FROM {series}"
        ),
        "INSERT INTO tags (repository_id, name, manifest_digest, created_at, updated_at) \
         SELECT repository_id, 'seed' || created_at, digest, created_at, created_at FROM manifests \
         WHERE repository_id = $1 AND created_at <= $2"
            .to_owned(),
        "INSERT INTO manifest_blobs (repository_id, manifest_digest, blob_digest) \
         SELECT repository_id, digest, $3 FROM manifests WHERE repository_id = $1 AND created_at <= $2"
            .to_owned(),
    ];
    let pool = pool(reg).await;
    for sql in statements {
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
            .bind(id)
            .bind(count);
        if sql.contains("$3") {
            query = query.bind(blob);
        }
        query
            .execute(&pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    pool.close().await;
}

/// Waits until the repository holds fewer than `than` tags (a delete is under way), polling
/// for at most a minute.
pub async fn wait_for_fewer_tags(reg: &Registry, id: i64, than: i64) {
    let pool = pool(reg).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let count: i64 = sqlx::query("SELECT count(*) FROM tags WHERE repository_id = $1")
            .bind(id)
            .fetch_one(&pool)
            .await
            .expect("count tags")
            .get(0);
        if count < than {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no delete under way in repository {id}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    pool.close().await;
}
