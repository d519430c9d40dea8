//! `limb`: parse the configuration, start tracing, run the chosen mode.

use clap::Parser;
use limb::config::{Command, Config, LogFormat};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    init_tracing(config.log_format);
    match config.command {
        Command::Standalone(args) => limb::run::standalone(&config.runtime, args).await?,
        #[cfg(feature = "cluster")]
        Command::Cluster(args) => limb::run::cluster(&config.runtime, args).await?,
    }
    Ok(())
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("LIMB_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,wasmtime=warn,cranelift=warn")
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}
