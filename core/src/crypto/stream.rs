//! The segmented format: [`EncryptingWriter`] and [`DecryptingReader`] (specified in [`crate::crypto`]).

use super::aead::{system_fill, AeadKey, Fill, NONCE_LEN, TAG_LEN};
use super::integrity_error;
use super::keys::{valid_key_id, DataKey, KeyProvider};
use crate::codec::hex;
use crate::error::Reason;
use crate::error::{Error, Result};
use ring::digest;
use std::io::{self, Read, Write};

/// The magic bytes that open every encrypted artifact.
const MAGIC: &[u8; 7] = b"TPCRYPT";
/// The format version.
const VERSION: u8 = 1;
/// The suite: AES-256-GCM segments under a 256-bit data key.
const SUITE: u8 = 1;
/// Bytes of the per-artifact nonce prefix.
const PREFIX_LEN: usize = 7;
/// The largest wrapped data key a header may carry.
const MAX_WRAPPED_LEN: usize = 1024;

/// The segment size writers use: 64 KiB of plaintext.
pub const DEFAULT_SEGMENT_SIZE: u32 = 64 * 1024;
/// The smallest segment size a header may declare.
pub const MIN_SEGMENT_SIZE: u32 = 16;
/// The largest segment size a header may declare (a reader holds one segment in memory).
pub const MAX_SEGMENT_SIZE: u32 = 16 * 1024 * 1024;

/// The fields of a header (see the format in [`crate::crypto`]).
struct Header {
    segment_size: u32,
    key_id: String,
    nonce_prefix: [u8; PREFIX_LEN],
    wrapped_key: Vec<u8>,
}

impl Header {
    /// Bytes `0 .. 21+K`: everything before the wrapped key length.
    fn prefix(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(21 + self.key_id.len());
        b.extend_from_slice(MAGIC);
        b.push(VERSION);
        b.push(SUITE);
        b.extend_from_slice(&self.segment_size.to_be_bytes());
        b.push(self.key_id.len() as u8);
        b.extend_from_slice(self.key_id.as_bytes());
        b.extend_from_slice(&self.nonce_prefix);
        b
    }

    /// The whole header.
    fn to_bytes(&self) -> Vec<u8> {
        let mut b = self.prefix();
        b.extend_from_slice(&(self.wrapped_key.len() as u16).to_be_bytes());
        b.extend_from_slice(&self.wrapped_key);
        b
    }

    /// Reads and checks a header; returns it with its bytes.
    fn read(r: &mut dyn Read) -> Result<(Header, Vec<u8>)> {
        let mut raw = Vec::with_capacity(128);
        let mut fixed = [0u8; 14];
        read_header_part(r, &mut fixed)?;
        raw.extend_from_slice(&fixed);
        if &fixed[..7] != MAGIC {
            return Err(integrity_error(
                "the artifact is not in trialport's encrypted format",
            ));
        }
        if fixed[7] != VERSION || fixed[8] != SUITE {
            return Err(
                integrity_error("the artifact's encryption version or suite is unknown")
                    .with_detail("version", fixed[7])
                    .with_detail("suite", fixed[8]),
            );
        }
        let segment_size = u32::from_be_bytes([fixed[9], fixed[10], fixed[11], fixed[12]]);
        if !(MIN_SEGMENT_SIZE..=MAX_SEGMENT_SIZE).contains(&segment_size) {
            return Err(integrity_error(
                "the artifact's segment size is out of range",
            ));
        }
        let mut key_id = vec![0u8; usize::from(fixed[13])];
        read_header_part(r, &mut key_id)?;
        raw.extend_from_slice(&key_id);
        let key_id = match String::from_utf8(key_id) {
            Ok(id) if valid_key_id(&id) => id,
            _ => return Err(integrity_error("the artifact's key id is malformed")),
        };
        let mut rest = [0u8; PREFIX_LEN + 2];
        read_header_part(r, &mut rest)?;
        raw.extend_from_slice(&rest);
        let mut nonce_prefix = [0u8; PREFIX_LEN];
        nonce_prefix.copy_from_slice(&rest[..PREFIX_LEN]);
        let wrapped_len = usize::from(u16::from_be_bytes([rest[PREFIX_LEN], rest[PREFIX_LEN + 1]]));
        if !(1..=MAX_WRAPPED_LEN).contains(&wrapped_len) {
            return Err(integrity_error(
                "the artifact's wrapped key length is out of range",
            ));
        }
        let mut wrapped_key = vec![0u8; wrapped_len];
        read_header_part(r, &mut wrapped_key)?;
        raw.extend_from_slice(&wrapped_key);
        Ok((
            Header {
                segment_size,
                key_id,
                nonce_prefix,
                wrapped_key,
            },
            raw,
        ))
    }
}

