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
