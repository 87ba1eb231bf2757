//! Encryption at rest: artifacts written through [`EncryptedSink`] are stored in the segmented AES-256-GCM format
//! below, each under a fresh data key wrapped by a key-encryption key (KEK) from a [`KeyProvider`].
//!
//! Reading decrypts segment by segment and releases a segment's plaintext only once its tag verified, so memory
//! stays at about two segments whatever the artifact's size, and a truncated, extended, reordered, swapped,
//! altered or moved artifact fails with EXP005 `integrity_violation` before any byte of the damaged segment is
//! returned.
//!
//! # The stored format, version 1
//!
//! This section is the specification: it is enough to write an independent reader. All integers are unsigned
//! big-endian. AES-256-GCM is the algorithm of NIST SP 800-38D with a 96-bit nonce and a 128-bit tag (`ring`'s
//! `AES_256_GCM`); `SHA-256` is FIPS 180-4; `||` is concatenation.
//!
//! ## Header
//!
//! | offset | bytes | field | value |
//! |---:|---:|---|---|
//! | 0 | 7 | magic | ASCII `TPCRYPT` |
//! | 7 | 1 | version | `1` |
//! | 8 | 1 | suite | `1`: AES-256-GCM segments under a 256-bit data key |
//! | 9 | 4 | segment size `S` | plaintext bytes of every segment but the last; 16 to 16,777,216 (writers use 65,536) |
//! | 13 | 1 | key id length `K` | 1 to 64 |
//! | 14 | `K` | key id | ASCII `A-Z a-z 0-9 . _ -`: the KEK that wrapped the data key |
//! | 14+K | 7 | nonce prefix `P` | random, fresh per artifact |
//! | 21+K | 2 | wrapped key length `W` | 1 to 1,024 |
//! | 23+K | `W` | wrapped data key | the key provider's output (below) |
//!
//! The *header prefix* is bytes `0 .. 21+K` (everything before the wrapped key length). The *header* is bytes
//! `0 .. 23+K+W`.
//!
//! ## Data key
//!
//! Each artifact has its own data key `DK`: 32 bytes from the system's secure random generator, never stored in the
//! clear. The key provider wraps it under the KEK named in the header, bound to the *wrap context*
//! `header prefix || u16(len(path)) || path`, where `path` is the artifact's UTF-8 path in its sink (e.g.
//! `0190.../dm.csv`). The built-in [`FileKeyProvider`] wraps as
//! `wrapped = N || AES-256-GCM(KEK, nonce N, aad, plaintext DK)` with
//! `aad = "trialport/kek-wrap/v1" || u8(len(key id)) || key id || wrap context` and `N` 12 random bytes, so
//! `W` = 12 + 32 + 16 = 60. (`ring` has no AES key wrap (RFC 3394); GCM with a random
//! nonce and the context as associated data gives the same integrity and binds the key to its artifact. With
//! random nonces one KEK should wrap fewer than 2^32 data keys (SP 800-38D §8.3): rotate long before.)
//!
//! ## Segments
//!
//! The plaintext is cut into segments `0 .. n-1`: every segment but the last holds exactly `S` bytes; the last
//! holds 1 to `S` bytes, or 0 bytes only when the whole plaintext is empty (then `n` = 1). `n` is at most 2^32.
//! For segment `i`, with `last` = 1 for segment `n-1` and 0 otherwise:
//!
//! ```text
//! A       = SHA-256(header || u16(len(path)) || path)                 (32 bytes, once per artifact)
//! nonce_i = P || u32(i) || u8(last)                                  (7 + 4 + 1 = 12 bytes)
//! aad_i   = A || u8(last)                                            (33 bytes)
//! stored_i = AES-256-GCM-Encrypt(DK, nonce_i, aad_i, plaintext_i)     (ciphertext || 16-byte tag)
//! ```
//!
//! The file is `header || stored_0 || ... || stored_(n-1)`: every stored segment but the last is exactly `S + 16`
//! bytes, the last 16 to `S + 16`. A reader reads `S + 16` bytes at a time; a stored segment that is followed by
//! the end of the file is the last one, and is opened with `last` = 1. This is the STREAM construction
//! (Hoang, Reyhanitabar, Rogaway and Vizár, 2015), as in Tink's AES-GCM-HKDF streaming AEAD and age:
//!
//! - a changed byte anywhere fails a tag: in a segment its own; in the header the wrap (prefix, wrapped key) or
//!   every segment (through `A`);
//! - reordering or swapping segments fails (the counter is in the nonce);
//! - cutting the file at a segment boundary fails (the new last segment was sealed with `last` = 0), as does
//!   appending after the real last segment (sealed with `last` = 1);
//! - moving the file to another path (e.g. onto another job's artifact) fails (the path is in the wrap context
//!   and in `A`);
//! - the data key is fresh per artifact and the counter is unique per segment, so no (key, nonce) pair repeats.
//!
//! What is not hidden: the artifact's size (to within 16 bytes per segment), the segment size and the key id.
//!
//! ## Key rotation
//!
//! New artifacts are wrapped under the provider's *current* KEK; old artifacts name their KEK in the header and
//! keep opening as long as the provider still holds it. [`FileKeyProvider`] keeps `kek-NNNN.key` files (32 random
//! bytes as 64 hex digits, mode 0600) in the home's `keys/` directory; the highest number is current, and
//! rotation adds the next one (`trialport keys rotate-kek`, [`crate::engine::Session::rotate_encryption_key`]).
//! Deleting a KEK file makes every artifact wrapped under it unreadable (crypto-shredding).

mod aead;
mod keys;
mod sealed;
mod sink;
mod stream;

pub use keys::{DataKey, FileKeyProvider, KeyProvider, PendingKey};
pub(crate) use sealed::Sealer;
pub use sink::EncryptedSink;
pub use stream::{
    DecryptingReader, EncryptingWriter, DEFAULT_SEGMENT_SIZE, MAX_SEGMENT_SIZE, MIN_SEGMENT_SIZE,
};

use crate::error::Error;
use crate::error::Reason;

/// EXP005 `integrity_violation`: the stored artifact is not what was written (the message says which check).
pub(crate) fn integrity_error(message: &str) -> Error {
    Error::server(Reason::IntegrityViolation, message.to_string()).with_field("artifact")
}
