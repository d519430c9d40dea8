//! The brain's configuration: one clap struct, every field also settable from `BRAIN_*`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "brain",
    version,
    about = "The Octopus brain: validates DeviceLinks"
)]
pub struct Config {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Runs the controller against the cluster (in-cluster config, or KUBECONFIG).
    Run(Box<RunArgs>),
    /// Decides on the DeviceLinks in YAML files as the admission webhook would, without
    /// a cluster: against the shipped models' schemas and CRDs found in the files.
    Validate {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, env = "BRAIN_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,

    /// Elect a leader among replicas through a Lease (off: this replica always runs).
    #[arg(long, env = "BRAIN_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_election: bool,

    /// Name of the Lease.
    #[arg(long, env = "BRAIN_LEASE_NAME", default_value = "octopus-brain")]
    pub lease_name: String,

    /// Namespace of the Lease (the brain's own namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "octopus-system")]
    pub lease_namespace: String,

    /// This replica's identity in the Lease.
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,

    /// How long a Lease stays valid without renewal: the longest hand-over after a crash.
    #[arg(long, env = "BRAIN_LEASE_DURATION", default_value = "15s", value_parser = parse_duration)]
    pub lease_duration: Duration,

    /// How often the leader renews and standbys retry.
    #[arg(long, env = "BRAIN_LEASE_RETRY", default_value = "2s", value_parser = parse_duration)]
    pub lease_retry: Duration,

    /// Re-validation of every link when nothing changes.
    #[arg(long, env = "BRAIN_RESYNC", default_value = "5m", value_parser = parse_duration)]
    pub resync: Duration,

    /// Serve the DeviceLink admission webhook (HTTPS) here, on every replica; off if unset.
    #[arg(long, env = "BRAIN_WEBHOOK_LISTEN")]
    pub webhook_listen: Option<SocketAddr>,

    /// The webhook's Service: its DNS names go into the serving certificate.
    #[arg(long, env = "BRAIN_WEBHOOK_SERVICE", default_value = "octopus-brain")]
    pub webhook_service: String,

    /// More subject alternative names for the serving certificate (DNS names or IPs).
    #[arg(long, env = "BRAIN_WEBHOOK_EXTRA_SANS", value_delimiter = ',')]
    pub webhook_extra_sans: Vec<String>,

    /// The Secret, in the brain's namespace, that holds the webhook CA and certificate.
    #[arg(
        long,
        env = "BRAIN_WEBHOOK_SECRET",
        default_value = "octopus-brain-webhook"
    )]
    pub webhook_secret: String,

    /// The ValidatingWebhookConfiguration whose caBundle the brain keeps current.
    #[arg(
        long,
        env = "BRAIN_WEBHOOK_CONFIG_NAME",
        default_value = "octopus-brain"
    )]
    pub webhook_config_name: String,

    /// Lifetime of a serving certificate; renewed with a third left.
    #[arg(long, env = "BRAIN_WEBHOOK_CERT_VALIDITY", default_value = "30days", value_parser = parse_duration)]
    pub webhook_cert_validity: Duration,

    /// Lifetime of the webhook CA (the caBundle the API server trusts).
    #[arg(long, env = "BRAIN_WEBHOOK_CA_VALIDITY", default_value = "3650days", value_parser = parse_duration)]
    pub webhook_ca_validity: Duration,

    /// Namespace of the adaptor ConfigMaps (the limb's); defaults to the brain's own.
    #[arg(long, env = "BRAIN_ADAPTOR_NAMESPACE")]
    pub adaptor_namespace: Option<String>,

    /// Address of the read-only dashboard: the pod's loopback by default, so that only
    /// `kubectl port-forward` (RBAC: `pods/portforward`) reaches it; "off" disables it.
    /// Beyond loopback, turn on `--dashboard-token`.
    #[arg(long, env = "BRAIN_DASHBOARD_LISTEN", default_value = "127.0.0.1:8081", value_parser = parse_listen)]
    pub dashboard_listen: Listen,

    /// Require `Authorization: Bearer <token>` of a user who may list DeviceLinks on the
    /// dashboard (checked with TokenReview and SubjectAccessReview).
    #[arg(long, env = "BRAIN_DASHBOARD_TOKEN", default_value_t = false, action = clap::ArgAction::Set)]
    pub dashboard_token: bool,

    /// Numeric property series the dashboard's plots keep, over all devices (each an
    /// hour of points, about 4 KiB).
    #[arg(long, env = "BRAIN_DASHBOARD_SERIES", default_value_t = 4096)]
    pub dashboard_series: usize,

    /// Log as JSON.
    #[arg(long, env = "BRAIN_LOG_JSON")]
    pub log_json: bool,
}