fn read_header_part(r: &mut dyn Read, buf: &mut [u8]) -> Result<()> {
    r.read_exact(buf).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            integrity_error("the artifact's encryption header is truncated")
        } else {
            Error::io("cannot read the artifact", &e)
        }
    })
}

/// `prefix || u16(len(path)) || path`: the wrap context (with the header prefix) or, hashed, the segments' AAD
/// base (with the whole header).
fn with_path(bytes: &[u8], path: &str) -> Vec<u8> {
    let mut b = Vec::with_capacity(bytes.len() + 2 + path.len());
    b.extend_from_slice(bytes);
    b.extend_from_slice(&(path.len() as u16).to_be_bytes());
    b.extend_from_slice(path.as_bytes());
    b
}

fn check_path(path: &str) -> Result<()> {
    if path.len() > usize::from(u16::MAX) {
        return Err(Error::validation(
            Reason::InvalidPath,
            "artifact path must have at most 65,535 bytes",
        ));
    }
    Ok(())
}

/// The per-segment nonce and associated data of the format.
struct Segments {
    key: AeadKey,
    nonce_prefix: [u8; PREFIX_LEN],
    /// `A`, then the last flag.
    aad: [u8; 33],
    /// The next segment's number.
    counter: u32,
    /// Whether the counter passed 2^32 - 1 (no further segment is allowed).
    exhausted: bool,
}

impl Segments {
    fn new(key: &DataKey, header: &Header, header_bytes: &[u8], path: &str) -> Result<Self> {
        let base = digest::digest(&digest::SHA256, &with_path(header_bytes, path));
        let mut aad = [0u8; 33];
        aad[..32].copy_from_slice(base.as_ref());
        Ok(Segments {
            key: AeadKey::new(key.as_bytes())?,
            nonce_prefix: header.nonce_prefix,
            aad,
            counter: 0,
            exhausted: false,
        })
    }

    /// The nonce and AAD of the next segment; advances the counter.
    fn next(&mut self, last: bool) -> Option<([u8; NONCE_LEN], [u8; 33])> {
        if self.exhausted {
            return None;
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce[..PREFIX_LEN].copy_from_slice(&self.nonce_prefix);
        nonce[PREFIX_LEN..PREFIX_LEN + 4].copy_from_slice(&self.counter.to_be_bytes());
        nonce[NONCE_LEN - 1] = u8::from(last);
        let mut aad = self.aad;
        aad[32] = u8::from(last);
        match self.counter.checked_add(1) {
            Some(c) => self.counter = c,
            None => self.exhausted = true,
        }
        Some((nonce, aad))
    }
}

/// Encrypts what is written to it into `inner` in the segmented format, and counts and hashes (SHA-256) the
/// plaintext. Holds one segment in memory. Call [`EncryptingWriter::finish`] to seal the last segment: a writer
/// dropped without it leaves a stream that fails to open (no last segment).
pub struct EncryptingWriter<W: Write> {
    inner: W,
    segments: Segments,
    segment_size: usize,
    /// Plaintext of the current segment, then its ciphertext and tag.
    buf: Vec<u8>,
    sha: digest::Context,
    bytes: u64,
    /// Set when a write to `inner` failed: the stream is unusable.
    poisoned: bool,
}

impl<W: Write> std::fmt::Debug for EncryptingWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncryptingWriter")
            .field("segment_size", &self.segment_size)
            .field("bytes", &self.bytes)
            .finish_non_exhaustive()
    }
}

