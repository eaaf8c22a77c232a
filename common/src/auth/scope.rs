//! Docker token scopes (`repository:<name>:<actions>`, `registry:catalog:*`) as clients ask for
//! them, and the `access` entries of a token that grant them.
//!
//! A scope is `<type>[(<class>)]:<name>:<action>[,<action>…]`; the name may itself hold a
//! colon (a `host:port/` prefix), so the type ends at the first colon and the actions start
//! after the last. Besides the spec's `repository` and `registry` types, this registry knows
//! `project:<project>:list,get`, for the management API.

use serde::{Deserialize, Serialize};

use super::rules::{Action, Actions};

/// The `registry:catalog:*` scope.
pub const CATALOG_SCOPE: &str = "registry:catalog:*";

/// A scope a client asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub kind: String,
    pub name: String,
    pub actions: Vec<String>,
}

impl Scope {
    /// Parses one scope; `None` when it is not `type:name:actions`.
    pub fn parse(raw: &str) -> Option<Scope> {
        let (kind, rest) = raw.split_once(':')?;
        let (name, actions) = rest.rsplit_once(':')?;
        // `repository(plugin)`: the class does not change what is granted.
        let kind = kind.split_once('(').map_or(kind, |(k, _)| k);
        if kind.is_empty() || name.is_empty() {
            return None;
        }
        Some(Scope {
            kind: kind.to_owned(),
            name: name.to_owned(),
            actions: actions
                .split(',')
                .filter(|a| !a.is_empty())
                .map(str::to_owned)
                .collect(),
        })
    }

    /// Every scope in the `scope` parameters of a token request (each may also hold several,
    /// space-separated, as OAuth2 clients send them).
    pub fn parse_all<'a>(params: impl IntoIterator<Item = &'a str>) -> Result<Vec<Scope>, String> {
        params
            .into_iter()
            .flat_map(str::split_whitespace)
            .map(|raw| Scope::parse(raw).ok_or_else(|| format!("malformed scope {raw:?}")))
            .collect()
    }

    /// The actions asked for, `*` standing for all of them; unknown ones are left out.
    pub fn requested(&self) -> Actions {
        let mut set = Actions::NONE;
        for action in &self.actions {
            if action == "*" {
                return Actions::all();
            }
            if let Some(action) = Action::parse(action) {
                set.insert(action);
            }
        }
        set
    }
}

/// `repository:<name>:<actions>` for a challenge.
pub fn repository_scope(name: &str, actions: &[Action]) -> String {
    let actions: Vec<&str> = actions.iter().map(|a| a.as_str()).collect();
    format!("repository:{name}:{}", actions.join(","))
}

/// One entry of a token's `access` claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessEntry {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    #[serde(default)]
    pub actions: Vec<String>,
}

impl AccessEntry {
    /// An entry granting `actions` on a resource.
    pub fn new(kind: &str, name: &str, actions: impl IntoIterator<Item = String>) -> Self {
        AccessEntry {
            kind: kind.to_owned(),
            name: name.to_owned(),
            actions: actions.into_iter().collect(),
        }
    }

    /// The actions this entry grants (`*` for all).
    pub fn granted(&self) -> Actions {
        Scope {
            kind: self.kind.clone(),
            name: self.name.clone(),
            actions: self.actions.clone(),
        }
        .requested()
    }
}

/// What the `access` claim of a token grants on a resource.
pub fn granted(access: &[AccessEntry], kind: &str, name: &str) -> Actions {
    access
        .iter()
        .filter(|e| e.kind == kind && e.name == name)
        .fold(Actions::NONE, |acc, e| acc.union(e.granted()))
}

/// Whether the `access` claim holds `registry:catalog:*`.
pub fn grants_catalog(access: &[AccessEntry]) -> bool {
    access
        .iter()
        .any(|e| e.kind == "registry" && e.name == "catalog" && e.actions.iter().any(|a| a == "*"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_scopes_as_clients_send_them() {
        let scope = Scope::parse("repository:alpha/app:pull,push").expect("scope");
        assert_eq!(scope.kind, "repository");
        assert_eq!(scope.name, "alpha/app");
        assert_eq!(scope.actions, ["pull", "push"]);
        assert_eq!(
            scope.requested(),
            [Action::Pull, Action::Push].into_iter().collect()
        );
        let with_port = Scope::parse("repository:localhost:5000/a:pull").expect("scope");
        assert_eq!(with_port.name, "localhost:5000/a");
        let class = Scope::parse("repository(plugin):a/b:pull").expect("scope");
        assert_eq!(
            (class.kind.as_str(), class.name.as_str()),
            ("repository", "a/b")
        );
        let catalog = Scope::parse(CATALOG_SCOPE).expect("scope");
        assert_eq!(catalog.requested(), Actions::all());
        assert_eq!(
            Scope::parse("repository:a:").map(|s| s.actions),
            Some(vec![])
        );
        assert_eq!(Scope::parse("repository"), None);
        assert_eq!(Scope::parse("repository:a"), None);
        assert_eq!(Scope::parse(":a:pull"), None);
        let all = Scope::parse_all(["repository:a:pull repository:b:push", "registry:catalog:*"])
            .expect("scopes");
        assert_eq!(all.len(), 3);
        assert!(Scope::parse_all(["nonsense"]).is_err());
    }

    #[test]
    fn access_claims_grant_only_what_they_name() {
        let access = vec![
            AccessEntry::new("repository", "alpha/app", ["pull".to_owned()]),
            AccessEntry::new("repository", "alpha/app", ["push".to_owned()]),
            AccessEntry::new("repository", "beta/app", ["*".to_owned()]),
        ];
        assert_eq!(
            granted(&access, "repository", "alpha/app"),
            [Action::Pull, Action::Push].into_iter().collect()
        );
        assert_eq!(granted(&access, "repository", "alpha/other"), Actions::NONE);
        assert_eq!(granted(&access, "repository", "beta/app"), Actions::all());
        assert_eq!(granted(&access, "project", "beta"), Actions::NONE);
        assert!(!grants_catalog(&access));
        let catalog = AccessEntry::new("registry", "catalog", ["*".to_owned()]);
        assert!(grants_catalog(&[catalog]));
        assert_eq!(
            repository_scope("a/b", &[Action::Pull, Action::Push]),
            "repository:a/b:pull,push"
        );
    }
}
