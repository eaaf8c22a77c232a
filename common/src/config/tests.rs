//! Each binary's configuration parsed from a map of variables alone.

use std::net::IpAddr;
use std::path::Path;

use super::*;

fn vars(pairs: &[(&str, &str)]) -> Vars {
    pairs.iter().copied().collect()
}

/// The authentication settings of `vars`, validated for their `HOST` (default loopback).
fn config(pairs: &[(&str, &str)]) -> Result<AuthConfig, String> {
    let vars = vars(pairs);
    let server = ServerConfig::from_vars(&vars).map_err(|e| e.to_string())?;
    AuthConfig::from_vars(&vars, server.host).map_err(|e| e.to_string())
}

#[track_caller]
fn refused(vars: &[(&str, &str)], needle: &str) {
    match config(vars) {
        Err(e) => assert!(e.contains(needle), "{vars:?}: {e}"),
        Ok(_) => panic!("{vars:?} accepted"),
    }
}

/// The message of the error `parse` returns for `pairs`.
#[track_caller]
fn error_of<T: std::fmt::Debug>(
    parse: fn(&Vars) -> Result<T, ConfigError>,
    pairs: &[(&str, &str)],
) -> String {
    match parse(&vars(pairs)) {
        Err(e) => e.to_string(),
        Ok(config) => panic!("{pairs:?} accepted: {config:?}"),
    }
}

#[test]
fn an_empty_map_is_the_embedded_default() {
    let service = ServiceConfig::from_vars(&Vars::default()).unwrap();
    assert_eq!(service.server.host, IpAddr::from([127, 0, 0, 1]));
    assert_eq!(service.server.port_or(ServerConfig::SERVICE_PORT), 8080);
    assert_eq!(service.server.max_connections, 4096);
    assert_eq!(service.storage.data_dir, Path::new("./data"));
    assert!(matches!(
        service.storage.backend,
        StorageBackend::Filesystem
    ));
    assert_eq!(
        service.database_url(),
        "sqlite://./data/registry.db?mode=rwc"
    );
    assert_eq!(service.db.db_max_connections, 8);
    assert!(service.db.db_migrate_on_start);
    assert_eq!(service.auth.auth_mode, AuthMode::None);
    assert_eq!(service.limits.page_max, 10_000);
    assert_eq!(service.log.log_format, "text");
    assert_eq!(service.log.log_level, "info");
    assert!(service.api.api_cors_origins.is_empty());

    let registry = RegistryConfig::from_vars(&Vars::default()).unwrap();
    assert_eq!(registry.jobs.jobs_interval_secs, 3_600);
    assert_eq!(registry.jobs.job_batch_size, 500);

    let jobs = JobsBinaryConfig::from_vars(&Vars::default()).unwrap();
    assert_eq!(jobs.jobs.gc_grace_secs, 86_400);
    assert_eq!(jobs.database_url(), "sqlite://./data/registry.db?mode=rwc");
}

#[test]
fn every_binary_reads_its_settings_from_the_map() {
    let pairs = [
        ("PORT", "9000"),
        ("DATA_DIR", "/srv/registry"),
        ("DATABASE_URL", "postgres://db/registry"),
        ("DB_MIGRATE_ON_START", "false"),
        ("STORAGE_BACKEND", "gcs"),
        ("BUCKET_NAME", "blobs"),
        ("GCS_ENDPOINT", "http://127.0.0.2/"),
        ("PAGE_MAX", "50"),
        ("JOB_BATCH_SIZE", "0"),
        ("JOBS_INTERVAL_SECS", "0"),
    ];
    let registry = RegistryConfig::from_vars(&vars(&pairs)).unwrap();
    assert_eq!(registry.service.server.port_or(5000), 9000);
    assert_eq!(registry.service.database_url(), "postgres://db/registry");
    assert!(!registry.service.db.db_migrate_on_start);
    assert_eq!(registry.service.limits.page_max, 50);
    assert_eq!(registry.jobs.jobs_interval_secs, 0);
    assert_eq!(
        registry.jobs.job_batch_size, 1,
        "a batch reads at least one row"
    );
    let StorageBackend::Gcs(gcs) = &registry.service.storage.backend else {
        panic!("{:?}", registry.service.storage.backend)
    };
    assert_eq!(gcs.bucket_name, "blobs");
    assert_eq!(gcs.endpoint(), Some("http://127.0.0.2"));
    let jobs = JobsBinaryConfig::from_vars(&vars(&pairs)).unwrap();
    assert_eq!(jobs.storage.data_dir, Path::new("/srv/registry"));
    assert_eq!(jobs.storage.backend.name(), "gcs");
    assert_eq!(jobs.database_url(), "postgres://db/registry");
}

