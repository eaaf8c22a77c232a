//! Other registries' settings (the README's "Drop-in settings"): the names used by the
//! systems this registry replaces, rewritten into this registry's own before any part is
//! parsed, so that a deployment file written for distribution, the Deploys.app registry or
//! the Cloudflare serverless-registry means the same here.
//!
//! The contract: every foreign name is either mapped to this registry's own name (its value
//! converted where the two differ), accepted as meaningless here with a note that is logged
//! at start-up, or refused with a message saying what to write instead. A foreign name and
//! this registry's own name for one thing, set together, stop the start naming both. Nothing
//! is silently ignored. [`translate`] is idempotent: what it returns holds no foreign name.

use std::collections::BTreeMap;

use super::{ConfigError, Vars};

/// The variables in this registry's names, and what start-up should log about the foreign
/// ones it read.
#[derive(Debug, Clone, Default)]
pub(crate) struct Translated {
    pub vars: Vars,
    pub notes: Vec<String>,
    /// Variables another system's settings name as holding a secret (`password_env` of
    /// `REGISTRIES_JSON`), whatever their names look like.
    secret_names: Vec<String>,
}

/// Rewrites the foreign settings in `vars` (see the module docs).
pub(crate) fn translate(vars: &Vars) -> Result<Translated, ConfigError> {
    let mut out = Translated {
        vars: vars.clone(),
        notes: Vec::new(),
        secret_names: upstream_secret_names(vars),
    };
    cloudflare(&mut out)?;
    distribution(&mut out)?;
    // Last: a `BUCKET_NAME` means GCS only where nothing else named the backend.
    deploys_app(&mut out)?;
    Ok(out)
}

/// Sets `own` to `value` in place of the foreign `foreign`, unless `own` is set too.
fn put(
    vars: &mut Vars,
    own: &str,
    value: impl Into<String>,
    foreign: &str,
    system: &str,
) -> Result<(), ConfigError> {
    if vars.get(own).is_some_and(|v| !v.is_empty()) {
        return Err(ConfigError::Invalid(format!(
            "{foreign} and {own} are both set ({foreign} is {system}'s name for {own}): keep one"
        )));
    }
    vars.set(own, value);
    Ok(())
}

/// The Deploys.app registry: `DB_URL` is `DATABASE_URL`; a `BUCKET_NAME` without a
/// `STORAGE_BACKEND` is its GCS bucket (the filesystem instead would lose every layer with
/// the Cloud Run instance).
fn deploys_app(out: &mut Translated) -> Result<(), ConfigError> {
    const SYSTEM: &str = "the Deploys.app registry";
    if let Some(url) = out.vars.remove("DB_URL") {
        put(&mut out.vars, "DATABASE_URL", url, "DB_URL", SYSTEM)?;
    }
    let bucket_named = out.vars.get("BUCKET_NAME").is_some_and(|v| !v.is_empty());
    if bucket_named && out.vars.get("STORAGE_BACKEND").is_none() {
        out.vars.set("STORAGE_BACKEND", "gcs");
    }
    Ok(())
}

/// The Cloudflare serverless-registry: `USERNAME` and `PASSWORD` are one user with every
/// right; `REGISTRIES_JSON` lists registries pulls fall back to (upstreams here).
fn cloudflare(out: &mut Translated) -> Result<(), ConfigError> {
    const SYSTEM: &str = "the Cloudflare serverless-registry";
    let vars = &mut out.vars;
    // `USERNAME` alone is often the login shell's; only the pair is that registry's.
    if let Some(password) = vars.remove("PASSWORD").filter(|p| !p.is_empty()) {
        let user = vars
            .remove("USERNAME")
            .filter(|u| !u.is_empty())
            .ok_or_else(|| {
                ConfigError::Invalid(format!(
                    "PASSWORD ({SYSTEM}'s) needs USERNAME, the user it belongs to"
                ))
            })?;
        match vars.get("AUTH_MODE") {
            None | Some("basic") => vars.set("AUTH_MODE", "basic"),
            Some(other) => {
                return Err(ConfigError::Invalid(format!(
                    "USERNAME and PASSWORD ({SYSTEM}'s) mean AUTH_MODE=basic, but AUTH_MODE={other}"
                )));
            }
        }
        put(vars, "AUTH_USER", user, "USERNAME", SYSTEM)?;
        put(vars, "AUTH_PASSWORD", password, "PASSWORD", SYSTEM)?;
        if vars.get("AUTH_RULES_FILE").is_none() && vars.get("AUTH_USERS_ALL_RIGHTS").is_none() {
            vars.set("AUTH_USERS_ALL_RIGHTS", "true");
        }
    }
    if let Some(json) = vars.remove("REGISTRIES_JSON").filter(|j| !j.is_empty()) {
        let upstreams = registries_json(&json)?;
        put(vars, "UPSTREAMS_JSON", upstreams, "REGISTRIES_JSON", SYSTEM)?;
    }
    if vars.get("JWT_REGISTRY_TOKENS_PUBLIC_KEY").is_some() {
        return Err(ConfigError::Invalid(format!(
            "JWT_REGISTRY_TOKENS_PUBLIC_KEY ({SYSTEM}'s JWTs as Basic passwords) is not              supported yet: issue registry tokens and verify them with AUTH_MODE=token and              JWT_PUBLIC_KEYS_FILE (README \"Authentication\")"
        )));
    }
    Ok(())
}

