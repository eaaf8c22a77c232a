//! `tags-list` and `catalog`: request rates of the two listings.
//!
//! `tags-list` puts one small image under `--tags` tags in one repository (untimed), then
//! lists them `--requests` times, `--concurrency` at a time; every answer (all pages, when the
//! registry paginates) must hold exactly the tags put. `catalog` pushes one small image into
//! each of `--repos` repositories (untimed), then lists the catalog (`n=1000`, following
//! `Link`) `--requests` times; every answer must hold all of them.
//!
//! ```text
//! bench tags-list --url URL [--pid PID] [--tags 1000] [--requests 200] [--concurrency 4]
//! bench catalog --url URL [--pid PID] [--repos 500] [--requests 100] [--concurrency 4]
//! ```

use std::collections::BTreeSet;
use std::sync::Arc;

use anyhow::ensure;

use super::concurrently;
use super::images::{Image, MANIFEST_TYPE};
use crate::cli::Flags;
use crate::client::Registry;
use crate::report::{Better, Line, Spread};

/// Concurrency of the untimed set-up.
const SETUP_CONCURRENCY: usize = 8;

pub async fn tags(args: &[String]) -> anyhow::Result<Vec<String>> {
    let flags = Flags::parse(args, &["tags", "requests", "concurrency"])?;
    let count = usize::try_from(flags.number("tags", 1000)?)?;
    let requests = usize::try_from(flags.number("requests", 200)?)?;
    let concurrency = usize::try_from(flags.number("concurrency", 4)?)?;
    let registry = Registry::new(&flags.url()?)?;
    registry.ping().await?;

    let repo = "bench/tags";
    let image = Arc::new(Image::new("tags"));
    image.push(&registry, repo, "t0").await?;
    let expected: Arc<BTreeSet<String>> = Arc::new((0..count).map(|i| format!("t{i}")).collect());
    concurrently(count, SETUP_CONCURRENCY, {
        let (registry, image) = (registry.clone(), image.clone());
        move |i| {
            let (registry, image) = (registry.clone(), image.clone());
            async move {
                let manifest = &image.manifest;
                registry
                    .put_manifest(
                        repo,
                        &format!("t{i}"),
                        MANIFEST_TYPE,
                        manifest.data.clone(),
                        &manifest.digest,
                    )
                    .await
            }
        }
    })
    .await?;

    let (timed, usage) = crate::server::watched(flags.pid()?, {
        let (registry, expected) = (registry.clone(), expected.clone());
        concurrently(requests, concurrency, move |_| {
            let (registry, expected) = (registry.clone(), expected.clone());
            async move {
                let listed = registry.tags(repo).await?;
                let n = listed.len();
                let listed: BTreeSet<String> = listed.into_iter().collect();
                ensure!(
                    n == expected.len() && listed == *expected,
                    "the tag list holds {n} entries, not the {} tags put",
                    expected.len()
                );
                Ok(())
            }
        })
    })
    .await?;
    Ok(vec![rate_line(
        "tags-list",
        format!("{count} tags c{concurrency}"),
        &timed,
        usage,
        &flags,
    )])
}

pub async fn catalog(args: &[String]) -> anyhow::Result<Vec<String>> {
    let flags = Flags::parse(args, &["repos", "requests", "concurrency"])?;
    let count = usize::try_from(flags.number("repos", 500)?)?;
    let requests = usize::try_from(flags.number("requests", 100)?)?;
    let concurrency = usize::try_from(flags.number("concurrency", 4)?)?;
    let registry = Registry::new(&flags.url()?)?;
    registry.ping().await?;

    let image = Arc::new(Image::new("catalog"));
    let names: Arc<Vec<String>> =
        Arc::new((0..count).map(|i| format!("bench/cat{i:04}")).collect());
    concurrently(count, SETUP_CONCURRENCY, {
        let (registry, image, names) = (registry.clone(), image.clone(), names.clone());
        move |i| {
            let (registry, image, names) = (registry.clone(), image.clone(), names.clone());
            async move { image.push(&registry, &names[i], "latest").await }
        }
    })
    .await?;

    let (timed, usage) = crate::server::watched(flags.pid()?, {
        let (registry, names) = (registry.clone(), names.clone());
        concurrently(requests, concurrency, move |_| {
            let (registry, names) = (registry.clone(), names.clone());
            async move {
                let listed: BTreeSet<String> = registry.catalog().await?.into_iter().collect();
                let missing = names.iter().filter(|n| !listed.contains(*n)).count();
                ensure!(
                    missing == 0,
                    "the catalog misses {missing} of the {} repositories",
                    names.len()
                );
                Ok(())
            }
        })
    })
    .await?;
    Ok(vec![rate_line(
        "catalog",
        format!("{count} repositories c{concurrency}"),
        &timed,
        usage,
        &flags,
    )])
}

fn rate_line(
    scenario: &str,
    case: String,
    timed: &super::Timed,
    usage: Option<crate::server::Usage>,
    flags: &Flags,
) -> String {
    let mut line = Line::new(scenario, case);
    line.figure(
        "requests",
        timed.rate(),
        "req/s",
        Better::Higher,
        Spread::of(&timed.millis()),
    )
    .usage(usage)
    .detail("latency_unit", "ms");
    line.render(flags)
}
