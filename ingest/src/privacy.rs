//! What keeps people unidentifiable at the edge: raw machine ids are replaced
//! by a keyed hash before anything is written.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// HMAC-SHA256 of machine ids under a per-deployment secret. Without the
/// secret, a hash cannot be linked back to a machine id, not even by trying
/// every id; with it, the same machine always gets the same hash.
#[derive(Clone)]
pub struct MachineHasher {
    mac: Hmac<Sha256>,
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
    pub fn new(key: &str) -> Self {
        MachineHasher {
            mac: Hmac::new_from_slice(key.as_bytes()).expect("HMAC takes keys of any length"),
        }
    }

    pub fn hash(&self, machine_id: &str) -> String {
        let mut mac = self.mac.clone();
        mac.update(machine_id.as_bytes());
        let mut hex = hex::encode(mac.finalize().into_bytes());
        hex.truncate(HASH_HEX_LEN);
        hex
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_stable_keyed_and_hide_the_id() {
        let a = MachineHasher::new("deployment-secret-one-0123456789");
        let b = MachineHasher::new("deployment-secret-two-0123456789");
        let id = "m-7d2f9a41c0b84e55";
        assert_eq!(a.hash(id), a.hash(id));
        assert_ne!(a.hash(id), b.hash(id));
        assert_ne!(a.hash(id), a.hash("m-7d2f9a41c0b84e56"));
        assert_eq!(a.hash(id).len(), HASH_HEX_LEN);
        assert!(!a.hash(id).contains("7d2f9a41"));
    }

    #[test]
    fn matches_the_published_hmac_sha256_test_vector() {
        // RFC 4231, test case 2.
        let hasher = MachineHasher::new("Jefe");
        assert_eq!(
            hasher.hash("what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c7"
        );
    }
}
