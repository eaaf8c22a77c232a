//! Filesystem storage (the embedded default). A part is one file written by a blocking
//! writer thread and fsync'd before it counts; a blob appears under its final name only
//! complete (hard link of a single part, or a concatenated temp file renamed into place).

use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::io::AsyncReadExt;
use tokio_util::io::ReaderStream;

use super::{BlobKey, BodyStream, ByteRange, ByteStream, Storage, StorageError, UploadPartKey};

const WRITE_BUFFER: usize = 1024 * 1024;
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

#[async_trait]
impl Storage for FsStorage {
    async fn put_part(
        &self,
        key: &UploadPartKey,
        body: BodyStream<'_>,
    ) -> Result<u64, StorageError> {
        let rel = key.path();
        let path = self.path(&rel);
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(io_err(&rel))?;

        // Chunks go to a blocking thread that owns the file: one thread per upload instead of a
        // thread hop per write, with a small bounded queue so memory stays flat.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(16);
        let writer_path = path.clone();
        let writer = tokio::task::spawn_blocking(move || -> std::io::Result<u64> {
            let file = std::fs::File::create(&writer_path)?;
            let mut out = std::io::BufWriter::with_capacity(WRITE_BUFFER, file);
            let mut written = 0u64;
            while let Some(chunk) = rx.blocking_recv() {
                out.write_all(&chunk)?;
                written += chunk.len() as u64;
            }
            let file = out.into_inner().map_err(|e| e.into_error())?;
            file.sync_all()?;
            sync_dir(writer_path.parent().unwrap_or(Path::new(".")))?;
            Ok(written)
        });

        let mut body_error = None;
        while let Some(chunk) = body.next().await {
            match chunk {
                Ok(chunk) => {
                    if tx.send(chunk).await.is_err() {
                        break; // the writer failed; its error is reported below
                    }
                }
                Err(e) => {
                    body_error = Some(e);
                    break;
                }
            }
        }
        drop(tx);
        let written = writer.await.map_err(|e| join_err(&rel, e))?;
        let result = match (body_error, written) {
            (Some(source), _) => Err(StorageError::Body { source }),
            (None, Err(source)) => Err(StorageError::Io { key: rel, source }),
            (None, Ok(n)) => return Ok(n),
        };
        let _ = tokio::fs::remove_file(&path).await;
        result
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
        for part in parts {
            let rel = part.path();
            match tokio::fs::remove_file(self.path(&rel)).await {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io_err(&rel)(e)),
                _ => {}
            }
        }
        // The upload's directory goes with its last part; a non-empty one stays.
        if let Some(first) = parts.first()
            && let Some(dir) = self.path(&first.path()).parent()
        {
            let _ = tokio::fs::remove_dir(dir).await;
        }
        Ok(())
    }
}

fn assemble_blocking(sources: &[PathBuf], target: &Path) -> std::io::Result<()> {
    if target.exists() {
        return Ok(());
    }
    let dir = target.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    match sources {
        [] => {
            let tmp = temp_name(target);
            std::fs::File::create(&tmp)?.sync_all()?;
            std::fs::rename(&tmp, target)?;
        }
        [single] => match std::fs::hard_link(single, target) {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(()),
            other => other?,
        },
        many => {
            let tmp = temp_name(target);
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

fn temp_name(target: &Path) -> PathBuf {
    let mut name = target.as_os_str().to_owned();
    name.push(format!(".{}.tmp", uuid::Uuid::new_v4().simple()));
    PathBuf::from(name)
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