/// One entry of `REGISTRIES_JSON`.
#[derive(Debug, serde::Deserialize)]
struct FallbackRegistry {
    registry: String,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password_env: Option<String>,
}

/// `REGISTRIES_JSON` as this registry's upstreams document: each registry a fallback, in
/// order, named by its host.
fn registries_json(json: &str) -> Result<String, ConfigError> {
    let invalid = |why: String| ConfigError::Invalid(format!("REGISTRIES_JSON: {why}"));
    let registries: Vec<FallbackRegistry> = serde_json::from_str(json).map_err(|e| {
        invalid(format!(
            "{e} (expected [{{\"registry\": \"https://…\", \"username\": …, \"password_env\": …}}])"
        ))
    })?;
    let mut upstreams = Vec::with_capacity(registries.len());
    for (index, entry) in registries.iter().enumerate() {
        let host = entry
            .registry
            .split("://")
            .nth(1)
            .unwrap_or(&entry.registry)
            .split('/')
            .next()
            .unwrap_or_default();
        let mut upstream = serde_json::json!({
            "name": format!("fallback-{index}-{host}"),
            "url": entry.registry.trim_end_matches('/'),
            "fallback": true,
        });
        if let Some(username) = &entry.username {
            upstream["username"] = username.clone().into();
        }
        if let Some(env) = &entry.password_env {
            upstream["password_env"] = env.clone().into();
        }
        upstreams.push(upstream);
    }
    Ok(serde_json::json!({ "upstreams": upstreams }).to_string())
}

/// The variables `REGISTRIES_JSON` (or the `UPSTREAMS_JSON` it became) names as secrets
/// (`password_env`).
fn upstream_secret_names(vars: &Vars) -> Vec<String> {
    let from_list = |json: &str| {
        serde_json::from_str::<Vec<FallbackRegistry>>(json)
            .map(|list| list.into_iter().filter_map(|r| r.password_env).collect())
            .unwrap_or_default()
    };
    let from_upstreams = |json: &str| -> Vec<String> {
        serde_json::from_str::<serde_json::Value>(json)
            .ok()
            .and_then(|doc| doc.get("upstreams").and_then(|u| u.as_array()).cloned())
            .into_iter()
            .flatten()
            .filter_map(|u| u.get("password_env")?.as_str().map(str::to_owned))
            .collect()
    };
    let mut names: Vec<String> = vars
        .get("REGISTRIES_JSON")
        .map(from_list)
        .unwrap_or_default();
    names.extend(
        vars.get("UPSTREAMS_JSON")
            .map(from_upstreams)
            .unwrap_or_default(),
    );
    names.iter().map(|n| n.to_ascii_uppercase()).collect()
}

/// Names starting with `REGISTRY_` that are not distribution's settings: the service links
/// Kubernetes puts in every pod of a namespace with a service called `registry`, and the
/// containers tools' credentials file (podman, skopeo, buildah).
fn not_distributions(name: &str) -> bool {
    name == "REGISTRY_AUTH_FILE"
        || name == "REGISTRY_PORT"
        || name.starts_with("REGISTRY_PORT_")
        || name.starts_with("REGISTRY_SERVICE_")
}

