//! Logging set-up: readable text by default; Cloud Logging's structured JSON (through
//! `tracing-stackdriver`) with `LOG_FORMAT=json`, the default on Cloud Run.
//!
//! In JSON, every line has `severity`, `time` and `message`; the request line adds Cloud
//! Logging's `httpRequest` object (fields named `http_request.*` are nested there by
//! `tracing-stackdriver`). Trace correlation: [`request_span`] reads `traceparent` (W3C) or
//! else `X-Cloud-Trace-Context` and, when `GOOGLE_CLOUD_PROJECT` is set, makes it the
//! OpenTelemetry parent of the request's span, from which `tracing-stackdriver` writes
//! `logging.googleapis.com/trace` (`projects/<project>/traces/<trace id>`), `…/spanId` and
//! `…/trace_sampled` on every line logged inside that span. A request without those headers
//! runs in no span and its lines name no trace. Only the request span is given to
//! OpenTelemetry, and no exporter is installed: the SDK tracer is there to give the span its
//! own id, nothing is sent anywhere.

use std::sync::OnceLock;

use http::HeaderMap;
use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState, TracerProvider as _,
};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::{EnvFilter, filter_fn};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry};

use crate::config::LogConfig;

/// Name of the span each request runs in; the only span OpenTelemetry sees.
const REQUEST_SPAN: &str = "request";

/// What [`init`] chose, read by the request log layer.
#[derive(Debug, Clone, Copy)]
struct Mode {
    json: bool,
    cloud_trace: bool,
}

static MODE: OnceLock<Mode> = OnceLock::new();
/// Kept alive for the process: the tracer only hands out ids while its provider lives.
static TRACER_PROVIDER: OnceLock<opentelemetry_sdk::trace::TracerProvider> = OnceLock::new();

/// Installs the global subscriber; call once, first thing in `main`.
pub fn init(config: &LogConfig) {
    install(config);
    for note in &config.settings_notes {
        tracing::info!(note = %note, "setting of another registry read");
    }
}

fn install(config: &LogConfig) {
    let filter = EnvFilter::try_new(&config.log_level).unwrap_or_else(|_| EnvFilter::new("info"));
    let json = config.log_format == "json";
    let project = config
        .google_cloud_project
        .clone()
        .filter(|p| json && !p.is_empty());
    let mode = Mode {
        json,
        cloud_trace: project.is_some(),
    };
    let _ = MODE.set(mode);
    if !json {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_ansi(false)
            .init();
        return;
    }
    let stackdriver = tracing_stackdriver::layer().with_writer(std::io::stderr);
    let (stackdriver, otel) = match project {
        Some(project_id) => {
            let provider = TRACER_PROVIDER
                .get_or_init(|| opentelemetry_sdk::trace::TracerProvider::builder().build());
            let otel = tracing_opentelemetry::layer()
                .with_tracer(provider.tracer("registry"))
                .with_location(false)
                .with_threads(false)
                .with_tracked_inactivity(false)
                .with_filter(filter_fn(|meta| {
                    meta.is_span() && meta.name() == REQUEST_SPAN
                }));
            let config = tracing_stackdriver::CloudTraceConfiguration { project_id };
            (stackdriver.with_cloud_trace(config), Some(otel))
        }
        None => (stackdriver, None),
    };
    Registry::default()
        .with(filter)
        .with(otel)
        .with(stackdriver)
        .init();
}

/// Whether log lines are Cloud Logging JSON (the request line then carries `httpRequest`).
pub fn json_enabled() -> bool {
    MODE.get().is_some_and(|m| m.json)
}

/// The span a request runs in when its headers name a trace and trace correlation is on
/// (JSON with `GOOGLE_CLOUD_PROJECT`); otherwise none, so that no line names a trace that
/// does not exist. At `ERROR` level so that it is enabled whatever `LOG_LEVEL` keeps: an error
/// logged during the request must still carry the trace.
pub fn request_span(headers: &HeaderMap) -> tracing::Span {
    if !MODE.get().is_some_and(|m| m.cloud_trace) {
        return tracing::Span::none();
    }
    let Some(trace) = TraceContext::from_headers(headers) else {
        return tracing::Span::none();
    };
    let span = tracing::error_span!(REQUEST_SPAN);
    span.set_parent(trace.otel_context());
    span
}

/// The caller's trace, as `traceparent` or `X-Cloud-Trace-Context` carry it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    /// 16 bytes, never all zero.
    pub trace_id: u128,
    /// The caller's span; 0 when `X-Cloud-Trace-Context` names none.
    pub parent_span_id: u64,
    pub sampled: bool,
}

impl TraceContext {
    /// `traceparent` when valid, else `X-Cloud-Trace-Context`.
    pub fn from_headers(headers: &HeaderMap) -> Option<TraceContext> {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        header("traceparent")
            .and_then(Self::parse_traceparent)
            .or_else(|| header("x-cloud-trace-context").and_then(Self::parse_cloud_trace))
    }

