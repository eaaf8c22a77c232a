//! Logging set-up: readable text by default, JSON lines with `LOG_FORMAT=json`.

use tracing_subscriber::EnvFilter;

use crate::config::LogConfig;

/// Installs the global subscriber; call once, first thing in `main`.
pub fn init(config: &LogConfig) {
    let filter = EnvFilter::try_new(&config.log_level).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if config.log_format == "json" {
        builder.json().flatten_event(true).init();
    } else {
        builder.with_ansi(false).init();
    }
}