/// distribution (`registry:2`, `registry:3`): its `REGISTRY_*` variables, as its
/// configuration documents them.
fn distribution(out: &mut Translated) -> Result<(), ConfigError> {
    const SYSTEM: &str = "distribution";
    let names: Vec<String> = out
        .vars
        .names()
        .filter(|n| {
            let upper = n.to_ascii_uppercase();
            upper.starts_with("REGISTRY_")
                && !not_distributions(&upper)
                && !out.secret_names.contains(&upper)
        })
        .map(str::to_owned)
        .collect();
    if names.is_empty() {
        return Ok(());
    }
    let mut foreign: BTreeMap<String, String> = BTreeMap::new();
    for name in names {
        if let Some(value) = out.vars.remove(&name) {
            foreign.insert(name.to_ascii_uppercase(), value.trim().to_owned());
        }
    }
    let mut take = |name: &str| foreign.remove(name).filter(|v| !v.is_empty());
    let vars = &mut out.vars;
    let notes = &mut out.notes;
    let refuse = |name: &str, value: &str, instead: &str| {
        Err(ConfigError::Invalid(format!(
            "{name}={value:?} (a distribution setting) has no equivalent here: {instead}"
        )))
    };

    // Storage: the driver, named or implied by its settings.
    let named_driver = take("REGISTRY_STORAGE");
    let explicit = named_driver.is_some();
    let driver = match named_driver {
        Some(driver) => Some(driver.to_ascii_lowercase()),
        None => {
            let s3 = foreign
                .keys()
                .any(|k| k.starts_with("REGISTRY_STORAGE_S3_"));
            let fs = foreign.contains_key("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY");
            match (s3, fs) {
                (true, true) => {
                    return Err(ConfigError::Invalid(
                        "REGISTRY_STORAGE_S3_* and REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY are \
                         both set: set REGISTRY_STORAGE to the one driver meant"
                            .to_owned(),
                    ));
                }
                (true, false) => Some("s3".to_owned()),
                (false, true) => Some("filesystem".to_owned()),
                (false, false) => None,
            }
        }
    };
    let mut take = |name: &str| foreign.remove(name).filter(|v| !v.is_empty());
    // The backend: set from REGISTRY_STORAGE, or implied by the driver's settings, where an
    // own STORAGE_BACKEND naming the same backend is no conflict.
    let backend = |vars: &mut Vars, own: &str| -> Result<(), ConfigError> {
        match vars.get("STORAGE_BACKEND") {
            Some(set) if !explicit && set == own => Ok(()),
            _ => put(vars, "STORAGE_BACKEND", own, "REGISTRY_STORAGE", SYSTEM),
        }
    };
    match driver.as_deref() {
        None => {}
        Some("filesystem") => {
            backend(vars, "fs")?;
            if let Some(root) = take("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY") {
                put(
                    vars,
                    "DATA_DIR",
                    root,
                    "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY",
                    SYSTEM,
                )?;
            }
        }
        Some("s3") => {
            backend(vars, "s3")?;
            s3(vars, notes, &mut take)?;
        }
        Some(other) => {
            return refuse(
                "REGISTRY_STORAGE",
                other,
                "this registry keeps bytes on the filesystem, in S3 or in GCS: write \
                 REGISTRY_STORAGE=filesystem or s3, or STORAGE_BACKEND=fs, s3 or gcs",
            );
        }
    }
    if let Some(raw) = take("REGISTRY_STORAGE_DELETE_ENABLED") {
        let enabled = boolean("REGISTRY_STORAGE_DELETE_ENABLED", &raw)?;
        put(
            vars,
            "DELETE_ENABLED",
            enabled.to_string(),
            "REGISTRY_STORAGE_DELETE_ENABLED",
            SYSTEM,
        )?;
    }
    if let Some(raw) = take("REGISTRY_STORAGE_REDIRECT_DISABLE") {
        let disabled = boolean("REGISTRY_STORAGE_REDIRECT_DISABLE", &raw)?;
        if driver.as_deref() == Some("s3") {
            put(
                vars,
                "S3_REDIRECT_DOWNLOADS",
                (!disabled).to_string(),
                "REGISTRY_STORAGE_REDIRECT_DISABLE",
                SYSTEM,
            )?;
        } else {
            notes.push(
                "REGISTRY_STORAGE_REDIRECT_DISABLE: downloads from the filesystem are never \
                 redirected"
                    .to_owned(),
            );
        }
    }
    if let Some(cache) = take("REGISTRY_STORAGE_CACHE_BLOBDESCRIPTOR") {
        notes.push(format!(
            "REGISTRY_STORAGE_CACHE_BLOBDESCRIPTOR={cache}: not needed, blob descriptors are \
             rows of the metadata database"
        ));
    }

    // Authentication: htpasswd, with or without this registry's rules file.
    let auth = take("REGISTRY_AUTH").map(|a| a.to_ascii_lowercase());
    let htpasswd_path = take("REGISTRY_AUTH_HTPASSWD_PATH");
    let htpasswd_realm = take("REGISTRY_AUTH_HTPASSWD_REALM");
    let htpasswd = match auth.as_deref() {
        Some("htpasswd") => true,
        None => htpasswd_path.is_some() || htpasswd_realm.is_some(),
        Some(other) => {
            return refuse(
                "REGISTRY_AUTH",
                other,
                "write REGISTRY_AUTH=htpasswd, or this registry's AUTH_MODE (basic, token, \
                 delegated; README \"Authentication\")",
            );
        }
    };
    if htpasswd {
        put(vars, "AUTH_MODE", "basic", "REGISTRY_AUTH", SYSTEM)?;
        let path = htpasswd_path.ok_or_else(|| {
            ConfigError::Invalid(
                "REGISTRY_AUTH=htpasswd needs REGISTRY_AUTH_HTPASSWD_PATH".to_owned(),
            )
        })?;
        put(
            vars,
            "HTPASSWD_FILE",
            path,
            "REGISTRY_AUTH_HTPASSWD_PATH",
            SYSTEM,
        )?;
        if let Some(realm) = htpasswd_realm {
            put(
                vars,
                "AUTH_REALM",
                realm,
                "REGISTRY_AUTH_HTPASSWD_REALM",
                SYSTEM,
            )?;
        }
        // There, every user of the file may do everything; a rules file says otherwise.
        if vars.get("AUTH_RULES_FILE").is_none() && vars.get("AUTH_USERS_ALL_RIGHTS").is_none() {
            vars.set("AUTH_USERS_ALL_RIGHTS", "true");
        }
    }

    // HTTP and logging.
    if let Some(addr) = take("REGISTRY_HTTP_ADDR") {
        let (host, port) = listen_address(&addr)?;
        put(vars, "HOST", host, "REGISTRY_HTTP_ADDR", SYSTEM)?;
        put(vars, "PORT", port.to_string(), "REGISTRY_HTTP_ADDR", SYSTEM)?;
    }
    if take("REGISTRY_HTTP_SECRET").is_some() {
        notes.push(
            "REGISTRY_HTTP_SECRET: not needed, upload state is kept in the metadata database"
                .to_owned(),
        );
    }
    if let Some(level) = take("REGISTRY_LOG_LEVEL") {
        let level = match level.to_ascii_lowercase().as_str() {
            "panic" | "fatal" | "error" => "error",
            "warn" | "warning" => "warn",
            "info" => "info",
            "debug" => "debug",
            "trace" => "trace",
            _ => {
                return refuse(
                    "REGISTRY_LOG_LEVEL",
                    &level,
                    "write error, warn, info or debug",
                );
            }
        };
        put(vars, "LOG_LEVEL", level, "REGISTRY_LOG_LEVEL", SYSTEM)?;
    }
    if let Some(formatter) = take("REGISTRY_LOG_FORMATTER") {
        let format = match formatter.to_ascii_lowercase().as_str() {
            "json" => "json",
            "text" => "text",
            _ => {
                return refuse(
                    "REGISTRY_LOG_FORMATTER",
                    &formatter,
                    "write json or text (LOG_FORMAT)",
                );
            }
        };
        put(vars, "LOG_FORMAT", format, "REGISTRY_LOG_FORMATTER", SYSTEM)?;
    }

    if let Some(url) = take("REGISTRY_PROXY_REMOTEURL") {
        return refuse(
            "REGISTRY_PROXY_REMOTEURL",
            &url,
            "describe the upstream in UPSTREAMS_FILE (README \"Pull-through cache\")",
        );
    }
    // Whatever is left is a setting this registry does not read: refusing it is the only way
    // not to ignore it.
    let left: Vec<&str> = foreign.keys().map(String::as_str).collect();
    if !left.is_empty() {
        return Err(ConfigError::Invalid(format!(
            "{} (distribution settings) have no equivalent here: remove them, or write this \
             registry's own settings (README \"Drop-in settings\")",
            left.join(", ")
        )));
    }
    Ok(())
}

