//! Client-side encryption of snapshots: AES-256-GCM in a chunked, authenticated framing.
//!
//! An encrypted object is a header followed by frames:
//!
//! ```text
//! header: magic "EOPSNAP\x01" (8) | key id (16) | nonce prefix (7, random) | chunk size (u32 BE)
//! frame:  AES-256-GCM(plaintext chunk) || tag (16)
//! ```
//!
//! Every frame but the last holds exactly `chunk size` plaintext bytes; the last holds fewer
//! (possibly none), so it is always present. Frame `i` is sealed with the nonce
//! `prefix || i (u32 BE) || last (0 or 1)` and the header as associated data (the STREAM
//! construction): frames cannot be reordered, dropped, or moved to another object, a cut at a
//! frame boundary lacks the last frame, and a changed header fails every frame. The key id is a
//! hash of the key, so a wrong key is told apart from a corrupt object before decrypting.

use std::fmt;

use aes_gcm::aead::AeadInPlace;
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use sha2::{Digest, Sha256};

use super::StoreError;
use super::integrity::hex;

/// First bytes of an encrypted object (a bbolt file starts with a zero page id, never this).
pub const MAGIC: &[u8; 8] = b"EOPSNAP\x01";
const KEY_ID_LEN: usize = 16;
const PREFIX_LEN: usize = 7;
/// Length of the header of an encrypted object.
pub const HEADER_LEN: usize = MAGIC.len() + KEY_ID_LEN + PREFIX_LEN + 4;
const TAG_LEN: usize = 16;
/// Plaintext bytes per frame.
pub const CHUNK: usize = 64 * 1024;

/// A 256-bit snapshot encryption key (from a Secret). `Debug` shows only its id.
#[derive(Clone)]
pub struct EncryptionKey {
    cipher: Aes256Gcm,
    id: [u8; KEY_ID_LEN],
}

impl EncryptionKey {
    /// A key from exactly 32 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, StoreError> {
        if bytes.len() != 32 {
            return Err(StoreError::Config(format!(
                "an encryption key is 32 bytes (AES-256), this one is {}",
                bytes.len()
            )));
        }
        let cipher = Aes256Gcm::new_from_slice(bytes)
            .map_err(|_| StoreError::Config("an encryption key is 32 bytes".into()))?;
        let mut h = Sha256::new();
        h.update(b"etcd-operator snapshot key id v1\0");
        h.update(bytes);
        let digest = h.finalize();
        let mut id = [0u8; KEY_ID_LEN];
        id.copy_from_slice(&digest[..KEY_ID_LEN]);
        Ok(EncryptionKey { cipher, id })
    }

    /// The key's id (hex of a hash of the key): recorded in every object it encrypts and safe to
    /// show in status; it does not reveal the key.
    pub fn id(&self) -> String {
        hex(&self.id)
    }
}

impl fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EncryptionKey {{ id: {} }}", self.id())
    }
}

fn nonce(prefix: &[u8; PREFIX_LEN], counter: u32, last: bool) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[..PREFIX_LEN].copy_from_slice(prefix);
    n[PREFIX_LEN..PREFIX_LEN + 4].copy_from_slice(&counter.to_be_bytes());
    n[11] = u8::from(last);
    n
}

/// Encrypts a stream: [`Encryptor::header`] first, then what [`Encryptor::push`] and
/// [`Encryptor::finish`] append.
pub struct Encryptor {
    key: EncryptionKey,
    header: [u8; HEADER_LEN],
    prefix: [u8; PREFIX_LEN],
    counter: u32,
    pending: Vec<u8>,
}

impl Encryptor {
    /// An encryptor with a fresh random nonce prefix.
    pub fn new(key: &EncryptionKey) -> Self {
        let prefix: [u8; PREFIX_LEN] = rand::random();
        let mut header = [0u8; HEADER_LEN];
        header[..8].copy_from_slice(MAGIC);
        header[8..8 + KEY_ID_LEN].copy_from_slice(&key.id);
        header[8 + KEY_ID_LEN..8 + KEY_ID_LEN + PREFIX_LEN].copy_from_slice(&prefix);
        header[HEADER_LEN - 4..].copy_from_slice(&(CHUNK as u32).to_be_bytes());
        Encryptor {
            key: key.clone(),
            header,
            prefix,
            counter: 0,
            pending: Vec::with_capacity(CHUNK),
        }
    }

