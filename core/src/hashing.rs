//! SHA-256 of byte streams: a writer that counts and hashes what passes through it ([`HashingWriter`]) and the
//! digest of a reader ([`sha256_of`]), both as lowercase hex.

use crate::codec::hex;
use ring::digest;
use std::io::{self, Read, Write};

/// A writer that counts and hashes (SHA-256) what passes through it.
pub struct HashingWriter<W> {
    inner: W,
    ctx: Option<digest::Context>,
    bytes: u64,
}

impl<W: Write> HashingWriter<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            ctx: Some(digest::Context::new(&digest::SHA256)),
            bytes: 0,
        }
    }

    /// Wraps `inner`, counting but not hashing (the SHA-256 of [`HashingWriter::into_parts`] is then empty).
    pub fn counting(inner: W) -> Self {
        HashingWriter {
            inner,
            ctx: None,
            bytes: 0,
        }
    }

    /// Bytes written so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The inner writer.
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }

    /// The inner writer, the byte count and the SHA-256 (hex; empty when made by [`HashingWriter::counting`]).
    pub fn into_parts(self) -> (W, u64, String) {
        let sha = self
            .ctx
            .map(|c| hex(c.finish().as_ref()))
            .unwrap_or_default();
        (self.inner, self.bytes, sha)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        if let Some(ctx) = &mut self.ctx {
            ctx.update(&buf[..n]);
        }
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// SHA-256 (hex) and size of everything `r` yields.
///
/// # Errors
/// The reader's I/O error.
pub fn sha256_of(mut r: impl Read) -> io::Result<(u64, String)> {
    let mut ctx = digest::Context::new(&digest::SHA256);
    let mut buf = vec![0u8; 64 * 1024];
    let mut n_total = 0u64;
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
        n_total += n as u64;
    }
    Ok((n_total, hex(ctx.finish().as_ref())))
}