    /// W3C Trace Context: `<version>-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`.
    pub fn parse_traceparent(value: &str) -> Option<TraceContext> {
        let mut parts = value.trim().split('-');
        let version = parts.next()?;
        let (trace, parent, flags) = (parts.next()?, parts.next()?, parts.next()?);
        // Version 00 has exactly four fields; later versions may append more.
        if version.len() != 2 || version == "ff" || (version == "00" && parts.next().is_some()) {
            return None;
        }
        let trace_id = parse_hex(trace, 32)?;
        let parent_span_id = u64::try_from(parse_hex(parent, 16)?).ok()?;
        let flags = u8::try_from(parse_hex(flags, 2)?).ok()?;
        (trace_id != 0 && parent_span_id != 0).then_some(TraceContext {
            trace_id,
            parent_span_id,
            sampled: flags & 1 == 1,
        })
    }

    /// Google's `X-Cloud-Trace-Context: <32 hex trace id>[/<decimal span id>][;o=<0|1>]`.
    pub fn parse_cloud_trace(value: &str) -> Option<TraceContext> {
        let (ids, options) = value.trim().split_once(';').unwrap_or((value.trim(), ""));
        let (trace, span) = ids.split_once('/').unwrap_or((ids, ""));
        let trace_id = parse_hex(trace, 32)?;
        let parent_span_id = if span.is_empty() {
            0
        } else {
            span.parse().ok()?
        };
        (trace_id != 0).then_some(TraceContext {
            trace_id,
            parent_span_id,
            sampled: options.trim() == "o=1",
        })
    }

    fn otel_context(&self) -> opentelemetry::Context {
        let flags = if self.sampled {
            TraceFlags::SAMPLED
        } else {
            TraceFlags::default()
        };
        let parent = SpanContext::new(
            TraceId::from_bytes(self.trace_id.to_be_bytes()),
            SpanId::from_bytes(self.parent_span_id.to_be_bytes()),
            flags,
            true,
            TraceState::default(),
        );
        opentelemetry::Context::new().with_remote_span_context(parent)
    }
}

/// Exactly `digits` hex digits (at most 32) as a number.
fn parse_hex(text: &str, digits: usize) -> Option<u128> {
    (text.len() == digits && text.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| u128::from_str_radix(text, 16).ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

    #[test]
    fn traceparent() {
        let parsed =
            TraceContext::parse_traceparent(&format!("00-{TRACE}-00f067aa0ba902b7-01")).unwrap();
        assert_eq!(format!("{:032x}", parsed.trace_id), TRACE);
        assert_eq!(parsed.parent_span_id, 0x00f0_67aa_0ba9_02b7);
        assert!(parsed.sampled);
        let unsampled =
            TraceContext::parse_traceparent(&format!("00-{TRACE}-00f067aa0ba902b7-00")).unwrap();
        assert!(!unsampled.sampled);
        for bad in [
            format!("00-{}-00f067aa0ba902b7-01", "0".repeat(32)),
            format!("00-{TRACE}-0000000000000000-01"),
            format!("ff-{TRACE}-00f067aa0ba902b7-01"),
            format!("00-{TRACE}-00f067aa0ba902b7-01-extra"),
            format!("00-{TRACE}-00f067aa0ba902b-01"),
            "garbage".to_owned(),
        ] {
            assert_eq!(TraceContext::parse_traceparent(&bad), None, "{bad}");
        }
    }

    #[test]
    fn cloud_trace_context() {
        let parsed = TraceContext::parse_cloud_trace(&format!("{TRACE}/12345;o=1")).unwrap();
        assert_eq!(format!("{:032x}", parsed.trace_id), TRACE);
        assert_eq!(parsed.parent_span_id, 12345);
        assert!(parsed.sampled);
        let bare = TraceContext::parse_cloud_trace(TRACE).unwrap();
        assert_eq!((bare.parent_span_id, bare.sampled), (0, false));
        assert_eq!(TraceContext::parse_cloud_trace("xyz/1;o=1"), None);
        assert_eq!(
            TraceContext::parse_cloud_trace(&format!("{TRACE}/notanumber")),
            None
        );
    }

    #[test]
    fn traceparent_wins_over_cloud_trace_context() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-cloud-trace-context",
            "11111111111111111111111111111111/1;o=1".parse().unwrap(),
        );
        assert_eq!(
            TraceContext::from_headers(&headers).unwrap().trace_id,
            0x1111_1111_1111_1111_1111_1111_1111_1111
        );
        headers.insert(
            "traceparent",
            format!("00-{TRACE}-00f067aa0ba902b7-01").parse().unwrap(),
        );
        assert_eq!(
            format!(
                "{:032x}",
                TraceContext::from_headers(&headers).unwrap().trace_id
            ),
            TRACE
        );
    }
}