    /// The header, written before the first frame.
    pub fn header(&self) -> &[u8] {
        &self.header
    }

    fn seal(&mut self, last: bool, out: &mut Vec<u8>) -> Result<(), StoreError> {
        let n = nonce(&self.prefix, self.counter, last);
        let mut frame = std::mem::replace(&mut self.pending, Vec::with_capacity(CHUNK));
        self.key
            .cipher
            .encrypt_in_place(Nonce::from_slice(&n), &self.header, &mut frame)
            .map_err(|_| StoreError::Corrupt("encrypting a frame failed".into()))?;
        out.extend_from_slice(&frame);
        self.counter = self
            .counter
            .checked_add(1)
            .ok_or_else(|| StoreError::Corrupt("too many frames for one object".into()))?;
        Ok(())
    }

    /// Encrypts `plain`, appending every completed frame to `out`.
    pub fn push(&mut self, mut plain: &[u8], out: &mut Vec<u8>) -> Result<(), StoreError> {
        while !plain.is_empty() {
            let take = (CHUNK - self.pending.len()).min(plain.len());
            self.pending.extend_from_slice(&plain[..take]);
            plain = &plain[take..];
            if self.pending.len() == CHUNK {
                self.seal(false, out)?;
            }
        }
        Ok(())
    }

    /// Appends the last frame (what is left, possibly nothing).
    pub fn finish(mut self, out: &mut Vec<u8>) -> Result<(), StoreError> {
        self.seal(true, out)
    }
}

enum Mode {
    /// Not yet known: fewer bytes than a header seen.
    Sniffing,
    /// A plain (unencrypted) object: bytes pass through.
    Plain,
    /// An encrypted object being decrypted.
    Decrypting {
        header: [u8; HEADER_LEN],
        prefix: [u8; PREFIX_LEN],
        chunk: usize,
        counter: u32,
    },
    /// The last frame was read.
    Done,
}

/// Reads an object that may be encrypted: plain objects pass through unchanged, encrypted ones
/// are decrypted with the key given (typed errors for a missing or wrong key, a changed or
/// truncated object).
pub struct Decryptor {
    key: Option<EncryptionKey>,
    mode: Mode,
    buf: Vec<u8>,
}

impl Decryptor {
    /// A decryptor with the key to use for encrypted objects, if any.
    pub fn new(key: Option<EncryptionKey>) -> Self {
        Decryptor {
            key,
            mode: Mode::Sniffing,
            buf: Vec::new(),
        }
    }

    /// The key id recorded in the object, once the header was read (`None` for a plain object).
    pub fn key_id(&self) -> Option<String> {
        match &self.mode {
            Mode::Decrypting { header, .. } => Some(hex(&header[8..8 + KEY_ID_LEN])),
            _ => None,
        }
    }

    fn start(&mut self, eof: bool) -> Result<(), StoreError> {
        let magic_seen = self.buf.len() >= MAGIC.len() && self.buf[..MAGIC.len()] == MAGIC[..];
        let could_be_magic = self.buf.len() < MAGIC.len() && MAGIC.starts_with(&self.buf);
        // Still possibly the magic only while more bytes may come.
        let undecided = could_be_magic && !eof;
        if !magic_seen && !undecided {
            self.mode = Mode::Plain;
            return Ok(());
        }
        if self.buf.len() < HEADER_LEN {
            if eof {
                return Err(StoreError::Corrupt("the header is cut short".into()));
            }
            return Ok(());
        }
        let mut header = [0u8; HEADER_LEN];
        header.copy_from_slice(&self.buf[..HEADER_LEN]);
        self.buf.drain(..HEADER_LEN);
        let recorded = hex(&header[8..8 + KEY_ID_LEN]);
        let key = self.key.as_ref().ok_or_else(|| StoreError::KeyMissing {
            key_id: recorded.clone(),
        })?;
        if key.id() != recorded {
            return Err(StoreError::WrongKey {
                recorded,
                given: key.id(),
            });
        }
        let mut prefix = [0u8; PREFIX_LEN];
        prefix.copy_from_slice(&header[8 + KEY_ID_LEN..8 + KEY_ID_LEN + PREFIX_LEN]);
        let mut size = [0u8; 4];
        size.copy_from_slice(&header[HEADER_LEN - 4..]);
        let chunk = u32::from_be_bytes(size) as usize;
        if chunk == 0 || chunk > 64 * 1024 * 1024 {
            return Err(StoreError::Corrupt(format!("bad chunk size {chunk}")));
        }
        self.mode = Mode::Decrypting {
            header,
            prefix,
            chunk,
            counter: 0,
        };
        Ok(())
    }

