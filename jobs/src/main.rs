//! `jobs <subcommand>`: runs one scheduled job (or `run-all`) against the configured
//! database and storage, logs its summary, and exits 0 on success, 1 when the job or any item
//! failed, 2 on a usage or configuration error. `jobs import --from <URL>` (or
//! `--from-layout <dir>`) copies another registry into this one (`registry_jobs::import`)
//! and prints its report, with the same exit codes (1: anything failed or does not match).

use std::process::ExitCode;
use std::sync::Arc;

use registry_common::bootstrap::{StorageBackends, open_storage};
use registry_common::config::JobsBinaryConfig;
use registry_common::metadata::Metadata;
use registry_common::telemetry;
use registry_jobs::import::layout::LayoutSource;
use registry_jobs::import::registry::RegistrySource;
use registry_jobs::import::source::ImportSource;
use registry_jobs::import::{ImportOptions, ImportReport};
use registry_jobs::import_cli::ImportFrom;
use registry_jobs::{Job, JobContext};

fn usage() -> String {
    let names: Vec<&str> = Job::ALL.iter().map(|j| j.name()).collect();
    format!(
        "usage: jobs <{}>\n       jobs deliver-events --loop\n       {}",
        names.join("|"),
        registry_jobs::import_cli::USAGE
    )
}

/// The configuration (logging started) and the runtime, or the exit code of the failure:
/// 2 for a configuration the binary cannot use.
fn configured() -> Result<(JobsBinaryConfig, tokio::runtime::Runtime), ExitCode> {
    let config = JobsBinaryConfig::from_env().map_err(|e| {
        eprintln!("jobs: {e}");
        ExitCode::from(2)
    })?;
    telemetry::init(&config.log);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("jobs: starting the runtime: {e}");
            ExitCode::FAILURE
        })?;
    Ok((config, runtime))
}

/// Every byte store this binary can open.
fn storage_backends() -> StorageBackends {
    StorageBackends::default()
        .with_gcs(registry_gcs::open_storage)
        .with_s3(registry_s3::open_storage)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().is_some_and(|a| a == "import") {
        return import_main(&args[1..]);
    }
    let (name, looping) = match args.as_slice() {
        [name] => (name, false),
        [name, flag] if name == "deliver-events" && flag == "--loop" => (name, true),
        _ => {
            eprintln!("{}", usage());
            return ExitCode::from(2);
        }
    };
    let Some(job) = Job::from_name(name) else {
        eprintln!("jobs: unknown job {name:?}\n{}", usage());
        return ExitCode::from(2);
    };
    let (config, runtime) = match configured() {
        Ok(started) => started,
        Err(code) => return code,
    };
    runtime.block_on(async move {
        match run(job, looping, config).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!(job = job.name(), error = %registry_common::error::ErrorChain(e.as_ref()), "job failed");
                ExitCode::FAILURE
            }
        }
    })
}

/// `jobs import …`: parses, runs, prints the report.
fn import_main(args: &[String]) -> ExitCode {
    let command = match registry_jobs::import_cli::parse(args, |var| std::env::var(var).ok()) {
        Ok(command) => command,
        Err(e) => {
            eprintln!("jobs import: {e}\n{}", usage());
            return ExitCode::from(2);
        }
    };
    let source: Result<Arc<dyn ImportSource>, _> = match &command.from {
        ImportFrom::Registry { url, auth } => RegistrySource::new(url, auth.clone())
            .map(|s| Arc::new(s) as _)
            .map_err(|e| format!("--from: {e}")),
        ImportFrom::Layout(dir) => LayoutSource::new(dir)
            .map(|s| Arc::new(s) as _)
            .map_err(|e| format!("--from-layout: {e}")),
    };
    let source = match source {
        Ok(source) => source,
        Err(e) => {
            eprintln!("jobs import: {e}");
            return ExitCode::from(2);
        }
    };
    let (config, runtime) = match configured() {
        Ok(started) => started,
        Err(code) => return code,
    };
    runtime.block_on(async move {
        match import(source, command.options, config).await {
            Ok(report) => {
                let text = report.render();
                print!("{text}");
                tracing::info!(ok = report.ok(), report = %text, "import finished");
                if report.ok() {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                }
            }
            Err(e) => {
                tracing::error!(error = %registry_common::error::ErrorChain(e.as_ref()), "import failed");
                ExitCode::FAILURE
            }
        }
    })
}

async fn import(
    source: Arc<dyn ImportSource>,
    options: ImportOptions,
    config: JobsBinaryConfig,
) -> Result<ImportReport, Box<dyn std::error::Error + Send + Sync>> {
    // The import writes through the services of a push: the schema must be the current one
    // (a fresh registry's database is migrated here, as the registry does at start-up).
    let metadata = Metadata::connect(&config.database_url(), &config.db).await?;
    let backends = storage_backends();
    let storage = open_storage(&config.storage, &backends).await?;
    let result = registry_jobs::import::run(source, metadata.clone(), storage, options).await;
    metadata.close().await;
    Ok(result?)
}

async fn run(
    job: Job,
    looping: bool,
    config: JobsBinaryConfig,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let mut db = config.db.clone();
    // `migrate` is the job that migrates; the others never change the schema.
    db.db_migrate_on_start = false;
    let metadata = Metadata::connect(&config.database_url(), &db).await?;
    let backends = storage_backends();
    let ctx = JobContext {
        metadata: metadata.clone(),
        storage: open_storage(&config.storage, &backends).await?,
        config: config.jobs,
        upstreams: config.upstreams.upstreams.clone(),
        deliverer: registry_jobs::deliverer(&metadata, &config.events),
    };
    let result = if looping {
        registry_jobs::deliver_events::run_loop(&ctx)
            .await
            .map(|()| Vec::new())
    } else {
        registry_jobs::run(job, &ctx).await
    };
    metadata.close().await;
    result?;
    Ok(())
}
