//! Filesystem storage (the embedded default). A part is one file written by a blocking
//! writer thread and fsync'd before it counts; a blob appears under its final name only
//! complete (hard link of a single part, or a concatenated temp file, kept beside the parts,
//! renamed into place).
//!
//! Directory entries are durable before anything that relies on them is acknowledged: the
//! directory a part or blob is linked into is fsync'd after the link, and the parent of every
//! directory created is fsync'd after the `mkdir`, once per operation (the table of syscalls
//! per step is in docs/crash-consistency.md). Deletes are not synced: one undone by a power
//! loss brings back garbage, which the jobs find again.

use std::collections::HashSet;
use std::io::{IoSlice, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::io::AsyncReadExt;
use tokio_util::io::ReaderStream;

use super::{
    BlobKey, BodyStream, ByteRange, ByteStream, Storage, StorageError, StoredBlob, StoredUpload,
    UploadPartKey,
};
use crate::oci::{Algorithm, Digest, UploadId};

/// Bytes gathered before a write call.
const WRITE_BUFFER: usize = 1024 * 1024;
/// Bytes written between two background flushes of a part.
const SYNC_EVERY: u64 = 2 * 1024 * 1024;
const READ_CHUNK: usize = 256 * 1024;

/// Blobs and upload parts under one directory.
#[derive(Debug, Clone)]
pub struct FsStorage {
    root: PathBuf,
}

impl FsStorage {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        FsStorage { root: root.into() }
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.root.join(relative)
    }
}

fn io_err(key: &str) -> impl FnOnce(std::io::Error) -> StorageError + '_ {
    move |source| StorageError::Io {
        key: key.to_owned(),
        source,
    }
}

fn join_err(key: &str, e: tokio::task::JoinError) -> StorageError {
    StorageError::Io {
        key: key.to_owned(),
        source: std::io::Error::other(e),
    }
}

/// Makes a rename or link into `dir` durable.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Creates `dir` and any missing ancestors, each new entry made durable: a directory created
/// but not yet in its parent's entries on disk would take everything linked into it along on
/// a power loss, however well the files inside were synced. The parent of each directory this
/// creates is fsync'd once; an existing `dir`, the common case, costs one `mkdir` and nothing
/// else. Returns whether it created `dir`: when another writer did, that writer may not have
/// synced its entry yet, which callers about to acknowledge something inside must see to
/// (see [`ensure_blob_dir`] and [`create_with_batch`]).
fn create_dir_durable(dir: &Path) -> std::io::Result<bool> {
    match std::fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(false),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let parent = dir.parent().ok_or(e)?;
            create_dir_durable(parent)?;
            match std::fs::create_dir(dir) {
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(false),
                other => other?,
            }
        }
        Err(e) => return Err(e),
    }
    sync_dir(dir.parent().unwrap_or(Path::new(".")))?;
    Ok(true)
}

/// Makes sure a blob's prefix directory (`blobs/<alg>/<xx>`) exists with its entry durable.
/// One this process found created by another writer gets its parent synced once too (that
/// writer may still be between its `mkdir` and its sync); the set of directories known
/// durable is bounded (256 per algorithm), so the hot path is one lookup.
fn ensure_blob_dir(dir: &Path) -> std::io::Result<()> {
    static DURABLE: OnceLock<Mutex<HashSet<PathBuf>>> = OnceLock::new();
    let known = DURABLE.get_or_init(Mutex::default);
    if known.lock().map_err(poisoned)?.contains(dir) {
        return Ok(());
    }
    if !create_dir_durable(dir)? {
        sync_dir(dir.parent().unwrap_or(Path::new(".")))?;
    }
    known.lock().map_err(poisoned)?.insert(dir.to_path_buf());
    Ok(())
}

fn poisoned<T>(_: std::sync::PoisonError<T>) -> std::io::Error {
    std::io::Error::other("a thread panicked holding the set of durable directories")
}

