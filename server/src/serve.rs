//! [`serve`]: the router on a listener until SIGTERM or SIGINT, as `trialport serve` runs it.
//!
//! - TLS 1.2 and 1.3 only (rustls implements nothing older) with the ring provider, HTTP/1.1 and HTTP/2 (ALPN
//!   `h2`, `http/1.1`), from PEM certificate chain and key files. Without TLS the service listens only on a
//!   loopback address unless `insecure_listen` says otherwise; HTTP/2 then needs prior knowledge.
//! - Prometheus metrics on their own listener at `/metrics` (never on the API listener).
//! - JSON logs on standard error through `tracing`: one line per request (see the crate's middleware).
//! - Graceful shutdown: on SIGTERM or SIGINT `/readyz` turns 503, the listener stops accepting, in-flight requests
//!   get up to `drain` to finish (then their connections are closed), and the engine is dropped, which stops the
//!   workers and hands a running job back (`queued`). The audit trail needs no flush: every event is fsynced
//!   before the call that made it returns.

use crate::{router_with, JobCounts, ServiceOptions};
use axum::routing::get;
use axum::Router;
use axum_server::tls_rustls::RustlsConfig;
use axum_server::Handle;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use trialport_core::engine::Engine;
use trialport_core::error::Reason;
use trialport_core::{Error, Result};

/// The default API listener.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// The default metrics listener.
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9464";
/// The default bound on draining in-flight requests at shutdown.
pub const DEFAULT_DRAIN: Duration = Duration::from_secs(30);

/// What [`ServeOptions::on_ready`] is called with: the API's address and the metrics listener's, once bound.
pub type OnReady = Box<dyn FnOnce(SocketAddr, Option<SocketAddr>) + Send>;

/// Where and how [`serve`] listens.
pub struct ServeOptions {
    /// The API listener (port 0 picks a free port; see `on_ready`).
    pub listen: SocketAddr,
    /// PEM files of the certificate chain and the private key: TLS when given.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Allows plain HTTP on a non-loopback address.
    pub insecure_listen: bool,
    /// The metrics listener (`None`: no metrics listener).
    pub metrics_listen: Option<SocketAddr>,
    /// The bound on draining in-flight requests at shutdown.
    pub drain: Duration,
    /// What the router serves with (body limit, readiness).
    pub service: ServiceOptions,
    /// Read for the `trialport_jobs` gauge at each scrape.
    pub job_counts: Option<Arc<dyn JobCounts>>,
    /// Called once both listeners are bound, with their addresses.
    pub on_ready: Option<OnReady>,
}

impl std::fmt::Debug for ServeOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeOptions")
            .field("listen", &self.listen)
            .field("tls", &self.tls.is_some())
            .field("insecure_listen", &self.insecure_listen)
            .field("metrics_listen", &self.metrics_listen)
            .field("drain", &self.drain)
            .finish_non_exhaustive()
    }
}

