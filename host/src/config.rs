//! The limb's configuration: one clap struct, every field also settable from `LIMB_*`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::engine::Pooling;
use crate::supervisor::RestartPolicy;

#[derive(Debug, Parser)]
#[command(
    name = "limb",
    version,
    about = "The Octopus limb: drives edge devices through sandboxed WebAssembly adaptors"
)]
pub struct Config {
    #[command(flatten)]
    pub runtime: RuntimeArgs,

    /// Log format.
    #[arg(long, env = "LIMB_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Runs adaptors (*.wasm) and DeviceLinks (*.yaml) from a folder, without a cluster.
    Standalone(StandaloneArgs),
    /// Runs on a node of a Kubernetes cluster (in-cluster config, or KUBECONFIG).
    #[cfg(feature = "cluster")]
    Cluster(ClusterArgs),
}

#[derive(Debug, Args)]
pub struct StandaloneArgs {
    /// The folder holding adaptors and DeviceLink YAML.
    #[arg(env = "LIMB_DIR")]
    pub dir: PathBuf,

    /// Address of the HTTP endpoint (/devices, /metrics, /healthz); "off" disables it.
    #[arg(long, env = "LIMB_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: ListenAddr,

    /// How often the folder is rescanned.
    #[arg(long, env = "LIMB_SCAN_INTERVAL", default_value = "1s", value_parser = parse_duration)]
    pub scan_interval: Duration,

    /// How status is shown: a live table on a terminal, JSON lines when piped.
    #[arg(long, env = "LIMB_OUTPUT", value_enum, default_value_t = Output::Auto)]
    pub output: Output,

    /// Drive only the links whose spec.adaptor.node is this name (default: all).
    #[arg(long, env = "NODE_NAME")]
    pub node: Option<String>,

    #[command(flatten)]
    pub dashboard: DashboardArgs,

    #[command(flatten)]
    pub device_metrics: DeviceMetricsArgs,
}

/// The dashboard (read-only; see docs/dashboard.md): on the admin listener standalone,
/// on `--dashboard-listen` in a cluster.
#[derive(Clone, Debug, Args)]
pub struct DashboardArgs {
    /// Serve the dashboard at `/` of the admin listener.
    #[arg(long, env = "LIMB_DASHBOARD", default_value_t = true, action = clap::ArgAction::Set)]
    pub dashboard: bool,

    /// Numeric property series the dashboard's plots keep, over all devices (each an
    /// hour of points, about 4 KiB).
    #[arg(long, env = "LIMB_DASHBOARD_SERIES", default_value_t = 4096)]
    pub dashboard_series: usize,
}

/// Device readings on `/metrics` (node policy: off unless the node opts in).
#[derive(Clone, Debug, Args)]
pub struct DeviceMetricsArgs {
    /// Export every device's numeric status properties and conditions as
    /// `octopus_device_property` and `octopus_device_condition` on /metrics (without it,
    /// only links annotated `edge.cattle.io/device-metrics: "true"` are).
    #[arg(long, env = "LIMB_DEVICE_METRICS", default_value_t = false, action = clap::ArgAction::Set)]
    pub device_metrics: bool,

    /// Most `octopus_device_property` series; past it the rest are left out and counted
    /// in `octopus_device_property_series_capped`.
    #[arg(long, env = "LIMB_DEVICE_METRICS_SERIES", default_value_t = 2000)]
    pub device_metrics_series: usize,
}

impl DeviceMetricsArgs {
    /// The readings to export: every device's when the node opts in, else those of the
    /// links that do.
    pub fn readings(&self) -> crate::dashboard::readings::Readings {
        crate::dashboard::readings::Readings::new(self.device_metrics, self.device_metrics_series)
    }
}

impl DashboardArgs {
    /// The dashboard's settings, or `None` when it is off.
    pub fn settings(
        &self,
        node: Option<String>,
        mode: &'static str,
    ) -> Option<crate::dashboard::Settings> {
        self.dashboard.then_some(crate::dashboard::Settings {
            node,
            mode,
            max_series: self.dashboard_series,
        })
    }
}

#[cfg(feature = "cluster")]
#[derive(Debug, Args)]
pub struct ClusterArgs {
    /// This node's name (from the downward API in the DaemonSet).
    #[arg(long, env = "NODE_NAME")]
    pub node: String,

    /// The limb's namespace, where adaptor ConfigMaps live.
    #[arg(long, env = "POD_NAMESPACE", default_value = "octopus-system")]
    pub namespace: String,

    /// Address of /devices, /metrics and /healthz.
    #[arg(long, env = "LIMB_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: ListenAddr,

    /// How often coalesced status is written to the API.
    #[arg(long, env = "LIMB_STATUS_FLUSH", default_value = "250ms", value_parser = parse_duration)]
    pub status_flush: Duration,

