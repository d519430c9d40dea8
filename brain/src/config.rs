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
    Run(RunArgs),
    /// Checks the DeviceLinks in YAML files for structural problems, without a cluster.
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

    /// Log as JSON.
    #[arg(long, env = "BRAIN_LOG_JSON")]
    pub log_json: bool,
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
    }
}
