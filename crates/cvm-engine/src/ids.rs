//! Deterministic ids for decisions and offers.
//!
//! An id is the 128-bit xxh3 hash of its inputs, in hex. The same event
//! decided for the same channel always gets the same decision id; an offer's
//! id adds the offer definition and its version. So a replayed event, or an
//! outbox entry published twice after a crash, carries the same id and can be
//! deduplicated downstream.

use cvm_proto::v1::Channel;
use xxhash_rust::xxh3::xxh3_128;

fn hash_hex(parts: &[&[u8]]) -> String {
    let mut buf = Vec::with_capacity(parts.iter().map(|p| p.len() + 1).sum());
    for p in parts {
        buf.extend_from_slice(p);
        buf.push(0x1f);
    }
    format!("{:032x}", xxh3_128(&buf))
}

/// The id of the decision made for `event_id` on `channel`.
pub fn decision_id(event_id: &str, channel: Channel) -> String {
    hash_hex(&[b"decision", event_id.as_bytes(), &(channel as i32).to_be_bytes()])
}

/// The id of the offer sent for `decision_id` from `definition_id` at `version`.
pub fn offer_id(decision_id: &str, definition_id: &str, version: u32) -> String {
    hash_hex(&[b"offer", decision_id.as_bytes(), definition_id.as_bytes(), &version.to_be_bytes()])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_distinct() {
        let d = decision_id("e1", Channel::Push);
        assert_eq!(d, decision_id("e1", Channel::Push));
        assert_ne!(d, decision_id("e1", Channel::Stories));
        assert_ne!(d, decision_id("e2", Channel::Push));
        assert_eq!(d.len(), 32);
        assert_ne!(offer_id(&d, "o", 1), offer_id(&d, "o", 2));
    }
}
