//! The access-rules file: which users, groups, authenticated callers or anonymous callers may
//! do which actions on which projects. Rules only grant; what no rule grants is denied.
//!
//! ```json
//! {
//!   "groups": { "team-a": ["alice", "carol"] },
//!   "rules": [
//!     { "subjects": ["group:team-a", "user:bob"], "projects": ["alpha", "alpha-*"],
//!       "actions": ["pull", "push", "delete", "list", "get"] },
//!     { "subjects": ["authenticated"], "projects": ["{user}"], "actions": ["*"] },
//!     { "subjects": ["anonymous"], "projects": ["public"], "actions": ["pull"] }
//!   ]
//! }
//! ```
//!
//! Subjects: `user:<name>`, `group:<name>` (a group of `groups`), `authenticated` (any caller
//! whose credentials checked out), `anonymous` (a caller without credentials). Projects are
//! patterns over the first path component of a repository name: `*` matches any run of
//! characters, `{user}` the caller's user name. Actions: `pull`, `push`, `delete` (registry
//! API), `list`, `get` (management API), or `*` for all of them.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;

use serde::Deserialize;

/// What a caller may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    /// `GET`/`HEAD` on the registry API.
    Pull,
    /// `POST`/`PUT`/`PATCH` on the registry API.
    Push,
    /// `DELETE` on the registry API.
    Delete,
    /// Listing a project's repositories (management API).
    List,
    /// Reading repository details (management API).
    Get,
}

impl Action {
    pub const ALL: [Action; 5] = [
        Action::Pull,
        Action::Push,
        Action::Delete,
        Action::List,
        Action::Get,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Pull => "pull",
            Action::Push => "push",
            Action::Delete => "delete",
            Action::List => "list",
            Action::Get => "get",
        }
    }

    pub fn parse(raw: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.as_str() == raw)
    }

    /// The action an HTTP method needs on the registry API.
    pub fn of_method(method: &http::Method) -> Action {
        match *method {
            http::Method::GET | http::Method::HEAD => Action::Pull,
            http::Method::DELETE => Action::Delete,
            _ => Action::Push,
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of actions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Actions(u8);

impl Actions {
    pub const NONE: Actions = Actions(0);

    pub fn all() -> Actions {
        Action::ALL.into_iter().collect()
    }

    pub fn contains(self, action: Action) -> bool {
        self.0 & action.bit() != 0
    }

    pub fn insert(&mut self, action: Action) {
        self.0 |= action.bit();
    }

    pub fn union(self, other: Actions) -> Actions {
        Actions(self.0 | other.0)
    }

    pub fn intersection(self, other: Actions) -> Actions {
        Actions(self.0 & other.0)
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The actions in the set, in [`Action::ALL`] order.
    pub fn iter(self) -> impl Iterator<Item = Action> {
        Action::ALL.into_iter().filter(move |a| self.contains(*a))
    }
}

impl FromIterator<Action> for Actions {
    fn from_iter<I: IntoIterator<Item = Action>>(iter: I) -> Self {
        let mut set = Actions::NONE;
        for action in iter {
            set.insert(action);
        }
        set
    }
}

/// Who is asking, as the rules see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who<'a> {
    Anonymous,
    User(&'a str),
}

/// Why the rules file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    #[error("reading {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Invalid { path: String, reason: String },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    #[serde(default)]
    groups: BTreeMap<String, Vec<String>>,
    rules: Vec<RuleEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleEntry {
    subjects: Vec<String>,
    projects: Vec<String>,
    actions: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Subject {
    User(String),
    Group(String),
    Authenticated,
    Anonymous,
}

/// One piece of a project pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Literal(String),
    Star,
    User,
}

#[derive(Debug, Clone)]
struct Pattern(Vec<Piece>);

#[derive(Debug, Clone)]
struct Rule {
    subjects: Vec<Subject>,
    projects: Vec<Pattern>,
    actions: Actions,
}

/// The parsed rules file.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    /// user → the groups listing it.
    memberships: BTreeMap<String, BTreeSet<String>>,
    rules: Vec<Rule>,
}

impl Rules {
    /// Reads and checks a rules file.
    pub fn load(path: &Path) -> Result<Rules, RulesError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| RulesError::Read {
            path: shown.clone(),
            source,
        })?;
        Rules::from_json(&text).map_err(|reason| RulesError::Invalid {
            path: shown,
            reason,
        })
    }

    /// Every authenticated user may do everything on every project; anonymous callers
    /// nothing (`AUTH_USERS_ALL_RIGHTS`).
    pub fn every_user_everything() -> Rules {
        Rules {
            memberships: BTreeMap::new(),
            rules: vec![Rule {
                subjects: vec![Subject::Authenticated],
                projects: vec![Pattern(vec![Piece::Star])],
                actions: Actions::all(),
            }],
        }
    }

    /// Parses the text of a rules file.
    pub fn from_json(text: &str) -> Result<Rules, String> {
        Rules::parse(text).map_err(|e| match e {
            ParseError::Json(e) => e.to_string(),
            ParseError::Invalid(reason) => reason,
        })
    }

    fn parse(text: &str) -> Result<Rules, ParseError> {
        let file: RulesFile = serde_json::from_str(text).map_err(ParseError::Json)?;
        let mut memberships: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (group, members) in &file.groups {
            for member in members {
                memberships
                    .entry(member.clone())
                    .or_default()
                    .insert(group.clone());
            }
        }
        let mut rules = Vec::with_capacity(file.rules.len());
        for (i, entry) in file.rules.into_iter().enumerate() {
            let at = |what: String| ParseError::Invalid(format!("rules[{i}]: {what}"));
            let subjects = entry
                .subjects
                .iter()
                .map(|s| Subject::parse(s, &file.groups).map_err(at))
                .collect::<Result<Vec<_>, _>>()?;
            let projects = entry
                .projects
                .iter()
                .map(|p| Pattern::parse(p).map_err(at))
                .collect::<Result<Vec<_>, _>>()?;
            let mut actions = Actions::NONE;
            for action in &entry.actions {
                match action.as_str() {
                    "*" => actions = Actions::all(),
                    other => actions.insert(Action::parse(other).ok_or_else(|| {
                        at(format!(
                            "unknown action {other:?} (pull, push, delete, list, get or *)"
                        ))
                    })?),
                }
            }
            rules.push(Rule {
                subjects,
                projects,
                actions,
            });
        }
        Ok(Rules { memberships, rules })
    }

    /// Everything `who` may do in `project`.
    pub fn allowed(&self, who: Who<'_>, project: &str) -> Actions {
        let groups = match who {
            Who::User(user) => self.memberships.get(user),
            Who::Anonymous => None,
        };
        self.rules
            .iter()
            .filter(|rule| rule.subjects.iter().any(|s| s.matches(who, groups)))
            .filter(|rule| rule.projects.iter().any(|p| p.matches(project, who)))
            .fold(Actions::NONE, |acc, rule| acc.union(rule.actions))
    }
}

