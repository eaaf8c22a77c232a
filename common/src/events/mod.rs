//! Registry events: what happened to a repository ([`Action`]), who asked ([`EventOrigin`]),
//! and where events go ([`delivery`]). The outbox rows live in `metadata::events`; the
//! services write them with each change and deliver them (`services::events`).

pub mod delivery;
mod origin;

pub use origin::EventOrigin;

/// What an event reports, as distribution's notifications name it (`"push"`, `"pull"`,
/// `"delete"`, `"mount"`); also the last token of the NATS subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Push,
    Pull,
    Delete,
    Mount,
}

impl Action {
    /// Every action, in the order the documentation lists them.
    pub const ALL: [Action; 4] = [Action::Push, Action::Pull, Action::Delete, Action::Mount];

    /// The wire name (`"push"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Push => "push",
            Action::Pull => "pull",
            Action::Delete => "delete",
            Action::Mount => "mount",
        }
    }

    /// The action of a wire name (exact, lowercase), or `None`.
    pub fn parse(s: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::Action;

    #[test]
    fn names_round_trip_and_match_serde() {
        for action in Action::ALL {
            assert_eq!(Action::parse(action.as_str()), Some(action));
            assert_eq!(
                serde_json::to_string(&action).unwrap(),
                format!("\"{action}\"")
            );
        }
        assert_eq!(Action::parse("Push"), None);
        assert_eq!(Action::parse(""), None);
    }
}