impl RunArgs {
    /// The dashboard's settings, when it is on.
    pub fn dashboard(&self) -> Option<crate::dashboard::Settings> {
        Some(crate::dashboard::Settings {
            listen: match self.dashboard_listen {
                Listen::Off => return None,
                Listen::At(addr) => addr,
            },
            token: self.dashboard_token,
            max_series: self.dashboard_series,
        })
    }

    /// The webhook's settings, when it is on. The brain's own namespace is the Lease's.
    pub fn admission(&self) -> Option<crate::admission::Settings> {
        let listen = self.webhook_listen?;
        let ns = &self.lease_namespace;
        let svc = &self.webhook_service;
        let mut sans = vec![
            format!("{svc}.{ns}.svc"),
            format!("{svc}.{ns}.svc.cluster.local"),
        ];
        sans.extend(self.webhook_extra_sans.iter().cloned());
        Some(crate::admission::Settings {
            listen,
            adaptor_namespace: self.adaptor_namespace.clone().unwrap_or_else(|| ns.clone()),
            certs: crate::admission::certs::Settings {
                namespace: ns.clone(),
                secret_name: self.webhook_secret.clone(),
                webhook_config_name: self.webhook_config_name.clone(),
                sans,
                validity: self.webhook_cert_validity,
                ca_validity: self.webhook_ca_validity,
            },
        })
    }
}

/// A listener's address, or none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listen {
    Off,
    At(SocketAddr),
}

/// An address, or "off".
fn parse_listen(s: &str) -> Result<Listen, String> {
    if s.eq_ignore_ascii_case("off") {
        return Ok(Listen::Off);
    }
    s.parse().map(Listen::At).map_err(|e| format!("{s:?}: {e}"))
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{s:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_overrides_parse() {
        let c = Config::try_parse_from([
            "brain",
            "run",
            "--lease-duration",
            "3s",
            "--leader-election",
            "false",
        ])
        .unwrap();
        let Command::Run(r) = c.command else {
            panic!("run")
        };
        assert_eq!(r.lease_duration, Duration::from_secs(3));
        assert!(!r.leader_election);
        assert!(Config::try_parse_from(["brain", "run", "--lease-duration", "soon"]).is_err());
        assert!(
            r.admission().is_none(),
            "the webhook is off unless given an address"
        );
        let d = r.dashboard().unwrap();
        assert!(
            d.listen.ip().is_loopback() && !d.token,
            "loopback, no tokens"
        );
    }

    #[test]
    fn the_dashboard_can_be_turned_off_or_opened_with_tokens() {
        let parse = |args: &[&str]| {
            let c = Config::try_parse_from(["brain", "run"].iter().chain(args)).unwrap();
            let Command::Run(r) = c.command else {
                panic!("run")
            };
            r.dashboard()
        };
        assert!(parse(&["--dashboard-listen", "off"]).is_none());
        let d = parse(&[
            "--dashboard-listen",
            "0.0.0.0:8443",
            "--dashboard-token",
            "true",
        ])
        .unwrap();
        assert!(d.token && d.listen.port() == 8443);
    }

    #[test]
    fn webhook_settings_name_the_service_and_extra_sans() {
        let c = Config::try_parse_from([
            "brain",
            "run",
            "--lease-namespace",
            "octo",
            "--webhook-listen",
            "127.0.0.1:9443",
            "--webhook-extra-sans",
            "127.0.0.1,brain.local",
            "--webhook-cert-validity",
            "20s",
        ])
        .unwrap();
        let Command::Run(r) = c.command else {
            panic!("run")
        };
        let a = r.admission().unwrap();
        assert_eq!(
            a.certs.sans,
            [
                "octopus-brain.octo.svc",
                "octopus-brain.octo.svc.cluster.local",
                "127.0.0.1",
                "brain.local"
            ]
        );
        assert_eq!(a.adaptor_namespace, "octo");
        assert_eq!(a.certs.validity, Duration::from_secs(20));
        assert_eq!(a.certs.ca_validity, Duration::from_secs(3650 * 86400));
    }
}
