//! What keeps people unidentifiable at the edge: raw machine ids are replaced
//! by a keyed hash before anything is written.

use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;
use sm3::Sm3;

/// The keyed hash a deployment replaces machine ids with (`machine_id_hash`
/// in the configuration). Changing it changes every machine's hash, as
/// changing the key does: the same machine then counts as a new one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum MachineIdHash {
    /// HMAC (RFC 2104) over SHA-256 (FIPS 180-4).
    #[default]
    #[serde(rename = "hmac-sha256")]
    HmacSha256,
    /// HMAC over SM3 (GB/T 32905-2016), China's commercial cryptography
    /// standard hash, for deployments that must use it.
    #[serde(rename = "hmac-sm3")]
    HmacSm3,
}

/// The chosen HMAC of machine ids under a per-deployment secret. Without
/// the secret, a hash cannot be linked back to a machine id, not even by
/// trying every id; with it, the same machine always gets the same hash.
#[derive(Clone)]
pub struct MachineHasher {
    mac: Keyed,
}

#[derive(Clone)]
enum Keyed {
    Sha256(Hmac<Sha256>),
    Sm3(Hmac<Sm3>),
}

impl std::fmt::Debug for MachineHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MachineHasher(..)")
    }
}

/// Hex digits kept of the MAC: 128 bits, ample against collisions among
/// millions of machines.
const HASH_HEX_LEN: usize = 32;

impl MachineHasher {
    pub fn new(algorithm: MachineIdHash, key: &str) -> Self {
        const ANY_LENGTH: &str = "HMAC takes keys of any length";
        let key = key.as_bytes();
        let mac = match algorithm {
            MachineIdHash::HmacSha256 => {
                Keyed::Sha256(Hmac::new_from_slice(key).expect(ANY_LENGTH))
            }
            MachineIdHash::HmacSm3 => Keyed::Sm3(Hmac::new_from_slice(key).expect(ANY_LENGTH)),
        };
        MachineHasher { mac }
    }

    pub fn hash(&self, machine_id: &str) -> String {
        match &self.mac {
            Keyed::Sha256(mac) => hex_of(mac, machine_id),
            Keyed::Sm3(mac) => hex_of(mac, machine_id),
        }
    }
}

/// The MAC of `message`, its first [`HASH_HEX_LEN`] hex digits.
fn hex_of<M: Mac + Clone>(mac: &M, message: &str) -> String {
    let mut mac = mac.clone();
    mac.update(message.as_bytes());
    let bytes = mac.finalize().into_bytes();
    hex::encode(&bytes[..HASH_HEX_LEN / 2])
}

#[cfg(test)]
mod tests {
    use super::*;
    use sm3::Digest;

    #[test]
    fn hashes_are_stable_keyed_and_hide_the_id() {
        for algorithm in [MachineIdHash::HmacSha256, MachineIdHash::HmacSm3] {
            let a = MachineHasher::new(algorithm, "deployment-secret-one-0123456789");
            let b = MachineHasher::new(algorithm, "deployment-secret-two-0123456789");
            let id = "m-7d2f9a41c0b84e55";
            assert_eq!(a.hash(id), a.hash(id));
            assert_ne!(a.hash(id), b.hash(id));
            assert_ne!(a.hash(id), a.hash("m-7d2f9a41c0b84e56"));
            assert_eq!(a.hash(id).len(), HASH_HEX_LEN);
            assert!(!a.hash(id).contains("7d2f9a41"));
        }
        let key = "deployment-secret-one-0123456789";
        assert_ne!(
            MachineHasher::new(MachineIdHash::HmacSha256, key).hash("m-1"),
            MachineHasher::new(MachineIdHash::HmacSm3, key).hash("m-1"),
            "changing the algorithm changes every hash"
        );
    }

    #[test]
    fn matches_the_published_hmac_sha256_test_vector() {
        // RFC 4231, test case 2.
        let hasher = MachineHasher::new(MachineIdHash::HmacSha256, "Jefe");
        assert_eq!(
            hasher.hash("what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c7"
        );
    }

    #[test]
    fn sm3_matches_the_standard_s_examples() {
        // GB/T 32905-2016, appendix A: example 1 ("abc") and example 2
        // ("abcd" sixteen times).
        assert_eq!(
            hex::encode(Sm3::digest(b"abc")),
            "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
        );
        assert_eq!(
            hex::encode(Sm3::digest("abcd".repeat(16).as_bytes())),
            "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732"
        );
    }

    #[test]
    fn hmac_sm3_is_rfc_2104_over_sm3() {
        // HMAC built by hand from its definition (RFC 2104: block of 64
        // bytes, ipad 0x36, opad 0x5c) over the standard's hash, against the
        // library's, for a short key and one longer than a block.
        for key in ["Jefe".to_string(), "k".repeat(100)] {
            let message = "what do ya want for nothing?";
            let mut block = [0u8; 64];
            if key.len() > 64 {
                block[..32].copy_from_slice(&Sm3::digest(key.as_bytes()));
            } else {
                block[..key.len()].copy_from_slice(key.as_bytes());
            }
            let pad = |byte: u8| block.iter().map(|b| b ^ byte).collect::<Vec<u8>>();
            let inner = Sm3::new()
                .chain_update(pad(0x36))
                .chain_update(message)
                .finalize();
            let outer = Sm3::new()
                .chain_update(pad(0x5c))
                .chain_update(inner)
                .finalize();
            let by_hand = hex::encode(outer);
            let hasher = MachineHasher::new(MachineIdHash::HmacSm3, &key);
            assert_eq!(hasher.hash(message), by_hand[..HASH_HEX_LEN], "key {key}");
        }
    }
}