    /// Node default of the floor on each device's instance-status writes: at most one
    /// per interval, the latest reading written when it ends; conditions are never held.
    /// A link's `edge.cattle.io/status-write-interval` annotation overrides it. Off unless
    /// set ("0" too); at most 1h.
    #[arg(long, env = "LIMB_STATUS_WRITE_INTERVAL", value_parser = parse_status_write_interval)]
    pub status_write_interval: Option<Duration>,

    /// Re-check of every link when nothing changes.
    #[arg(long, env = "LIMB_RESYNC", default_value = "30s", value_parser = parse_duration)]
    pub resync: Duration,

    /// Address of the dashboard, on its own listener in a cluster: on the pod's loopback
    /// by default, so that only `kubectl port-forward` (RBAC: `pods/portforward`)
    /// reaches it; "off" disables it.
    #[arg(long, env = "LIMB_DASHBOARD_LISTEN", default_value = "127.0.0.1:8081")]
    pub dashboard_listen: ListenAddr,

    /// Require `Authorization: Bearer <token>` of a user who may list DeviceLinks on the
    /// dashboard (checked with TokenReview and SubjectAccessReview), to listen beyond
    /// loopback.
    #[arg(long, env = "LIMB_DASHBOARD_TOKEN", default_value_t = false, action = clap::ArgAction::Set)]
    pub dashboard_token: bool,

    #[command(flatten)]
    pub dashboard: DashboardArgs,

    #[command(flatten)]
    pub device_metrics: DeviceMetricsArgs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListenAddr {
    Off,
    At(SocketAddr),
}

impl std::str::FromStr for ListenAddr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "off" {
            return Ok(Self::Off);
        }
        s.parse().map(Self::At).map_err(|e| format!("{s:?}: {e}"))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Auto,
    Table,
    Json,
    None,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Gpio {
    /// The Linux GPIO character device.
    Cdev,
    /// A simulated chip, for machines without GPIO.
    Sim,
}

/// Engine, sandbox and policy settings shared by every mode.
#[derive(Debug, Args)]
pub struct RuntimeArgs {
    /// Longest one adaptor call may run before it is interrupted.
    #[arg(long, env = "LIMB_CALL_TIMEOUT", default_value = "5s", value_parser = parse_duration, global = true)]
    pub call_timeout: Duration,

    /// Linear memory one adaptor instance may use, in MiB.
    #[arg(
        long,
        env = "LIMB_MEMORY_LIMIT_MIB",
        default_value_t = 64,
        global = true
    )]
    pub memory_limit_mib: usize,

    /// Instance allocation strategy: on demand (`off`, the default) holds less memory
    /// per device; the pool (`auto`, `on`) instantiates faster.
    #[arg(long, env = "LIMB_POOLING", value_enum, default_value_t = Pooling::Off, global = true)]
    pub pooling: Pooling,

    /// Adaptor instances the pooling allocator is sized for.
    #[arg(
        long,
        env = "LIMB_MAX_INSTANCES",
        default_value_t = 1024,
        global = true
    )]
    pub max_instances: u32,

    /// Where precompiled adaptors are cached ("" disables the cache).
    #[arg(long, env = "LIMB_CACHE_DIR", default_value_os_t = default_cache_dir(), global = true)]
    pub cache_dir: PathBuf,

    /// The node policy (YAML); without it TCP and UDP to loopback are allowed and
    /// nothing else.
    #[arg(long, env = "LIMB_POLICY", global = true)]
    pub policy: Option<PathBuf>,

    /// GPIO backend.
    #[arg(long, env = "LIMB_GPIO", value_enum, default_value_t = Gpio::Cdev, global = true)]
    pub gpio: Gpio,

    /// Open capability handles per device.
    #[arg(long, env = "LIMB_MAX_HANDLES", default_value_t = 8, global = true)]
    pub max_handles: usize,

    /// First delay after an adaptor trap or failed start.
    #[arg(long, env = "LIMB_BACKOFF_BASE", default_value = "1s", value_parser = parse_duration, global = true)]
    pub backoff_base: Duration,

    /// Longest delay between restarts.
    #[arg(long, env = "LIMB_BACKOFF_MAX", default_value = "60s", value_parser = parse_duration, global = true)]
    pub backoff_max: Duration,

    /// Traps in a row after which a device is quarantined.
    #[arg(
        long,
        env = "LIMB_QUARANTINE_AFTER",
        default_value_t = 5,
        global = true
    )]
    pub quarantine_after: u32,

    /// CPU time one device may use per second, sustained (guest code and the host
    /// calls it makes); past it the device waits.
    #[arg(long, env = "LIMB_CPU_BUDGET", default_value = "250ms", value_parser = parse_duration, global = true)]
    pub cpu_budget: Duration,

    /// CPU time a device may save up and spend at once.
    #[arg(long, env = "LIMB_CPU_BURST", default_value = "1s", value_parser = parse_duration, global = true)]
    pub cpu_burst: Duration,

    /// Seconds in a row with the CPU budget spent after which the device's call is
    /// ended and counted as a trap (backoff, then quarantine).
    #[arg(long, env = "LIMB_CPU_STRIKES", default_value_t = 5, global = true)]
    pub cpu_strikes: u32,

    /// Long adaptor calls (past 5 ms of CPU) running at once; 0 means half the CPUs.
    #[arg(long, env = "LIMB_CPU_LANES", default_value_t = 0, global = true)]
    pub cpu_lanes: usize,

    /// Longest an adaptor's `shutdown` may run when its device is removed.
    #[arg(long, env = "LIMB_SHUTDOWN_TIMEOUT", default_value = "1s", value_parser = parse_duration, global = true)]
    pub shutdown_timeout: Duration,

    /// Largest status document accepted from an adaptor, in KiB.
    #[arg(
        long,
        env = "LIMB_MAX_STATUS_KIB",
        default_value_t = 1024,
        global = true
    )]
    pub max_status_kib: usize,
}

