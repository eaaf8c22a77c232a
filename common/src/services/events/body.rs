//! The body of an event: one event object of distribution's notification envelope
//! (`{"events":[…]}`; see its `notifications` documentation), field for field, so that
//! consumers written for distribution read it unchanged, plus OCI 1.1's `artifactType` and
//! `subject` in the target.

use serde::Serialize;

use crate::events::{Action, EventOrigin};
use crate::oci::Descriptor;

/// Where the registry instance that recorded an event runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventSource {
    /// The instance's host name (and port).
    pub addr: String,
    /// Unique per process.
    pub instance_id: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Event<'a> {
    pub id: &'a str,
    pub timestamp: String,
    pub action: Action,
    pub target: Target<'a>,
    pub request: Request<'a>,
    #[serde(skip_serializing_if = "Actor::is_empty")]
    pub actor: Actor<'a>,
    pub source: Source<'a>,
}

/// What the event is about: a descriptor of the content (when there is one) and where it is.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Target<'a> {
    #[serde(skip_serializing_if = "str::is_empty")]
    pub media_type: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub digest: String,
    /// Same as `size` (distribution sends both).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub length: Option<u64>,
    pub repository: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub from_repository: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub url: String,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub tag: &'a str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub references: Vec<Reference<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<Subject>,
}

/// A descriptor a manifest references (distribution's `references`).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Reference<'a> {
    pub media_type: &'a str,
    pub digest: String,
    pub size: u64,
}

impl<'a> Reference<'a> {
    pub fn of(descriptor: &'a Descriptor) -> Self {
        Reference {
            media_type: &descriptor.media_type,
            digest: descriptor.digest.to_string(),
            size: descriptor.size,
        }
    }
}

/// The manifest an artifact refers to.
#[derive(Debug, Serialize)]
pub(super) struct Subject {
    pub digest: String,
}

#[derive(Debug, Serialize)]
pub(super) struct Request<'a> {
    pub id: &'a str,
    pub addr: &'a str,
    pub host: &'a str,
    pub method: &'a str,
    pub useragent: &'a str,
}

impl<'a> Request<'a> {
    pub fn of(origin: &'a EventOrigin) -> Self {
        Request {
            id: &origin.request_id,
            addr: &origin.addr,
            host: &origin.host,
            method: &origin.method,
            useragent: &origin.user_agent,
        }
    }
}

#[derive(Debug, Serialize)]
pub(super) struct Actor<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<&'a str>,
}

impl Actor<'_> {
    fn is_empty(&self) -> bool {
        self.name.is_none()
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Source<'a> {
    pub addr: &'a str,
    #[serde(rename = "instanceID")]
    pub instance_id: &'a str,
}
