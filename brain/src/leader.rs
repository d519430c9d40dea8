//! Leader election on a `coordination.k8s.io/v1` Lease. kube-runtime ships none, and the
//! crates that do lag kube's releases, so this is a small module: acquire when the lease
//! is free or expired, renew well inside its duration, and report loss at once.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::{Client, ResourceExt};
use tokio::sync::watch;

#[derive(Clone, Debug)]
pub struct Settings {
    pub name: String,
    pub namespace: String,
    /// This replica's identity (the pod name in a cluster).
    pub identity: String,
    /// How long a lease stays valid without renewal.
    pub duration: Duration,
    /// How often the holder renews and others retry.
    pub retry: Duration,
}

/// What a Lease says and what this replica may do about it.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// We hold it: renew.
    Renew,
    /// Free or expired: take it.
    Take,
    /// Someone else holds a live lease.
    Wait,
}

/// The pure decision, given the lease's holder, last renewal, duration and now.
pub fn judge(
    holder: Option<&str>,
    renewed: Option<jiff::Timestamp>,
    duration_s: i32,
    me: &str,
    now: jiff::Timestamp,
) -> Verdict {
    match holder {
        Some(h) if h == me => Verdict::Renew,
        None | Some("") => Verdict::Take,
        Some(_) => {
            let expires =
                renewed.map(|r| r + jiff::SignedDuration::from_secs(i64::from(duration_s.max(1))));
            if expires.is_none_or(|e| e < now) {
                Verdict::Take
            } else {
                Verdict::Wait
            }
        }
    }
}

/// Blocks until this replica holds the lease; then keeps renewing it in the background.
/// The returned receiver turns `false` if the lease is lost.
pub async fn acquire(client: Client, s: Settings) -> watch::Receiver<bool> {
    let api: Api<Lease> = Api::namespaced(client, &s.namespace);
    loop {
        match try_once(&api, &s).await {
            Ok(true) => break,
            Ok(false) => {}
            Err(e) => tracing::debug!(error = %e, "lease attempt failed"),
        }
        tokio::time::sleep(s.retry).await;
    }
    tracing::info!(lease = %s.name, identity = %s.identity, "became leader");
    let (tx, rx) = watch::channel(true);
    tokio::spawn(async move {
        let mut last_ok = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(s.retry).await;
            match try_once(&api, &s).await {
                Ok(true) => last_ok = tokio::time::Instant::now(),
                Ok(false) => {
                    tracing::error!("lease taken by another replica");
                    let _ = tx.send(false);
                    return;
                }
                Err(e) if last_ok.elapsed() + s.retry >= s.duration => {
                    tracing::error!(error = %e, "cannot renew the lease before it expires");
                    let _ = tx.send(false);
                    return;
                }
                Err(e) => tracing::warn!(error = %e, "lease renewal failed; retrying"),
            }
        }
    });
    rx
}

/// One attempt to take or renew. `Ok(true)`: we hold it now.
async fn try_once(api: &Api<Lease>, s: &Settings) -> Result<bool, kube::Error> {
    let now = jiff::Timestamp::now();
    let duration_s = i32::try_from(s.duration.as_secs())
        .unwrap_or(i32::MAX)
        .max(1);
    match api.get_opt(&s.name).await? {
        None => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(s.name.clone()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(s.identity.clone()),
                    lease_duration_seconds: Some(duration_s),
                    acquire_time: Some(MicroTime(now)),
                    renew_time: Some(MicroTime(now)),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            match api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                Err(e) => Err(e),
            }
        }
        Some(mut lease) => {
            let spec = lease.spec.clone().unwrap_or_default();
            let verdict = judge(
                spec.holder_identity.as_deref(),
                spec.renew_time.as_ref().map(|t| t.0),
                spec.lease_duration_seconds.unwrap_or(duration_s),
                &s.identity,
                now,
            );
            let mut next = spec.clone();
            match verdict {
                Verdict::Wait => return Ok(false),
                Verdict::Renew => next.renew_time = Some(MicroTime(now)),
                Verdict::Take => {
                    next.holder_identity = Some(s.identity.clone());
                    next.acquire_time = Some(MicroTime(now));
                    next.renew_time = Some(MicroTime(now));
                    next.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
                }
            }
            next.lease_duration_seconds = Some(duration_s);
            lease.spec = Some(next);
            // replace() carries the resourceVersion we read: a racing replica gets 409.
            match api
                .replace(&lease.name_any(), &PostParams::default(), &lease)
                .await
            {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                Err(e) => Err(e),
            }
        }
    }
}

/// Gives the lease up (on shutdown) so another replica takes over at once.
pub async fn release(client: Client, s: &Settings) {
    let api: Api<Lease> = Api::namespaced(client, &s.namespace);
    if let Ok(Some(mut lease)) = api.get_opt(&s.name).await
        && let Some(spec) = lease.spec.as_mut()
        && spec.holder_identity.as_deref() == Some(s.identity.as_str())
    {
        spec.holder_identity = None;
        spec.renew_time = None;
        if let Err(e) = api.replace(&s.name, &PostParams::default(), &lease).await {
            tracing::warn!(error = %e, "cannot release the lease");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn judge_table() {
        let t0: jiff::Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let later = |s| t0 + jiff::SignedDuration::from_secs(s);
        let cases = [
            (Some("me"), Some(t0), 15, later(100), Verdict::Renew),
            (None, None, 15, t0, Verdict::Take),
            (Some(""), Some(t0), 15, t0, Verdict::Take),
            (Some("other"), Some(t0), 15, later(10), Verdict::Wait),
            (Some("other"), Some(t0), 15, later(16), Verdict::Take),
            (Some("other"), None, 15, t0, Verdict::Take),
        ];
        for (holder, renewed, d, now, want) in cases {
            assert_eq!(
                judge(holder, renewed, d, "me", now),
                want,
                "{holder:?} {renewed:?} {now}"
            );
        }
    }
}