enum ParseError {
    Json(serde_json::Error),
    Invalid(String),
}

impl Subject {
    fn parse(raw: &str, groups: &BTreeMap<String, Vec<String>>) -> Result<Subject, String> {
        match raw.split_once(':') {
            Some(("user", name)) if !name.is_empty() => Ok(Subject::User(name.to_owned())),
            Some(("group", name)) if groups.contains_key(name) => {
                Ok(Subject::Group(name.to_owned()))
            }
            Some(("group", name)) => Err(format!("group {name:?} is not defined in groups")),
            None if raw == "authenticated" => Ok(Subject::Authenticated),
            None if raw == "anonymous" => Ok(Subject::Anonymous),
            _ => Err(format!(
                "subject {raw:?}: expected user:<name>, group:<name>, authenticated or anonymous"
            )),
        }
    }

    fn matches(&self, who: Who<'_>, groups: Option<&BTreeSet<String>>) -> bool {
        match (self, who) {
            (Subject::Anonymous, Who::Anonymous) => true,
            (Subject::Authenticated, Who::User(_)) => true,
            (Subject::User(name), Who::User(user)) => name == user,
            (Subject::Group(group), Who::User(_)) => groups.is_some_and(|g| g.contains(group)),
            _ => false,
        }
    }
}

impl Pattern {
    fn parse(raw: &str) -> Result<Pattern, String> {
        if raw.is_empty() || raw.contains('/') {
            return Err(format!(
                "project pattern {raw:?}: expected a project name (the first component of a \
                 repository name), with * and {{user}} as wildcards"
            ));
        }
        let mut pieces = Vec::new();
        let mut rest = raw;
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix("{user}") {
                pieces.push(Piece::User);
                rest = after;
            } else if let Some(after) = rest.strip_prefix('*') {
                if pieces.last() != Some(&Piece::Star) {
                    pieces.push(Piece::Star);
                }
                rest = after;
            } else {
                let end = rest
                    .find(['*', '{'])
                    .filter(|&i| i > 0)
                    .unwrap_or(rest.len());
                pieces.push(Piece::Literal(rest[..end].to_owned()));
                rest = &rest[end..];
            }
        }
        Ok(Pattern(pieces))
    }

    fn matches(&self, project: &str, who: Who<'_>) -> bool {
        let user = match who {
            Who::User(user) => Some(user),
            Who::Anonymous => None,
        };
        matches_from(&self.0, project, user)
    }
}