#[test]
fn k_service_in_the_map_is_cloud_run() {
    let service = ServiceConfig::from_vars(&vars(&[
        ("K_SERVICE", "manifest"),
        ("ALLOW_ANONYMOUS_REMOTE", "true"),
    ]))
    .unwrap();
    assert_eq!(service.server.host, IpAddr::from([0, 0, 0, 0]));
    assert_eq!(service.log.log_format, "json");
    // Set explicitly, they win; an empty K_SERVICE is not Cloud Run.
    let service = ServiceConfig::from_vars(&vars(&[
        ("K_SERVICE", "manifest"),
        ("HOST", "127.0.0.1"),
        ("LOG_FORMAT", "text"),
    ]))
    .unwrap();
    assert_eq!(service.server.host, IpAddr::from([127, 0, 0, 1]));
    assert_eq!(service.log.log_format, "text");
    let local = ServiceConfig::from_vars(&vars(&[("K_SERVICE", "")])).unwrap();
    assert_eq!(local.server.host, IpAddr::from([127, 0, 0, 1]));
    // Cloud Run's anonymous default address needs authentication or the explicit opt-in.
    let e = error_of(ServiceConfig::from_vars, &[("K_SERVICE", "blob")]);
    assert!(e.contains("ALLOW_ANONYMOUS_REMOTE"), "{e}");
    let jobs = JobsBinaryConfig::from_vars(&vars(&[("K_SERVICE", "jobs")])).unwrap();
    assert_eq!(jobs.log.log_format, "json");
}

#[test]
fn malformed_or_missing_values_name_their_variable() {
    for (var, value) in [
        ("PORT", "http"),
        ("HOST", "localhost:5000"),
        ("MAX_CONNECTIONS", "0"),
        ("DB_MAX_CONNECTIONS", "many"),
        ("DB_MIGRATE_ON_START", "yes please"),
        ("MANIFEST_MAX_BYTES", "-1"),
        ("PAGE_MAX", "0"),
        ("LOG_FORMAT", "xml"),
        ("AUTH_MODE", "ldap"),
        ("TOKEN_TTL_SECS", "0"),
        ("API_CORS_ORIGINS", "*"),
        ("STORAGE_BACKEND", "tape"),
        ("JOBS_INTERVAL_SECS", "hourly"),
    ] {
        let e = error_of(RegistryConfig::from_vars, &[(var, value)]);
        assert!(e.contains(var), "{var}={value}: {e}");
    }
    for (var, value) in [
        ("GC_GRACE_SECS", "a day"),
        ("UPLOAD_MAX_AGE_SECS", "-1"),
        ("JOB_BATCH_SIZE", "many"),
        ("DB_IDLE_TIMEOUT_SECS", "1m"),
        ("LOG_FORMAT", "xml"),
        ("STORAGE_BACKEND", ""),
    ] {
        let e = error_of(JobsBinaryConfig::from_vars, &[(var, value)]);
        assert!(e.contains(var), "{var}={value}: {e}");
    }
    let e = error_of(JobsBinaryConfig::from_vars, &[("STORAGE_BACKEND", "gcs")]);
    assert!(
        e.contains("BUCKET_NAME must be set when STORAGE_BACKEND=gcs"),
        "{e}"
    );
    let e = error_of(
        ServiceConfig::from_vars,
        &[
            ("STORAGE_BACKEND", "gcs"),
            ("BUCKET_NAME", "b"),
            ("GCS_SIGNED_URL_TTL_SECS", "soon"),
        ],
    );
    assert!(e.contains("GCS_SIGNED_URL_TTL_SECS"), "{e}");
}

#[test]
fn jobs_needs_no_server_or_authentication_settings() {
    // What would stop a service (authentication without its files, a bad address or port)
    // is not the jobs binary's business.
    let pairs = [
        ("AUTH_MODE", "basic"),
        ("JWT_SECRET", "short"),
        ("HOST", "0.0.0.0"),
        ("PORT", "http"),
    ];
    assert!(ServiceConfig::from_vars(&vars(&pairs)).is_err());
    let jobs = JobsBinaryConfig::from_vars(&vars(&pairs)).unwrap();
    assert_eq!(jobs.jobs.upload_max_age_secs, 86_400);
}

