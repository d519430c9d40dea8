//! `brain`: parse the configuration, start tracing, run.

use anyhow::Context as _;
use brain::config::{Command, Config};
use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    match config.command {
        Command::Run(args) => {
            let filter = tracing_subscriber::EnvFilter::try_from_env("BRAIN_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
            let b = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_writer(std::io::stderr);
            if args.log_json {
                b.json().init()
            } else {
                b.init()
            }
            brain::run::run(*args).await?;
        }
        Command::Validate { files } => validate(files)?,
    }
    Ok(())
}

fn validate(files: Vec<std::path::PathBuf>) -> anyhow::Result<()> {
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
