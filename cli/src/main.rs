// `octopus`: parse the command line once, run the command, print text or JSON.
// `src/bin/kubectl-octopus.rs` includes this file, so both binaries are this main
// (no inner attributes or `mod` items here, for that reason).

use anyhow::Context as _;
use clap::Parser as _;
use octopus_cli::config::{Command, Config, Format};
use octopus_cli::{cluster, inspect, list, models, push};

fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

async fn run(config: Config) -> anyhow::Result<()> {
    let limits = inspect::compile_limits(config.policy.as_deref())?;
    match config.command {
        Command::Inspect(args) => {
            let inspector = inspect::Inspector::new(limits)?;
            let mut reports = Vec::with_capacity(args.files.len());
            for file in &args.files {
                reports.push(inspector.inspect_file(file).await?.report);
            }
            match config.output {
                Format::Text => {
                    let texts: Vec<String> = reports.iter().map(inspect::Report::text).collect();
                    print!("{}", texts.join("\n"));
                }
                Format::Json => print_json(&inspect::json_document(&reports))?,
            }
            inspect::verdict(&reports)?;
        }
        Command::Push(args) => {
            let inspector = inspect::Inspector::new(limits)?;
            let inspection = inspector.inspect_file(&args.file).await?;
            let prepared = push::prepare(inspection, &args)?;
            if args.dry_run {
                for why in &prepared.overridden {
                    eprintln!("warning: {why} (--force)");
                }
                dry_run_diff(&config.kube, &prepared).await;
                print!(
                    "{}",
                    push::render(&prepared, &config.namespace, config.output)?
                );
                eprintln!(
                    "dry run: {} as {}/{}; nothing was written",
                    prepared.adaptor, config.namespace, prepared.configmap
                );
                return Ok(());
            }
            let client = cluster::connect(&config.kube).await?;
            let report = push::apply(client, &config.namespace, &prepared, args.force).await?;
            match config.output {
                Format::Text => print!("{}", report.text()),
                Format::Json => print_json(&report)?,
            }
        }
        Command::Crd(args) => {
            let inspector = inspect::Inspector::new(limits)?;
            let inspection = inspector.inspect_file(&args.file).await?;
            let Some(adaptor) = inspection.adaptor else {
                anyhow::bail!(
                    "{}: the limb refuses this component: {}",
                    args.file.display(),
                    inspection.report.reasons.join("; ")
                );
            };
            let crds = models::crds(&adaptor)?;
            match config.output {
                Format::Text => print!("{}", models::render(&crds)?),
                Format::Json => print_json(
                    &serde_json::json!({"apiVersion": "v1", "kind": "List", "items": crds}),
                )?,
            }
        }
        Command::List => {
            let client = cluster::connect(&config.kube).await?;
            let listing = list::run(client, &config.namespace).await?;
            if let Some(e) = &listing.links_error {
                eprintln!("warning: {e}");
            }
            match config.output {
                Format::Text => print!("{}", listing.text()),
                Format::Json => print_json(&listing)?,
            }
        }
    }
    Ok(())
}

/// `push --dry-run`: what the model CRDs would change and which links would be held,
/// when a cluster is reachable; the dry run itself needs none.
async fn dry_run_diff(kube: &octopus_cli::config::KubeArgs, prepared: &push::Prepared) {
    if prepared.crds.is_empty() {
        return;
    }
    let diff = match cluster::connect(kube).await {
        Ok(client) => models::push(
            client,
            &prepared.crds,
            &prepared.adaptor,
            push::FIELD_MANAGER,
            false,
        )
        .await
        .map_err(anyhow::Error::from),
        Err(e) => Err(e.into()),
    };
    match diff {
        Ok(changes) => {
            eprintln!("against the cluster (nothing written):");
            for c in &changes {
                eprint!("{}", c.text());
            }
        }
        Err(e) => eprintln!("no diff against the cluster: {e:#}"),
    }
}

fn main() -> std::process::ExitCode {
    let config = Config::parse();
    if config.verbose {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(
                "info,wasmtime=warn,cranelift=warn",
            ))
            .with_writer(std::io::stderr)
            .init();
    }
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
        .and_then(|rt| {
            let result = rt.block_on(run(config));
            // A compile abandoned past the policy's compileTimeout still runs on the
            // blocking pool; the verdict is given, so it must not hold the exit.
            rt.shutdown_background();
            result
        });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