    fn open(&mut self, len: usize, last: bool, out: &mut Vec<u8>) -> Result<(), StoreError> {
        let Some(key) = self.key.as_ref() else {
            return Err(StoreError::Corrupt("no key".into()));
        };
        let Mode::Decrypting {
            header,
            prefix,
            counter,
            ..
        } = &mut self.mode
        else {
            return Err(StoreError::Corrupt("not decrypting".into()));
        };
        let mut frame: Vec<u8> = self.buf.drain(..len).collect();
        let n = nonce(prefix, *counter, last);
        key.cipher
            .decrypt_in_place(Nonce::from_slice(&n), &header[..], &mut frame)
            .map_err(|_| {
                StoreError::Corrupt(format!(
                    "frame {counter} failed authentication (changed, reordered or cut short)"
                ))
            })?;
        *counter = counter
            .checked_add(1)
            .ok_or_else(|| StoreError::Corrupt("too many frames".into()))?;
        out.extend_from_slice(&frame);
        if last {
            self.mode = Mode::Done;
        }
        Ok(())
    }

    /// Feeds the next bytes of the object, appending the plaintext available so far to `out`.
    pub fn push(&mut self, bytes: &[u8], out: &mut Vec<u8>) -> Result<(), StoreError> {
        match self.mode {
            Mode::Plain => {
                out.extend_from_slice(bytes);
                return Ok(());
            }
            Mode::Done if !bytes.is_empty() => {
                return Err(StoreError::Corrupt("data after the last frame".into()));
            }
            _ => {}
        }
        self.buf.extend_from_slice(bytes);
        if let Mode::Sniffing = self.mode {
            self.start(false)?;
            if let Mode::Plain = self.mode {
                out.append(&mut self.buf);
                return Ok(());
            }
        }
        // Open every full frame, keeping at least one byte back: a full-length frame is never
        // the last, but whether the stream goes on past it is known only when more arrives.
        while let Mode::Decrypting { chunk, .. } = self.mode {
            let full = chunk + TAG_LEN;
            if self.buf.len() <= full {
                break;
            }
            self.open(full, false, out)?;
        }
        Ok(())
    }