#[test]
fn gcs_settings_have_their_defaults_and_a_normalised_prefix() {
    let config = GcsConfig::from_vars(&vars(&[
        ("BUCKET_NAME", "blobs"),
        ("GCS_ANONYMOUS", "true"),
    ]))
    .unwrap();
    assert!(config.gcs_anonymous);
    assert!(config.gcs_redirect_downloads);
    assert_eq!(config.signed_url_ttl(), std::time::Duration::from_secs(300));
    let mut config = GcsConfig::new("b");
    assert_eq!(config.object_prefix(), "");
    config.gcs_prefix = "registry".into();
    assert_eq!(config.object_prefix(), "registry/");
    config.gcs_prefix = "a/b//".into();
    assert_eq!(config.object_prefix(), "a/b/");
}

#[test]
fn invalid_gcs_values_name_their_variable() {
    let mut config = GcsConfig::new("b");
    config.gcs_endpoint = Some("127.0.0.2".into());
    let e = config.validate().unwrap_err().to_string();
    assert!(e.contains("GCS_ENDPOINT"), "{e}");
    let mut config = GcsConfig::new("b");
    config.gcs_signed_url_ttl_secs = 0;
    let e = config.validate().unwrap_err().to_string();
    assert!(e.contains("GCS_SIGNED_URL_TTL_SECS"), "{e}");
    let e = GcsConfig::new("").validate().unwrap_err().to_string();
    assert!(e.contains("BUCKET_NAME"), "{e}");
    let mut config = GcsConfig::new("b");
    config.gcs_prefix = "/registry".into();
    let e = config.validate().unwrap_err().to_string();
    assert!(e.contains("GCS_PREFIX"), "{e}");
}

const SECRET: &str = "0123456789abcdef0123456789abcdef";

#[test]
fn each_mode_needs_its_settings() {
    assert!(config(&[]).is_ok());
    refused(&[("AUTH_MODE", "ldap")], "AUTH_MODE=\"ldap\"");
    refused(&[("HOST", "0.0.0.0")], "ALLOW_ANONYMOUS_REMOTE");
    assert!(config(&[("HOST", "0.0.0.0"), ("ALLOW_ANONYMOUS_REMOTE", "true")]).is_ok());
    refused(&[("AUTH_MODE", "basic")], "HTPASSWD_FILE");
    refused(
        &[("AUTH_MODE", "basic"), ("HTPASSWD_FILE", "/h")],
        "AUTH_RULES_FILE",
    );
    let basic = [
        ("AUTH_MODE", "basic"),
        ("HTPASSWD_FILE", "/h"),
        ("AUTH_RULES_FILE", "/r"),
        ("HOST", "0.0.0.0"),
    ];
    assert!(config(&basic).is_ok(), "authentication may listen anywhere");
    refused(&[("AUTH_MODE", "token")], "JWT_SECRET");
    refused(
        &[("AUTH_MODE", "token"), ("JWT_SECRET", "short")],
        "at least 32 bytes",
    );
    refused(
        &[("AUTH_MODE", "token"), ("JWT_SECRET", SECRET)],
        "TOKEN_REALM",
    );
    assert!(
        config(&[
            ("AUTH_MODE", "token"),
            ("JWT_SECRET", SECRET),
            ("TOKEN_REALM", "https://auth.example/token"),
        ])
        .is_ok()
    );
    refused(
        &[
            ("AUTH_MODE", "token"),
            ("JWT_PUBLIC_KEYS_FILE", "/k"),
            ("AUTH_RULES_FILE", "/r"),
        ],
        "TOKEN_SIGNING_KEY_FILE or JWT_SECRET",
    );
    refused(
        &[
            ("AUTH_MODE", "token"),
            ("JWT_SECRET", SECRET),
            ("HTPASSWD_FILE", "/h"),
            ("TOKEN_REALM", "https://auth.example/token"),
        ],
        "also needs AUTH_RULES_FILE",
    );
    let issuing = config(&[
        ("AUTH_MODE", "token"),
        ("JWT_SECRET", SECRET),
        ("AUTH_RULES_FILE", "/r"),
    ])
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(issuing.issues_tokens());
    refused(&[("AUTH_MODE", "delegated")], "DELEGATED_PERMISSION_URL");
    refused(
        &[
            ("AUTH_MODE", "delegated"),
            ("DELEGATED_PERMISSION_URL", "ftp://x"),
        ],
        "http:// or https://",
    );
    assert!(
        config(&[
            ("AUTH_MODE", "delegated"),
            ("DELEGATED_PERMISSION_URL", "https://api.example/permission"),
        ])
        .is_ok()
    );
}