/// Glob matching over pieces; `{user}` never matches an anonymous caller.
fn matches_from(pieces: &[Piece], text: &str, user: Option<&str>) -> bool {
    match pieces.split_first() {
        None => text.is_empty(),
        Some((Piece::Literal(lit), rest)) => text
            .strip_prefix(lit.as_str())
            .is_some_and(|t| matches_from(rest, t, user)),
        Some((Piece::User, rest)) => user
            .and_then(|u| text.strip_prefix(u))
            .is_some_and(|t| matches_from(rest, t, user)),
        Some((Piece::Star, rest)) => (0..=text.len())
            .filter(|&i| text.is_char_boundary(i))
            .any(|i| matches_from(rest, &text[i..], user)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"{
      "groups": { "team-a": ["alice", "carol"] },
      "rules": [
        { "subjects": ["group:team-a", "user:bob"], "projects": ["alpha", "alpha-*"],
          "actions": ["pull", "push"] },
        { "subjects": ["user:carol"], "projects": ["alpha"], "actions": ["delete"] },
        { "subjects": ["authenticated"], "projects": ["{user}", "home-{user}-*"], "actions": ["*"] },
        { "subjects": ["anonymous"], "projects": ["public"], "actions": ["pull"] }
      ]
    }"#;

    fn set(actions: &[Action]) -> Actions {
        actions.iter().copied().collect()
    }

    #[test]
    fn users_groups_and_wildcards() {
        let rules = Rules::parse(EXAMPLE).unwrap_or_else(|_| panic!("example parses"));
        use Action::*;
        let alice = Who::User("alice");
        assert_eq!(rules.allowed(alice, "alpha"), set(&[Pull, Push]));
        assert_eq!(rules.allowed(alice, "alpha-tools"), set(&[Pull, Push]));
        assert_eq!(rules.allowed(alice, "alphabet"), Actions::NONE);
        assert_eq!(rules.allowed(alice, "public"), Actions::NONE);
        assert_eq!(
            rules.allowed(Who::User("carol"), "alpha"),
            set(&[Pull, Push, Delete])
        );
        assert_eq!(
            rules.allowed(Who::User("bob"), "alpha-x"),
            set(&[Pull, Push])
        );
        assert_eq!(rules.allowed(Who::User("dave"), "alpha"), Actions::NONE);
        assert_eq!(rules.allowed(Who::User("dave"), "dave"), Actions::all());
        assert_eq!(
            rules.allowed(Who::User("dave"), "home-dave-x"),
            Actions::all()
        );
        assert_eq!(rules.allowed(Who::User("dave"), "davex"), Actions::NONE);
        assert_eq!(rules.allowed(Who::Anonymous, "public"), set(&[Pull]));
        assert_eq!(rules.allowed(Who::Anonymous, "alpha"), Actions::NONE);
        // `authenticated` is not anonymous, and `{user}` never matches an anonymous caller.
        assert_eq!(rules.allowed(Who::User("eve"), "public"), Actions::NONE);
    }

    #[test]
    fn user_names_are_literal_in_patterns() {
        let rules = Rules::parse(
            r#"{"rules":[{"subjects":["authenticated"],"projects":["{user}"],"actions":["pull"]}]}"#,
        )
        .unwrap_or_else(|_| panic!("parses"));
        assert_eq!(rules.allowed(Who::User("a*"), "abc"), Actions::NONE);
        assert_eq!(rules.allowed(Who::User("a*"), "a*"), set(&[Action::Pull]));
    }

    #[test]
    fn mistakes_are_reported() {
        for (text, needle) in [
            (
                r#"{"rules":[{"subjects":["alice"],"projects":["a"],"actions":["pull"]}]}"#,
                "subject \"alice\"",
            ),
            (
                r#"{"rules":[{"subjects":["group:x"],"projects":["a"],"actions":["pull"]}]}"#,
                "group \"x\"",
            ),
            (
                r#"{"rules":[{"subjects":["anonymous"],"projects":["a"],"actions":["read"]}]}"#,
                "unknown action \"read\"",
            ),
            (
                r#"{"rules":[{"subjects":["anonymous"],"projects":["a/b"],"actions":["pull"]}]}"#,
                "project pattern",
            ),
        ] {
            match Rules::parse(text) {
                Err(ParseError::Invalid(reason)) => assert!(reason.contains(needle), "{reason}"),
                _ => panic!("{text} should be rejected"),
            }
        }
        assert!(matches!(
            Rules::parse(r#"{"rules":[],"users":{}}"#),
            Err(ParseError::Json(_))
        ));
    }

    #[test]
    fn actions_of_methods() {
        use http::Method;
        assert_eq!(Action::of_method(&Method::GET), Action::Pull);
        assert_eq!(Action::of_method(&Method::HEAD), Action::Pull);
        assert_eq!(Action::of_method(&Method::POST), Action::Push);
        assert_eq!(Action::of_method(&Method::PUT), Action::Push);
        assert_eq!(Action::of_method(&Method::PATCH), Action::Push);
        assert_eq!(Action::of_method(&Method::DELETE), Action::Delete);
    }
}