/// Serves `engine` until SIGTERM or SIGINT, then shuts down gracefully (see the module docs) and returns.
///
/// # Errors
/// EXP002 `insecure_listen` for plain HTTP on a non-loopback address without `insecure_listen`; EXP002
/// `invalid_tls` for unreadable certificate or key files; EXP005 `listen_failed` when a listener cannot be bound,
/// `metrics_failed` when the metrics recorder cannot be installed.
pub fn serve(engine: Engine, mut options: ServeOptions) -> Result<()> {
    if options.tls.is_none() && !options.listen.ip().is_loopback() && !options.insecure_listen {
        return Err(Error::validation(
            Reason::InsecureListen,
            "plain HTTP is served only on a loopback address: give --tls-cert and --tls-key, or --insecure-listen",
        )
        .with_field("listen"));
    }
    let tls = options
        .tls
        .as_ref()
        .map(|(cert, key)| tls_config(cert, key))
        .transpose()?;
    init_logs();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("trialport-http")
        .build()
        .map_err(|e| Error::io("cannot start the HTTP runtime", &e))?;
    let engine = Arc::new(engine);
    let shutting_down = options.service.shutting_down.clone();
    let app = router_with(engine.clone(), options.service.clone());
    let drain = options.drain;
    let result = runtime.block_on(async {
        let api = Handle::<SocketAddr>::new();
        let api_server = {
            let service = app.into_make_service();
            let handle = api.clone();
            let listen = options.listen;
            match tls {
                Some(config) => tokio::spawn(async move {
                    axum_server::bind_rustls(listen, config)
                        .handle(handle)
                        .serve(service)
                        .await
                }),
                None => tokio::spawn(async move {
                    axum_server::bind(listen)
                        .handle(handle)
                        .serve(service)
                        .await
                }),
            }
        };
        let Some(api_addr) = api.listening().await else {
            return Err(listen_failed(api_server.await));
        };
        let metrics = Handle::<SocketAddr>::new();
        let mut metrics_server = None;
        let mut metrics_addr = None;
        if let Some(listen) = options.metrics_listen {
            let handle = crate::metrics::install_prometheus()
                .map_err(|m| Error::server(Reason::MetricsFailed, m))?;
            let counts = options.job_counts.clone();
            let app = Router::new().route(
                "/metrics",
                get(move || {
                    let handle = handle.clone();
                    let counts = counts.clone();
                    async move {
                        tokio::task::spawn_blocking(move || {
                            crate::metrics::render(&handle, counts.as_deref())
                        })
                        .await
                        .unwrap_or_default()
                    }
                }),
            );
            let h = metrics.clone();
            let server = tokio::spawn(async move {
                axum_server::bind(listen)
                    .handle(h)
                    .serve(app.into_make_service())
                    .await
            });
            let Some(addr) = metrics.listening().await else {
                api.shutdown();
                return Err(listen_failed(server.await));
            };
            metrics_addr = Some(addr);
            metrics_server = Some(server);
        }
        tracing::info!(target: "trialport::http", listen = %api_addr,
            metrics = metrics_addr.map(|a| a.to_string()).unwrap_or_default(),
            tls = options.tls.is_some(), "serving");
        if let Some(ready) = options.on_ready.take() {
            ready(api_addr, metrics_addr);
        }
        shutdown_signal().await;
        tracing::info!(target: "trialport::http", drain_seconds = drain.as_secs_f64(),
            in_flight = api.connection_count(), "shutting down");
        shutting_down.store(true, Ordering::SeqCst);
        api.graceful_shutdown(Some(drain));
        let _ = api_server.await;
        metrics.graceful_shutdown(Some(Duration::from_secs(1)));
        if let Some(s) = metrics_server {
            let _ = s.await;
        }
        Ok(())
    });
    // Requests cut off at the drain limit may still hold the engine on the blocking pool for a moment: their
    // streams stop at the next chunk, once they see the connection gone.
    runtime.shutdown_timeout(Duration::from_secs(5));
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut engine = engine;
    loop {
        match Arc::try_unwrap(engine) {
            Ok(e) => {
                // Stops the workers; a job they were running goes back to `queued`.
                drop(e);
                break;
            }
            Err(shared) if Instant::now() < deadline => {
                engine = shared;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(shared) => {
                // A request still holds the engine: stop its workers all the same, so that their jobs go back
                // to the queue now rather than when their leases expire.
                let still_running = shared.shutdown(Duration::from_secs(10));
                tracing::warn!(target: "trialport::http", still_running,
                    "engine still in use after the drain limit: workers stopped without it");
                break;
            }
        }
    }
    tracing::info!(target: "trialport::http", "stopped");
    result
}

/// EXP005 `listen_failed` from a server task that ended before it listened.
fn listen_failed(ended: std::result::Result<std::io::Result<()>, tokio::task::JoinError>) -> Error {
    let kind = match ended {
        Ok(Err(e)) => format!("{:?}", e.kind()),
        _ => "unknown".into(),
    };
    Error::server(Reason::ListenFailed, "cannot listen on the address").with_detail("kind", kind)
}

/// Waits for SIGTERM or SIGINT.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

/// JSON logs on standard error (once per process); `TRIALPORT_LOG=debug|info|warn|error|off` sets the level
/// (default `info`).
fn init_logs() {
    use tracing_subscriber::filter::LevelFilter;
    let level = match std::env::var("TRIALPORT_LOG").as_deref() {
        Ok("off") => LevelFilter::OFF,
        Ok("error") => LevelFilter::ERROR,
        Ok("warn") => LevelFilter::WARN,
        Ok("debug") => LevelFilter::DEBUG,
        Ok("trace") => LevelFilter::TRACE,
        _ => LevelFilter::INFO,
    };
    let _ = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .try_init();
}

/// The TLS configuration: TLS 1.2 and 1.3 with the ring provider, ALPN `h2` then `http/1.1`.
///
/// # Errors
/// EXP002 `invalid_tls` (field `tls_cert` or `tls_key`) for files that cannot be read or hold no certificate or
/// key, or a key that does not match.
fn tls_config(cert: &std::path::Path, key: &std::path::Path) -> Result<RustlsConfig> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let bad = |field: &str, message: &str| {
        Error::validation(Reason::InvalidTls, message).with_field(field)
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|_| bad("tls_cert", "the certificate file cannot be read"))?
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| bad("tls_cert", "the certificate file is not PEM"))?;
    if certs.is_empty() {
        return Err(bad("tls_cert", "the certificate file holds no certificate"));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|_| bad("tls_key", "the key file holds no readable private key"))?;
    // ring, the one crypto provider of the workspace; rustls marks it deprecated for lacking post-quantum key
    // exchange (aws-lc-rs has it): switching is a workspace-wide choice, not this module's.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|_| bad("tls_cert", "the TLS versions cannot be configured"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|_| bad("tls_key", "the key does not suit the certificate"))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(RustlsConfig::from_config(Arc::new(config)))
}
