//! `jobs import --from <registry URL> | --from-layout <dir> [flags]`: the flags, read into
//! an [`ImportCommand`].
//! Secrets come from environment variables named by the flags, never from the arguments
//! (which other users of the machine can read).

use std::path::PathBuf;
use std::time::Duration;

use registry_common::config::Secret;
use registry_common::oci::RepositoryName;

use crate::import::ImportOptions;
use crate::import::registry::SourceAuth;

/// Blobs copied at once unless `--concurrency` says otherwise.
const DEFAULT_CONCURRENCY: usize = 4;
/// Seconds between progress lines unless `--progress-interval` says otherwise.
const DEFAULT_PROGRESS_SECS: f64 = 10.0;

pub const USAGE: &str = "jobs import --from <registry URL> [--username U --password-env VAR | \
--token-env VAR] | --from-layout <distribution's rootdirectory> [--repository NAME]... [--prefix P] \
[--concurrency N] [--progress-interval SECS]";

/// What a `jobs import` reads from.
#[derive(Debug)]
pub enum ImportFrom {
    /// A registry's HTTP API (`--from`).
    Registry { url: String, auth: SourceAuth },
    /// distribution's storage layout in a directory (`--from-layout`).
    Layout(PathBuf),
}

/// A parsed `jobs import`.
#[derive(Debug)]
pub struct ImportCommand {
    pub from: ImportFrom,
    pub options: ImportOptions,
}

/// Parses the arguments after `import`; `env` reads a variable (the process environment).
pub fn parse(
    args: &[String],
    env: impl Fn(&str) -> Option<String>,
) -> Result<ImportCommand, String> {
    let mut from = None;
    let mut from_layout = None;
    let mut username = None;
    let mut password_env = None;
    let mut token_env = None;
    let mut repositories = Vec::new();
    let mut prefix = None;
    let mut concurrency = DEFAULT_CONCURRENCY;
    let mut progress_secs = DEFAULT_PROGRESS_SECS;
    let mut rest = args.iter();
    while let Some(flag) = rest.next() {
        let mut value = || {
            rest.next()
                .cloned()
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--from" => from = Some(value()?),
            "--from-layout" => from_layout = Some(value()?),
            "--username" => username = Some(value()?),
            "--password-env" => password_env = Some(value()?),
            "--token-env" => token_env = Some(value()?),
            "--repository" => {
                let name = value()?;
                repositories.push(
                    RepositoryName::parse(&name)
                        .map_err(|e| format!("--repository {name}: {e}"))?,
                );
            }
            "--prefix" => prefix = Some(value()?),
            "--concurrency" => {
                let raw = value()?;
                concurrency = raw
                    .parse()
                    .ok()
                    .filter(|n| (1..=256).contains(n))
                    .ok_or_else(|| format!("--concurrency {raw}: a number from 1 to 256"))?;
            }
            "--progress-interval" => {
                let raw = value()?;
                progress_secs = raw
                    .parse()
                    .ok()
                    .filter(|s: &f64| s.is_finite() && *s > 0.0)
                    .ok_or_else(|| format!("--progress-interval {raw}: seconds, above 0"))?;
            }
            other => return Err(format!("unknown flag {other:?}")),
        }
    }
    if !repositories.is_empty() && prefix.is_some() {
        return Err("--repository and --prefix exclude each other".to_owned());
    }
    let read = |flag: &str, var: &str| {
        env(var)
            .filter(|v| !v.is_empty())
            .map(Secret::new)
            .ok_or_else(|| format!("{flag} {var}: the variable is unset or empty"))
    };
    let options = ImportOptions {
        repositories,
        prefix,
        concurrency,
        progress_every: Duration::from_secs_f64(progress_secs),
    };
    let url = match (from, from_layout) {
        (Some(url), None) => url,
        (None, Some(dir)) => {
            if username.is_some() || password_env.is_some() || token_env.is_some() {
                return Err(
                    "--from-layout reads files: --username, --password-env and --token-env \
                     are for --from"
                        .to_owned(),
                );
            }
            if dir.starts_with("s3://") || dir.starts_with("gs://") {
                return Err(format!(
                    "--from-layout {dir}: only a directory is supported so far (a bucket's \
                     layout can be copied to disk first, or imported with --from through \
                     a distribution serving it)"
                ));
            }
            return Ok(ImportCommand {
                from: ImportFrom::Layout(PathBuf::from(dir)),
                options,
            });
        }
        (Some(_), Some(_)) => return Err("--from and --from-layout exclude each other".to_owned()),
        (None, None) => return Err("--from or --from-layout is required".to_owned()),
    };
    let auth = match (username, password_env, token_env) {
        (None, None, None) => SourceAuth::Anonymous,
        (Some(username), Some(var), None) => SourceAuth::Basic {
            username,
            password: read("--password-env", &var)?,
        },
        (None, None, Some(var)) => SourceAuth::Token(read("--token-env", &var)?),
        (Some(_), None, None) => return Err("--username needs --password-env".to_owned()),
        (None, Some(_), None) => return Err("--password-env needs --username".to_owned()),
        _ => return Err("--token-env excludes --username and --password-env".to_owned()),
    };
    Ok(ImportCommand {
        from: ImportFrom::Registry { url, auth },
        options,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn flags_are_read() {
        let env = |v: &str| (v == "PW").then(|| "secret".to_owned());
        let command = parse(
            &args(&[
                "--from",
                "http://h:5000",
                "--username",
                "u",
                "--password-env",
                "PW",
                "--repository",
                "a/b",
                "--repository",
                "c",
                "--concurrency",
                "8",
            ]),
            env,
        )
        .expect("valid");
        assert!(matches!(
            &command.from,
            ImportFrom::Registry { url, auth: SourceAuth::Basic { username, password } }
            if url == "http://h:5000" && username == "u" && password.expose() == "secret"
        ));
        assert_eq!(command.options.repositories.len(), 2);
        assert_eq!(command.options.concurrency, 8);
        assert_eq!(command.options.progress_every, Duration::from_secs(10));
    }

    #[test]
    fn a_layout_is_a_directory_with_the_same_selection_flags() {
        let command = parse(
            &args(&["--from-layout", "/srv/registry", "--prefix", "team/"]),
            no_env,
        )
        .expect("valid");
        assert!(
            matches!(&command.from, ImportFrom::Layout(dir) if dir == std::path::Path::new("/srv/registry"))
        );
        assert_eq!(command.options.prefix.as_deref(), Some("team/"));
    }

    #[test]
    fn usage_errors_name_the_flag() {
        let cases: [(&[&str], &str); 11] = [
            (&[], "--from or --from-layout"),
            (&["--from", "x", "--from-layout", "/d"], "exclude"),
            (
                &["--from-layout", "/d", "--username", "u"],
                "are for --from",
            ),
            (
                &["--from-layout", "/d", "--token-env", "T"],
                "are for --from",
            ),
            (&["--from-layout", "s3://bucket/p"], "only a directory"),
            (&["--from-layout", "gs://bucket"], "only a directory"),
            (&["--from"], "--from needs a value"),
            (&["--from", "x", "--concurrency", "0"], "--concurrency"),
            (&["--from", "x", "--password-env", "PW"], "--username"),
            (&["--from", "x", "--token-env", "T"], "T: the variable"),
            (
                &["--from", "x", "--prefix", "a", "--repository", "b"],
                "exclude",
            ),
        ];
        for (list, needle) in cases {
            let error = parse(&args(list), no_env).expect_err("invalid");
            assert!(error.contains(needle), "{list:?}: {error}");
        }
    }
}