impl<W: Write> EncryptingWriter<W> {
    /// Starts an encrypted stream for the artifact at `path` (bound into it): draws a data key, wraps it under
    /// `keys`' current KEK and writes the header to `inner`. `segment_size` is 16 to 16 MiB
    /// ([`DEFAULT_SEGMENT_SIZE`] is the usual choice).
    ///
    /// # Errors
    /// EXP002 for a segment size out of range; the key provider's errors; EXP005 for I/O.
    pub fn new(inner: W, keys: &dyn KeyProvider, path: &str, segment_size: u32) -> Result<Self> {
        Self::with_rng(inner, keys, path, segment_size, &system_fill)
    }

    pub(crate) fn with_rng(
        mut inner: W,
        keys: &dyn KeyProvider,
        path: &str,
        segment_size: u32,
        rng: Fill<'_>,
    ) -> Result<Self> {
        if !(MIN_SEGMENT_SIZE..=MAX_SEGMENT_SIZE).contains(&segment_size) {
            return Err(Error::validation(
                Reason::InvalidSegmentSize,
                "the segment size must be between 16 bytes and 16 MiB",
            ));
        }
        check_path(path)?;
        let key_id = keys.current_key_id()?;
        if !valid_key_id(&key_id) {
            return Err(Error::server(
                Reason::InvalidKeyId,
                "the key provider's key id is not 1 to 64 characters of A-Z a-z 0-9 . _ -",
            ));
        }
        let data_key = DataKey::generate(rng)?;
        let mut nonce_prefix = [0u8; PREFIX_LEN];
        rng(&mut nonce_prefix)?;
        let mut header = Header {
            segment_size,
            key_id,
            nonce_prefix,
            wrapped_key: vec![],
        };
        header.wrapped_key = keys.wrap(
            &header.key_id,
            &data_key,
            &with_path(&header.prefix(), path),
        )?;
        if !(1..=MAX_WRAPPED_LEN).contains(&header.wrapped_key.len()) {
            return Err(Error::server(
                Reason::InvalidWrappedKey,
                "the key provider's wrapped key is not 1 to 1,024 bytes",
            ));
        }
        let header_bytes = header.to_bytes();
        let segments = Segments::new(&data_key, &header, &header_bytes, path)?;
        inner
            .write_all(&header_bytes)
            .map_err(|e| Error::io("cannot write the encrypted artifact", &e))?;
        let segment_size = segment_size as usize;
        Ok(EncryptingWriter {
            inner,
            segments,
            segment_size,
            buf: Vec::with_capacity(segment_size + TAG_LEN),
            sha: digest::Context::new(&digest::SHA256),
            bytes: 0,
            poisoned: false,
        })
    }

    /// Plaintext bytes written so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Seals the buffered plaintext as the next segment and writes it.
    fn seal_segment(&mut self, last: bool) -> io::Result<()> {
        let Some((nonce, aad)) = self.segments.next(last) else {
            return Err(io::Error::other("the artifact has more than 2^32 segments"));
        };
        let tag = self
            .segments
            .key
            .seal(nonce, &aad, &mut self.buf)
            .map_err(io::Error::other)?;
        self.buf.extend_from_slice(&tag);
        let written = self.inner.write_all(&self.buf);
        self.buf.clear();
        if written.is_err() {
            self.poisoned = true;
        }
        written
    }

    /// Abandons the stream (no last segment is written) and returns `inner`, e.g. to abort it.
    pub fn into_inner(self) -> W {
        self.inner
    }

    /// Seals the last segment and flushes; returns `inner`, the plaintext's size and its SHA-256 (hex).
    ///
    /// # Errors
    /// EXP005 for I/O or an earlier failed write.
    pub fn finish(mut self) -> Result<(W, u64, String)> {
        if self.poisoned {
            return Err(Error::server(
                Reason::SinkClosed,
                "an earlier write to the encrypted artifact failed",
            ));
        }
        self.seal_segment(true)
            .and_then(|()| self.inner.flush())
            .map_err(|e| Error::io("cannot write the encrypted artifact", &e))?;
        Ok((self.inner, self.bytes, hex(self.sha.finish().as_ref())))
    }
}

