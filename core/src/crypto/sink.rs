//! [`EncryptedSink`]: any [`Sink`] with its artifacts encrypted at rest.

use super::keys::KeyProvider;
use super::stream::{DecryptingReader, EncryptingWriter, DEFAULT_SEGMENT_SIZE};
use crate::error::Reason;
use crate::error::Result;
use crate::name::validate_path;
use crate::sink::{ArtifactReceipt, Sink, SinkWriter};
use std::io::{self, Read, Write};
use std::sync::Arc;

/// A sink that stores every artifact of an inner sink encrypted (format in [`crate::crypto`]), with a fresh
/// data key per artifact wrapped by `keys`' current key-encryption key.
///
/// Receipts report the **plaintext**'s size and SHA-256 (what the engine records and a download verifies); the
/// inner sink holds the ciphertext. `open` authenticates as it reads and fails with EXP005 `integrity_violation`
/// on any stored byte that is not as written, including a file that is not encrypted at all (there is no
/// fallback to plaintext).
pub struct EncryptedSink {
    inner: Arc<dyn Sink>,
    keys: Arc<dyn KeyProvider>,
    segment_size: u32,
}

impl std::fmt::Debug for EncryptedSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncryptedSink")
            .field("segment_size", &self.segment_size)
            .finish_non_exhaustive()
    }
}

impl EncryptedSink {
    /// Encrypts the artifacts of `inner` under keys from `keys`, in segments of [`DEFAULT_SEGMENT_SIZE`].
    pub fn new(inner: Arc<dyn Sink>, keys: Arc<dyn KeyProvider>) -> Self {
        EncryptedSink {
            inner,
            keys,
            segment_size: DEFAULT_SEGMENT_SIZE,
        }
    }

    /// Sets the plaintext bytes per segment for new artifacts (16 to 16 MiB; default 64 KiB).
    ///
    /// # Errors
    /// EXP002 `invalid_segment_size` out of range.
    pub fn with_segment_size(mut self, bytes: u32) -> Result<Self> {
        if !(super::MIN_SEGMENT_SIZE..=super::MAX_SEGMENT_SIZE).contains(&bytes) {
            return Err(crate::Error::validation(
                Reason::InvalidSegmentSize,
                "the segment size must be between 16 bytes and 16 MiB",
            ));
        }
        self.segment_size = bytes;
        Ok(self)
    }

    /// The key provider.
    pub fn keys(&self) -> &Arc<dyn KeyProvider> {
        &self.keys
    }
}

struct EncryptedWriter {
    stream: Option<EncryptingWriter<Box<dyn SinkWriter>>>,
    path: String,
}

impl Write for EncryptedWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.stream {
            Some(s) => s.write(buf),
            None => Err(io::Error::other("artifact writer is closed")),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match &mut self.stream {
            Some(s) => s.flush(),
            None => Ok(()),
        }
    }
}

impl SinkWriter for EncryptedWriter {
    fn complete(mut self: Box<Self>) -> Result<ArtifactReceipt> {
        let Some(stream) = self.stream.take() else {
            return Err(crate::Error::server(
                Reason::SinkClosed,
                "artifact writer is closed",
            ));
        };
        // On an error the inner writer is dropped uncompleted, which discards it.
        let (inner, bytes, sha256) = stream.finish()?;
        inner.complete()?;
        Ok(ArtifactReceipt {
            path: std::mem::take(&mut self.path),
            bytes,
            sha256,
        })
    }

    fn abort(mut self: Box<Self>) {
        if let Some(stream) = self.stream.take() {
            stream.into_inner().abort();
        }
    }
}

impl Sink for EncryptedSink {
    fn create(&self, path: &str) -> Result<Box<dyn SinkWriter>> {
        validate_path(path)?;
        // The plaintext is hashed here; a hash of the ciphertext would go unused.
        let writer = self.inner.create_unhashed(path)?;
        let stream = EncryptingWriter::new(writer, self.keys.as_ref(), path, self.segment_size)?;
        Ok(Box::new(EncryptedWriter {
            stream: Some(stream),
            path: path.to_string(),
        }))
    }

    fn open(&self, path: &str) -> Result<Box<dyn Read + Send>> {
        validate_path(path)?;
        let reader = self.inner.open(path)?;
        Ok(Box::new(DecryptingReader::new(
            reader,
            self.keys.as_ref(),
            path,
        )?))
    }

    fn delete(&self, path: &str) -> Result<()> {
        self.inner.delete(path)
    }

    fn delete_tree(&self, prefix: &str) -> Result<()> {
        self.inner.delete_tree(prefix)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::crypto::FileKeyProvider;
    use crate::sink::{LocalDirSink, MemorySink};

    #[test]
    fn the_encrypting_sink_keeps_the_sink_contract() {
        let dir = tempfile::tempdir().unwrap();
        let keys: Arc<dyn KeyProvider> =
            Arc::new(FileKeyProvider::create(dir.path().join("keys")).unwrap());
        let mem = MemorySink::new();
        crate::sink::tests::conformance(&EncryptedSink::new(Arc::new(mem.clone()), keys.clone()));
        let local = LocalDirSink::new(dir.path().join("artifacts")).unwrap();
        crate::sink::tests::conformance(&EncryptedSink::new(Arc::new(local), keys));
        // Aborted and dropped writers left nothing in either inner sink.
        assert!(mem.paths().is_empty());
        // (Nor the folder: the last deletion in it removed it.)
        assert!(!dir.path().join("artifacts/j1").exists());
        assert!(dir.path().join("artifacts").is_dir());
    }
}
