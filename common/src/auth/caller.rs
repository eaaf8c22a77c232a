//! The caller of one request, and the questions handlers may ask about it: may it do this to
//! that repository, see this catalog entry, act on that project.

use std::sync::Arc;

use super::principal::Principal;
use super::rules::{Action, Who};
use super::scope::{self, CATALOG_SCOPE, repository_scope};
use super::{AuthError, Authorizer, Mode, basic_challenge, quoted};
use crate::auth::delegated::Answer;
use crate::oci::RepositoryName;

/// Who sent a request, with the authorizer that judges what they ask.
#[derive(Debug, Clone)]
pub struct Caller {
    auth: Authorizer,
    principal: Arc<Principal>,
    /// The token endpoint as this request reached the registry (when `TOKEN_REALM` is unset).
    request_realm: Option<String>,
}

/// What a right is asked on.
#[derive(Debug, Clone, Copy)]
enum Resource<'a> {
    Repository(&'a str),
    Project(&'a str),
}

impl Resource<'_> {
    fn project(&self) -> &str {
        match self {
            Resource::Repository(name) => name.split('/').next().unwrap_or(name),
            Resource::Project(project) => project,
        }
    }

    /// The token `access` type and name that grant rights on it.
    fn token_resource(&self) -> (&'static str, &str) {
        match self {
            Resource::Repository(name) => ("repository", name),
            Resource::Project(project) => ("project", project),
        }
    }

    /// The scope a client should ask a token for.
    fn scope(&self, action: Action) -> String {
        match (self, action) {
            // As distribution does: a pusher needs to read what it pushes (HEAD before PUT).
            (Resource::Repository(name), Action::Push) => {
                repository_scope(name, &[Action::Pull, Action::Push])
            }
            (Resource::Repository(name), action) => repository_scope(name, &[action]),
            (Resource::Project(project), action) => format!("project:{project}:{action}"),
        }
    }
}

fn who(user: &str) -> Who<'_> {
    if user.is_empty() {
        Who::Anonymous
    } else {
        Who::User(user)
    }
}

impl Caller {
    pub fn new(auth: Authorizer, principal: Principal, request_realm: Option<String>) -> Caller {
        Caller {
            auth,
            principal: Arc::new(principal),
            request_realm,
        }
    }

    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    pub fn authorizer(&self) -> &Authorizer {
        &self.auth
    }

    /// 401 with the mode's challenge; for bearer tokens, naming `scope` and `error`.
    fn challenge(&self, scope: Option<&str>, error: Option<&str>) -> AuthError {
        let challenge = match &*self.auth.0 {
            Mode::Token(mode) => {
                let realm = mode
                    .realm
                    .as_deref()
                    .or(self.request_realm.as_deref())
                    .unwrap_or("/auth/token");
                let mut challenge = format!(
                    "Bearer realm={},service={}",
                    quoted(realm),
                    quoted(mode.keys.service())
                );
                for (name, value) in [("scope", scope), ("error", error)] {
                    if let Some(value) = value {
                        challenge.push_str(&format!(",{name}={}", quoted(value)));
                    }
                }
                challenge
            }
            Mode::Basic { realm, .. } | Mode::Delegated { realm, .. } => basic_challenge(realm),
            Mode::None => basic_challenge("registry"),
        };
        AuthError::Unauthenticated { challenge }
    }

    /// The challenge for a caller that sent no usable credentials.
    fn unauthenticated(&self, scope: Option<&str>) -> AuthError {
        let error = matches!(*self.principal, Principal::Rejected).then_some("invalid_token");
        self.challenge(scope, error)
    }

    /// `GET /v2/` and every path that is not a repository's: valid credentials, no right.
    pub async fn authenticated(&self) -> Result<(), AuthError> {
        match (&*self.auth.0, &*self.principal) {
            (Mode::None, _)
            | (Mode::Basic { .. }, Principal::User(_))
            | (Mode::Token(_), Principal::Token(_)) => Ok(()),
            (Mode::Delegated { service, .. }, Principal::Delegated { header, .. }) => {
                match service.ask(header, None, "registry.login").await? {
                    Answer::Allowed => Ok(()),
                    Answer::Denied => Err(AuthError::Denied),
                    Answer::Unauthenticated => Err(self.unauthenticated(None)),
                }
            }
            _ => Err(self.unauthenticated(None)),
        }
    }

    /// `action` on the repository `name`, or the refusal to answer.
    pub async fn authorize(&self, name: &RepositoryName, action: Action) -> Result<(), AuthError> {
        self.decide(Resource::Repository(name.as_str()), action)
            .await
    }