impl<W: Write> Write for EncryptingWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.poisoned {
            return Err(io::Error::other(
                "an earlier write to the encrypted artifact failed",
            ));
        }
        let mut rest = data;
        while !rest.is_empty() {
            // A full segment is sealed only when more data follows: the last one is sealed by `finish`.
            if self.buf.len() == self.segment_size {
                self.seal_segment(false)?;
            }
            let n = rest.len().min(self.segment_size - self.buf.len());
            self.buf.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
        }
        self.sha.update(data);
        self.bytes += data.len() as u64;
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        // Only whole segments can be written; buffered plaintext waits for its segment to fill.
        self.inner.flush()
    }
}

/// Decrypts an artifact in the segmented format as it is read, releasing each segment only after its tag
/// verified. Holds one segment in memory. Any failure is an `io::Error` of kind `InvalidData` wrapping the
/// [`Error`] (EXP005 `integrity_violation`, with `details.segment` for a segment), and every later read repeats it.
pub struct DecryptingReader<R: Read> {
    inner: R,
    segments: Segments,
    segment_size: usize,
    /// The stored segment being read, then its plaintext.
    buf: Vec<u8>,
    /// Plaintext in `buf[pos..len]` not yet returned.
    pos: usize,
    len: usize,
    /// A byte read past a full stored segment (to learn that it was not the last).
    lookahead: Option<u8>,
    done: bool,
    failed: Option<Error>,
}

impl<R: Read> std::fmt::Debug for DecryptingReader<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecryptingReader")
            .field("segment_size", &self.segment_size)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl<R: Read> DecryptingReader<R> {
    /// Reads the header of the artifact stored at `path` from `inner` and unwraps its data key with `keys`.
    ///
    /// # Errors
    /// EXP005 `integrity_violation` for anything but a well-formed header whose data key unwraps for this path
    /// (`details.cause` is `unknown_key` when the key id is not the provider's); EXP005 for I/O.
    pub fn new(mut inner: R, keys: &dyn KeyProvider, path: &str) -> Result<Self> {
        check_path(path)?;
        let (header, header_bytes) = Header::read(&mut inner)?;
        let data_key = keys
            .unwrap(
                &header.key_id,
                &header.wrapped_key,
                &with_path(&header.prefix(), path),
            )
            .map_err(|e| match e.reason() {
                "integrity_violation" | "io_error" => e,
                cause => integrity_error("the artifact's data key cannot be unwrapped")
                    .with_detail("cause", cause)
                    .with_detail("key_id", header.key_id.clone()),
            })?;
        let segments = Segments::new(&data_key, &header, &header_bytes, path)?;
        let segment_size = header.segment_size as usize;
        Ok(DecryptingReader {
            inner,
            segments,
            segment_size,
            buf: Vec::with_capacity(segment_size + TAG_LEN),
            pos: 0,
            len: 0,
            lookahead: None,
            done: false,
            failed: None,
        })
    }

    fn fail(&mut self, e: Error) -> io::Error {
        self.failed = Some(e.clone());
        io::Error::new(io::ErrorKind::InvalidData, e)
    }

    /// Reads, authenticates and decrypts the next segment into `buf[..len]`.
    fn next_segment(&mut self) -> io::Result<()> {
        let stored = self.segment_size + TAG_LEN;
        self.buf.resize(stored, 0);
        let mut filled = 0;
        if let Some(b) = self.lookahead.take() {
            self.buf[0] = b;
            filled = 1;
        }
        while filled < stored {
            match self.inner.read(&mut self.buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.broken(e)),
            }
        }
        // A short stored segment is the last; a full one is the last only if the file ends right after it.
        let last = if filled < stored {
            true
        } else {
            let mut one = [0u8; 1];
            loop {
                match self.inner.read(&mut one) {
                    Ok(0) => break true,
                    Ok(_) => {
                        self.lookahead = Some(one[0]);
                        break false;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(self.broken(e)),
                }
            }
        };
        let number = self.segments.counter;
        if filled < TAG_LEN {
            return Err(self.fail(
                integrity_error("the encrypted artifact is truncated")
                    .with_detail("segment", number),
            ));
        }
        let Some((nonce, aad)) = self.segments.next(last) else {
            return Err(self.fail(integrity_error(
                "the encrypted artifact has more than 2^32 segments",
            )));
        };
        let plain_len = filled - TAG_LEN;
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&self.buf[plain_len..filled]);
        if !self
            .segments
            .key
            .open(nonce, &aad, &mut self.buf[..plain_len], &tag)
        {
            return Err(self.fail(
                integrity_error("a segment of the encrypted artifact does not authenticate")
                    .with_detail("segment", number),
            ));
        }
        self.pos = 0;
        self.len = plain_len;
        self.done = last;
        Ok(())
    }

    /// Records an I/O failure of `inner`: the stream cannot continue (bytes may have been lost).
    fn broken(&mut self, e: io::Error) -> io::Error {
        self.failed = Some(Error::io("cannot read the artifact", &e));
        e
    }
}