impl RuntimeArgs {
    /// The restart policy these settings ask for: the shared backoff from
    /// `--backoff-base` to `--backoff-max`, then quarantine.
    pub fn restart(&self) -> RestartPolicy {
        RestartPolicy {
            base: self.backoff_base,
            max: self.backoff_max,
            quarantine_after: self.quarantine_after,
        }
    }
}

fn default_cache_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/var/cache"));
    base.join("octopus").join("limb")
}

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{s:?}: {e}"))
}

/// `--status-write-interval`, parsed as the link annotation is; zero is off.
#[cfg(feature = "cluster")]
fn parse_status_write_interval(s: &str) -> Result<Duration, String> {
    crate::cluster::relay::parse_interval(s)
        .map(Option::unwrap_or_default)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_parse() {
        let c = Config::try_parse_from(["limb", "standalone", "/tmp/x"]).unwrap();
        assert_eq!(c.runtime.call_timeout, Duration::from_secs(5));
        let Command::Standalone(s) = c.command else {
            panic!("wrong command")
        };
        assert_eq!(s.listen, ListenAddr::At("127.0.0.1:8080".parse().unwrap()));
        let dashboard = s.dashboard.settings(None, "standalone").unwrap();
        assert_eq!(dashboard.max_series, 4096);
        let c = Config::try_parse_from(["limb", "standalone", "/x", "--dashboard", "false"]);
        let Command::Standalone(s) = c.unwrap().command else {
            panic!("wrong command")
        };
        assert!(s.dashboard.settings(None, "standalone").is_none());
        assert!(
            !s.device_metrics.readings().every_device(),
            "device readings are opt-in"
        );
        let c = Config::try_parse_from(["limb", "standalone", "/x", "--device-metrics", "true"]);
        let Command::Standalone(s) = c.unwrap().command else {
            panic!("wrong command")
        };
        assert!(s.device_metrics.readings().every_device());
    }

    #[test]
    fn the_default_restart_policy_is_the_supervisors() {
        let c = Config::try_parse_from(["limb", "standalone", "/tmp/x"]).unwrap();
        assert_eq!(c.runtime.restart(), RestartPolicy::default());
        let c = Config::try_parse_from([
            "limb",
            "--backoff-base",
            "2s",
            "--backoff-max",
            "10s",
            "--quarantine-after",
            "3",
            "standalone",
            "/tmp/x",
        ])
        .unwrap();
        let p = c.runtime.restart();
        assert_eq!(
            (
                p.backoff().delay(1, 1.0),
                p.backoff().delay(9, 1.0),
                p.quarantine_after
            ),
            (Duration::from_secs(2), Duration::from_secs(10), 3)
        );
    }

    #[cfg(feature = "cluster")]
    #[test]
    fn the_status_write_interval_is_off_unless_set_and_bounded() {
        let interval = |extra: &[&str]| {
            let args = ["limb", "cluster", "--node", "n"].iter().chain(extra);
            Config::try_parse_from(args).map(|c| match c.command {
                Command::Cluster(c) => c.status_write_interval,
                Command::Standalone(_) => panic!("wrong command"),
            })
        };
        assert_eq!(interval(&[]).unwrap(), None);
        let set = ["--status-write-interval", "500ms"];
        assert_eq!(interval(&set).unwrap(), Some(Duration::from_millis(500)));
        // Zero is given as zero, which the limb takes as off.
        let zero = ["--status-write-interval", "0"];
        assert_eq!(interval(&zero).unwrap(), Some(Duration::ZERO));
        assert!(interval(&["--status-write-interval", "2h"]).is_err());
        assert!(interval(&["--status-write-interval", "soon"]).is_err());
    }

    #[test]
    fn bad_values_are_refused() {
        assert!(
            Config::try_parse_from(["limb", "--call-timeout", "soon", "standalone", "/x"]).is_err()
        );
        assert!(
            Config::try_parse_from(["limb", "standalone", "/x", "--listen", "nowhere"]).is_err()
        );
        let c = Config::try_parse_from(["limb", "standalone", "/x", "--listen", "off"]).unwrap();
        let Command::Standalone(s) = c.command else {
            panic!("wrong command")
        };
        assert_eq!(s.listen, ListenAddr::Off);
    }
}
