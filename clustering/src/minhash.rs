//! Stable hashing, MinHash signatures and LSH band keys.
//!
//! Every hash here is spelled out (FNV-1a 64 and the SplitMix64 finaliser with
//! fixed constants), so signatures and cluster ids are identical across
//! processes, machines, Rust versions and releases of this crate. The std
//! `DefaultHasher`/`RandomState` are never used for anything that is persisted
//! or that decides an assignment.

use crate::text;

/// Number of MinHash functions, i.e. `u32` values in a signature.
pub const NUM_HASHES: usize = 96;
/// LSH bands; each band is [`ROWS`] consecutive signature values.
pub const BANDS: usize = 32;
/// Signature values per band.
pub const ROWS: usize = 3;
/// Bytes of [`MinHashSignature::to_bytes`].
pub const SIGNATURE_BYTES: usize = NUM_HASHES * 4;

const _: () = assert!(BANDS * ROWS == NUM_HASHES);

/// The SplitMix64 finaliser: a bijective 64-bit mixer.
pub(crate) const fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// FNV-1a 64 over `bytes`, followed by the SplitMix64 finaliser so that short inputs spread
/// over all 64 bits. This is the function behind cluster ids and shingle
/// hashes; it must never change.
pub fn stable_hash64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xCBF2_9CE4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01B3);
    }
    mix64(h)
}

/// Per-function multipliers (odd) and offsets, from a SplitMix64 sequence
/// with a fixed start. Function `i` maps a shingle hash `x` to the high 32
/// bits of `A[i]·x + B[i]` (mod 2⁶⁴), multiply-shift hashing: one multiply
/// per function, and `x` is already a well-mixed 64-bit hash.
const fn coefficients() -> ([u64; NUM_HASHES], [u64; NUM_HASHES]) {
    let mut a = [0u64; NUM_HASHES];
    let mut b = [0u64; NUM_HASHES];
    let mut state: u64 = 0x6665_6174_7572_6521; // "feature!"
    let mut i = 0;
    while i < NUM_HASHES {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        a[i] = mix64(state) | 1;
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        b[i] = mix64(state);
        i += 1;
    }
    (a, b)
}

const COEFFICIENTS: ([u64; NUM_HASHES], [u64; NUM_HASHES]) = coefficients();

/// Why bytes or values could not be read back as a signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("signature must be {expected} {unit}, got {got}")]
    WrongLength {
        expected: usize,
        got: usize,
        unit: &'static str,
    },
}

/// A MinHash signature: for each of [`NUM_HASHES`] seeded hash functions, the
/// smallest 32-bit hash over the text's shingles. The fraction of positions
/// where two signatures agree estimates the Jaccard similarity of the shingle
/// sets (standard error `sqrt(J(1-J)/96)`, about 0.05 at J = 0.5).
///
/// Text without shingles has the all-`u32::MAX` signature ([`Self::is_empty`]),
/// which is similar to nothing, itself included.
///
/// Persist it with [`Self::to_bytes`] (384 bytes, little-endian `u32`s, e.g. a
/// ClickHouse `FixedString(384)`) or [`Self::values`] (an `Array(UInt32)`).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct MinHashSignature([u32; NUM_HASHES]);

impl std::fmt::Debug for MinHashSignature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "MinHashSignature({:08x} {:08x} {:08x} ..)",
            self.0[0], self.0[1], self.0[2]
        )
    }
}

impl MinHashSignature {
    /// The signature of a set of shingle hashes (see [`shingle_hash`]).
    pub fn from_shingle_hashes(hashes: &[u64]) -> Self {
        let mut sig = [u32::MAX; NUM_HASHES];
        let (a, b) = &COEFFICIENTS;
        for &h in hashes {
            for i in 0..NUM_HASHES {
                let v = (a[i].wrapping_mul(h).wrapping_add(b[i]) >> 32) as u32;
                if v < sig[i] {
                    sig[i] = v;
                }
            }
        }
        Self(sig)
    }

    /// The signature of raw request text (normalised and shingled here).
    pub fn from_text(text: &str) -> Self {
        Self::from_shingle_hashes(&shingle_hashes_of_normalized(&text::normalize(text)))
    }

    /// Whether this is the signature of text without shingles.
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|&v| v == u32::MAX)
    }

    /// The signature values, for storage as an array column.
    pub fn values(&self) -> &[u32; NUM_HASHES] {
        &self.0
    }

    /// Reads back [`Self::values`].
    pub fn from_values(values: &[u32]) -> Result<Self, SignatureError> {
        let arr: [u32; NUM_HASHES] =
            values.try_into().map_err(|_| SignatureError::WrongLength {
                expected: NUM_HASHES,
                got: values.len(),
                unit: "values",
            })?;
        Ok(Self(arr))
    }

    /// [`SIGNATURE_BYTES`] bytes: each value as little-endian `u32`.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.0.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    /// Reads back [`Self::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SignatureError> {
        if bytes.len() != SIGNATURE_BYTES {
            return Err(SignatureError::WrongLength {
                expected: SIGNATURE_BYTES,
                got: bytes.len(),
                unit: "bytes",
            });
        }
        let mut sig = [0u32; NUM_HASHES];
        for (v, chunk) in sig.iter_mut().zip(bytes.chunks_exact(4)) {
            *v = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        }
        Ok(Self(sig))
    }

    /// Estimated Jaccard similarity: the fraction of agreeing positions.
    /// 0.0 when either side is empty.
    pub fn similarity(&self, other: &Self) -> f32 {
        similarity_values(&self.0, &other.0)
    }

    /// The LSH key of each band: [`stable_hash64`]-style mixing of the band
    /// number and its [`ROWS`] values, truncated to 32 bits. Truncation makes
    /// unrelated bands share a key now and then (about 0.75% of lookups at
    /// 32 million index entries); such candidates cost one signature
    /// comparison and are rejected by the similarity check.
    pub(crate) fn band_keys(&self) -> [u32; BANDS] {
        let mut keys = [0u32; BANDS];
        for (b, (key, rows)) in keys.iter_mut().zip(self.0.chunks_exact(ROWS)).enumerate() {
            let mut h = mix64(b as u64 ^ 0xB4D5_B4D5_B4D5_B4D5);
            for &v in rows {
                h = mix64(h ^ u64::from(v));
            }
            *key = (h >> 32) as u32;
        }
        keys
    }
}

