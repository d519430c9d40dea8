//! The webhook's own PKI, so installing Octopus needs no cert-manager: a CA and a serving
//! certificate kept in one Secret that every replica reads, so all serve the same
//! certificate; the serving certificate is renewed with the same CA well before it
//! expires, so the `caBundle` the API server holds stays valid across a rotation.
//!
//! A new CA overlaps the old one, so no admission call fails while it rolls out: it is
//! first *staged* (published in the `caBundle` beside the current CA while every replica
//! keeps serving the old certificate), *promoted* an [`Settings::overlap`] later (the
//! serving certificate is issued by it, and the old CA stays in the bundle as the
//! previous one), and the previous CA leaves the bundle one more overlap later, when
//! every replica serves the new certificate. [`ca_bundle`] is what is published.
//!
//! Every replica runs [`run`]: read the Secret, create or renew it when [`plan`] says so
//! (optimistic concurrency decides which replica's write wins), publish [`ca_bundle`] in
//! the webhook configuration, and only then load the serving certificate into the TLS
//! [`Resolver`], so a replica never serves a certificate whose CA is not published.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::metrics::Metrics;

pub const CA_CERT: &str = "ca.crt";
pub const CA_KEY: &str = "ca.key";
pub const TLS_CERT: &str = "tls.crt";
pub const TLS_KEY: &str = "tls.key";
/// Unix seconds at which the serving certificate expires.
pub const NOT_AFTER: &str = "octopus.edge.cattle.io/not-after";
/// Unix seconds at which the CA expires.
pub const CA_NOT_AFTER: &str = "octopus.edge.cattle.io/ca-not-after";
/// The serving certificate's SANs, comma-separated: a changed list re-issues it.
pub const SANS: &str = "octopus.edge.cattle.io/sans";
/// The staged next CA, published in the `caBundle` before it signs anything.
pub const NEXT_CA_CERT: &str = "next-ca.crt";
pub const NEXT_CA_KEY: &str = "next-ca.key";
/// Unix seconds at which the staged CA expires.
pub const NEXT_CA_NOT_AFTER: &str = "octopus.edge.cattle.io/next-ca-not-after";
/// Unix seconds at which the next CA was staged (published).
pub const NEXT_CA_SINCE: &str = "octopus.edge.cattle.io/next-ca-since";
/// The CA before the last promotion, still published until every replica serves the new
/// certificate.
pub const PREVIOUS_CA_CERT: &str = "previous-ca.crt";
/// Unix seconds until which the previous CA stays in the `caBundle`.
pub const PREVIOUS_CA_UNTIL: &str = "octopus.edge.cattle.io/previous-ca-until";
const CA_NAME: &str = "octopus-brain webhook CA";
const MANAGER: &str = "octopus-brain";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API call failed")]
    Kube(#[from] kube::Error),
    #[error("cannot generate a certificate")]
    Generate(#[from] rcgen::Error),
    #[error("the serving certificate or key is unusable")]
    Tls(#[from] rustls::Error),
    #[error("the serving certificate or key is not PEM")]
    Pem(#[from] rustls::pki_types::pem::Error),
    #[error("{0} does not fit a certificate's dates")]
    Time(String),
}

impl Error {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Kube(_) => "api",
            Self::Generate(_) => "generate",
            Self::Tls(_) | Self::Pem(_) => "tls",
            Self::Time(_) => "time",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Settings {
    pub namespace: String,
    pub secret_name: String,
    /// The ValidatingWebhookConfiguration whose `caBundle` the brain keeps current.
    pub webhook_config_name: String,
    pub sans: Vec<String>,
    /// Lifetime of a serving certificate; renewed when a third of it is left.
    pub validity: Duration,
    /// Lifetime of the CA; a new CA (and `caBundle`) when less than `validity` is left.
    pub ca_validity: Duration,
}

impl Settings {
    /// How often a replica re-reads the Secret: often enough to renew in time and to pick
    /// up another replica's renewal well before the old certificate expires.
    pub fn check_every(&self) -> Duration {
        (self.validity / 10).clamp(Duration::from_secs(1), Duration::from_secs(60))
    }

    /// How long both CAs are published around a CA change: before the new one signs the
    /// serving certificate, and again after, before the old one leaves the bundle. Every
    /// replica re-reads the Secret within [`Settings::check_every`] and the API server
    /// picks up a webhook configuration within a second; three rounds also cover a failed
    /// read and its retry.
    pub fn overlap(&self) -> Duration {
        self.check_every() * 3
    }
}

/// A CA staged to sign the next serving certificates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NextCa {
    pub cert: String,
    pub key: String,
    pub not_after: i64,
    /// When it was published: it may sign once an overlap has passed since.
    pub since: i64,
}

/// The CA the last promotion replaced, published until `until`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreviousCa {
    pub cert: String,
    pub until: i64,
}

/// What the Secret holds, when it holds all of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bundle {
    pub ca_cert: String,
    pub ca_key: String,
    pub cert: String,
    pub key: String,
    pub not_after: i64,
    pub ca_not_after: i64,
    pub sans: Vec<String>,
    pub next_ca: Option<NextCa>,
    pub previous_ca: Option<PreviousCa>,
}

impl Bundle {
    pub fn from_secret(s: &Secret) -> Option<Self> {
        let data = s.data.as_ref()?;
        let text = |k: &str| {
            data.get(k)
                .and_then(|b| String::from_utf8(b.0.clone()).ok())
        };
        let ann = s.metadata.annotations.as_ref()?;
        let num = |k: &str| ann.get(k).and_then(|v| v.parse::<i64>().ok());
        Some(Self {
            ca_cert: text(CA_CERT)?,
            ca_key: text(CA_KEY)?,
            cert: text(TLS_CERT)?,
            key: text(TLS_KEY)?,
            not_after: num(NOT_AFTER)?,
            ca_not_after: num(CA_NOT_AFTER)?,
            sans: ann
                .get(SANS)
                .map(|s| s.split(',').map(str::to_owned).collect())
                .unwrap_or_default(),
            next_ca: (|| {
                Some(NextCa {
                    cert: text(NEXT_CA_CERT)?,
                    key: text(NEXT_CA_KEY)?,
                    not_after: num(NEXT_CA_NOT_AFTER)?,
                    since: num(NEXT_CA_SINCE)?,
                })
            })(),
            previous_ca: (|| {
                Some(PreviousCa {
                    cert: text(PREVIOUS_CA_CERT)?,
                    until: num(PREVIOUS_CA_UNTIL)?,
                })
            })(),
        })
    }

    fn to_secret(&self, s: &Settings, resource_version: Option<String>) -> Secret {
        let bytes = |t: &str| ByteString(t.as_bytes().to_vec());
        let mut annotations = BTreeMap::from([
            (NOT_AFTER.to_owned(), self.not_after.to_string()),
            (CA_NOT_AFTER.to_owned(), self.ca_not_after.to_string()),
            (SANS.to_owned(), self.sans.join(",")),
        ]);
        let mut data = BTreeMap::from([
            (CA_CERT.to_owned(), bytes(&self.ca_cert)),
            (CA_KEY.to_owned(), bytes(&self.ca_key)),
            (TLS_CERT.to_owned(), bytes(&self.cert)),
            (TLS_KEY.to_owned(), bytes(&self.key)),
        ]);
        if let Some(n) = &self.next_ca {
            data.insert(NEXT_CA_CERT.to_owned(), bytes(&n.cert));
            data.insert(NEXT_CA_KEY.to_owned(), bytes(&n.key));
            annotations.insert(NEXT_CA_NOT_AFTER.to_owned(), n.not_after.to_string());
            annotations.insert(NEXT_CA_SINCE.to_owned(), n.since.to_string());
        }
        if let Some(p) = &self.previous_ca {
            data.insert(PREVIOUS_CA_CERT.to_owned(), bytes(&p.cert));
            annotations.insert(PREVIOUS_CA_UNTIL.to_owned(), p.until.to_string());
        }
        Secret {
            metadata: kube::api::ObjectMeta {
                name: Some(s.secret_name.clone()),
                namespace: Some(s.namespace.clone()),
                resource_version,
                labels: Some(BTreeMap::from([(
                    "app.kubernetes.io/name".to_owned(),
                    "octopus-brain".to_owned(),
                )])),
                annotations: Some(annotations),
                ..Default::default()
            },
            type_: Some("Opaque".to_owned()),
            data: Some(data),
            ..Default::default()
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plan {
    Keep,
    /// A new serving certificate from the same CA: `caBundle` stays valid.
    Renew,
    /// The CA is ending: a next CA is generated and published beside it; nothing served
    /// changes yet.
    StageCa,
    /// The staged CA has been published for an overlap: it signs a new serving
    /// certificate, and the old CA stays published as the previous one for an overlap.
    PromoteCa,
    /// A new CA and serving certificate at once (first start, or the CA key is unusable,
    /// so nothing could be signed during an overlap); an old CA stays published as the
    /// previous one.
    NewCa,
}

/// Pure: the PEM the webhook configuration's `caBundle` holds at `now`: the current CA,
/// a staged next one, and the previous one until its overlap ends.
pub fn ca_bundle(b: &Bundle, now: i64) -> String {
    let mut pems = vec![b.ca_cert.as_str()];
    pems.extend(b.next_ca.as_ref().map(|n| n.cert.as_str()));
    pems.extend(
        b.previous_ca
            .as_ref()
            .filter(|p| now < p.until)
            .map(|p| p.cert.as_str()),
    );
    pems.iter()
        .map(|p| p.trim_end())
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

/// Pure: what to do with what the Secret holds at `now` (unix seconds).
pub fn plan(current: Option<&Bundle>, sans: &[String], now: i64, s: &Settings) -> Plan {
    let Some(b) = current else {
        return Plan::NewCa;
    };
    let secs = |d: Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
    if KeyPair::from_pem(&b.ca_key).is_err() {
        return Plan::NewCa;
    }
    match &b.next_ca {
        Some(n) if KeyPair::from_pem(&n.key).is_err() => return Plan::StageCa,
        Some(n) if now - n.since >= secs(s.overlap()) => return Plan::PromoteCa,
        Some(_) => {}
        // Staged early enough that the promotion, an overlap later, still comes a whole
        // serving lifetime before the CA ends.
        None if b.ca_not_after - now < secs(s.validity).saturating_add(secs(s.overlap())) => {
            return Plan::StageCa;
        }
        None => {}
    }
    // Renew with a third of the lifetime left: replicas polling every tenth of it see the
    // new certificate long before the old one ends.
    if b.sans != sans || b.not_after - now < secs(s.validity) / 3 {
        return Plan::Renew;
    }
    Plan::Keep
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or_default()
}

fn at(unix: i64) -> Result<time::OffsetDateTime, Error> {
    time::OffsetDateTime::from_unix_timestamp(unix).map_err(|_| Error::Time(unix.to_string()))
}

fn ca_params(not_before: i64, not_after: i64) -> Result<CertificateParams, Error> {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CA_NAME);
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p.not_before = at(not_before)?;
    p.not_after = at(not_after)?;
    Ok(p)
}

/// Issues what `plan` asked for; `Keep` returns `current` unchanged.
pub fn issue(
    plan: Plan,
    current: Option<&Bundle>,
    sans: &[String],
    now: i64,
    s: &Settings,
) -> Result<Option<Bundle>, Error> {
    let secs = |d: Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 4);
    // Backdated a minute: a replica or API server whose clock is slightly behind must not
    // see a certificate from the future.
    let not_before = now - 60;
    let new_ca = || -> Result<(String, String, i64), Error> {
        let key = KeyPair::generate()?;
        let ca_not_after = now.saturating_add(secs(s.ca_validity));
        let cert = ca_params(not_before, ca_not_after)?.self_signed(&key)?;
        Ok((cert.pem(), key.serialize_pem(), ca_not_after))
    };
    // The old CA, published for an overlap after a change of CA.
    let retiring = |b: &Bundle| PreviousCa {
        cert: b.ca_cert.clone(),
        until: now.saturating_add(secs(s.overlap())),
    };
    // A previous CA whose overlap ended is dropped at the next write.
    let kept_previous = |b: &Bundle| b.previous_ca.clone().filter(|p| now < p.until);
    let (ca_cert, ca_key, ca_not_after, next_ca, previous_ca) = match (plan, current) {
        (Plan::Keep, _) => return Ok(current.cloned()),
        (Plan::StageCa, Some(b)) => {
            let (cert, key, not_after) = new_ca()?;
            return Ok(Some(Bundle {
                next_ca: Some(NextCa {
                    cert,
                    key,
                    not_after,
                    since: now,
                }),
                previous_ca: kept_previous(b),
                ..b.clone()
            }));
        }
        (Plan::Renew, Some(b)) => (
            b.ca_cert.clone(),
            b.ca_key.clone(),
            b.ca_not_after,
            b.next_ca.clone(),
            kept_previous(b),
        ),
        (
            Plan::PromoteCa,
            Some(
                b @ Bundle {
                    next_ca: Some(n), ..
                },
            ),
        ) => (
            n.cert.clone(),
            n.key.clone(),
            n.not_after,
            None,
            Some(retiring(b)),
        ),
        (Plan::NewCa, Some(b)) => {
            let (cert, key, not_after) = new_ca()?;
            (cert, key, not_after, None, Some(retiring(b)))
        }
        (Plan::Renew | Plan::StageCa | Plan::PromoteCa | Plan::NewCa, _) => {
            let (cert, key, not_after) = new_ca()?;
            (cert, key, not_after, None, None)
        }
    };
    let ca_key_pair = KeyPair::from_pem(&ca_key)?;
    // The issuer is rebuilt from the fixed CA name and its key, which is all signing needs
    // (issuer name and key identifier derive from them).
    let issuer = Issuer::new(ca_params(not_before, ca_not_after)?, ca_key_pair);
    let key = KeyPair::generate()?;
    let mut p = CertificateParams::new(sans.to_vec())?;
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CommonName,
        sans.first().map_or("octopus-brain", String::as_str),
    );
    p.distinguished_name = dn;
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.use_authority_key_identifier_extension = true;
    let not_after = now.saturating_add(secs(s.validity)).min(ca_not_after);
    p.not_before = at(not_before)?;
    p.not_after = at(not_after)?;
    let cert = p.signed_by(&key, &issuer)?;
    Ok(Some(Bundle {
        ca_cert,
        ca_key,
        cert: cert.pem(),
        key: key.serialize_pem(),
        not_after,
        ca_not_after,
        sans: sans.to_vec(),
        next_ca,
        previous_ca,
    }))
}

/// The TLS server's certificate, swapped whole: a handshake sees the old or the new one,
/// never a mix, and in-flight connections keep theirs.
#[derive(Default)]
pub struct Resolver {
    current: RwLock<Option<(String, Arc<CertifiedKey>)>>,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolver")
            .field("loaded", &self.is_loaded())
            .finish()
    }
}

impl Resolver {
    /// Loads a certificate and key; true when it replaced a different one.
    pub fn load(&self, cert_pem: &str, key_pem: &str) -> Result<bool, Error> {
        if self
            .current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
            .is_some_and(|(pem, _)| pem == cert_pem)
        {
            return Ok(false);
        }
        let certs =
            CertificateDer::pem_slice_iter(cert_pem.as_bytes()).collect::<Result<Vec<_>, _>>()?;
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())?;
        let signer = rustls::crypto::ring::sign::any_supported_type(&key)?;
        let ck = Arc::new(CertifiedKey::new(certs, signer));
        let mut slot = self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let replaced = slot.is_some();
        *slot = Some((cert_pem.to_owned(), ck));
        Ok(replaced)
    }

    pub fn is_loaded(&self) -> bool {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_some()
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
            .map(|(_, k)| k.clone())
    }
}

