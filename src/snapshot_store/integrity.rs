//! The SHA-256 check of an etcd snapshot stream, done by the store layer itself.
//!
//! etcd sends a snapshot as the bbolt file (whole 512-byte pages) followed by the 32-byte SHA-256
//! of those pages; `etcdutl snapshot restore` checks that trailer. [`TrailerCheck`] hashes the
//! bytes as they pass, holding back the last 32, and says at the end whether the trailer matches,
//! so an object is committed only for a complete, intact snapshot.

use sha2::{Digest, Sha256};

use super::StoreError;

/// Length of the SHA-256 trailer etcd appends to a snapshot.
pub const TRAILER_LEN: usize = 32;
const PAGE: u64 = 512;

/// A running check of a snapshot stream's SHA-256 trailer. Independent of how the stream is cut.
#[derive(Default)]
pub struct TrailerCheck {
    hasher: Sha256,
    held: Vec<u8>,
    total: u64,
}

impl TrailerCheck {
    /// Feeds the next bytes of the stream.
    pub fn update(&mut self, bytes: &[u8]) {
        self.total += bytes.len() as u64;
        if bytes.len() >= TRAILER_LEN {
            // Everything held and all but the last 32 new bytes are data, not trailer.
            let (data, tail) = bytes.split_at(bytes.len() - TRAILER_LEN);
            self.hasher.update(&self.held);
            self.hasher.update(data);
            self.held.clear();
            self.held.extend_from_slice(tail);
            return;
        }
        self.held.extend_from_slice(bytes);
        if self.held.len() > TRAILER_LEN {
            let spill = self.held.len() - TRAILER_LEN;
            self.hasher.update(&self.held[..spill]);
            self.held.drain(..spill);
        }
    }

    /// Bytes seen so far.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Ends the stream: the total size (trailer included) and the database's SHA-256, or
    /// [`StoreError::Integrity`] when the stream is not whole pages plus a matching trailer.
    pub fn finish(self) -> Result<(u64, [u8; TRAILER_LEN]), StoreError> {
        if self.held.len() != TRAILER_LEN || self.total % PAGE != TRAILER_LEN as u64 {
            return Err(StoreError::Integrity(format!(
                "no SHA-256 trailer: {} bytes is not whole 512-byte pages plus 32",
                self.total
            )));
        }
        let digest: [u8; TRAILER_LEN] = self.hasher.finalize().into();
        if digest[..] != self.held[..] {
            return Err(StoreError::Integrity(format!(
                "SHA-256 mismatch: the data hashes to {}, the trailer says {}",
                hex(&digest),
                hex(&self.held)
            )));
        }
        Ok((self.total, digest))
    }
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A fake snapshot: `pages` pages of patterned bytes and their SHA-256.
    pub(crate) fn fake_snapshot(pages: usize) -> Vec<u8> {
        let mut db: Vec<u8> = (0..pages * 512).map(|i| (i * 7 % 251) as u8).collect();
        let digest: [u8; 32] = Sha256::digest(&db).into();
        db.extend_from_slice(&digest);
        db
    }

    #[test]
    fn accepts_a_whole_snapshot_however_it_is_cut() {
        let snap = fake_snapshot(9);
        for cut in [1, 7, 31, 32, 33, 512, 4000, snap.len()] {
            let mut c = TrailerCheck::default();
            for piece in snap.chunks(cut) {
                c.update(piece);
            }
            let (size, sha) = c.finish().expect("whole snapshot");
            assert_eq!(size, snap.len() as u64);
            assert_eq!(sha[..], snap[snap.len() - 32..]);
        }
    }

    #[test]
    fn rejects_truncation_and_a_flipped_bit() {
        let snap = fake_snapshot(4);
        let mut c = TrailerCheck::default();
        c.update(&snap[..snap.len() - 1]);
        assert!(matches!(c.finish(), Err(StoreError::Integrity(_))));

        let mut c = TrailerCheck::default();
        c.update(&snap[..1024]);
        assert!(matches!(c.finish(), Err(StoreError::Integrity(_))));

        let mut bad = snap.clone();
        bad[100] ^= 1;
        let mut c = TrailerCheck::default();
        c.update(&bad);
        let err = c.finish().expect_err("flipped bit");
        assert!(err.to_string().contains("mismatch"), "{err}");
    }
}
