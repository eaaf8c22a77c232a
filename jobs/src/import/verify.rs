//! The check at the end of a run, on this registry's side alone: every tag the source listed
//! resolves here to the digest it names there, every manifest it listed (a layout's
//! revisions, untagged ones included) is here, and every blob those manifests reference
//! (through indexes and referrers) is linked with the declared size and in storage.

use std::collections::HashSet;
use std::sync::Arc;

use registry_common::error::ErrorChain;
use registry_common::metadata::Metadata;
use registry_common::oci::{Digest, ParsedManifest, RepositoryName};
use registry_common::storage::{BlobKey, Storage};

use super::source::SourceTag;

/// What the check found.
#[derive(Debug, Clone, Default)]
pub struct Verification {
    /// Tags that resolve here to the source's digest.
    pub tags_ok: u64,
    /// Blobs (per repository) present with their declared size, and their bytes.
    pub blobs: u64,
    pub blob_bytes: u64,
    /// Everything that differs, one line each.
    pub mismatches: Vec<String>,
}

/// What the source listed in one repository.
#[derive(Debug)]
pub struct Listed {
    pub repository: RepositoryName,
    pub tags: Vec<SourceTag>,
    /// Every manifest, from a source that lists them ([`super::source::ImportSource::all_manifests`]).
    pub manifests: Vec<Digest>,
}

/// Checks the tags and manifests listed per repository.
pub async fn check(
    metadata: &Metadata,
    storage: &Arc<dyn Storage>,
    listed: &[Listed],
) -> Verification {
    let mut found = Verification::default();
    for Listed {
        repository,
        tags,
        manifests,
    } in listed
    {
        // What the tags that match reach, and every manifest the source listed.
        let mut pending = manifests.clone();
        for tag in tags {
            match metadata.manifest_by_tag(repository, &tag.tag).await {
                Ok(Some(here)) if here.digest == tag.digest => {
                    found.tags_ok += 1;
                    pending.push(here.digest);
                }
                Ok(Some(here)) => found.mismatches.push(format!(
                    "{repository}:{}: {} at the source, {} here",
                    tag.tag, tag.digest, here.digest
                )),
                Ok(None) => found.mismatches.push(format!(
                    "{repository}:{}: {} at the source, missing here",
                    tag.tag, tag.digest
                )),
                Err(e) => {
                    found
                        .mismatches
                        .push(format!("{repository}:{}: {}", tag.tag, ErrorChain(&e)))
                }
            }
        }
        let mut seen = HashSet::new();
        let mut blobs = HashSet::new();
        while let Some(digest) = pending.pop() {
            if seen.insert(digest.clone()) {
                walk(
                    metadata,
                    repository,
                    &digest,
                    &mut pending,
                    &mut blobs,
                    &mut found,
                )
                .await;
            }
        }
        for (digest, size) in blobs {
            check_blob(metadata, storage, repository, &digest, size, &mut found).await;
        }
    }
    found
}

/// One manifest here: its children and referrers join `pending`, its blobs `blobs`.
async fn walk(
    metadata: &Metadata,
    repository: &RepositoryName,
    digest: &Digest,
    pending: &mut Vec<Digest>,
    blobs: &mut HashSet<(Digest, u64)>,
    found: &mut Verification,
) {
    let mut mismatch = |why: String| {
        found
            .mismatches
            .push(format!("{repository}@{digest}: {why}"))
    };
    let manifest = match metadata.manifest_by_digest(repository, digest).await {
        Ok(Some(manifest)) => manifest,
        Ok(None) => return mismatch("missing here".to_owned()),
        Err(e) => return mismatch(ErrorChain(&e).to_string()),
    };
    match ParsedManifest::parse(Some(manifest.media_type.as_str()), &manifest.payload) {
        Ok(parsed) => {
            pending.extend(parsed.children.into_iter().map(|c| c.digest));
            blobs.extend(parsed.blobs.into_iter().map(|b| (b.digest, b.size)));
        }
        Err(e) => return mismatch(ErrorChain(&e).to_string()),
    }
    match metadata.referrers(repository, digest, None).await {
        Ok(rows) => pending.extend(rows.into_iter().map(|r| r.digest)),
        Err(e) => mismatch(ErrorChain(&e).to_string()),
    }
}

async fn check_blob(
    metadata: &Metadata,
    storage: &Arc<dyn Storage>,
    repository: &RepositoryName,
    digest: &Digest,
    size: u64,
    found: &mut Verification,
) {
    let linked = metadata.linked_blob_size(repository, digest).await;
    let stored = storage.stat(&BlobKey(digest.clone())).await;
    match (linked, stored) {
        (Ok(Some(linked)), Ok(Some(stored))) if linked == size && stored == size => {
            found.blobs += 1;
            found.blob_bytes += size;
        }
        (Ok(linked), Ok(stored)) => found.mismatches.push(format!(
            "{repository}@{digest}: {size} bytes declared, linked here: {linked:?}, in storage: {stored:?}"
        )),
        (Err(e), _) => found
            .mismatches
            .push(format!("{repository}@{digest}: {}", ErrorChain(&e))),
        (_, Err(e)) => found
            .mismatches
            .push(format!("{repository}@{digest}: {}", ErrorChain(&e))),
    }
}
