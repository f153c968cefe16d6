//! What the topics share: [`fetch`] for the fetcher and cache tests, [`http`] for the daemon
//! driven through its HTTP API.

pub mod binary;
pub mod fetch;
pub mod http;

/// Deterministic bytes that do not compress (xorshift), different for each seed.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}