#[test]
fn cors_origins_are_origins() {
    let api = |raw: &str| {
        ApiConfig::from_vars(&Vars::from_iter([("API_CORS_ORIGINS", raw)]))
            .map(|c| c.api_cors_origins)
            .map_err(|e| e.to_string())
    };
    let origins = api(" https://Dash.example.com, http://127.0.0.1:3000,,").unwrap();
    assert!(origins.allows(b"https://dash.example.com"));
    assert!(origins.allows(b"http://127.0.0.1:3000"));
    assert!(!origins.allows(b"https://dash.example.com.evil"));
    assert!(!origins.allows(b"http://dash.example.com"));
    assert!(api("").unwrap().is_empty());
    for bad in [
        "*",
        "dash.example.com",
        "https://dash.example.com/",
        "https://",
        "ftp://x",
    ] {
        let e = api(bad).unwrap_err();
        assert!(e.contains("API_CORS_ORIGINS"), "{bad}: {e}");
    }
    let unset = ApiConfig::from_vars(&Vars::default()).unwrap();
    assert!(unset.api_cors_origins.is_empty());
}

#[test]
fn the_secret_never_prints() {
    let config = config(&[
        ("AUTH_MODE", "token"),
        ("JWT_SECRET", SECRET),
        ("TOKEN_REALM", "https://auth.example/token"),
    ])
    .unwrap_or_else(|e| panic!("{e}"));
    let shown = format!("{config:?}");
    assert!(!shown.contains(SECRET), "{shown}");
}

#[test]
fn the_deploys_app_registry_settings_mean_the_same_here() {
    // Its deployment files: DB_URL, BUCKET_NAME, LOG_LEVEL in upper case; no STORAGE_BACKEND.
    let pairs = [
        ("DB_URL", "postgres://user:pass@host/db"),
        ("BUCKET_NAME", "my-registry-bucket"),
        ("LOG_LEVEL", "DEBUG"),
    ];
    let config = ServiceConfig::from_vars(&vars(&pairs)).unwrap();
    assert_eq!(config.database_url(), "postgres://user:pass@host/db");
    let StorageBackend::Gcs(gcs) = &config.storage.backend else {
        panic!(
            "BUCKET_NAME alone must mean GCS: {:?}",
            config.storage.backend
        )
    };
    assert_eq!(gcs.bucket_name, "my-registry-bucket");
    assert_eq!(config.log.log_level, "debug");
    let jobs = JobsBinaryConfig::from_vars(&vars(&pairs)).unwrap();
    assert_eq!(jobs.storage.backend.name(), "gcs");

    // An explicit STORAGE_BACKEND still decides.
    let explicit = [("BUCKET_NAME", "b"), ("STORAGE_BACKEND", "fs")];
    let config = ServiceConfig::from_vars(&vars(&explicit)).unwrap();
    assert_eq!(config.storage.backend.name(), "fs");
    // A filter is kept as written.
    let filter = [("LOG_LEVEL", "registry=DEBUG,info")];
    let config = ServiceConfig::from_vars(&vars(&filter)).unwrap();
    assert_eq!(config.log.log_level, "registry=DEBUG,info");

    // Both names of the database URL: the start stops, naming both.
    let both = [
        ("DB_URL", "postgres://a/db"),
        ("DATABASE_URL", "postgres://b/db"),
    ];
    let e = ServiceConfig::from_vars(&vars(&both))
        .unwrap_err()
        .to_string();
    assert!(e.contains("DATABASE_URL") && e.contains("DB_URL"), "{e}");
}

