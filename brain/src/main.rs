//! `brain`: the cluster-wide DeviceLink validator.
//!
//! Its controller (watching DeviceLinks, Nodes and CRDs on the API server) is tracked in
//! its own issue; what runs today is the offline check the controller builds on.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "brain",
    version,
    about = "The Octopus brain: validates DeviceLinks"
)]
struct Config {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Checks the DeviceLinks in YAML files for structural problems, without a cluster.
    Validate {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

fn main() -> anyhow::Result<()> {
    let Config {
        command: Command::Validate { files },
    } = Config::parse();
    let mut bad = 0;
    for file in files {
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("reading {}", file.display()))?;
        let links = match crds::parse::device_links(&text) {
            Ok(l) => l,
            Err(e) => {
                bad += 1;
                println!("{}: {e:#}", file.display());
                continue;
            }
        };
        for link in links {
            let problems = crds::validate::device_link(&link);
            if problems.is_empty() {
                println!("{}: {} ok", file.display(), link.key());
            } else {
                bad += 1;
                for p in problems {
                    println!("{}: {}: {p}", file.display(), link.key());
                }
            }
        }
    }
    if bad > 0 {
        anyhow::bail!("{bad} invalid DeviceLink(s) or file(s)");
    }
    Ok(())
}