/// distribution's `s3` driver.
fn s3(
    vars: &mut Vars,
    notes: &mut Vec<String>,
    take: &mut impl FnMut(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    const SYSTEM: &str = "distribution";
    let secure = match take("REGISTRY_STORAGE_S3_SECURE") {
        Some(raw) => boolean("REGISTRY_STORAGE_S3_SECURE", &raw)?,
        None => true,
    };
    let endpoint = take("REGISTRY_STORAGE_S3_REGIONENDPOINT");
    if let Some(endpoint) = &endpoint {
        let url = if endpoint.contains("://") {
            endpoint.clone()
        } else if secure {
            format!("https://{endpoint}")
        } else {
            format!("http://{endpoint}")
        };
        put(
            vars,
            "S3_ENDPOINT",
            url,
            "REGISTRY_STORAGE_S3_REGIONENDPOINT",
            SYSTEM,
        )?;
    }
    // distribution 2.x addresses a custom endpoint in the path; 3.x has the setting.
    let path_style = match take("REGISTRY_STORAGE_S3_FORCEPATHSTYLE") {
        Some(raw) => boolean("REGISTRY_STORAGE_S3_FORCEPATHSTYLE", &raw)?,
        None => endpoint.is_some(),
    };
    if path_style {
        put(
            vars,
            "S3_FORCE_PATH_STYLE",
            "true",
            "REGISTRY_STORAGE_S3_FORCEPATHSTYLE",
            SYSTEM,
        )?;
    }
    for (name, own) in [
        ("REGISTRY_STORAGE_S3_REGION", "S3_REGION"),
        ("REGISTRY_STORAGE_S3_BUCKET", "S3_BUCKET"),
        ("REGISTRY_STORAGE_S3_ACCESSKEY", "AWS_ACCESS_KEY_ID"),
        ("REGISTRY_STORAGE_S3_SECRETKEY", "AWS_SECRET_ACCESS_KEY"),
    ] {
        if let Some(value) = take(name) {
            put(vars, own, value, name, SYSTEM)?;
        }
    }
    if let Some(root) = take("REGISTRY_STORAGE_S3_ROOTDIRECTORY") {
        let trimmed = root.trim_matches('/');
        if !trimmed.is_empty() {
            put(
                vars,
                "S3_PREFIX",
                format!("{trimmed}/"),
                "REGISTRY_STORAGE_S3_ROOTDIRECTORY",
                SYSTEM,
            )?;
        }
    }
    if let Some(raw) = take("REGISTRY_STORAGE_S3_CHUNKSIZE") {
        const MIN: u64 = 5 * 1024 * 1024;
        match raw.parse::<u64>() {
            Ok(bytes) if bytes >= MIN => notes.push(format!(
                "REGISTRY_STORAGE_S3_CHUNKSIZE={bytes}: parts are sized by this registry (8 MiB \
                 parts in memory, server-side copies of whole chunks)"
            )),
            _ => {
                return Err(ConfigError::Invalid(format!(
                    "REGISTRY_STORAGE_S3_CHUNKSIZE={raw:?}: expected a number of bytes, at least \
                     {MIN} (S3's smallest part)"
                )));
            }
        }
    }
    for (name, meaning) in [
        ("REGISTRY_STORAGE_S3_V4AUTH", true),
        ("REGISTRY_STORAGE_S3_ENCRYPT", false),
        ("REGISTRY_STORAGE_S3_SKIPVERIFY", false),
    ] {
        if let Some(raw) = take(name)
            && boolean(name, &raw)? != meaning
        {
            return Err(ConfigError::Invalid(format!(
                "{name}={raw}: not supported here (requests are signed with SigV4 over verified \
                 TLS, with the bucket's own default encryption)"
            )));
        }
    }
    Ok(())
}

/// distribution's `http.addr`: `:5000`, `0.0.0.0:5000`, `[::]:5000`, `localhost:5000`.
fn listen_address(raw: &str) -> Result<(String, u16), ConfigError> {
    let invalid = || {
        ConfigError::Invalid(format!(
            "REGISTRY_HTTP_ADDR={raw:?}: expected [host]:port, e.g. :5000 or 127.0.0.1:5000"
        ))
    };
    let (host, port) = raw.rsplit_once(':').ok_or_else(invalid)?;
    let port: u16 = port.parse().map_err(|_| invalid())?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let host = match host {
        "" => "0.0.0.0".to_owned(),
        "localhost" => "127.0.0.1".to_owned(),
        ip if ip.parse::<std::net::IpAddr>().is_ok() => ip.to_owned(),
        _ => return Err(invalid()),
    };
    Ok((host, port))
}

fn boolean(name: &str, raw: &str) -> Result<bool, ConfigError> {
    match raw.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(ConfigError::Invalid(format!(
            "{name}={raw:?}: expected true or false"
        ))),
    }
}