/// Keeps the certificate current forever; errors are logged and retried next tick.
pub async fn run(client: Client, s: Settings, resolver: Arc<Resolver>, metrics: Arc<Metrics>) {
    loop {
        if let Err(e) = sync(&client, &s, &resolver, &metrics).await {
            metrics.cert_sync_failed(e.kind());
            tracing::warn!(error = %e, source = ?std::error::Error::source(&e), "webhook certificate sync failed; retrying");
        }
        tokio::time::sleep(s.check_every()).await;
    }
}

#[tracing::instrument(name = "brain.admission.certs", skip_all, fields(secret = %s.secret_name))]
async fn sync(
    client: &Client,
    s: &Settings,
    resolver: &Resolver,
    metrics: &Metrics,
) -> Result<(), Error> {
    let api: Api<Secret> = Api::namespaced(client.clone(), &s.namespace);
    let secret = api.get_opt(&s.secret_name).await?;
    let current = secret.as_ref().and_then(Bundle::from_secret);
    let now = unix_now();
    let p = plan(current.as_ref(), &s.sans, now, s);
    let bundle = if p == Plan::Keep {
        current
    } else {
        let Some(next) = issue(p, current.as_ref(), &s.sans, now, s)? else {
            return Ok(());
        };
        let written = match &secret {
            Some(old) => {
                let rv = old.metadata.resource_version.clone();
                api.replace(
                    &s.secret_name,
                    &PostParams::default(),
                    &next.to_secret(s, rv),
                )
                .await
            }
            None => {
                api.create(&PostParams::default(), &next.to_secret(s, None))
                    .await
            }
        };
        match written {
            Ok(_) => {
                metrics.cert_rotated();
                tracing::info!(plan = ?p, not_after = next.not_after, "wrote the webhook certificate");
                Some(next)
            }
            // Another replica wrote first: take its certificate on the next read.
            Err(kube::Error::Api(e)) if e.code == 409 => {
                tracing::debug!("another replica renewed the certificate first");
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        }
    };
    let Some(bundle) = bundle else {
        return Ok(());
    };
    // Published first: the certificate loaded next chains to a CA the API server trusts
    // (a staged CA was published an overlap before it signed anything).
    // When publishing fails the certificate is loaded all the same, as before there was
    // an overlap: a replica that serves nothing helps no one, and a promoted CA was
    // already published while it was staged.
    let published =
        ensure_ca_bundle(client, &s.webhook_config_name, &ca_bundle(&bundle, now)).await;
    if resolver.load(&bundle.cert, &bundle.key)? {
        tracing::info!(
            not_after = bundle.not_after,
            "serving the renewed certificate"
        );
    }
    published
}

/// Sets every webhook's `caBundle` in our configuration to `ca_pem`, if it differs.
async fn ensure_ca_bundle(client: &Client, name: &str, ca_pem: &str) -> Result<(), Error> {
    let api: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    let Some(cfg) = api.get_opt(name).await? else {
        tracing::debug!(name, "no webhook configuration to keep current");
        return Ok(());
    };
    let webhooks = cfg.webhooks.unwrap_or_default();
    let stale: Vec<_> = webhooks
        .iter()
        .filter(|w| w.client_config.ca_bundle.as_ref().map(|b| b.0.as_slice()) != Some(ca_pem.as_bytes()))
        .map(|w| {
            use base64::Engine as _;
            serde_json::json!({
                "name": w.name,
                "clientConfig": {"caBundle": base64::engine::general_purpose::STANDARD.encode(ca_pem)}
            })
        })
        .collect();
    if stale.is_empty() {
        return Ok(());
    }
    api.patch(
        name,
        &PatchParams {
            field_manager: Some(MANAGER.to_owned()),
            ..Default::default()
        },
        &Patch::Strategic(serde_json::json!({"webhooks": stale})),
    )
    .await?;
    tracing::info!(name, "set the webhook configuration's caBundle");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(validity: u64) -> Settings {
        Settings {
            namespace: "ns".into(),
            secret_name: "s".into(),
            webhook_config_name: "w".into(),
            sans: vec!["octopus-brain.ns.svc".into(), "127.0.0.1".into()],
            validity: Duration::from_secs(validity),
            ca_validity: Duration::from_secs(100 * validity),
        }
    }

    #[test]
    fn plan_table() {
        let s = settings(300);
        let now = 1_000_000;
        let b = issue(Plan::NewCa, None, &s.sans, now, &s).unwrap().unwrap();
        // Staged at `now`; the overlap is 3 checks of 30 s.
        assert_eq!(s.overlap(), Duration::from_secs(90));
        let staged = issue(Plan::StageCa, Some(&b), &s.sans, now, &s)
            .unwrap()
            .unwrap();
        let cases = [
            ("nothing yet", None, now, s.sans.clone(), Plan::NewCa),
            (
                "fresh",
                Some(b.clone()),
                now + 10,
                s.sans.clone(),
                Plan::Keep,
            ),
            (
                "two thirds used",
                Some(b.clone()),
                now + 201,
                s.sans.clone(),
                Plan::Renew,
            ),
            (
                "expired",
                Some(b.clone()),
                now + 400,
                s.sans.clone(),
                Plan::Renew,
            ),
            (
                "sans changed",
                Some(b.clone()),
                now,
                vec!["other".into()],
                Plan::Renew,
            ),
            (
                "ca ending: staged first",
                Some(b.clone()),
                b.ca_not_after - 300 - 5,
                s.sans.clone(),
                Plan::StageCa,
            ),
            (
                "ca ending, staged, overlap not over",
                Some(staged.clone()),
                now + 29,
                s.sans.clone(),
                Plan::Keep,
            ),
            (
                "staged, sans changed: renewed from the current ca",
                Some(staged.clone()),
                now + 60,
                vec!["other".into()],
                Plan::Renew,
            ),
            (
                "staged, overlap over",
                Some(staged.clone()),
                now + 90,
                s.sans.clone(),
                Plan::PromoteCa,
            ),
            (
                "staged ca key garbage: staged again",
                Some(Bundle {
                    next_ca: staged.next_ca.clone().map(|n| NextCa {
                        key: "x".into(),
                        ..n
                    }),
                    ..staged.clone()
                }),
                now + 90,
                s.sans.clone(),
                Plan::StageCa,
            ),
            (
                "ca key garbage",
                Some(Bundle {
                    ca_key: "x".into(),
                    ..b.clone()
                }),
                now,
                s.sans.clone(),
                Plan::NewCa,
            ),
        ];
        for (name, current, at, sans, want) in cases {
            assert_eq!(plan(current.as_ref(), &sans, at, &s), want, "{name}");
        }
    }

    #[test]
    fn renewal_keeps_the_ca_and_changes_the_serving_certificate() {
        let s = settings(300);
        let first = issue(Plan::NewCa, None, &s.sans, 1_000_000, &s)
            .unwrap()
            .unwrap();
        let second = issue(Plan::Renew, Some(&first), &s.sans, 1_000_250, &s)
            .unwrap()
            .unwrap();
        assert_eq!(first.ca_cert, second.ca_cert);
        assert_ne!(first.cert, second.cert);
        assert_eq!(second.not_after, 1_000_550);
        let resolver = Resolver::default();
        assert!(!resolver.load(&first.cert, &first.key).unwrap());
        assert!(
            !resolver.load(&first.cert, &first.key).unwrap(),
            "same cert: no swap"
        );
        assert!(resolver.load(&second.cert, &second.key).unwrap());
        let third = issue(Plan::NewCa, Some(&second), &s.sans, 1_000_300, &s)
            .unwrap()
            .unwrap();
        assert_ne!(third.ca_cert, second.ca_cert);
    }

    #[test]
    fn the_renewed_certificate_chains_to_the_ca_for_its_sans() {
        use rustls::client::danger::ServerCertVerifier as _;
        let s = settings(300);
        let now = unix_now();
        let first = issue(Plan::NewCa, None, &s.sans, now, &s).unwrap().unwrap();
        let renewed = issue(Plan::Renew, Some(&first), &s.sans, now, &s)
            .unwrap()
            .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(first.ca_cert.as_bytes()) {
            roots.add(c.unwrap()).unwrap();
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier =
            rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .unwrap();
        let leaf = CertificateDer::from_pem_slice(renewed.cert.as_bytes()).unwrap();
        for name in ["octopus-brain.ns.svc", "127.0.0.1"] {
            let server = rustls::pki_types::ServerName::try_from(name).unwrap();
            verifier
                .verify_server_cert(&leaf, &[], &server, &[], rustls::pki_types::UnixTime::now())
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        let other = rustls::pki_types::ServerName::try_from("evil.example").unwrap();
        assert!(
            verifier
                .verify_server_cert(&leaf, &[], &other, &[], rustls::pki_types::UnixTime::now())
                .is_err()
        );
    }

    /// The verifier a client trusting exactly `bundle` (a `caBundle`) would use.
    fn trusting(bundle: &str) -> Arc<rustls::client::WebPkiServerVerifier> {
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(bundle.as_bytes()) {
            roots.add(c.unwrap()).unwrap();
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .unwrap()
    }

    fn verifies(bundle: &str, b: &Bundle) -> bool {
        use rustls::client::danger::ServerCertVerifier as _;
        let leaf = CertificateDer::from_pem_slice(b.cert.as_bytes()).unwrap();
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        trusting(bundle)
            .verify_server_cert(&leaf, &[], &name, &[], rustls::pki_types::UnixTime::now())
            .is_ok()
    }

    #[test]
    fn the_bundle_holds_both_cas_through_the_overlap_and_only_the_new_one_after() {
        let s = settings(300);
        let overlap = 90;
        // Started two overlaps ago, so every certificate is valid by the real clock.
        let now = unix_now() - 2 * overlap;
        let old = issue(Plan::NewCa, None, &s.sans, now, &s).unwrap().unwrap();
        let staged = issue(Plan::StageCa, Some(&old), &s.sans, now, &s)
            .unwrap()
            .unwrap();
        let promoted = issue(Plan::PromoteCa, Some(&staged), &s.sans, now + overlap, &s)
            .unwrap()
            .unwrap();
        let next = staged.next_ca.clone().unwrap();
        let count = |pem: &str| pem.matches("BEGIN CERTIFICATE").count();

        // Staging changes nothing served; the bundle gains the next CA.
        assert_eq!(
            (staged.cert.as_str(), staged.ca_cert.as_str()),
            (old.cert.as_str(), old.ca_cert.as_str())
        );
        assert_eq!(count(&ca_bundle(&old, now)), 1);
        let during = ca_bundle(&staged, now);
        assert_eq!(count(&during), 2);
        assert!(during.contains(old.ca_cert.trim_end()) && during.contains(next.cert.trim_end()));
        assert!(
            verifies(&during, &staged),
            "the certificate served while staged"
        );

        // Promoted: the new CA signs, the old one is still published for an overlap.
        assert_eq!(promoted.ca_cert, next.cert);
        assert!(promoted.next_ca.is_none());
        let after = ca_bundle(&promoted, now + overlap);
        assert_eq!(count(&after), 2);
        assert!(after.contains(old.ca_cert.trim_end()));
        assert!(verifies(&after, &promoted), "the new certificate");
        assert!(
            verifies(&after, &staged),
            "a replica still serving the old one"
        );
        assert!(
            verifies(&during, &promoted),
            "the bundle published while staged trusts the promoted certificate"
        );

        // After the overlap: only the new CA, and a write drops the old one.
        let later = now + 2 * overlap;
        let alone = ca_bundle(&promoted, later);
        assert_eq!(count(&alone), 1);
        assert!(verifies(&alone, &promoted) && !verifies(&alone, &staged));
        let renewed = issue(Plan::Renew, Some(&promoted), &s.sans, later, &s)
            .unwrap()
            .unwrap();
        assert_eq!(renewed.previous_ca, None);
    }

    #[test]
    fn a_new_ca_at_once_keeps_the_old_one_published_for_an_overlap() {
        let s = settings(300);
        let now = unix_now();
        let old = issue(Plan::NewCa, None, &s.sans, now, &s).unwrap().unwrap();
        assert_eq!(old.previous_ca, None, "first start: nothing to keep");
        let broken = Bundle {
            ca_key: "x".into(),
            ..old.clone()
        };
        let fresh = issue(Plan::NewCa, Some(&broken), &s.sans, now, &s)
            .unwrap()
            .unwrap();
        let bundle = ca_bundle(&fresh, now + 1);
        assert!(verifies(&bundle, &fresh) && verifies(&bundle, &old));
        assert!(!verifies(&ca_bundle(&fresh, now + 90), &old));
    }
}
