//! Wiring: client, admin endpoint, admission webhook, leadership, controller.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use kube::Client;

use crate::config::RunArgs;
use crate::leader;
use crate::metrics::Metrics;
use crate::reconciler::{self, Context};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot reach the API server")]
    Client(#[source] kube::Error),
    #[error("cannot serve the admin endpoint")]
    Admin(#[source] std::io::Error),
    #[error("cannot start the admission webhook")]
    Admission(#[source] crate::admission::Error),
    #[error("lost the leader lease; exiting so a fresh replica takes over")]
    LostLease,
}

pub async fn run(args: RunArgs) -> Result<(), Error> {
    let client = Client::try_default().await.map_err(Error::Client)?;
    let metrics = Arc::new(Metrics::default());
    let ready = Arc::new(AtomicBool::new(false));
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(Error::Admin)?;
    drop(listener);
    let admin = tokio::spawn(crate::admin::serve(
        args.listen,
        metrics.clone(),
        ready.clone(),
    ));
    client.apiserver_version().await.map_err(Error::Client)?;
    // Every replica serves admission, leader or not: validation never waits on an election.
    let _webhook = match args.admission() {
        Some(settings) => Some(
            crate::admission::start(client.clone(), settings, metrics.clone())
                .await
                .map_err(Error::Admission)?,
        ),
        None => None,
    };
    // Every replica serves the dashboard too: it only reads, from watches of its own.
    let (dashboard_stop, dashboard_stopped) = tokio::sync::watch::channel(false);
    // A page for people: a port in use costs the dashboard (with a warning), never the
    // brain's start (so do several brains on one machine, as in the tests).
    let dashboard = match args.dashboard() {
        Some(settings) => {
            match crate::dashboard::start(client.clone(), settings, dashboard_stopped).await {
                Ok(task) => Some(task),
                Err(e) => {
                    tracing::warn!(error = %e, source = ?std::error::Error::source(&e), "running without the dashboard");
                    None
                }
            }
        }
        None => None,
    };
    ready.store(true, Ordering::Relaxed);

    let identity = args
        .identity
        .clone()
        .unwrap_or_else(|| format!("brain-{}", std::process::id()));
    let lease = leader::Settings {
        name: args.lease_name.clone(),
        namespace: args.lease_namespace.clone(),
        identity: identity.clone(),
        duration: args.lease_duration,
        retry: args.lease_retry,
    };
    let mut lost = if args.leader_election {
        tracing::info!(%identity, lease = %lease.name, "waiting for leadership");
        let rx = tokio::select! {
            rx = leader::acquire(client.clone(), lease.clone()) => rx,
            () = shutdown_signal() => {
                let _ = dashboard_stop.send(true);
                return Ok(());
            }
        };
        Some(rx)
    } else {
        None
    };
    metrics.set_leader(true);

    let mut ctx = Context::new(client.clone(), metrics.clone(), Some(identity));
    ctx.resync = args.resync;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let controller = tokio::spawn(reconciler::run(Arc::new(ctx), async move {
        let _ = stop_rx.await;
    }));
    let result = tokio::select! {
        () = shutdown_signal() => Ok(()),
        () = async {
            match lost.as_mut() {
                Some(rx) => { let _ = rx.wait_for(|held| !held).await; }
                None => std::future::pending::<()>().await,
            }
        } => Err(Error::LostLease),
    };
    let _ = stop_tx.send(());
    let _ = controller.await;
    if args.leader_election && result.is_ok() {
        leader::release(client, &lease).await;
    }
    let _ = dashboard_stop.send(true);
    if let Some(d) = dashboard {
        let _ = d.await;
    }
    admin.abort();
    result
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
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