#[async_trait]
impl Storage for FsStorage {
    async fn put_part(
        &self,
        key: &UploadPartKey,
        body: BodyStream<'_>,
    ) -> Result<u64, StorageError> {
        let rel = key.path();
        let path = self.path(&rel);
        // A session's first part may be racing another request for the session's directory.
        let first = key.part.offset().is_none_or(|offset| offset == 0);
        let result = write_part(&path, first, body).await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&path).await;
        }
        result.map_err(|failure| match failure {
            PartFailure::Body(source) => StorageError::Body { source },
            PartFailure::Io(source) => StorageError::Io { key: rel, source },
        })
    }

    async fn assemble(&self, parts: &[UploadPartKey], blob: &BlobKey) -> Result<(), StorageError> {
        let rel = blob.path();
        let target = self.path(&rel);
        let sources: Vec<PathBuf> = parts.iter().map(|p| self.path(&p.path())).collect();
        let key = rel.clone();
        tokio::task::spawn_blocking(move || assemble_blocking(&sources, &target))
            .await
            .map_err(|e| join_err(&key, e))?
            .map_err(|source| StorageError::Io { key: rel, source })
    }

    async fn read_part(&self, key: &UploadPartKey) -> Result<ByteStream, StorageError> {
        let rel = key.path();
        let file = tokio::fs::File::open(self.path(&rel))
            .await
            .map_err(io_err(&rel))?;
        Ok(Box::pin(ReaderStream::with_capacity(file, READ_CHUNK)))
    }

    async fn read(
        &self,
        blob: &BlobKey,
        range: Option<ByteRange>,
    ) -> Result<ByteStream, StorageError> {
        let rel = blob.path();
        let path = self.path(&rel);
        let mut file = match tokio::fs::File::open(&path).await {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StorageError::NotFound { key: rel });
            }
            Err(e) => return Err(io_err(&rel)(e)),
        };
        let stream: ByteStream = match range {
            None => Box::pin(ReaderStream::with_capacity(file, READ_CHUNK)),
            Some(range) => {
                let mut std_file = file.into_std().await;
                let start = range.start;
                std_file = tokio::task::spawn_blocking(move || {
                    std_file.seek(SeekFrom::Start(start)).map(|_| std_file)
                })
                .await
                .map_err(|e| join_err(&rel, e))?
                .map_err(io_err(&rel))?;
                file = tokio::fs::File::from_std(std_file);
                Box::pin(ReaderStream::with_capacity(
                    file.take(range.len()),
                    READ_CHUNK,
                ))
            }
        };
        Ok(stream)
    }

    async fn stat(&self, blob: &BlobKey) -> Result<Option<u64>, StorageError> {
        let rel = blob.path();
        match tokio::fs::metadata(self.path(&rel)).await {
            Ok(meta) => Ok(Some(meta.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(&rel)(e)),
        }
    }

    async fn delete_blob(&self, blob: &BlobKey) -> Result<(), StorageError> {
        let rel = blob.path();
        match tokio::fs::remove_file(self.path(&rel)).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_err(&rel)(e)),
            _ => Ok(()),
        }
    }

    async fn delete_parts(&self, parts: &[UploadPartKey]) -> Result<(), StorageError> {
        let paths: Vec<(String, PathBuf)> = parts
            .iter()
            .map(|part| {
                let rel = part.path();
                let path = self.path(&rel);
                (rel, path)
            })
            .collect();
        // One blocking task for the lot: a small upload's clean-up is a single hand-off.
        tokio::task::spawn_blocking(move || {
            for (rel, path) in &paths {
                match std::fs::remove_file(path) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(io_err(rel)(e));
                    }
                    _ => {}
                }
            }
            // The upload's directory goes with its last part; a non-empty one stays.
            if let Some(dir) = paths.first().and_then(|(_, path)| path.parent()) {
                let _ = std::fs::remove_dir(dir);
            }
            Ok(())
        })
        .await
        .map_err(|e| join_err("upload parts", e))?
    }

    async fn list_blobs(
        &self,
        algorithm: Algorithm,
        prefix: &str,
    ) -> Result<Vec<StoredBlob>, StorageError> {
        let rel = format!("blobs/{}/{prefix}", algorithm.as_str());
        let dir = self.path(&rel);
        let mut found = Vec::new();
        let mut entries = match tokio::fs::read_dir(&dir).await {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(found),
            Err(e) => return Err(io_err(&rel)(e)),
        };
        while let Some(entry) = entries.next_entry().await.map_err(io_err(&rel))? {
            let name = entry.file_name().to_string_lossy().into_owned();
            // Temp files of an assembly in progress (or crashed) are not blobs.
            let Ok(digest) = Digest::parse(&format!("{}:{name}", algorithm.as_str())) else {
                continue;
            };
            let meta = entry.metadata().await.map_err(io_err(&rel))?;
            found.push(StoredBlob {
                key: BlobKey(digest),
                size: meta.len(),
                modified: meta.modified().map_err(io_err(&rel))?,
            });
        }
        found.sort_by(|a, b| a.key.0.cmp(&b.key.0));
        Ok(found)
    }

    async fn list_uploads(&self) -> Result<Vec<StoredUpload>, StorageError> {
        let rel = "uploads".to_owned();
        let mut found = Vec::new();
        let mut uploads = match tokio::fs::read_dir(self.path(&rel)).await {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(found),
            Err(e) => return Err(io_err(&rel)(e)),
        };
        while let Some(dir) = uploads.next_entry().await.map_err(io_err(&rel))? {
            let Ok(upload) = UploadId::parse(&dir.file_name().to_string_lossy()) else {
                continue;
            };
            let dir_meta = dir.metadata().await.map_err(io_err(&rel))?;
            let mut modified = dir_meta.modified().map_err(io_err(&rel))?;
            let mut parts = Vec::new();
            let mut files = tokio::fs::read_dir(dir.path())
                .await
                .map_err(io_err(&rel))?;
            while let Some(file) = files.next_entry().await.map_err(io_err(&rel))? {
                let meta = file.metadata().await.map_err(io_err(&rel))?;
                modified = modified.max(meta.modified().map_err(io_err(&rel))?);
                parts.push(UploadPartKey {
                    upload: upload.clone(),
                    part: file.file_name().to_string_lossy().into_owned().into(),
                });
            }
            found.push(StoredUpload {
                upload,
                parts,
                modified,
            });
        }
        Ok(found)
    }
}

