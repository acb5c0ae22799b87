//! Logging, the same for every command: to stderr, as JSON (the operator's default, for log
//! pipelines) or text, with colours only when stderr is a terminal, so that a redirected log
//! file holds no escape codes and `grep 'object=Volume'` finds what it should.

use std::io::IsTerminal;

/// How log lines are written.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

/// Sets up logging. `filter` is a level (`info`, `debug`), which keeps the Kubernetes client
/// libraries at `warn`, or a tracing filter (`cloudvol=debug,kube=info`). A filter that does
/// not parse falls back to `info`.
pub fn init_logging(filter: &str, format: LogFormat) {
    let levels = ["trace", "debug", "info", "warn", "error"];
    let filter = if levels.contains(&filter) {
        format!("{filter},kube=warn,kube_runtime=warn,kube_client=warn,tower=warn,hyper=warn")
    } else {
        filter.to_string()
    };
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
