//! Wiring the configuration into a running limb.

use std::sync::Arc;

use tokio::sync::watch;

use crate::adaptors::CompileCache;
use crate::capabilities::{Backends, Limits, Policy};
use crate::config::{Gpio, ListenAddr, Output, RuntimeArgs, StandaloneArgs};
use crate::engine::{CpuSettings, Runtime, Settings};
use crate::standalone::{Standalone, output};
use crate::supervisor::{Context, RestartPolicy};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Engine(#[from] crate::engine::Error),
    #[error("cannot read the policy file {path}")]
    PolicyFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid policy {path}: {}", .errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
    Policy {
        path: String,
        errors: Vec<crate::capabilities::policy::Error>,
    },
    #[error("{path} is not a folder")]
    NotADir { path: String },
    #[error("cannot serve the admin endpoint")]
    Admin(#[source] std::io::Error),
    #[cfg(feature = "cluster")]
    #[error(transparent)]
    Cluster(crate::cluster::Error),
    #[error("task failed: {0}")]
    Join(String),
}

/// The shared context and compile cache for the given settings.
pub fn context(args: &RuntimeArgs) -> Result<(Arc<Context>, Arc<CompileCache>), Error> {
    let policy = match &args.policy {
        None => Policy::loopback(),
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| Error::PolicyFile {
                path: path.display().to_string(),
                source,
            })?;
            Policy::from_yaml(&text).map_err(|errors| Error::Policy {
                path: path.display().to_string(),
                errors,
            })?
        }
    };
    let runtime = Runtime::new(Settings {
        call_timeout: args.call_timeout,
        memory_limit: args.memory_limit_mib << 20,
        pooling: args.pooling,
        max_instances: args.max_instances,
        cpu: CpuSettings {
            budget: args.cpu_budget,
            burst: args.cpu_burst,
            strikes: args.cpu_strikes,
            lanes: match args.cpu_lanes {
                0 => crate::engine::budget::default_lanes(),
                n => n,
            },
            ..CpuSettings::default()
        },
        shutdown_timeout: args.shutdown_timeout,
        ..Settings::default()
    })?;
    let cache_dir = (!args.cache_dir.as_os_str().is_empty()).then(|| args.cache_dir.clone());
    let limits = Limits {
        max_handles: args.max_handles,
        max_timeout: args.call_timeout,
        ..Limits::default()
    };
    let restart = RestartPolicy {
        base: args.backoff_base,
        max: args.backoff_max,
        quarantine_after: args.quarantine_after,
    };
    let backends = Backends::real(args.gpio == Gpio::Sim);
    let ctx = Context {
        max_status_bytes: args.max_status_kib << 10,
        ..Context::new(runtime, policy, limits, backends, restart)
    };
    Ok((Arc::new(ctx), Arc::new(CompileCache::new(cache_dir))))
}

/// The admin endpoint (devices, metrics, health) in both modes, until `stop`. The address
/// is bound here, before the task starts, so that a port in use fails the start with a
/// clear error rather than a log line from a background task.
fn serve_admin(
    listen: ListenAddr,
    options: crate::admin::Options,
    ctx: &Context,
    stop: &watch::Receiver<bool>,
) -> Result<Option<tokio::task::JoinHandle<std::io::Result<()>>>, Error> {
    let ListenAddr::At(addr) = listen else {
        return Ok(None);
    };
    let listener = std::net::TcpListener::bind(addr).map_err(Error::Admin)?;
    let (board, metrics) = (ctx.board.clone(), ctx.metrics.clone());
    Ok(Some(tokio::spawn(crate::admin::serve(
        listener,
        board,
        metrics,
        options,
        stop.clone(),
    ))))
}