enum PartFailure {
    Body(std::io::Error),
    Io(std::io::Error),
}

/// Streams a body into a new file. Chunks gather into a batch (the body's own buffers, not
/// copied) that a blocking task writes while the next one fills (two batches at most), so
/// memory stays flat, network reads and disk writes overlap, and an idle client holds no
/// thread. Every `SYNC_EVERY` bytes a second blocking task flushes what is written so far
/// (`fdatasync` on a duplicate handle) while writing goes on, so the disk works during the
/// upload instead of all at the final `fsync`, which then has only the tail left. The file
/// is created with the first batch: a body that fits in one batch (most blobs of an image
/// but its big layers) costs a single blocking task from directory to final `fsync`.
async fn write_part(path: &Path, first: bool, body: BodyStream<'_>) -> Result<u64, PartFailure> {
    let mut in_flight: Option<tokio::task::JoinHandle<std::io::Result<std::fs::File>>> = None;
    let mut syncing: Option<tokio::task::JoinHandle<std::io::Result<()>>> = None;
    let mut batch: Vec<Bytes> = Vec::new();
    let (mut batched, mut unsynced, mut written) = (0usize, 0u64, 0u64);
    loop {
        let next = body.next().await;
        let finished = match next {
            Some(Ok(chunk)) => {
                written += chunk.len() as u64;
                batched += chunk.len();
                if !chunk.is_empty() {
                    batch.push(chunk);
                }
                false
            }
            Some(Err(e)) => {
                if let Some(writing) = in_flight {
                    let _ = writing.await;
                }
                return Err(PartFailure::Body(e));
            }
            None => true,
        };
        let Some(writing) = in_flight.take() else {
            if batched >= WRITE_BUFFER || finished {
                let first = create_with_batch(
                    path.to_path_buf(),
                    first,
                    std::mem::take(&mut batch),
                    finished,
                );
                if finished {
                    joined(first.await)?;
                    return Ok(written);
                }
                in_flight = Some(first);
                batched = 0;
            }
            continue;
        };
        if batched >= WRITE_BUFFER || (finished && !batch.is_empty()) {
            let file = joined(writing.await)?;
            unsynced += batched as u64;
            if unsynced >= SYNC_EVERY && syncing.as_ref().is_none_or(|s| s.is_finished()) {
                if let Some(done) = syncing.take() {
                    joined_sync(done.await)?;
                }
                let handle = file.try_clone().map_err(PartFailure::Io)?;
                syncing = Some(tokio::task::spawn_blocking(move || handle.sync_data()));
                unsynced = 0;
            }
            in_flight = Some(write_batch(file, std::mem::take(&mut batch)));
            batched = 0;
        } else {
            in_flight = Some(writing);
        }
        if finished {
            break;
        }
    }
    let file = match in_flight {
        Some(writing) => joined(writing.await)?,
        None => return Err(PartFailure::Io(std::io::Error::other("part never opened"))),
    };
    if let Some(done) = syncing.take() {
        joined_sync(done.await)?;
    }
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    tokio::task::spawn_blocking(move || {
        file.sync_all()?;
        sync_dir(&dir)
    })
    .await
    .map_err(|e| PartFailure::Io(std::io::Error::other(e)))?
    .map_err(PartFailure::Io)?;
    Ok(written)
}

