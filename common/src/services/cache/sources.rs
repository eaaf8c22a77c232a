//! Where a pull may be served from: the three ways a request reaches an upstream.
//!
//! - **Prefix**: a name under an upstream's `prefix` (`cache/hub/library/alpine`) is that
//!   upstream's cache, and nothing else: its one source is the upstream, cached under the name
//!   asked for.
//! - **Mirror**: a request with `?ns=<host>` (containerd's mirror parameter) is served by the
//!   upstream whose `host` it names.
//! - **Fallback**: any other name is looked up in the upstreams marked `fallback`, in file
//!   order (dockerd's `registry-mirrors` sends un-prefixed names: a Docker Hub mirror lists
//!   Docker Hub as a fallback upstream).
//!
//! Outside a prefix, the name itself is always looked up first: local repositories win.
//! Content from a mirror or fallback upstream is cached under the upstream's prefix when it
//! has one (`<prefix>/<name>`, so the cache stays in one project), else under the name itself
//! (copied in: how teams move from another registry).

use crate::config::UpstreamConfig;
use crate::oci::RepositoryName;

/// An upstream that may hold a repository: where its content is cached here, and its name
/// there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// Index of the upstream in the configuration.
    pub upstream: usize,
    /// The repository the content is cached in.
    pub local: RepositoryName,
    /// The repository's name at the upstream.
    pub remote: String,
}

/// How a name is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// Only local content (no upstream covers the name).
    Local,
    /// Local content of the name first, then these upstreams in order.
    LocalThen(Vec<Source>),
    /// The name is an upstream's cache (under its prefix): that upstream only.
    Prefix(Source),
}

/// The upstream whose prefix contains the name, with the rest of the name.
pub fn prefix_of<'a>(
    upstreams: &'a [impl AsRef<UpstreamConfig>],
    name: &'a RepositoryName,
) -> Option<(usize, &'a str)> {
    upstreams.iter().enumerate().find_map(|(i, u)| {
        let prefix = u.as_ref().prefix.as_deref()?;
        let rest = name.as_str().strip_prefix(prefix)?.strip_prefix('/')?;
        Some((i, rest))
    })
}

/// How a pull of `name` (with containerd's `ns` parameter, if any) is served.
pub fn lookup(
    upstreams: &[impl AsRef<UpstreamConfig>],
    name: &RepositoryName,
    ns: Option<&str>,
) -> Lookup {
    if upstreams.is_empty() {
        return Lookup::Local;
    }
    if let Some((index, rest)) = prefix_of(upstreams, name) {
        let upstream = upstreams[index].as_ref();
        let remote = upstream.upstream_name(rest);
        if !upstream.allows(&remote) {
            return Lookup::Local;
        }
        return Lookup::Prefix(Source {
            upstream: index,
            local: name.clone(),
            remote,
        });
    }
    let chosen: Vec<usize> = match ns.filter(|ns| !ns.is_empty()) {
        Some(ns) => upstreams
            .iter()
            .position(|u| {
                u.as_ref()
                    .host
                    .as_deref()
                    .is_some_and(|h| h.eq_ignore_ascii_case(ns))
            })
            .into_iter()
            .collect(),
        None => (0..upstreams.len())
            .filter(|&i| upstreams[i].as_ref().fallback)
            .collect(),
    };
    let sources: Vec<Source> = chosen
        .into_iter()
        .filter_map(|index| {
            let upstream = upstreams[index].as_ref();
            let remote = upstream.upstream_name(name.as_str());
            if !upstream.allows(&remote) {
                return None;
            }
            let local = match &upstream.prefix {
                Some(prefix) => {
                    RepositoryName::parse(&format!("{prefix}/{}", name.as_str())).ok()?
                }
                None => name.clone(),
            };
            Some(Source {
                upstream: index,
                local,
                remote,
            })
        })
        .collect();
    if sources.is_empty() {
        Lookup::Local
    } else {
        Lookup::LocalThen(sources)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    fn upstream(
        name: &str,
        prefix: Option<&str>,
        host: Option<&str>,
        fallback: bool,
    ) -> Arc<UpstreamConfig> {
        Arc::new(UpstreamConfig {
            name: name.to_owned(),
            url: format!("https://{name}.example"),
            prefix: prefix.map(str::to_owned),
            host: host.map(str::to_owned),
            fallback,
            credentials: None,
            tag_ttl: Duration::from_secs(300),
            repositories: Vec::new(),
            max_bytes: None,
        })
    }

    fn name(raw: &str) -> RepositoryName {
        RepositoryName::parse(raw).expect("valid name")
    }

    fn source(upstream: usize, local: &str, remote: &str) -> Source {
        Source {
            upstream,
            local: name(local),
            remote: remote.to_owned(),
        }
    }

    #[test]
    fn no_upstreams_means_local_only() {
        let none: Vec<Arc<UpstreamConfig>> = Vec::new();
        assert_eq!(
            lookup(&none, &name("library/alpine"), Some("docker.io")),
            Lookup::Local
        );
    }

    #[test]
    fn a_prefix_is_its_upstream_only() {
        let upstreams = [
            upstream("hub", Some("cache/hub"), Some("docker.io"), true),
            upstream("ghcr", Some("cache/ghcr"), Some("ghcr.io"), false),
        ];
        assert_eq!(
            lookup(&upstreams, &name("cache/ghcr/org/tool"), Some("docker.io")),
            Lookup::Prefix(source(1, "cache/ghcr/org/tool", "org/tool"))
        );
        // The prefix itself, or a name that only starts with its text, is not under it.
        assert_eq!(
            lookup(&upstreams, &name("cache/ghcrx/tool"), None),
            Lookup::LocalThen(vec![source(
                0,
                "cache/hub/cache/ghcrx/tool",
                "cache/ghcrx/tool"
            )])
        );
        assert_eq!(prefix_of(&upstreams, &name("cache/hub")), None);
    }

    #[test]
    fn ns_picks_the_upstream_by_host_and_caches_under_its_prefix() {
        let upstreams = [
            upstream("hub", Some("cache/hub"), Some("docker.io"), false),
            upstream("quay", None, Some("quay.io"), false),
        ];
        assert_eq!(
            lookup(&upstreams, &name("library/alpine"), Some("docker.io")),
            Lookup::LocalThen(vec![source(
                0,
                "cache/hub/library/alpine",
                "library/alpine"
            )])
        );
        assert_eq!(
            lookup(&upstreams, &name("org/app"), Some("QUAY.IO")),
            Lookup::LocalThen(vec![source(1, "org/app", "org/app")])
        );
        assert_eq!(
            lookup(&upstreams, &name("org/app"), Some("gcr.io")),
            Lookup::Local
        );
        // Without `ns`, only fallback upstreams are asked.
        assert_eq!(lookup(&upstreams, &name("org/app"), None), Lookup::Local);
    }

    #[test]
    fn fallbacks_come_in_file_order() {
        let upstreams = [
            upstream("old", None, None, true),
            upstream("plain", Some("cache/plain"), None, false),
            upstream("hub", Some("cache/hub"), Some("docker.io"), true),
        ];
        assert_eq!(
            lookup(&upstreams, &name("team/app"), None),
            Lookup::LocalThen(vec![
                source(0, "team/app", "team/app"),
                source(2, "cache/hub/team/app", "team/app"),
            ])
        );
    }
}