/// Runs standalone mode until Ctrl-C or SIGTERM.
pub async fn standalone(runtime: &RuntimeArgs, args: StandaloneArgs) -> Result<(), Error> {
    if !args.dir.is_dir() {
        return Err(Error::NotADir {
            path: args.dir.display().to_string(),
        });
    }
    let (ctx, cache) = context(runtime)?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let options = crate::admin::Options {
        dashboard: args.dashboard.settings(args.node.clone(), "standalone"),
        readings: Some(args.device_metrics.readings()),
    };
    let admin = serve_admin(args.listen, options, &ctx, &stop_rx)?;
    let output = match args.output {
        Output::Auto if std::io::IsTerminal::is_terminal(&std::io::stdout()) => Output::Table,
        Output::Auto => Output::Json,
        other => other,
    };
    let view = match output {
        Output::Table => Some(tokio::spawn(output::table(
            ctx.board.clone(),
            std::time::Duration::from_secs(1),
            stop_rx.clone(),
        ))),
        Output::Json => Some(tokio::spawn(output::json_lines(
            ctx.board.clone(),
            ctx.metrics.clone(),
            stop_rx.clone(),
        ))),
        _ => None,
    };
    let limb = Standalone::new(ctx, cache, args.dir, args.node);
    let main = tokio::spawn(limb.run(args.scan_interval, stop_rx));
    shutdown_signal().await;
    tracing::info!("shutting down");
    let _ = stop_tx.send(true);
    let _ = main.await;
    if let Some(v) = view {
        let _ = v.await;
    }
    if let Some(a) = admin {
        let _ = a.await;
    }
    Ok(())
}

/// Runs cluster mode until Ctrl-C or SIGTERM.
#[cfg(feature = "cluster")]
pub async fn cluster(runtime: &RuntimeArgs, args: crate::config::ClusterArgs) -> Result<(), Error> {
    let (ctx, cache) = context(runtime)?;
    let (stop_tx, stop_rx) = watch::channel(false);
    // The dashboard has its own listener here (the pod's loopback by default); the admin
    // listener keeps /devices, /metrics and /healthz.
    let options = crate::admin::Options {
        dashboard: None,
        readings: Some(args.device_metrics.readings()),
    };
    let admin = serve_admin(args.listen, options, &ctx, &stop_rx)?;
    let dashboard = match (
        args.dashboard.settings(Some(args.node.clone()), "cluster"),
        args.dashboard_listen,
    ) {
        // A page for people, not the device path: a port in use costs the dashboard,
        // not the start (so do several limbs on one machine, as in the tests).
        (Some(settings), ListenAddr::At(addr)) => match std::net::TcpListener::bind(addr) {
            Ok(listener) => match dashboard_check(args.dashboard_token, addr).await {
                Ok(check) => Some(tokio::spawn(crate::admin::serve_dashboard(
                    listener,
                    ctx.board.clone(),
                    settings,
                    move |router| match check {
                        Some(check) => octopus_dashboard::auth::require(router, check),
                        None => router,
                    },
                    stop_rx.clone(),
                ))),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot check dashboard tokens; running without the dashboard");
                    None
                }
            },
            Err(e) => {
                tracing::warn!(%addr, error = %e, "cannot serve the dashboard; running without it");
                None
            }
        },
        _ => None,
    };
    let settings = crate::cluster::Settings {
        node: args.node,
        namespace: args.namespace,
        flush: args.status_flush,
        resync: args.resync,
        status_write_interval: args.status_write_interval.filter(|d| !d.is_zero()),
    };
    let mut main = tokio::spawn(crate::cluster::run(ctx, cache, settings, stop_rx));
    let finished = tokio::select! {
        () = shutdown_signal() => None,
        r = &mut main => Some(r),
    };
    tracing::info!("shutting down");
    let _ = stop_tx.send(true);
    let result = match finished {
        Some(r) => r,
        None => main.await,
    }
    .map_err(|e| Error::Join(e.to_string()))?;
    if let Some(a) = admin {
        let _ = a.await;
    }
    if let Some(d) = dashboard {
        let _ = d.await;
    }
    result.map_err(Error::Cluster)
}

/// The bearer-token check of the cluster dashboard, when `token` asks for one.
#[cfg(feature = "cluster")]
async fn dashboard_check(
    token: bool,
    addr: std::net::SocketAddr,
) -> Result<Option<std::sync::Arc<octopus_dashboard::auth::TokenCheck>>, kube::Error> {
    if !token {
        if !addr.ip().is_loopback() {
            tracing::warn!(%addr, "dashboard listens beyond loopback without tokens: anyone who reaches it reads this node's devices");
        }
        return Ok(None);
    }
    let client = kube::Client::try_default().await?;
    Ok(Some(std::sync::Arc::new(
        octopus_dashboard::auth::TokenCheck::new(client),
    )))
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
