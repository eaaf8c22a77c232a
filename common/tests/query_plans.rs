//! Every hot-path query uses an index, on a database seeded with 100k manifests (1k
//! repositories × 100), 100k blobs and links, 100k tags, 10k referrers and 10k upload
//! sessions: the plans are printed (run with `--nocapture` to read them) and checked for
//! full scans of the big tables, on PostgreSQL and on SQLite.

use registry_common::config::DbConfig;
use registry_common::metadata::{HOT_QUERIES, HotQuery, Metadata};
use registry_tests::TestDatabase;
use sqlx::{AnyPool, Executor, Row};

const BIG_TABLES: [&str; 6] = [
    "manifests",
    "tags",
    "repository_blobs",
    "blobs",
    "upload_sessions",
    "repositories",
];

fn db_config() -> DbConfig {
    DbConfig {
        database_url: None,
        db_max_connections: 2,
        db_min_connections: 0,
        db_acquire_timeout_secs: 30,
        db_idle_timeout_secs: 60,
        db_migrate_on_start: true,
    }
}

/// Seeds through SQL; `hex` turns an integer expression into 64 hex digits in the dialect.
async fn seed(pool: &AnyPool, series: &str, hex: fn(&str) -> String) {
    let statements = [
        format!(
            "INSERT INTO repositories (name, created_at) SELECT 'proj' || (x % 100) || '/repo' || x, 0 FROM {}",
            series.replace("{N}", "1000")
        ),
        format!(
            "INSERT INTO blobs (digest, size, created_at) SELECT 'sha256:' || {}, x, 0 FROM {}",
            hex("x"),
            series.replace("{N}", "100000")
        ),
        format!(
            "INSERT INTO repository_blobs (repository_id, digest, created_at) SELECT (x - 1) / 100 + 1, 'sha256:' || {}, 0 FROM {}",
            hex("x"),
            series.replace("{N}", "100000")
        ),
        format!(
            "INSERT INTO manifests (repository_id, digest, media_type, subject_digest, size, payload, created_at) \
             SELECT (x - 1) / 100 + 1, 'sha256:' || {}, 'application/vnd.oci.image.manifest.v1+json', \
             CASE WHEN x % 10 = 0 THEN 'sha256:' || {} END, 2, '{{}}', x FROM {}",
            hex("x + 1000000"),
            hex("x + 999999"),
            series.replace("{N}", "100000")
        ),
        "INSERT INTO tags (repository_id, name, manifest_digest, created_at, updated_at) \
         SELECT repository_id, 'v' || created_at, digest, 0, 0 FROM manifests"
            .to_owned(),
        format!(
            "INSERT INTO upload_sessions (id, repository_id, byte_offset, hash_state, parts, created_at, updated_at) \
             SELECT 'u' || x, (x % 1000) + 1, 0, '', '[]', 0, 0 FROM {}",
            series.replace("{N}", "10000")
        ),
    ];
    for statement in statements {
        pool.execute(sqlx::AssertSqlSafe(statement.clone()))
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
    }
    pool.execute("ANALYZE").await.expect("analyze");
}

/// Binds sample values that hit seeded rows.
fn bind<'q>(
    query: HotQuery,
    sql: &'q str,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    let texts = ["proj42/repo42", "v4200", "application/spdx+json"];
    let (mut t, mut i) = (0, 0);
    for kind in query.params.chars() {
        if kind == 'i' {
            q = q.bind([42_i64, 100][i.min(1)]);
            i += 1;
        } else {
            q = q.bind(texts[t.min(2)]);
            t += 1;
        }
    }
    q
}

async fn plans(pool: &AnyPool, explain: &str) -> Vec<(HotQuery, String)> {
    let mut out = Vec::new();
    for query in HOT_QUERIES {
        let sql = format!("{explain} {}", query.sql);
        let rows = bind(query, &sql)
            .fetch_all(pool)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", query.name));
        let plan: Vec<String> = rows
            .iter()
            .map(|row| {
                // PostgreSQL: one text column; SQLite: (id, parent, notused, detail).
                let last = row.len() - 1;
                row.try_get::<String, _>(last).unwrap_or_default()
            })
            .collect();
        out.push((query, plan.join("\n")));
    }
    out
}

#[tokio::test]
async fn hot_queries_use_indexes_on_postgres() {
    let db = TestDatabase::create().await;
    let meta = Metadata::connect(db.url(), &db_config())
        .await
        .expect("migrate");
    meta.close().await;
    sqlx::any::install_default_drivers();
    let pool = AnyPool::connect(db.url()).await.expect("connect");
    seed(&pool, "generate_series(1, {N}) AS x", |e| {
        format!("lpad(to_hex({e}), 64, '0')")
    })
    .await;
    for (query, plan) in plans(&pool, "EXPLAIN").await {
        println!("-- {} (postgres)\n{plan}\n", query.name);
        for table in BIG_TABLES {
            assert!(
                !plan.contains(&format!("Seq Scan on {table}")),
                "{}: full scan of {table}:\n{plan}",
                query.name
            );
        }
        assert!(
            plan.contains("Index"),
            "{}: no index used:\n{plan}",
            query.name
        );
    }
    pool.close().await;
}

#[tokio::test]
async fn hot_queries_use_indexes_on_sqlite() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("plans.db").display()
    );
    let meta = Metadata::connect(&url, &db_config())
        .await
        .expect("migrate");
    meta.close().await;
    sqlx::any::install_default_drivers();
    let pool = AnyPool::connect(&url).await.expect("connect");
    seed(
        &pool,
        "(WITH RECURSIVE s(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM s WHERE x < {N}) SELECT x FROM s)",
        |e| format!("printf('%064x', {e})"),
    )
    .await;
    for (query, plan) in plans(&pool, "EXPLAIN QUERY PLAN").await {
        println!("-- {} (sqlite)\n{plan}\n", query.name);
        for line in plan.lines() {
            let scans_big_table = BIG_TABLES.iter().any(|t| {
                line.starts_with(&format!("SCAN {t}"))
                    || line.starts_with(&format!("SCAN {} ", &t[..1]))
            });
            assert!(!scans_big_table, "{}: full scan:\n{plan}", query.name);
        }
        assert!(
            plan.contains("USING"),
            "{}: no index used:\n{plan}",
            query.name
        );
    }
    pool.close().await;
}
