//! `jobs <subcommand>`: runs one scheduled job (or `run-all`) against the configured
//! database and storage, logs its summary, and exits 0 on success, 1 when the job or any item
//! failed, 2 on a usage or configuration error.

use std::process::ExitCode;

use registry_common::bootstrap::{StorageBackends, open_storage};
use registry_common::config::JobsBinaryConfig;
use registry_common::metadata::Metadata;
use registry_common::telemetry;
use registry_jobs::{Job, JobContext};

fn usage() -> String {
    let names: Vec<&str> = Job::ALL.iter().map(|j| j.name()).collect();
    format!("usage: jobs <{}>", names.join("|"))
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (Some(name), None) = (args.next(), args.next()) else {
        eprintln!("{}", usage());
        return ExitCode::from(2);
    };
    let Some(job) = Job::from_name(&name) else {
        eprintln!("jobs: unknown job {name:?}\n{}", usage());
        return ExitCode::from(2);
    };
    let config = match JobsBinaryConfig::from_env() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("jobs: {e}");
            return ExitCode::from(2);
        }
    };
    telemetry::init(&config.log);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("jobs: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        match run(job, config).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!(job = job.name(), error = %registry_common::error::ErrorChain(e.as_ref()), "job failed");
                ExitCode::FAILURE
            }
        }
    })
}

async fn run(
    job: Job,
    config: JobsBinaryConfig,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let mut db = config.db.clone();
    // `migrate` is the job that migrates; the others never change the schema.
    db.db_migrate_on_start = false;
    let metadata = Metadata::connect(&config.database_url(), &db).await?;
    let backends = StorageBackends::default()
        .with_gcs(registry_gcs::open_storage)
        .with_s3(registry_s3::open_storage);
    let ctx = JobContext {
        metadata: metadata.clone(),
        storage: open_storage(&config.storage, &backends).await?,
        config: config.jobs,
        upstreams: config.upstreams.upstreams.clone(),
    };
    let result = registry_jobs::run(job, &ctx).await;
    metadata.close().await;
    result?;
    Ok(())
}
