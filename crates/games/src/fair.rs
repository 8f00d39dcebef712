//! Provably fair randomness. Before play the player sees SHA-256(server seed); each round uses
//! HMAC-SHA256(key = server seed, message = "client_seed:nonce:block") as a stream of bytes.
//! Once the server seed is rotated and revealed, anyone can recompute every past outcome.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// Hex SHA-256 of a server seed: the commitment shown to the player before play.
pub fn server_seed_hash(server_seed: &str) -> String {
    hex::encode(Sha256::digest(server_seed.as_bytes()))
}

/// A deterministic random stream for one round.
#[derive(Clone)]
pub struct FairRng {
    mac: HmacSha256,
    client_seed: String,
    nonce: u64,
    block: u64,
    buf: [u8; 32],
    pos: usize,
}

impl FairRng {
    pub fn new(server_seed: &str, client_seed: &str, nonce: u64) -> Self {
        let mac = HmacSha256::new_from_slice(server_seed.as_bytes())
            .expect("HMAC accepts keys of any length");
        let mut rng = FairRng {
            mac,
            client_seed: client_seed.to_owned(),
            nonce,
            block: 0,
            buf: [0; 32],
            pos: 0,
        };
        rng.refill();
        rng
    }

    fn refill(&mut self) {
        let mut mac = self.mac.clone();
        mac.update(format!("{}:{}:{}", self.client_seed, self.nonce, self.block).as_bytes());
        self.buf.copy_from_slice(&mac.finalize().into_bytes());
        self.block += 1;
        self.pos = 0;
    }

    /// The next 32 bits of the stream, big-endian.
    pub fn next_u32(&mut self) -> u32 {
        if self.pos + 4 > self.buf.len() {
            self.refill();
        }
        let bytes = [
            self.buf[self.pos],
            self.buf[self.pos + 1],
            self.buf[self.pos + 2],
            self.buf[self.pos + 3],
        ];
        self.pos += 4;
        u32::from_be_bytes(bytes)
    }

    /// A uniform integer in `0..n` without modulo bias (rejection sampling).
    pub fn below(&mut self, n: u32) -> u32 {
        assert!(n > 0, "below(0) has no values");
        let zone = u32::MAX - (u32::MAX % n + 1) % n;
        loop {
            let x = self.next_u32();
            if x <= zone {
                return x % n;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_sha256_hex() {
        assert_eq!(
            server_seed_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn stream_is_deterministic_and_depends_on_every_input() {
        let first: Vec<u32> = {
            let mut r = FairRng::new("s", "c", 1);
            (0..20).map(|_| r.next_u32()).collect()
        };
        let again: Vec<u32> = {
            let mut r = FairRng::new("s", "c", 1);
            (0..20).map(|_| r.next_u32()).collect()
        };
        assert_eq!(first, again);
        for (s, c, n) in [("t", "c", 1), ("s", "d", 1), ("s", "c", 2)] {
            let mut r = FairRng::new(s, c, n);
            assert_ne!(first[0], r.next_u32());
        }
    }

    #[test]
    fn below_is_in_range_and_covers_it() {
        let mut r = FairRng::new("seed", "client", 7);
        let mut seen = [0u32; 37];
        for _ in 0..37_000 {
            seen[r.below(37) as usize] += 1;
        }
        assert!(
            seen.iter().all(|&count| count > 800 && count < 1200),
            "{seen:?}"
        );
    }
}