#[test]
fn distributions_filesystem_and_htpasswd_settings_mean_the_same_here() {
    let config = ServiceConfig::from_vars(&vars(&[
        ("REGISTRY_STORAGE", "filesystem"),
        (
            "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY",
            "/var/lib/registry",
        ),
        ("REGISTRY_STORAGE_DELETE_ENABLED", "false"),
        ("REGISTRY_AUTH", "htpasswd"),
        ("REGISTRY_AUTH_HTPASSWD_PATH", "/auth/htpasswd"),
        ("REGISTRY_AUTH_HTPASSWD_REALM", "Registry Realm"),
        ("REGISTRY_HTTP_ADDR", ":5000"),
        ("REGISTRY_HTTP_SECRET", "whatever"),
        ("REGISTRY_LOG_LEVEL", "debug"),
        ("REGISTRY_LOG_FORMATTER", "json"),
        // Not distribution's: Kubernetes service links and the containers tools' auth file.
        ("REGISTRY_PORT", "tcp://10.0.0.7:5000"),
        ("REGISTRY_SERVICE_HOST", "10.0.0.7"),
        ("REGISTRY_AUTH_FILE", "/run/containers/0/auth.json"),
    ]))
    .unwrap();
    assert_eq!(config.storage.backend.name(), "fs");
    assert_eq!(config.storage.data_dir, Path::new("/var/lib/registry"));
    assert!(!config.limits.delete_enabled);
    assert_eq!(config.auth.auth_mode, AuthMode::Basic);
    assert_eq!(
        config.auth.htpasswd_file.as_deref(),
        Some(Path::new("/auth/htpasswd"))
    );
    assert!(config.auth.auth_users_all_rights);
    assert_eq!(config.auth.auth_realm, "Registry Realm");
    assert_eq!(config.server.host, IpAddr::from([0, 0, 0, 0]));
    assert_eq!(config.server.port, Some(5000));
    assert_eq!(config.log.log_level, "debug");
    assert_eq!(config.log.log_format, "json");
    assert!(
        config.log.settings_notes[0].contains("REGISTRY_HTTP_SECRET"),
        "{:?}",
        config.log.settings_notes
    );
    // Deletes are on by default here; a rules file beside the htpasswd file decides rights.
    let config = ServiceConfig::from_vars(&vars(&[
        ("REGISTRY_AUTH_HTPASSWD_PATH", "/auth/htpasswd"),
        ("AUTH_RULES_FILE", "/auth/rules.json"),
    ]))
    .unwrap();
    assert!(config.limits.delete_enabled);
    assert_eq!(config.auth.auth_mode, AuthMode::Basic);
    assert!(!config.auth.auth_users_all_rights);
}

#[test]
fn distributions_s3_settings_mean_the_same_here() {
    let pairs = [
        ("REGISTRY_STORAGE", "s3"),
        ("REGISTRY_STORAGE_S3_REGIONENDPOINT", "minio.internal:9000"),
        ("REGISTRY_STORAGE_S3_SECURE", "false"),
        ("REGISTRY_STORAGE_S3_REGION", "us-east-1"),
        ("REGISTRY_STORAGE_S3_BUCKET", "images"),
        ("REGISTRY_STORAGE_S3_ACCESSKEY", "AKIDEXAMPLE"),
        ("REGISTRY_STORAGE_S3_SECRETKEY", "not-a-real-secret"),
        ("REGISTRY_STORAGE_S3_ROOTDIRECTORY", "/registry"),
        ("REGISTRY_STORAGE_S3_CHUNKSIZE", "10485760"),
        ("REGISTRY_STORAGE_S3_V4AUTH", "true"),
        ("REGISTRY_STORAGE_REDIRECT_DISABLE", "true"),
    ];
    for config in [
        ServiceConfig::from_vars(&vars(&pairs)).unwrap().storage,
        JobsBinaryConfig::from_vars(&vars(&pairs)).unwrap().storage,
    ] {
        let StorageBackend::S3(s3) = &config.backend else {
            panic!("REGISTRY_STORAGE=s3: {:?}", config.backend)
        };
        assert_eq!(s3.endpoint.as_deref(), Some("http://minio.internal:9000"));
        assert!(
            s3.force_path_style,
            "distribution 2.x: path style on an endpoint"
        );
        assert_eq!(s3.region, "us-east-1");
        assert_eq!(s3.bucket, "images");
        assert_eq!(s3.prefix, "registry/");
        assert!(!s3.redirect_downloads);
        let keys = s3.static_credentials.as_ref().expect("the access key");
        assert_eq!(keys.access_key_id, "AKIDEXAMPLE");
        assert_eq!(keys.secret_access_key, "not-a-real-secret");
    }
    // Driver implied by its settings; scheme kept; 3.x's path-style setting obeyed.
    let config = ServiceConfig::from_vars(&vars(&[
        ("REGISTRY_STORAGE_S3_BUCKET", "images"),
        (
            "REGISTRY_STORAGE_S3_REGIONENDPOINT",
            "https://acct.r2.cloudflarestorage.com",
        ),
        ("REGISTRY_STORAGE_S3_FORCEPATHSTYLE", "false"),
    ]))
    .unwrap();
    let StorageBackend::S3(s3) = &config.storage.backend else {
        panic!("implied s3: {:?}", config.storage.backend)
    };
    assert_eq!(
        s3.endpoint.as_deref(),
        Some("https://acct.r2.cloudflarestorage.com")
    );
    assert!(!s3.force_path_style);
}