    /// Ends the object: opens the last frame, or fails if it is missing (truncation).
    pub fn finish(mut self, out: &mut Vec<u8>) -> Result<(), StoreError> {
        if let Mode::Sniffing = self.mode {
            self.start(true)?;
            if let Mode::Plain = self.mode {
                out.append(&mut self.buf);
                return Ok(());
            }
        }
        match self.mode {
            Mode::Plain | Mode::Done => Ok(()),
            Mode::Sniffing => Err(StoreError::Corrupt("the header is cut short".into())),
            Mode::Decrypting { chunk, .. } => {
                let full = chunk + TAG_LEN;
                if self.buf.len() == full {
                    // A full frame is never the last one: the last frame was cut off.
                    self.open(full, false, out)?;
                }
                if self.buf.len() < TAG_LEN {
                    return Err(StoreError::Corrupt(
                        "the encrypted snapshot is truncated: its last frame is missing".into(),
                    ));
                }
                let len = self.buf.len();
                self.open(len, true, out)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> EncryptionKey {
        EncryptionKey::from_bytes(&[b; 32]).expect("32 bytes")
    }

    fn encrypt(k: &EncryptionKey, plain: &[u8], cut: usize) -> Vec<u8> {
        let mut e = Encryptor::new(k);
        let mut out = e.header().to_vec();
        for piece in plain.chunks(cut.max(1)) {
            e.push(piece, &mut out).expect("push");
        }
        e.finish(&mut out).expect("finish");
        out
    }

    fn decrypt(k: Option<&EncryptionKey>, data: &[u8], cut: usize) -> Result<Vec<u8>, StoreError> {
        let mut d = Decryptor::new(k.cloned());
        let mut out = Vec::new();
        for piece in data.chunks(cut.max(1)) {
            d.push(piece, &mut out)?;
        }
        d.finish(&mut out)?;
        Ok(out)
    }

    fn sample(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i % 253) as u8).collect()
    }

    #[test]
    fn round_trips_at_every_size_and_cut() {
        let k = key(1);
        for n in [
            0,
            1,
            100,
            CHUNK - 1,
            CHUNK,
            CHUNK + 1,
            3 * CHUNK,
            3 * CHUNK + 77,
        ] {
            let plain = sample(n);
            for cut in [1000, 7919, CHUNK + 16, 1 << 20] {
                let enc = encrypt(&k, &plain, cut);
                assert_eq!(&enc[..8], MAGIC);
                assert_ne!(&enc[HEADER_LEN..], &plain[..], "n={n}");
                let dec = decrypt(Some(&k), &enc, cut).expect("decrypts");
                assert_eq!(dec, plain, "n={n} cut={cut}");
            }
        }
    }

    #[test]
    fn plain_objects_pass_through() {
        let plain = sample(5000);
        assert_eq!(decrypt(Some(&key(1)), &plain, 3).expect("plain"), plain);
        assert_eq!(decrypt(None, &plain, 100).expect("plain"), plain);
        assert_eq!(decrypt(None, b"EOP", 1).expect("short plain"), b"EOP");
    }

    #[test]
    fn wrong_or_missing_key_is_a_typed_error() {
        let enc = encrypt(&key(1), &sample(1000), 100);
        match decrypt(Some(&key(2)), &enc, 50) {
            Err(StoreError::WrongKey { recorded, given }) => {
                assert_eq!(recorded, key(1).id());
                assert_eq!(given, key(2).id());
            }
            other => panic!("expected WrongKey, got {other:?}"),
        }
        assert!(matches!(
            decrypt(None, &enc, 50),
            Err(StoreError::KeyMissing { key_id }) if key_id == key(1).id()
        ));
    }

    #[test]
    fn tampering_is_detected() {
        let k = key(3);
        let enc = encrypt(&k, &sample(2 * CHUNK + 10), 4096);
        for pos in [
            HEADER_LEN - 1,
            HEADER_LEN + 5,
            HEADER_LEN + CHUNK + 20,
            enc.len() - 1,
        ] {
            let mut bad = enc.clone();
            bad[pos] ^= 0x40;
            let err = decrypt(Some(&k), &bad, 4096).expect_err("tampered");
            assert!(matches!(err, StoreError::Corrupt(_)), "pos {pos}: {err:?}");
        }
        // Two frames swapped.
        let f = CHUNK + TAG_LEN;
        let mut swapped = enc[..HEADER_LEN].to_vec();
        swapped.extend_from_slice(&enc[HEADER_LEN + f..HEADER_LEN + 2 * f]);
        swapped.extend_from_slice(&enc[HEADER_LEN..HEADER_LEN + f]);
        swapped.extend_from_slice(&enc[HEADER_LEN + 2 * f..]);
        assert!(matches!(
            decrypt(Some(&k), &swapped, 4096),
            Err(StoreError::Corrupt(_))
        ));
    }

    #[test]
    fn truncation_is_detected() {
        let k = key(4);
        let enc = encrypt(&k, &sample(2 * CHUNK + 10), 4096);
        let f = CHUNK + TAG_LEN;
        // At a frame boundary (the last frame dropped), inside a frame, inside the header, and
        // with extra bytes appended.
        for end in [
            HEADER_LEN + 2 * f,
            HEADER_LEN + f,
            HEADER_LEN,
            HEADER_LEN + 10,
            20,
        ] {
            let err = decrypt(Some(&k), &enc[..end], 1000).expect_err("truncated");
            assert!(matches!(err, StoreError::Corrupt(_)), "end {end}: {err:?}");
        }
        let mut longer = enc.clone();
        longer.push(0);
        assert!(decrypt(Some(&k), &longer, 1000).is_err());
    }

    #[test]
    fn key_debug_shows_only_the_id() {
        let k = key(9);
        let shown = format!("{k:?}");
        assert!(shown.contains(&k.id()));
        assert!(!shown.contains("9, 9"));
        assert!(EncryptionKey::from_bytes(&[0; 31]).is_err());
    }
}
