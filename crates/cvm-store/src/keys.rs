//! Key encodings of every column family (see the crate docs for the layout).
//! Keys of partitioned state start with the partition, big endian, so a
//! partition's state is one contiguous range.

use cvm_engine::{
    attribution::{Group, Stats, StatsKey},
    driver::SweepProgress,
    models::ArmKey,
    StoreError,
};

pub(crate) const CF_PROFILES: &str = "profiles";
pub(crate) const CF_EVENTS: &str = "events";
pub(crate) const CF_DEVICES: &str = "devices";
pub(crate) const CF_OFFSETS: &str = "offsets";
pub(crate) const CF_OUTBOX: &str = "outbox";
pub(crate) const CF_TIMERS: &str = "timers";
pub(crate) const CF_TIMER_INDEX: &str = "timer_index";
pub(crate) const CF_STATS: &str = "stats";
pub(crate) const CF_ARMS: &str = "arms";
pub(crate) const CF_SCANS: &str = "scans";
pub(crate) const CF_PARKED: &str = "parked";
pub(crate) const CF_BUDGETS: &str = "budgets";
pub(crate) const ALL_CFS: [&str; 12] = [
    CF_PROFILES,
    CF_EVENTS,
    CF_DEVICES,
    CF_OFFSETS,
    CF_OUTBOX,
    CF_TIMERS,
    CF_TIMER_INDEX,
    CF_STATS,
    CF_ARMS,
    CF_SCANS,
    CF_PARKED,
    CF_BUDGETS,
];

pub(crate) fn arm_key(partition: u32, key: &ArmKey) -> Vec<u8> {
    let mut k = Vec::with_capacity(13);
    k.extend_from_slice(&partition.to_be_bytes());
    k.push(key.segment);
    k.extend_from_slice(&key.offer.to_be_bytes());
    k
}

pub(crate) fn budget_key(partition: u32, campaign: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(12);
    k.extend_from_slice(&partition.to_be_bytes());
    k.extend_from_slice(&campaign.to_be_bytes());
    k
}

pub(crate) fn partition_key(partition: u32, id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(4 + id.len());
    k.extend_from_slice(&partition.to_be_bytes());
    k.extend_from_slice(id.as_bytes());
    k
}

/// The key of a device's held anonymous events in the devices column
/// family: the partition, then 0xFF (never a byte of UTF-8, so never a
/// device id's), then the device.
pub(crate) fn held_key(partition: u32, device_id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(5 + device_id.len());
    k.extend_from_slice(&partition.to_be_bytes());
    k.push(0xff);
    k.extend_from_slice(device_id.as_bytes());
    k
}

/// The key of an erasure marker in the events column family: the partition,
/// then 0xFF (never a byte of UTF-8, so never an event id's), then the customer.
pub(crate) fn erased_key(partition: u32, customer_id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(5 + customer_id.len());
    k.extend_from_slice(&partition.to_be_bytes());
    k.push(0xff);
    k.extend_from_slice(customer_id.as_bytes());
    k
}

pub(crate) fn timer_key(partition: u32, due_ms: i64, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(12 + key.len());
    k.extend_from_slice(&partition.to_be_bytes());
    k.extend_from_slice(&(due_ms.max(0) as u64).to_be_bytes());
    k.extend_from_slice(key);
    k
}

pub(crate) fn stats_key(partition: u32, key: &StatsKey) -> Vec<u8> {
    let mut k = Vec::with_capacity(9 + key.campaign_id.len());
    k.extend_from_slice(&partition.to_be_bytes());
    k.push(key.group.code());
    k.extend_from_slice(&((key.day as u32) ^ 0x8000_0000).to_be_bytes());
    k.extend_from_slice(key.campaign_id.as_bytes());
    k
}

pub(crate) fn decode_stats(k: &[u8], v: &[u8]) -> Result<(u32, StatsKey, Stats), StoreError> {
    let corrupt = |detail: String| StoreError::Corrupt { what: "stats", detail };
    if k.len() < 9 {
        return Err(corrupt(format!("key of {} bytes", k.len())));
    }
    let partition = u32::from_be_bytes(k[..4].try_into().expect("checked length"));
    let group = Group::from_code(k[4]).ok_or_else(|| corrupt(format!("unknown group {}", k[4])))?;
    let day = (u32::from_be_bytes(k[5..9].try_into().expect("checked length")) ^ 0x8000_0000) as i32;
    let campaign_id = String::from_utf8_lossy(&k[9..]).into_owned();
    let stats = postcard::from_bytes(v).map_err(|e| corrupt(e.to_string()))?;
    Ok((partition, StatsKey { campaign_id, group, day }, stats))
}

pub(crate) fn timer_index_key(partition: u32, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(4 + key.len());
    k.extend_from_slice(&partition.to_be_bytes());
    k.extend_from_slice(key);
    k
}

pub(crate) fn scan_key(offer_id: &str, version: u32, partition: u32) -> Vec<u8> {
    let mut k = Vec::with_capacity(offer_id.len() + 9);
    k.extend_from_slice(offer_id.as_bytes());
    k.push(0);
    k.extend_from_slice(&version.to_be_bytes());
    k.extend_from_slice(&partition.to_be_bytes());
    k
}

/// Sweep progress as stored: `1` done, or `0 ‖ last customer id`.
pub(crate) fn encode_progress(progress: &SweepProgress) -> Vec<u8> {
    match progress {
        SweepProgress::Done => vec![1],
        SweepProgress::After(c) => [&[0u8][..], c.as_bytes()].concat(),
    }
}

pub(crate) fn decode_progress(b: &[u8]) -> SweepProgress {
    match b.split_first() {
        Some((1, _)) => SweepProgress::Done,
        Some((_, rest)) => SweepProgress::After(String::from_utf8_lossy(rest).into_owned()),
        None => SweepProgress::After(String::new()),
    }
}

/// The offsets-family key of a partition's event-time clock: `0xFD ‖
/// partition` (`0xFD` never starts a topic name; the partition is last,
/// like the offsets', so it is changelogged and wiped with them).
pub(crate) fn clock_key(partition: u32) -> Vec<u8> {
    let mut k = vec![0xfd];
    k.extend_from_slice(&partition.to_be_bytes());
    k
}

pub(crate) fn offset_key(topic: &str, partition: i32) -> Vec<u8> {
    let mut k = Vec::with_capacity(topic.len() + 5);
    k.extend_from_slice(topic.as_bytes());
    k.push(0);
    k.extend_from_slice(&partition.to_be_bytes());
    k
}
