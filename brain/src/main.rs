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

/// `brain validate`: the webhook's decision on every DeviceLink of the files
/// (`brain::validate`); CRDs in any of the files count for all of them.
fn validate(files: Vec<std::path::PathBuf>) -> anyhow::Result<()> {
    let mut texts = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("reading {}", file.display()))?;
        texts.push((file, text));
    }
    let extra: Vec<_> = texts
        .iter()
        .flat_map(|(_, text)| brain::validate::crds_in(text))
        .collect();
    let mut bad = 0;
    for (file, text) in &texts {
        let checked = match brain::validate::text(text, &extra) {
            Ok(c) => c,
            Err(e) => {
                bad += 1;
                println!("{}: {:#}", file.display(), anyhow::Error::from(e));
                continue;
            }
        };
        for c in checked {
            if c.verdict.allowed() {
                println!("{}: {} ok", file.display(), c.key);
            } else {
                bad += 1;
                println!("{}: {} denied", file.display(), c.key);
            }
            for d in &c.verdict.denials {
                println!("{}: {}: {d}", file.display(), c.key);
            }
            for w in &c.verdict.warnings {
                println!("{}: {}: warning: {w}", file.display(), c.key);
            }
        }
    }
    if bad > 0 {
        anyhow::bail!("{bad} invalid DeviceLink(s) or file(s)");
    }
    Ok(())
}
