//! Bearer tokens for a dashboard reachable beyond loopback: the API server says who a
//! token belongs to (TokenReview) and whether they may `list devicelinks`
//! (SubjectAccessReview), the right that reading the dashboard amounts to.
//!
//! A page makes a request per asset and a few a minute for its live stream, so an
//! allowed token is remembered for [`TTL`] (at most [`CACHED`] of them, by digest: the
//! token itself is not kept). Refusals are not remembered, so a newly granted right
//! takes effect at once, and a revoked one within [`TTL`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::{Api, PostParams};
use sha2::{Digest, Sha256};

/// How long an allowed token is trusted without asking again.
pub const TTL: Duration = Duration::from_secs(30);
/// Allowed tokens remembered at once; past it the oldest is forgotten.
pub const CACHED: usize = 256;
/// The group of DeviceLinks, whose `list` the dashboard requires.
pub const GROUP: &str = "edge.cattle.io";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API server did not answer the TokenReview.
    #[error("cannot review the token")]
    TokenReview(#[source] kube::Error),
    /// The API server did not answer the SubjectAccessReview.
    #[error("cannot review the token's access")]
    AccessReview(#[source] kube::Error),
}

/// What a token is worth.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Its user may list DeviceLinks.
    Allowed,
    /// No valid token: the API server does not know it.
    Unauthenticated,
    /// A valid token whose user may not list DeviceLinks.
    Forbidden,
}

/// Checks tokens against the API server, remembering allowed ones briefly.
pub struct TokenCheck {
    client: kube::Client,
    allowed: Mutex<Allowed>,
}

/// Digests of allowed tokens and until when, at most [`CACHED`].
#[derive(Debug, Default)]
struct Allowed(HashMap<[u8; 32], Instant>);

impl Allowed {
    fn holds(&mut self, digest: &[u8; 32], now: Instant) -> bool {
        match self.0.get(digest) {
            Some(until) if *until > now => true,
            Some(_) => {
                self.0.remove(digest);
                false
            }
            None => false,
        }
    }

    fn insert(&mut self, digest: [u8; 32], until: Instant) {
        if self.0.len() >= CACHED {
            let now = Instant::now();
            self.0.retain(|_, t| *t > now);
        }
        if self.0.len() >= CACHED
            && let Some(oldest) = self.0.iter().min_by_key(|(_, t)| **t).map(|(d, _)| *d)
        {
            self.0.remove(&oldest);
        }
        self.0.insert(digest, until);
    }
}

impl TokenCheck {
    /// Checks with `client`, whose identity needs `create` on `tokenreviews` and
    /// `subjectaccessreviews`.
    pub fn new(client: kube::Client) -> Self {
        Self {
            client,
            allowed: Mutex::new(Allowed::default()),
        }
    }

    /// What `token` is worth now.
    pub async fn check(&self, token: &str) -> Result<Verdict, Error> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let now = Instant::now();
        if self.cached(&digest, now) {
            return Ok(Verdict::Allowed);
        }
        let verdict = self.review(token).await?;
        if verdict == Verdict::Allowed {
            self.remember(digest, now + TTL);
        }
        Ok(verdict)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Allowed> {
        self.allowed.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn cached(&self, digest: &[u8; 32], now: Instant) -> bool {
        self.lock().holds(digest, now)
    }

    fn remember(&self, digest: [u8; 32], until: Instant) {
        self.lock().insert(digest, until);
    }

    /// Allowed tokens remembered now (for tests).
    pub fn remembered(&self) -> usize {
        self.lock().0.len()
    }

    async fn review(&self, token: &str) -> Result<Verdict, Error> {
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_owned()),
                audiences: None,
            },
            ..TokenReview::default()
        };
        let reviewed = Api::<TokenReview>::all(self.client.clone())
            .create(&PostParams::default(), &review)
            .await
            .map_err(Error::TokenReview)?;
        let Some(status) = reviewed.status else {
            return Ok(Verdict::Unauthenticated);
        };
        let (true, Some(user)) = (status.authenticated == Some(true), status.user) else {
            return Ok(Verdict::Unauthenticated);
        };
        let access = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: user.username,
                groups: user.groups,
                uid: user.uid,
                extra: user.extra,
                resource_attributes: Some(ResourceAttributes {
                    verb: Some("list".into()),
                    group: Some(GROUP.into()),
                    resource: Some("devicelinks".into()),
                    ..ResourceAttributes::default()
                }),
                non_resource_attributes: None,
            },
            ..SubjectAccessReview::default()
        };
        let answered = Api::<SubjectAccessReview>::all(self.client.clone())
            .create(&PostParams::default(), &access)
            .await
            .map_err(Error::AccessReview)?;
        Ok(if answered.status.is_some_and(|s| s.allowed) {
            Verdict::Allowed
        } else {
            Verdict::Forbidden
        })
    }
}

/// `router` behind `check`: every request needs `Authorization: Bearer <token>` of a
/// user who may list DeviceLinks (401 without a valid token, 403 without the right).
pub fn require(router: Router, check: Arc<TokenCheck>) -> Router {
    router.layer(middleware::from_fn_with_state(check, gate))
}

#[tracing::instrument(name = "dashboard_request", skip_all, fields(path = %request.uri().path()))]
async fn gate(State(check): State<Arc<TokenCheck>>, request: Request, next: Next) -> Response {
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer);
    let Some(token) = token else {
        return unauthorized("a bearer token is required\n");
    };
    match check.check(token).await {
        Ok(Verdict::Allowed) => next.run(request).await,
        Ok(Verdict::Unauthenticated) => unauthorized("the token is not valid\n"),
        Ok(Verdict::Forbidden) => (
            StatusCode::FORBIDDEN,
            "the token's user may not list devicelinks.edge.cattle.io\n",
        )
            .into_response(),
        Err(e) => {
            tracing::warn!(error = %e, source = ?std::error::Error::source(&e), "dashboard token not checked");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "cannot check the token now\n",
            )
                .into_response()
        }
    }
}

fn unauthorized(why: &'static str) -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        why,
    )
        .into_response()
}

/// The token of an `Authorization: Bearer <token>` value (the scheme in any case).
fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowed_tokens_are_remembered_until_they_expire_and_boundedly() {
        let mut allowed = Allowed::default();
        let now = Instant::now();
        let later = now + TTL;
        for i in 0..CACHED + 10 {
            let mut d = [0u8; 32];
            d[..8].copy_from_slice(&(i as u64).to_le_bytes());
            allowed.insert(d, later + Duration::from_millis(i as u64));
        }
        assert_eq!(allowed.0.len(), CACHED, "bounded");
        let mut newest = [0u8; 32];
        newest[..8].copy_from_slice(&((CACHED + 9) as u64).to_le_bytes());
        assert!(allowed.holds(&newest, now), "the newest is kept");
        assert!(!allowed.holds(&[0u8; 32], now), "the oldest was forgotten");
        assert!(!allowed.holds(&newest, later + TTL), "expired");
        assert_eq!(
            allowed.0.len(),
            CACHED - 1,
            "an expired entry is dropped when met"
        );
    }

    #[test]
    fn only_a_bearer_scheme_with_a_token_is_read() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer "), None);
        assert_eq!(bearer("Bearer"), None);
    }
}
