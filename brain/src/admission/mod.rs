//! The DeviceLink validating webhook, served by every replica (not only the leader) so
//! admission does not wait for an election.
//!
//! - [`schema`]: `template.spec` against the model CRD's structural schema;
//! - [`decide`]: the pure decision (denials and warnings) with its update rules;
//! - [`observe`]: the model CRD, the adaptor ConfigMap and references, from the cluster;
//! - [`certs`]: the brain's own CA and serving certificate, rotated, and `caBundle`;
//! - [`server`]: TLS in front of axum.
//!
//! Failure policy is `Ignore` (see `docs/admission.md`): the limb and the brain patch
//! DeviceLink metadata, and those updates must never depend on this webhook being up.

pub mod certs;
pub mod decide;
pub mod observe;
pub mod review;
pub mod schema;
pub mod server;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use crds::v1alpha1::DeviceLink;
use kube::Client;
use serde_json::Value;

use crate::metrics::Metrics;
use review::{Review, ReviewOut, Status};

/// The path the webhook configuration points at.
pub const PATH: &str = "/validate/devicelinks";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot listen for admission requests on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot configure TLS")]
    Tls(#[from] rustls::Error),
}

#[derive(Clone, Debug)]
pub struct Settings {
    pub listen: SocketAddr,
    /// Where adaptor ConfigMaps live (the limb's namespace).
    pub adaptor_namespace: String,
    pub certs: certs::Settings,
}

/// Aborts a task when dropped, so the webhook stops with whoever holds it.
pub struct AbortOnDrop(pub tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The running webhook: its tasks stop when this is dropped.
pub struct Handle {
    pub local_addr: SocketAddr,
    _tasks: Vec<AbortOnDrop>,
}

struct Ctx {
    observer: Arc<observe::Observer>,
    metrics: Arc<Metrics>,
}

/// Binds (so a bad address fails start-up), then serves in the background.
pub async fn start(client: Client, s: Settings, metrics: Arc<Metrics>) -> Result<Handle, Error> {
    let tcp = tokio::net::TcpListener::bind(s.listen)
        .await
        .map_err(|source| Error::Bind {
            addr: s.listen,
            source,
        })?;
    let local_addr = tcp.local_addr().map_err(|source| Error::Bind {
        addr: s.listen,
        source,
    })?;
    let resolver = Arc::new(certs::Resolver::default());
    let config = server::tls_config(resolver.clone())?;
    let listener = server::TlsListener::new(tcp, config).map_err(|source| Error::Bind {
        addr: s.listen,
        source,
    })?;
    let (observer, watches) = observe::Observer::start(client.clone(), s.adaptor_namespace);
    let mut tasks: Vec<AbortOnDrop> = watches.into_iter().map(AbortOnDrop).collect();
    tasks.push(AbortOnDrop(tokio::spawn(certs::run(
        client,
        s.certs,
        resolver,
        metrics.clone(),
    ))));
    let app = Router::new()
        .route(PATH, post(review))
        .with_state(Arc::new(Ctx { observer, metrics }));
    tasks.push(AbortOnDrop(tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "the webhook server stopped");
        }
    })));
    tracing::info!(%local_addr, path = PATH, "serving DeviceLink admission");
    Ok(Handle {
        local_addr,
        _tasks: tasks,
    })
}

async fn review(State(ctx): State<Arc<Ctx>>, body: Bytes) -> Response {
    let review: Review = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                format!("not an AdmissionReview: {e}\n"),
            )
                .into_response();
        }
    };
    let Some(req) = review.request else {
        return (
            StatusCode::BAD_REQUEST,
            "AdmissionReview without a request\n",
        )
            .into_response();
    };
    let _timer = ctx.metrics.admission_timer();
    let uid = req.uid.clone();
    let verdict = admit(&ctx, req).await;
    ctx.metrics.admitted(verdict.outcome());
    let status = (!verdict.allowed()).then(|| Status {
        code: 422,
        reason: "Invalid",
        message: verdict.denials.join("; "),
    });
    axum::Json(ReviewOut::new(review::Response {
        uid,
        allowed: verdict.allowed(),
        status,
        warnings: verdict.warnings,
    }))
    .into_response()
}

#[tracing::instrument(
    name = "brain.admission.review",
    skip_all,
    fields(op = %req.operation, link = %format!("{}/{}", req.namespace.as_deref().unwrap_or_default(), req.name.as_deref().unwrap_or_default()), outcome)
)]
async fn admit(ctx: &Ctx, req: review::Request) -> decide::Verdict {
    let verdict = admit_inner(ctx, req).await;
    tracing::Span::current().record("outcome", verdict.outcome());
    if !verdict.allowed() {
        tracing::info!(denials = ?verdict.denials, "denied");
    }
    verdict
}

async fn admit_inner(ctx: &Ctx, req: review::Request) -> decide::Verdict {
    let allow = decide::Verdict::default;
    // Only creates and spec-changing updates of the main resource are checked: the
    // limb's and the brain's finalizer, label and status writes pass untouched.
    let checked_op = matches!(req.operation.as_str(), "CREATE" | "UPDATE");
    if !checked_op || req.sub_resource.is_some() {
        return allow();
    }
    if req.operation == "UPDATE"
        && decide::spec_unchanged(req.old_object.as_ref(), req.object.as_ref())
    {
        return allow();
    }
    let parse = |v: Option<Value>| v.map(serde_json::from_value::<DeviceLink>).transpose();
    let (link, old) = match (parse(req.object), parse(req.old_object)) {
        (Ok(Some(l)), Ok(old)) => (l, old),
        (Ok(None), _) => {
            return decide::Verdict {
                denials: vec!["the request carries no DeviceLink".to_owned()],
                ..Default::default()
            };
        }
        (Err(e), _) | (_, Err(e)) => {
            return decide::Verdict {
                denials: vec![format!("not a DeviceLink: {e}")],
                ..Default::default()
            };
        }
    };
    let seen = ctx.observer.observe(&link).await;
    decide::decide(&link, old.as_ref(), &seen)
}
