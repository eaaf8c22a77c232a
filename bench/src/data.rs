//! Deterministic test data. Every blob of a run is a slice of one pseudo-random buffer at its
//! own offset, so blobs are distinct (distinct digests: no registry can skip work by
//! deduplicating) while memory holds one buffer, and a pulled body can be compared byte for
//! byte with what was pushed at memory speed. Digests are computed before any timing starts.

use bytes::Bytes;
use sha2::{Digest as _, Sha256};

/// Bytes between the starts of two consecutive blobs of a corpus.
const STRIDE: usize = 4096;

/// `count` distinct blobs of `size` bytes, with their digests.
#[derive(Debug)]
pub struct Corpus {
    buffer: Bytes,
    size: usize,
    digests: Vec<String>,
}

impl Corpus {
    /// Builds the corpus for `seed` (different seeds: unrelated contents).
    pub fn new(seed: u64, size: u64, count: usize) -> anyhow::Result<Corpus> {
        let size = usize::try_from(size)?;
        let buffer = Bytes::from(random_bytes(seed, size + count * STRIDE));
        let digests = parallel_digests(&buffer, size, count);
        Ok(Corpus {
            buffer,
            size,
            digests,
        })
    }

    pub fn len(&self) -> usize {
        self.digests.len()
    }

    /// The bytes of blob `i` (a cheap reference-counted slice).
    pub fn blob(&self, i: usize) -> Bytes {
        self.buffer.slice(i * STRIDE..i * STRIDE + self.size)
    }

    pub fn digest(&self, i: usize) -> &str {
        &self.digests[i]
    }
}

fn parallel_digests(buffer: &Bytes, size: usize, count: usize) -> Vec<String> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut digests = vec![String::new(); count];
    let per_thread = count.div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        for (t, slots) in digests.chunks_mut(per_thread).enumerate() {
            scope.spawn(move || {
                for (k, slot) in slots.iter_mut().enumerate() {
                    let i = t * per_thread + k;
                    *slot = sha256_digest(&buffer[i * STRIDE..i * STRIDE + size]);
                }
            });
        }
    });
    digests
}

/// `sha256:<hex>` of `data`.
pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(data)))
}

pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    out
}

/// `len` pseudo-random bytes from `seed` (xorshift64*: fast, and incompressible enough).
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A seed from a text (a scenario's name and mode), so that runs are reproducible.
pub fn seed_of(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_are_distinct_slices_with_their_digests() {
        let corpus = Corpus::new(7, 10_000, 5).unwrap();
        assert_eq!(corpus.len(), 5);
        let mut seen = std::collections::BTreeSet::new();
        for i in 0..corpus.len() {
            let blob = corpus.blob(i);
            assert_eq!(blob.len(), 10_000);
            assert_eq!(corpus.digest(i), sha256_digest(&blob));
            assert!(seen.insert(corpus.digest(i).to_owned()));
        }
        assert_ne!(random_bytes(1, 64), random_bytes(2, 64));
        assert_eq!(random_bytes(3, 13), random_bytes(3, 13));
    }

    #[test]
    fn digests_have_the_spec_form() {
        assert_eq!(
            sha256_digest(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