    /// Whether `action` on `name` is allowed; only a failing permission service is an error.
    pub async fn may(&self, name: &RepositoryName, action: Action) -> Result<bool, AuthError> {
        allowed(self.authorize(name, action).await)
    }

    /// `action` on a whole project (the management API's `list` and `get`, or a registry
    /// action across a project's repositories). Credentials that did not check out get the
    /// mode's 401, whatever the rules say.
    pub async fn authorize_project(&self, project: &str, action: Action) -> Result<(), AuthError> {
        self.decide(Resource::Project(project), action).await
    }

    async fn decide(&self, resource: Resource<'_>, action: Action) -> Result<(), AuthError> {
        let project = resource.project();
        match (&*self.auth.0, &*self.principal) {
            (Mode::None, _) => Ok(()),
            (Mode::Basic { rules, .. }, principal) => {
                let who = match principal {
                    Principal::User(user) => Who::User(user),
                    Principal::Anonymous => Who::Anonymous,
                    _ => return Err(self.unauthenticated(None)),
                };
                if rules.allowed(who, project).contains(action) {
                    Ok(())
                } else if who == Who::Anonymous {
                    Err(self.unauthenticated(None))
                } else {
                    Err(AuthError::Denied)
                }
            }
            (Mode::Token(mode), Principal::Token(token)) => {
                let (kind, name) = resource.token_resource();
                if scope::granted(&token.access, kind, name).contains(action) {
                    return Ok(());
                }
                let scope = resource.scope(action);
                if !token.own {
                    // Its issuer may grant more when asked.
                    return Err(self.challenge(Some(&scope), Some("insufficient_scope")));
                }
                if token.subject.is_empty() {
                    // Anonymous: logging in may help.
                    return Err(self.challenge(Some(&scope), None));
                }
                let could = mode.rules.as_ref().is_some_and(|rules| {
                    rules
                        .allowed(Who::User(&token.subject), project)
                        .contains(action)
                });
                if could {
                    Err(self.challenge(Some(&scope), Some("insufficient_scope")))
                } else {
                    Err(AuthError::Denied)
                }
            }
            (Mode::Token(_), _) => Err(self.unauthenticated(Some(&resource.scope(action)))),
            (Mode::Delegated { service, .. }, Principal::Delegated { header, .. }) => {
                // The Deploys.app API's names: deletes need `registry.push` there.
                let permission = match action {
                    Action::Delete => "registry.push".to_owned(),
                    other => format!("registry.{other}"),
                };
                match service.ask(header, Some(project), &permission).await? {
                    Answer::Allowed => Ok(()),
                    Answer::Denied => Err(AuthError::Denied),
                    Answer::Unauthenticated => Err(self.unauthenticated(None)),
                }
            }
            (Mode::Delegated { .. }, _) => Err(self.unauthenticated(None)),
        }
    }

    /// `GET /v2/_catalog`: an authenticated caller (with a token: one granting
    /// `registry:catalog:*`). Which entries it sees is [`Caller::may_see`]'s answer.
    pub async fn authorize_catalog(&self) -> Result<(), AuthError> {
        match (&*self.auth.0, &*self.principal) {
            (Mode::Token(_), Principal::Token(token)) if scope::grants_catalog(&token.access) => {
                Ok(())
            }
            (Mode::Token(_), Principal::Token(_)) => {
                Err(self.challenge(Some(CATALOG_SCOPE), Some("insufficient_scope")))
            }
            (Mode::Token(_), _) => Err(self.unauthenticated(Some(CATALOG_SCOPE))),
            _ => self.authenticated().await,
        }
    }

    /// Whether the catalog shows `name` to this caller: whether it may pull it. A token of this
    /// registry's own is judged by the rules for its subject (it was issued to that user, who
    /// asked for the catalog); another issuer's token by the repositories it grants.
    pub async fn may_see(&self, name: &str) -> Result<bool, AuthError> {
        if let (Mode::Token(mode), Principal::Token(token)) = (&*self.auth.0, &*self.principal) {
            let granted = scope::granted(&token.access, "repository", name).contains(Action::Pull);
            let by_rules = token.own
                && mode.rules.as_ref().is_some_and(|rules| {
                    rules
                        .allowed(who(&token.subject), Resource::Repository(name).project())
                        .contains(Action::Pull)
                });
            return Ok(granted || by_rules);
        }
        allowed(self.decide(Resource::Repository(name), Action::Pull).await)
    }
}

/// `Ok(true)` for access, `Ok(false)` for a refusal, the error when no answer could be had.
fn allowed(decision: Result<(), AuthError>) -> Result<bool, AuthError> {
    match decision {
        Ok(()) => Ok(true),
        Err(AuthError::Unavailable(e)) => Err(AuthError::Unavailable(e)),
        Err(_) => Ok(false),
    }
}