/// Creates the part file (and its directory) and writes the first batch, on one blocking
/// thread; when the body is `complete`, also makes it durable (file and directory).
///
/// The upload's directory is made by the session's first part (offset 0). A part at offset 0
/// that finds the directory made by a racing request syncs `uploads/` itself, since the other
/// may not have yet; a later part needs not: its session moved past 0 only once a first part
/// was durable, directory entry included.
fn create_with_batch(
    path: PathBuf,
    first: bool,
    batch: Vec<Bytes>,
    complete: bool,
) -> tokio::task::JoinHandle<std::io::Result<std::fs::File>> {
    tokio::task::spawn_blocking(move || {
        let dir = path.parent().unwrap_or(Path::new("."));
        if !create_dir_durable(dir)? && first {
            sync_dir(dir.parent().unwrap_or(Path::new(".")))?;
        }
        let mut file = std::fs::File::create(&path)?;
        write_all_vectored(&mut file, &batch)?;
        if complete {
            file.sync_all()?;
            sync_dir(dir)?;
        }
        Ok(file)
    })
}

/// Writes a batch of chunks in as few calls as it takes, on a blocking thread.
fn write_batch(
    file: std::fs::File,
    batch: Vec<Bytes>,
) -> tokio::task::JoinHandle<std::io::Result<std::fs::File>> {
    tokio::task::spawn_blocking(move || {
        let mut file = file;
        write_all_vectored(&mut file, &batch)?;
        Ok(file)
    })
}