#[test]
fn a_foreign_and_an_own_name_for_one_thing_stop_the_start_naming_both() {
    for (pairs, names) in [
        (
            vec![
                ("REGISTRY_STORAGE_S3_BUCKET", "a"),
                ("S3_BUCKET", "b"),
                ("STORAGE_BACKEND", "s3"),
            ],
            ["REGISTRY_STORAGE_S3_BUCKET", "S3_BUCKET"],
        ),
        (
            vec![("REGISTRY_LOG_LEVEL", "info"), ("LOG_LEVEL", "debug")],
            ["REGISTRY_LOG_LEVEL", "LOG_LEVEL"],
        ),
        (
            vec![("REGISTRY_HTTP_ADDR", ":5000"), ("PORT", "6000")],
            ["REGISTRY_HTTP_ADDR", "PORT"],
        ),
        (
            vec![
                ("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY", "/a"),
                ("DATA_DIR", "/b"),
            ],
            ["REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY", "DATA_DIR"],
        ),
        (
            vec![
                ("DB_URL", "postgres://a/db"),
                ("DATABASE_URL", "postgres://b/db"),
            ],
            ["DB_URL", "DATABASE_URL"],
        ),
    ] {
        let e = ServiceConfig::from_vars(&vars(&pairs))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(names[0]) && e.contains(names[1]),
            "{pairs:?}: {e}"
        );
    }
}

#[test]
fn distribution_settings_without_an_equivalent_are_refused_by_name() {
    for (pairs, needle) in [
        (
            vec![("REGISTRY_STORAGE", "azure")],
            "REGISTRY_STORAGE=\"azure\"",
        ),
        (
            vec![
                ("REGISTRY_NOTIFICATIONS_ENDPOINTS", "x"),
                ("REGISTRY_FOO", "1"),
            ],
            "REGISTRY_FOO, REGISTRY_NOTIFICATIONS_ENDPOINTS",
        ),
        (vec![("REGISTRY_AUTH", "token")], "REGISTRY_AUTH=\"token\""),
        (
            vec![("REGISTRY_AUTH", "htpasswd")],
            "REGISTRY_AUTH_HTPASSWD_PATH",
        ),
        (
            vec![("REGISTRY_PROXY_REMOTEURL", "https://registry-1.docker.io")],
            "UPSTREAMS_FILE",
        ),
        (vec![("REGISTRY_LOG_FORMATTER", "logstash")], "logstash"),
        (
            vec![("REGISTRY_HTTP_ADDR", "example.com:5000")],
            "REGISTRY_HTTP_ADDR",
        ),
        (
            vec![
                ("REGISTRY_STORAGE_S3_BUCKET", "b"),
                ("REGISTRY_STORAGE_S3_ENCRYPT", "true"),
            ],
            "REGISTRY_STORAGE_S3_ENCRYPT",
        ),
        (
            vec![
                ("REGISTRY_STORAGE_S3_BUCKET", "b"),
                ("REGISTRY_STORAGE_S3_CHUNKSIZE", "1024"),
            ],
            "REGISTRY_STORAGE_S3_CHUNKSIZE",
        ),
    ] {
        let e = ServiceConfig::from_vars(&vars(&pairs))
            .unwrap_err()
            .to_string();
        assert!(e.contains(needle), "{pairs:?}: {e}");
    }
    // The jobs binary refuses them too.
    assert!(JobsBinaryConfig::from_vars(&vars(&[("REGISTRY_FOO", "1")])).is_err());
}

