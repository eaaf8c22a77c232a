//! The token endpoint (`GET /auth/token`) of the Docker token flow: Basic credentials (or none)
//! in, a short-lived JWT granting the requested scopes, as far as the rules allow, out.
//!
//! Parameters: `service` (must be `TOKEN_SERVICE` when given), `scope` (repeatable, each may
//! hold several space-separated scopes), `account` (must be the authenticated user when
//! given), `offline_token` and `client_id` (accepted; no refresh tokens are issued, so
//! clients keep using their credentials). A scope the caller may not have is left out of the
//! token, not refused: the registry then answers the request that needs it with 401 or 403.

use serde::Serialize;

use super::principal::Credentials;
use super::rules::{Action, Actions, Rules, Who};
use super::scope::{AccessEntry, Scope};
use super::token::rfc3339;
use super::{AuthError, Authorizer, Mode, basic_challenge};
use crate::oci::RepositoryName;

/// The token endpoint's answer.
#[derive(Debug, Clone, Serialize)]
pub struct TokenResponse {
    pub token: String,
    /// The same token, under the OAuth2 name.
    pub access_token: String,
    pub expires_in: u64,
    /// RFC 3339.
    pub issued_at: String,
}

impl Authorizer {
    /// Answers a token request: `params` are the query's pairs, in order.
    pub async fn issue_token(
        &self,
        credentials: &Credentials,
        params: &[(String, String)],
    ) -> Result<TokenResponse, AuthError> {
        let Mode::Token(mode) = &*self.0 else {
            return Err(AuthError::NoTokenEndpoint);
        };
        let Some(rules) = &mode.rules else {
            return Err(AuthError::NoTokenEndpoint);
        };
        let param = |name: &'static str| {
            params
                .iter()
                .filter(move |(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        if let Some(service) = param("service").next()
            && service != mode.keys.service()
        {
            return Err(AuthError::BadTokenRequest(format!(
                "unknown service {service:?}"
            )));
        }
        let refused = || AuthError::Unauthenticated {
            challenge: basic_challenge(&mode.basic_realm),
        };
        let user = match credentials {
            Credentials::None => None,
            Credentials::Basic { user, password, .. } => {
                let valid = match &mode.users {
                    Some(users) => users.verify(user, password).await,
                    None => false,
                };
                if !valid {
                    tracing::info!(user = %user, "token request: login failed");
                    return Err(refused());
                }
                Some(user.as_str())
            }
            _ => return Err(refused()),
        };
        if let Some(account) = param("account").next()
            && user.is_some_and(|user| user != account)
        {
            return Err(AuthError::BadTokenRequest(
                "account does not match the credentials".to_owned(),
            ));
        }
        let scopes = Scope::parse_all(param("scope")).map_err(AuthError::BadTokenRequest)?;
        let who = user.map_or(Who::Anonymous, Who::User);
        let access = grant(rules, who, &scopes);
        let issued = mode.keys.issue(user.unwrap_or(""), access, mode.ttl)?;
        let token = issued.token.expose().clone();
        Ok(TokenResponse {
            access_token: token.clone(),
            token,
            expires_in: issued.expires_in,
            issued_at: rfc3339(issued.issued_at),
        })
    }
}

/// The access entries to put in a token: each scope, cut down to what the rules allow.
fn grant(rules: &Rules, who: Who<'_>, scopes: &[Scope]) -> Vec<AccessEntry> {
    let registry_actions: Actions = [Action::Pull, Action::Push, Action::Delete]
        .into_iter()
        .collect();
    // `push` on a project: the management API's deletes.
    let management_actions: Actions = [Action::List, Action::Get, Action::Push]
        .into_iter()
        .collect();
    let mut access = Vec::new();
    for scope in scopes {
        let actions = match scope.kind.as_str() {
            "repository" => match RepositoryName::parse(&scope.name) {
                Ok(name) => rules
                    .allowed(who, name.project())
                    .intersection(scope.requested())
                    .intersection(registry_actions),
                Err(_) => continue,
            },
            "project"
                if RepositoryName::parse(&scope.name).is_ok() && !scope.name.contains('/') =>
            {
                rules
                    .allowed(who, &scope.name)
                    .intersection(scope.requested())
                    .intersection(management_actions)
            }
            "registry" if scope.name == "catalog" && scope.actions.iter().any(|a| a == "*") => {
                access.push(AccessEntry::new("registry", "catalog", ["*".to_owned()]));
                continue;
            }
            _ => continue,
        };
        if !actions.is_empty() {
            let names = actions.iter().map(|a| a.as_str().to_owned());
            access.push(AccessEntry::new(&scope.kind, &scope.name, names));
        }
    }
    access
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_only_what_the_rules_allow() {
        let rules = Rules::from_json(
            r#"{"rules":[
                {"subjects":["user:alice"],"projects":["alpha"],"actions":["pull","push","list"]},
                {"subjects":["anonymous"],"projects":["public"],"actions":["pull"]}
            ]}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let scopes = Scope::parse_all([
            "repository:alpha/app:pull,push,delete",
            "repository:beta/app:pull",
            "repository:public/x:*",
            "repository:Bad_Name:pull",
            "registry:catalog:*",
            "project:alpha:list,get",
            "something:else:pull",
        ])
        .unwrap_or_default();
        let alice = grant(&rules, Who::User("alice"), &scopes);
        assert_eq!(
            alice,
            vec![
                AccessEntry::new("repository", "alpha/app", ["pull".into(), "push".into()]),
                AccessEntry::new("registry", "catalog", ["*".into()]),
                AccessEntry::new("project", "alpha", ["list".into()]),
            ]
        );
        let anonymous = grant(&rules, Who::Anonymous, &scopes);
        assert_eq!(
            anonymous,
            vec![
                AccessEntry::new("repository", "public/x", ["pull".into()]),
                AccessEntry::new("registry", "catalog", ["*".into()]),
            ]
        );
    }
}