fn write_all_vectored(file: &mut std::fs::File, batch: &[Bytes]) -> std::io::Result<()> {
    let mut slices: Vec<IoSlice<'_>> = batch.iter().map(|c| IoSlice::new(c)).collect();
    let mut slices = &mut slices[..];
    while !slices.is_empty() {
        match file.write_vectored(slices) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut slices, n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn joined_sync(
    result: Result<std::io::Result<()>, tokio::task::JoinError>,
) -> Result<(), PartFailure> {
    result
        .map_err(|e| PartFailure::Io(std::io::Error::other(e)))?
        .map_err(PartFailure::Io)
}

fn joined(
    result: Result<std::io::Result<std::fs::File>, tokio::task::JoinError>,
) -> Result<std::fs::File, PartFailure> {
    result
        .map_err(|e| PartFailure::Io(std::io::Error::other(e)))?
        .map_err(PartFailure::Io)
}

/// Puts the blob in place from its (durable) parts and makes its directory entry durable.
/// A blob already in place still gets its directory synced: it may be the work of a request
/// killed between its rename and its sync, whose entry would not survive a power loss, and
/// this request is about to record the blob's row (one directory fsync, nothing else).
fn assemble_blocking(sources: &[PathBuf], target: &Path) -> std::io::Result<()> {
    let dir = target.parent().unwrap_or(Path::new("."));
    if target.exists() {
        return sync_dir(dir);
    }
    ensure_blob_dir(dir)?;
    match sources {
        // Zero bytes are complete as soon as the file exists: no temp file needed.
        [] => match std::fs::File::create_new(target) {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            other => other?.sync_all()?,
        },
        // The part's bytes and inode were synced when it was written: a link needs only
        // the directory's entry.
        [single] => match std::fs::hard_link(single, target) {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            other => other?,
        },
        many => {
            let tmp = assembly_temp(&many[0]);
            let result = (|| {
                let mut out = std::fs::File::create(&tmp)?;
                for part in many {
                    let mut input = std::fs::File::open(part)?;
                    std::io::copy(&mut input, &mut out)?;
                }
                out.sync_all()?;
                std::fs::rename(&tmp, target)
            })();
            if result.is_err() {
                let _ = std::fs::remove_file(&tmp);
            }
            result?;
        }
    }
    sync_dir(dir)
}

/// Where a multi-part assembly writes before its rename into place: beside the upload's
/// parts (the same filesystem), so that the temp file of an assembly cut off by a crash goes
/// with the upload's other leftovers (`upload-cleanup`), never among the blobs.
fn assembly_temp(first_part: &Path) -> PathBuf {
    first_part.with_file_name(format!("assembly-{}.tmp", uuid::Uuid::new_v4().simple()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::{Digest, UploadId};

    fn body(
        chunks: &[&'static [u8]],
    ) -> impl futures_util::Stream<Item = std::io::Result<Bytes>> + Unpin {
        futures_util::stream::iter(
            chunks
                .iter()
                .map(|c| Ok(Bytes::from_static(c)))
                .collect::<Vec<_>>(),
        )
    }

    async fn read_all(mut s: ByteStream) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(chunk) = s.next().await {
            out.extend_from_slice(&chunk.unwrap());
        }
        out
    }

    #[tokio::test]
    async fn parts_assemble_into_a_readable_blob() {
        let dir = tempfile::tempdir().unwrap();
        let storage = FsStorage::new(dir.path());
        let upload = UploadId::new();
        let a = UploadPartKey {
            upload: upload.clone(),
            part: "0-a".into(),
        };
        let b = UploadPartKey {
            upload: upload.clone(),
            part: "5-b".into(),
        };
        assert_eq!(
            storage
                .put_part(&a, &mut body(&[b"hel", b"lo"]))
                .await
                .unwrap(),
            5
        );
        assert_eq!(
            storage.put_part(&b, &mut body(&[b" world"])).await.unwrap(),
            6
        );
        let key = BlobKey(Digest::sha256_of(b"hello world"));
        storage
            .assemble(&[a.clone(), b.clone()], &key)
            .await
            .unwrap();
        assert_eq!(storage.stat(&key).await.unwrap(), Some(11));
        assert_eq!(
            read_all(storage.read(&key, None).await.unwrap()).await,
            b"hello world"
        );
        let range = ByteRange { start: 6, end: 9 };
        assert_eq!(
            read_all(storage.read(&key, Some(range)).await.unwrap()).await,
            b"worl"
        );
        storage.delete_parts(&[a, b]).await.unwrap();
        assert_eq!(
            read_all(storage.read(&key, None).await.unwrap()).await,
            b"hello world"
        );
        storage.delete_blob(&key).await.unwrap();
        assert_eq!(storage.stat(&key).await.unwrap(), None);
    }

    #[tokio::test]
    async fn an_assembly_cut_off_leaves_its_temp_file_with_the_upload_not_the_blobs() {
        let dir = tempfile::tempdir().unwrap();
        let storage = FsStorage::new(dir.path());
        let upload = UploadId::new();
        let part = UploadPartKey {
            upload: upload.clone(),
            part: "0-a".into(),
        };
        storage.put_part(&part, &mut body(&[b"abc"])).await.unwrap();
        // What a crash between writing the temp file and its rename leaves behind.
        let temp = assembly_temp(&storage.path(&part.path()));
        std::fs::write(&temp, b"abc").unwrap();

        let blob = Digest::sha256_of(b"abc");
        let hex = blob.hex();
        let listed = storage
            .list_blobs(Algorithm::Sha256, &hex[..2])
            .await
            .unwrap();
        assert!(listed.is_empty(), "{listed:?}");
        let uploads = storage.list_uploads().await.unwrap();
        assert_eq!(uploads.len(), 1);
        assert_eq!(uploads[0].parts.len(), 2, "{:?}", uploads[0].parts);
        // upload-cleanup deletes what the listing shows: the directory goes with it.
        storage.delete_parts(&uploads[0].parts).await.unwrap();
        assert!(!temp.exists());
        assert!(storage.list_uploads().await.unwrap().is_empty());
    }

    #[test]
    fn directories_are_created_with_their_missing_ancestors_once() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("blobs/sha256/ab");
        assert!(create_dir_durable(&deep).unwrap());
        assert!(deep.is_dir());
        // Already there: nothing to create, nothing to sync, no error.
        assert!(!create_dir_durable(&deep).unwrap());
        std::fs::write(deep.join("x"), b"x").unwrap();
        ensure_blob_dir(&deep).unwrap();
        ensure_blob_dir(&deep).unwrap();
        assert_eq!(std::fs::read(deep.join("x")).unwrap(), b"x");
    }

    #[test]
    fn a_part_name_tells_its_offset() {
        assert_eq!(super::super::PartName::new(0).offset(), Some(0));
        assert_eq!(super::super::PartName::new(1 << 40).offset(), Some(1 << 40));
        assert_eq!(super::super::PartName::from("assembly").offset(), None);
    }

    #[tokio::test]
    async fn a_blob_already_in_place_assembles_again_without_error() {
        let dir = tempfile::tempdir().unwrap();
        let storage = FsStorage::new(dir.path());
        let part = UploadPartKey {
            upload: UploadId::new(),
            part: "0-a".into(),
        };
        storage.put_part(&part, &mut body(&[b"abc"])).await.unwrap();
        let key = BlobKey(Digest::sha256_of(b"abc"));
        storage
            .assemble(std::slice::from_ref(&part), &key)
            .await
            .unwrap();
        // What a request killed after its link, before recording the row, leaves: the next
        // upload of the same bytes finds the blob in place (and syncs its directory).
        storage
            .assemble(std::slice::from_ref(&part), &key)
            .await
            .unwrap();
        assert_eq!(storage.stat(&key).await.unwrap(), Some(3));
    }

    #[tokio::test]
    async fn the_empty_blob_assembles_from_no_parts() {
        let dir = tempfile::tempdir().unwrap();
        let storage = FsStorage::new(dir.path());
        let key = BlobKey(Digest::sha256_of(b""));
        storage.assemble(&[], &key).await.unwrap();
        storage.assemble(&[], &key).await.unwrap();
        assert_eq!(storage.stat(&key).await.unwrap(), Some(0));
    }

    #[tokio::test]
    async fn a_part_of_many_batches_is_written_whole() {
        let dir = tempfile::tempdir().unwrap();
        let storage = FsStorage::new(dir.path());
        let data: Vec<u8> = (0..3 * WRITE_BUFFER + 123)
            .map(|i| (i % 251) as u8)
            .collect();
        let chunks: Vec<std::io::Result<Bytes>> = data
            .chunks(65_536)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        let key = UploadPartKey {
            upload: UploadId::new(),
            part: "0-big".into(),
        };
        let mut body = futures_util::stream::iter(chunks);
        assert_eq!(
            storage.put_part(&key, &mut body).await.unwrap(),
            data.len() as u64
        );
        assert_eq!(read_all(storage.read_part(&key).await.unwrap()).await, data);
    }

    #[tokio::test]
    async fn a_failed_body_leaves_no_part() {
        let dir = tempfile::tempdir().unwrap();
        let storage = FsStorage::new(dir.path());
        let key = UploadPartKey {
            upload: UploadId::new(),
            part: "0-x".into(),
        };
        let mut failing = futures_util::stream::iter(vec![
            Ok(Bytes::from_static(b"abc")),
            Err(std::io::Error::other("client went away")),
        ]);
        assert!(matches!(
            storage.put_part(&key, &mut failing).await,
            Err(StorageError::Body { .. })
        ));
        assert!(!dir.path().join(key.path()).exists());
    }
}