pub(crate) fn similarity_values(a: &[u32], b: &[u32]) -> f32 {
    if a.iter().all(|&v| v == u32::MAX) || b.iter().all(|&v| v == u32::MAX) {
        return 0.0;
    }
    let same = a.iter().zip(b).filter(|(x, y)| x == y).count();
    same as f32 / NUM_HASHES as f32
}

/// The 64-bit hash of one shingle: [`stable_hash64`] of its UTF-8 bytes.
pub fn shingle_hash(shingle: &str) -> u64 {
    stable_hash64(shingle.as_bytes())
}

/// Shingle hashes of normalised text, sorted and de-duplicated, without
/// building the shingle strings.
pub(crate) fn shingle_hashes_of_normalized(normalized: &str) -> Vec<u64> {
    let mut hashes = Vec::new();
    text::for_each_shingle(normalized, |s| hashes.push(shingle_hash(s)));
    hashes.sort_unstable();
    hashes.dedup();
    hashes
}

/// Exact Jaccard similarity of two sorted, de-duplicated hash sets, as the
/// pair (intersection, union). Both 0 when both sets are empty.
pub(crate) fn jaccard_counts(a: &[u64], b: &[u64]) -> (usize, usize) {
    let (mut i, mut j, mut inter) = (0, 0, 0);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                inter += 1;
                i += 1;
                j += 1;
            }
        }
    }
    (inter, a.len() + b.len() - inter)
}

/// Exact Jaccard similarity of the shingle sets of two texts (0.0 when either
/// has no shingles). Useful to check what MinHash estimates.
pub fn jaccard(a: &str, b: &str) -> f32 {
    let ha = shingle_hashes_of_normalized(&text::normalize(a));
    let hb = shingle_hashes_of_normalized(&text::normalize(b));
    match jaccard_counts(&ha, &hb) {
        (_, 0) => 0.0,
        (inter, union) => inter as f32 / union as f32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_hash_golden_values() {
        // Pinned: these feed persisted cluster ids and signatures.
        assert_eq!(stable_hash64(b""), mix64(0xCBF2_9CE4_8422_2325));
        assert_eq!(stable_hash64(b"a"), mix64(0xAF63_DC4C_8601_EC8C));
        assert_eq!(stable_hash64(b"taskbar"), 0xdd4b_c03f_b668_aaec);
        assert_eq!(stable_hash64("任务栏".as_bytes()), 0xba2d_df7d_d275_c8ae);
    }

    #[test]
    fn signature_golden_prefix() {
        let sig = MinHashSignature::from_text("Group taskbar windows by project");
        assert_eq!(
            &sig.values()[..4],
            &[1_133_997_358, 1_574_591_017, 1_004_216_888, 1_526_472_490],
            "golden signature changed"
        );
    }

    #[test]
    fn bytes_round_trip() {
        let sig = MinHashSignature::from_text("希望支持国密算法SM2证书登录");
        let bytes = sig.to_bytes();
        assert_eq!(bytes.len(), SIGNATURE_BYTES);
        assert_eq!(MinHashSignature::from_bytes(&bytes), Ok(sig.clone()));
        assert_eq!(MinHashSignature::from_values(sig.values()), Ok(sig.clone()));
        assert_eq!(&bytes[..4], &sig.values()[0].to_le_bytes());
        assert_eq!(
            MinHashSignature::from_bytes(&bytes[..100]),
            Err(SignatureError::WrongLength {
                expected: 384,
                got: 100,
                unit: "bytes"
            })
        );
        assert!(MinHashSignature::from_values(&[1, 2, 3]).is_err());
    }

    #[test]
    fn empty_text_signature_matches_nothing() {
        let empty = MinHashSignature::from_text("please!");
        assert!(empty.is_empty());
        assert_eq!(empty.similarity(&empty), 0.0);
        let sig = MinHashSignature::from_text("taskbar");
        assert!(!sig.is_empty());
        assert_eq!(sig.similarity(&sig), 1.0);
        assert_eq!(sig.similarity(&empty), 0.0);
    }

    #[test]
    fn estimate_tracks_exact_jaccard() {
        // Sets with known overlap: 40 shared of 100 total -> J = 0.4.
        let a: Vec<u64> = (0..70).map(|i| stable_hash64(&[i as u8])).collect();
        let b: Vec<u64> = (30..100).map(|i| stable_hash64(&[i as u8])).collect();
        let est = MinHashSignature::from_shingle_hashes(&a)
            .similarity(&MinHashSignature::from_shingle_hashes(&b));
        // 3 standard errors (0.05 each) either side.
        assert!((est - 0.4).abs() < 0.15, "estimate {est}");
    }

    #[test]
    fn exact_jaccard() {
        assert_eq!(
            jaccard(
                "Group taskbar windows by project",
                "Please let the taskbar group windows by project"
            ),
            1.0
        );
        assert_eq!(jaccard("taskbar group", "taskbar icons"), 1.0 / 3.0);
        assert_eq!(jaccard("", "taskbar"), 0.0);
    }
}
