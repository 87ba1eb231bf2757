//! `trialport serve`: the HTTP service (the Exports API, TLS, metrics, graceful shutdown) over the home's engine.
//! Everything it does is `trialport_server::serve`; this module only turns the arguments into its options.

use crate::args::ServeArgs;
use crate::engine_cmds::Ctx;
use crate::output;
use serde_json::json;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use trialport_core::error::Reason;
use trialport_core::{Error, Result};
use trialport_server::home::HomeChecks;
use trialport_server::{ServeOptions, ServiceOptions};

/// `trialport serve`: runs until SIGTERM or SIGINT, then drains and exits 0. Once listening it prints
/// `{"listen": ADDR, "metrics": ADDR}` as one JSON line on stdout (logs are JSON lines on stderr).
///
/// # Errors
/// Bad addresses or TLS files (EXP002), a home that cannot be opened, listeners that cannot be bound (EXP005).
pub fn serve(ctx: &Ctx, args: &ServeArgs) -> Result<ExitCode> {
    let addr = |text: &str, field: &str| -> Result<SocketAddr> {
        text.parse().map_err(|_| {
            Error::validation(
                Reason::InvalidAddress,
                "an address is IP:PORT, e.g. 127.0.0.1:8080",
            )
            .with_field(field)
        })
    };
    let listen = addr(&args.listen, "listen")?;
    let metrics_listen = match args.metrics_listen.as_deref() {
        Some("off") => None,
        Some(text) => Some(addr(text, "metrics_listen")?),
        None => Some(addr(
            trialport_server::serve::DEFAULT_METRICS_LISTEN,
            "metrics_listen",
        )?),
    };
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(c), Some(k)) => Some((c.clone(), k.clone())),
        _ => None,
    };
    let home = ctx.home()?;
    let hook = Arc::new(trialport_server::metrics::MetricsHook::new());
    let mut builder = trialport_formats::home::engine_builder(home)?.audit_hook(hook);
    if let Some(n) = args.workers {
        builder = builder.workers(n);
    }
    let engine = builder.build()?;
    // A service runs until it is stopped: loose modes on the home are said on stderr when it starts.
    for w in engine.warnings() {
        output::warning(w);
    }
    output::flush_warnings();
    // Opened after the engine: the engine's store (keyed by the home's secret) upgrades a file of an older version
    // (row MACs, signers' records, the study registry and its adoption), never the checks' plain one.
    let checks = Arc::new(HomeChecks::open(home)?);
    let service = ServiceOptions {
        readiness: Some(checks.clone()),
        ..ServiceOptions::default()
    };
    let options = ServeOptions {
        listen,
        tls,
        insecure_listen: args.insecure_listen,
        metrics_listen,
        drain: Duration::from_secs_f64(args.drain_seconds.clamp(0.0, 3600.0)),
        service,
        job_counts: Some(checks),
        on_ready: Some(Box::new(|api, metrics| {
            let _ = output::json_line(&json!({"listen": api.to_string(),
                "metrics": metrics.map(|m| m.to_string())}));
        })),
    };
    trialport_server::serve(engine, options)?;
    Ok(ExitCode::SUCCESS)
}
