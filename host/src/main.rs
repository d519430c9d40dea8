//! `limb`: parse the configuration, start tracing, run the chosen mode.

use anyhow::Context as _;
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
        Command::Package {
            file,
            configmap,
            namespace,
        } => {
            let (ctx, cache) = limb::run::context(&config.runtime)?;
            let bytes =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let adaptor = limb::adaptors::load_with(
                &ctx.runtime,
                &cache,
                ctx.policy.compile(),
                bytes.clone(),
                file.display().to_string(),
            )
            .await
            .with_context(|| format!("{} is not a valid adaptor", file.display()))?;
            let name = configmap
                .unwrap_or_else(|| limb::adaptors::package::configmap_name(&adaptor.info.name));
            let models: Vec<String> = adaptor
                .models()
                .map(|m| format!("{}/{}", m.api_version, m.kind))
                .collect();
            print!(
                "{}",
                limb::adaptors::package::render(
                    &name,
                    &namespace,
                    &adaptor.info.name,
                    &models,
                    &bytes
                )
            );
        }
        Command::Inspect { files } => {
            let (ctx, cache) = limb::run::context(&config.runtime)?;
            let mut failed = 0;
            for file in files {
                let bytes =
                    std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
                match limb::adaptors::load_with(
                    &ctx.runtime,
                    &cache,
                    ctx.policy.compile(),
                    bytes,
                    file.display().to_string(),
                )
                .await
                {
                    Ok(a) => {
                        println!(
                            "{}: {} {} (sha256 {})",
                            file.display(),
                            a.info.name,
                            a.info.version,
                            a.digest
                        );
                        for m in &a.info.models {
                            println!("  serves {}/{}", m.model.api_version, m.model.kind);
                            for f in &m.resource_fields {
                                println!("    resource field {} ({:?})", f.path, f.kind);
                            }
                        }
                    }
                    Err(e) => {
                        failed += 1;
                        println!("{}: refused: {e}", file.display());
                    }
                }
            }
            if failed > 0 {
                anyhow::bail!("{failed} adaptor(s) refused");
            }
        }
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