impl<R: Read> Read for DecryptingReader<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if let Some(e) = &self.failed {
            let kind = if e.reason() == "integrity_violation" {
                io::ErrorKind::InvalidData
            } else {
                io::ErrorKind::Other
            };
            return Err(io::Error::new(kind, e.clone()));
        }
        if out.is_empty() {
            return Ok(0);
        }
        while self.pos == self.len {
            if self.done {
                return Ok(0);
            }
            self.next_segment()?;
        }
        let n = out.len().min(self.len - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};

    /// A provider with one fixed KEK and a deterministic wrap (AES-256-GCM, zero nonce, the context as AAD): fine
    /// for a known-answer test, never for real keys.
    struct FixedKeys;

    const KEK: [u8; 32] = [0x4b; 32];

    fn kek() -> LessSafeKey {
        LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &KEK).unwrap())
    }

    impl KeyProvider for FixedKeys {
        fn current_key_id(&self) -> Result<String> {
            Ok("test-1".into())
        }
        fn wrap(&self, key_id: &str, key: &DataKey, context: &[u8]) -> Result<Vec<u8>> {
            assert_eq!(key_id, "test-1");
            let mut out = key.as_bytes().to_vec();
            kek()
                .seal_in_place_append_tag(
                    Nonce::assume_unique_for_key([0; 12]),
                    Aad::from(context),
                    &mut out,
                )
                .unwrap();
            Ok(out)
        }
        fn unwrap(&self, _key_id: &str, wrapped: &[u8], context: &[u8]) -> Result<DataKey> {
            let mut buf = wrapped.to_vec();
            let plain = kek()
                .open_in_place(
                    Nonce::assume_unique_for_key([0; 12]),
                    Aad::from(context),
                    &mut buf,
                )
                .map_err(|_| integrity_error("bad wrap"))?;
            Ok(DataKey::from_bytes(plain.try_into().unwrap()))
        }
    }

    /// Random bytes 1, 2, 3, ... (one counter across calls).
    fn counting_fill() -> impl Fn(&mut [u8]) -> Result<()> {
        let next = std::cell::Cell::new(1u8);
        move |buf: &mut [u8]| {
            for b in buf.iter_mut() {
                *b = next.get();
                next.set(next.get().wrapping_add(1));
            }
            Ok(())
        }
    }

    /// Builds the expected bytes straight from the specification in the module docs of `crypto`, with `ring`
    /// and no code of this module, and compares them with what the writer produced.
    #[test]
    fn the_writer_follows_the_written_specification() {
        let path = "0190aaaa-0000-7000-8000-000000000000/dm.csv";
        let plaintext: Vec<u8> = (0..40u8).map(|i| b'a' + i % 26).collect();
        let fill = counting_fill();
        let mut w = EncryptingWriter::with_rng(Vec::new(), &FixedKeys, path, 16, &fill).unwrap();
        // Written in odd pieces: the segmenting must not depend on the write sizes.
        for chunk in plaintext.chunks(7) {
            w.write_all(chunk).unwrap();
        }
        let (stored, bytes, sha) = w.finish().unwrap();
        assert_eq!(bytes, 40);
        assert_eq!(
            sha,
            hex(digest::digest(&digest::SHA256, &plaintext).as_ref())
        );

        // The data key is the first 32 random bytes (1..=32), the nonce prefix the next 7 (33..=39).
        let dk: Vec<u8> = (1..=32).collect();
        let prefix: Vec<u8> = (33..=39).collect();
        let mut expected = b"TPCRYPT".to_vec();
        expected.extend_from_slice(&[1, 1, 0, 0, 0, 16, 6]);
        expected.extend_from_slice(b"test-1");
        expected.extend_from_slice(&prefix);
        let mut context = expected.clone();
        context.extend_from_slice(&(path.len() as u16).to_be_bytes());
        context.extend_from_slice(path.as_bytes());
        let mut wrapped = dk.clone();
        kek()
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key([0; 12]),
                Aad::from(&context),
                &mut wrapped,
            )
            .unwrap();
        expected.extend_from_slice(&[0, 48]);
        expected.extend_from_slice(&wrapped);
        let mut for_a = expected.clone();
        for_a.extend_from_slice(&(path.len() as u16).to_be_bytes());
        for_a.extend_from_slice(path.as_bytes());
        let a = digest::digest(&digest::SHA256, &for_a);
        let data_key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &dk).unwrap());
        let pieces: Vec<&[u8]> = plaintext.chunks(16).collect();
        for (i, piece) in pieces.iter().enumerate() {
            let last = u8::from(i + 1 == pieces.len());
            let mut nonce = prefix.clone();
            nonce.extend_from_slice(&(i as u32).to_be_bytes());
            nonce.push(last);
            let mut aad = a.as_ref().to_vec();
            aad.push(last);
            let mut seg = piece.to_vec();
            data_key
                .seal_in_place_append_tag(
                    Nonce::try_assume_unique_for_key(&nonce).unwrap(),
                    Aad::from(&aad),
                    &mut seg,
                )
                .unwrap();
            expected.extend_from_slice(&seg);
        }
        assert_eq!(stored.len(), 23 + 6 + 48 + 40 + 3 * 16);
        assert_eq!(hex(&stored), hex(&expected));

        // And the reader gives the plaintext back.
        let mut r = DecryptingReader::new(&stored[..], &FixedKeys, path).unwrap();
        let mut back = Vec::new();
        r.read_to_end(&mut back).unwrap();
        assert_eq!(back, plaintext);
    }

    #[test]
    fn a_plaintext_of_whole_segments_ends_with_a_full_last_segment() {
        let fill = counting_fill();
        let mut w = EncryptingWriter::with_rng(Vec::new(), &FixedKeys, "a/b", 16, &fill).unwrap();
        w.write_all(&[7u8; 32]).unwrap();
        let (stored, _, _) = w.finish().unwrap();
        // Two stored segments of 16 + 16 bytes, no empty third one.
        assert_eq!(stored.len(), 23 + 6 + 48 + 2 * 32);
    }

    #[test]
    fn segment_sizes_are_checked() {
        let fill = counting_fill();
        for bad in [0, 15, MAX_SEGMENT_SIZE + 1] {
            let e =
                EncryptingWriter::with_rng(Vec::new(), &FixedKeys, "a", bad, &fill).unwrap_err();
            assert_eq!(e.reason(), "invalid_segment_size");
        }
    }

    #[test]
    fn a_dropped_writer_leaves_a_stream_that_does_not_open() {
        let fill = counting_fill();
        let mut w = EncryptingWriter::with_rng(Vec::new(), &FixedKeys, "a", 16, &fill).unwrap();
        w.write_all(&[1u8; 40]).unwrap();
        let stored = w.into_inner();
        let mut r = DecryptingReader::new(&stored[..], &FixedKeys, "a").unwrap();
        let err = r.read_to_end(&mut Vec::new()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }
}
