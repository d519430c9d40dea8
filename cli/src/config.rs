//! The command line: one clap struct, parsed once in `main`. Owns every flag and
//! environment variable `octopus` reads; must not act on any of them.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Every knob the `octopus` command reads; nothing else touches the environment (the
/// kubeconfig is found by kube's own rules: `--kubeconfig`, `$KUBECONFIG`,
/// `~/.kube/config`, then the in-cluster service account).
#[derive(Debug, Parser)]
#[command(
    name = "octopus",
    version,
    about = "Inspect, push and list Octopus adaptor components (also `kubectl octopus`)"
)]
pub struct Config {
    /// Namespace of the limb, where adaptor ConfigMaps live.
    #[arg(
        long,
        short = 'n',
        env = "OCTOPUS_NAMESPACE",
        default_value = "octopus-system",
        global = true
    )]
    pub namespace: String,

    /// Output: text for people, json for programs (field names in cli/README.md).
    #[arg(long, short = 'o', env = "OCTOPUS_OUTPUT", value_enum, default_value_t = Format::Text, global = true)]
    pub output: Format,

    #[command(flatten)]
    pub kube: KubeArgs,

    /// Judge components by this node policy (the limb's LIMB_POLICY YAML): its compile
    /// bounds, maxComponentBytes and compileTimeout (default: a limb's defaults).
    #[arg(long, env = "OCTOPUS_POLICY", global = true)]
    pub policy: Option<PathBuf>,

    /// Log what the limb library does (compiling, describing) to stderr.
    #[arg(long, short = 'v', env = "OCTOPUS_VERBOSE", global = true)]
    pub verbose: bool,

    #[command(subcommand)]
    pub command: Command,
}

/// Which cluster to talk to.
#[derive(Debug, Args)]
pub struct KubeArgs {
    /// A kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or in-cluster).
    #[arg(long, global = true)]
    pub kubeconfig: Option<PathBuf>,

    /// The kubeconfig context to use (default: the current context).
    #[arg(long, env = "OCTOPUS_CONTEXT", global = true)]
    pub context: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Shows each component's world, imports and exports, size and digest, and whether
    /// this limb would accept it (and why not). Needs no cluster.
    Inspect(InspectArgs),
    /// Validates a component and writes it as the ConfigMap(s) the limb reads; with
    /// --dry-run, prints them for `kubectl apply -f -` instead.
    Push(PushArgs),
    /// Prints the CRDs of the models a component declares (contract 0.1.3), for
    /// `kubectl apply -f -`. Needs no cluster.
    Crd(CrdArgs),
    /// Lists the adaptors in the cluster and where DeviceLinks run them.
    List,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The components (.wasm).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct CrdArgs {
    /// The component (`.wasm`).
    pub file: PathBuf,
}

#[derive(Debug, Args)]
pub struct PushArgs {
    /// The component (.wasm).
    pub file: PathBuf,

    /// The adaptor's name, e.g. adaptors.edge.cattle.io/modbus (default: the name the
    /// component describes itself with; they must match unless --force).
    #[arg(long)]
    pub name: Option<String>,

    /// Name of the (first) ConfigMap (default: derived from the adaptor's name,
    /// adaptors.edge.cattle.io/modbus -> adaptor-modbus).
    #[arg(long)]
    pub configmap: Option<String>,

    /// Print the ConfigMaps (YAML, or a JSON List with -o json) and change nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Push even when the limb would refuse the component, when --name differs from
    /// its own name, or when the ConfigMap holds another adaptor; and let the new
    /// version take over links whose spec its declared schema rejects (the limb holds
    /// those on the running version otherwise).
    #[arg(long)]
    pub force: bool,
}

/// How results are printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_short_flags_parse() {
        let c = Config::try_parse_from(["octopus", "list"]).unwrap();
        assert_eq!(c.namespace, "octopus-system");
        assert_eq!(c.output, Format::Text);
        assert!(matches!(c.command, Command::List));

        let c = Config::try_parse_from([
            "kubectl-octopus",
            "push",
            "a.wasm",
            "--name",
            "adaptors.edge.cattle.io/a",
            "-n",
            "edge",
            "-o",
            "json",
            "--dry-run",
        ])
        .unwrap();
        assert_eq!(c.namespace, "edge");
        assert_eq!(c.output, Format::Json);
        let Command::Push(p) = c.command else {
            panic!("not push")
        };
        assert!(p.dry_run && !p.force);
        assert_eq!(p.name.as_deref(), Some("adaptors.edge.cattle.io/a"));
    }

    #[test]
    fn inspect_takes_one_file_or_more_and_a_policy() {
        assert!(Config::try_parse_from(["octopus", "inspect"]).is_err());
        let c = Config::try_parse_from([
            "octopus",
            "inspect",
            "a.wasm",
            "b.wasm",
            "--policy",
            "node.yaml",
        ])
        .unwrap();
        let Command::Inspect(i) = c.command else {
            panic!("not inspect")
        };
        assert_eq!(i.files, [PathBuf::from("a.wasm"), PathBuf::from("b.wasm")]);
        assert_eq!(c.policy, Some(PathBuf::from("node.yaml")));
    }

    #[test]
    fn unknown_output_formats_are_refused() {
        assert!(Config::try_parse_from(["octopus", "-o", "yaml", "list"]).is_err());
    }
}