#[test]
fn translating_twice_changes_nothing() {
    let pairs = [
        ("REGISTRY_STORAGE", "s3"),
        ("REGISTRY_STORAGE_S3_BUCKET", "images"),
        ("REGISTRY_STORAGE_S3_REGION", "eu-west-1"),
        ("REGISTRY_AUTH_HTPASSWD_PATH", "/auth/htpasswd"),
        ("DB_URL", "postgres://h/db"),
    ];
    let once = dropin::translate(&vars(&pairs)).unwrap();
    let twice = dropin::translate(&once.vars).unwrap();
    let names = |v: &Vars| v.names().map(str::to_owned).collect::<Vec<_>>();
    assert_eq!(names(&once.vars), names(&twice.vars));
    for name in names(&once.vars) {
        assert_eq!(once.vars.get(&name), twice.vars.get(&name), "{name}");
    }
    assert!(
        names(&once.vars)
            .iter()
            .all(|n| !n.starts_with("REGISTRY_"))
    );
}

#[test]
fn the_cloudflare_registry_settings_mean_the_same_here() {
    let pairs = [
        ("USERNAME", "ci"),
        ("PASSWORD", "a-long-password"),
        (
            "REGISTRIES_JSON",
            r#"[{"registry": "https://ghcr.io/", "password_env": "REGISTRY_TOKEN", "username": "bot"},
                {"registry": "https://registry-1.docker.io"}]"#,
        ),
        // Named by REGISTRIES_JSON: a secret, not a distribution setting.
        ("REGISTRY_TOKEN", "ghp_secret"),
    ];
    let config = ServiceConfig::from_vars(&vars(&pairs)).unwrap();
    assert_eq!(config.auth.auth_mode, AuthMode::Basic);
    assert_eq!(config.auth.auth_user.as_deref(), Some("ci"));
    assert_eq!(
        config
            .auth
            .auth_password
            .as_ref()
            .map(|p| p.expose().as_str()),
        Some("a-long-password")
    );
    assert!(config.auth.auth_users_all_rights);
    let upstreams = &config.upstreams.upstreams;
    assert_eq!(upstreams.len(), 2);
    assert_eq!(upstreams[0].url, "https://ghcr.io");
    assert!(upstreams[0].fallback && upstreams[1].fallback);
    let credentials = upstreams[0].credentials.as_ref().expect("credentials");
    assert_eq!(credentials.username, "bot");
    assert_eq!(credentials.password.expose(), "ghp_secret");
    assert!(upstreams[1].credentials.is_none());
    // The jobs binary sees the same upstreams (their caps drive eviction).
    assert_eq!(
        JobsBinaryConfig::from_vars(&vars(&pairs))
            .unwrap()
            .upstreams
            .upstreams
            .len(),
        2
    );

    // USERNAME alone is the shell's, not a setting; PASSWORD alone is refused.
    let config = ServiceConfig::from_vars(&vars(&[("USERNAME", "me")])).unwrap();
    assert_eq!(config.auth.auth_mode, AuthMode::None);
    let e = ServiceConfig::from_vars(&vars(&[("PASSWORD", "x")])).unwrap_err();
    assert!(e.to_string().contains("USERNAME"), "{e}");
    // Its JWT key is refused with what to write instead.
    let e = ServiceConfig::from_vars(&vars(&[("JWT_REGISTRY_TOKENS_PUBLIC_KEY", "LS0t")]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("JWT_PUBLIC_KEYS_FILE"), "{e}");
    let e = ServiceConfig::from_vars(&vars(&[
        ("USERNAME", "a"),
        ("PASSWORD", "b"),
        ("AUTH_MODE", "token"),
    ]))
    .unwrap_err()
    .to_string();
    assert!(e.contains("AUTH_MODE"), "{e}");
}

#[test]
fn a_bucket_name_beside_distributions_driver_does_not_mean_gcs() {
    let config = ServiceConfig::from_vars(&vars(&[
        ("BUCKET_NAME", "left-over"),
        ("REGISTRY_STORAGE", "filesystem"),
    ]))
    .unwrap();
    assert_eq!(config.storage.backend.name(), "fs");
    let config = ServiceConfig::from_vars(&vars(&[
        ("BUCKET_NAME", "left-over"),
        ("REGISTRY_STORAGE_S3_BUCKET", "images"),
        ("REGISTRY_STORAGE_S3_REGION", "eu-west-1"),
    ]))
    .unwrap();
    assert_eq!(config.storage.backend.name(), "s3");
}
