//! The outbox: messages committed with the state that caused them, waiting
//! for the publisher, which removes each once the broker acknowledged it.

use std::sync::atomic::Ordering;

use cvm_engine::StoreError;
use rocksdb::{IteratorMode, WriteBatch};
use serde::{Deserialize, Serialize};

use crate::{
    backend,
    keys::{CF_OFFSETS, CF_OUTBOX, CF_PARKED},
    Store,
};

/// A message waiting to be published.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct OutboxEntry {
    /// Destination topic.
    pub topic: String,
    /// Message key.
    pub key: Vec<u8>,
    /// Message value.
    pub payload: Vec<u8>,
    /// Message headers.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The partition to write to; `None`: the producer's (by key hash).
    /// Changelog records name the partition whose state they are.
    pub partition: Option<i32>,
    /// Send a null value (a tombstone of a compacted topic), not `payload`.
    pub tombstone: bool,
    /// The input partition whose commit queued this entry: only the
    /// partition's current owner may publish it (see the publisher's gate).
    /// `None` in entries of older stores.
    pub source: Option<u32>,
    /// The last entry of its commit. A transaction of the exactly-once
    /// publisher ends only here, so that a commit's messages for a
    /// partition become visible together or not at all.
    pub commit_end: bool,
}

/// The entry layout before source partitions (six fields).
#[derive(Deserialize)]
struct OutboxEntryV1 {
    topic: String,
    key: Vec<u8>,
    payload: Vec<u8>,
    headers: Vec<(String, Vec<u8>)>,
    partition: Option<i32>,
    tombstone: bool,
}

/// The entry layout before changelog records (four fields), still read
/// from the outbox of a store written by an older version.
#[derive(Deserialize)]
struct OutboxEntryV0 {
    topic: String,
    key: Vec<u8>,
    payload: Vec<u8>,
    headers: Vec<(String, Vec<u8>)>,
}

impl OutboxEntry {
    /// Decodes a stored entry, of this layout or an older one (whose
    /// entries are taken as complete commits of no particular partition).
    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, StoreError> {
        postcard::from_bytes(bytes).or_else(|e| {
            let old = match postcard::from_bytes::<OutboxEntryV1>(bytes) {
                Ok(v1) => Self {
                    topic: v1.topic,
                    key: v1.key,
                    payload: v1.payload,
                    headers: v1.headers,
                    partition: v1.partition,
                    tombstone: v1.tombstone,
                    ..Self::default()
                },
                Err(_) => {
                    let v0: OutboxEntryV0 = postcard::from_bytes(bytes)
                        .map_err(|_| StoreError::Corrupt { what: "outbox entry", detail: e.to_string() })?;
                    Self { topic: v0.topic, key: v0.key, payload: v0.payload, headers: v0.headers, ..Self::default() }
                }
            };
            Ok(Self { commit_end: true, ..old })
        })
    }
}

impl Store {
    /// Up to `limit` outbox entries with sequence numbers from `from_seq` on,
    /// oldest first. Starting past removed entries keeps the read from
    /// wading through their tombstones.
    pub fn outbox_peek(&self, from_seq: u64, limit: usize) -> Result<Vec<(u64, OutboxEntry)>, StoreError> {
        let from = from_seq.to_be_bytes();
        self.db
            .iterator_cf(self.cf(CF_OUTBOX), IteratorMode::From(&from, rocksdb::Direction::Forward))
            .take(limit)
            .map(|r| {
                let (k, v) = r.map_err(backend)?;
                let seq = u64::from_be_bytes(k[..8].try_into().expect("outbox keys are 8 bytes"));
                Ok((seq, OutboxEntry::decode(&v)?))
            })
            .collect()
    }

    /// Removes delivered outbox entries.
    pub fn outbox_remove(&self, seqs: impl IntoIterator<Item = u64>) -> Result<(), StoreError> {
        let mut wb = WriteBatch::default();
        for s in seqs {
            wb.delete_cf(self.cf(CF_OUTBOX), s.to_be_bytes());
        }
        self.db.write_opt(wb, &self.write_opts).map_err(backend)
    }

    /// Moves the entry `seq` out of the outbox into the parked entries, with
    /// `reason` as its `cvm.parked.reason` header, in one write: for an
    /// entry the broker will never accept (too large, unknown topic, not
    /// authorized), which retrying would only repeat forever.
    pub fn outbox_park(&self, seq: u64, mut entry: OutboxEntry, reason: &str) -> Result<(), StoreError> {
        entry.headers.push(("cvm.parked.reason".into(), reason.as_bytes().to_vec()));
        let value = postcard::to_allocvec(&entry)
            .map_err(|e| StoreError::Corrupt { what: "outbox entry", detail: e.to_string() })?;
        let mut wb = WriteBatch::default();
        wb.delete_cf(self.cf(CF_OUTBOX), seq.to_be_bytes());
        wb.put_cf(self.cf(CF_PARKED), seq.to_be_bytes(), value);
        self.db.write_opt(wb, &self.write_opts).map_err(backend)
    }

    /// Up to `limit` parked entries, oldest first, with their sequence numbers.
    pub fn parked(&self, limit: usize) -> Result<Vec<(u64, OutboxEntry)>, StoreError> {
        self.db
            .iterator_cf(self.cf(CF_PARKED), IteratorMode::Start)
            .take(limit)
            .map(|item| {
                let (k, v) = item.map_err(backend)?;
                let seq =
                    u64::from_be_bytes(k[..8].try_into().map_err(|_| StoreError::Corrupt {
                        what: "parked key",
                        detail: format!("{} bytes", k.len()),
                    })?);
                Ok((seq, OutboxEntry::decode(&v)?))
            })
            .collect()
    }

    /// Records the oldest entry not yet delivered, as the publisher sees it,
    /// so that [`Store::outbox_pending`] needs no scan over tombstones.
    pub fn note_outbox_head(&self, seq: u64) {
        self.outbox_head.store(seq, Ordering::SeqCst);
    }

    /// Whether every entry before sequence `seq` was delivered (or parked),
    /// as the publisher last noted.
    pub fn outbox_delivered_up_to(&self, seq: u64) -> bool {
        self.outbox_head.load(Ordering::SeqCst) >= seq
    }

    /// Entries committed but not yet delivered (from the publisher's last note).
    pub fn outbox_pending(&self) -> u64 {
        self.outbox_next_seq().saturating_sub(self.outbox_head.load(Ordering::SeqCst))
    }

    /// The sequence number the next outbox entry will get.
    pub fn outbox_next_seq(&self) -> u64 {
        self.next_outbox_seq.load(Ordering::SeqCst)
    }

    /// Entries waiting in the outbox at or after `from_seq`.
    pub fn outbox_depth(&self, from_seq: u64) -> Result<u64, StoreError> {
        let oldest = self.outbox_peek(from_seq, 1)?.first().map(|(s, _)| *s);
        Ok(oldest.map_or(0, |o| self.outbox_next_seq().saturating_sub(o)))
    }
}

/// The exactly-once publisher's transaction in flight: its number and the
/// outbox entries it carries. Written before the transaction commits and
/// cleared (with the entries) after, so that a restart can ask the broker
/// whether it committed — its progress record says — and remove exactly
/// those entries, or send them again.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PublisherTxn {
    /// The transaction's number; numbers only go up.
    pub number: u64,
    /// The outbox sequence numbers it carries (empty: none in flight).
    pub seqs: Vec<u64>,
}

/// The offsets-family key of the publisher's transaction (`0xFE`: never
/// wiped with a partition).
const TXN_KEY: [u8; 4] = [0xfe, b't', b'x', b'n'];

impl Store {
    /// The publisher's last transaction (number 0, nothing in flight, if none).
    pub fn publisher_txn(&self) -> Result<PublisherTxn, StoreError> {
        match self.db.get_pinned_cf(self.cf(CF_OFFSETS), TXN_KEY).map_err(backend)? {
            None => Ok(PublisherTxn::default()),
            Some(v) => postcard::from_bytes(&v)
                .map_err(|e| StoreError::Corrupt { what: "publisher transaction", detail: e.to_string() }),
        }
    }

    /// Records that transaction `txn` is about to be sent.
    pub fn begin_publisher_txn(&self, txn: &PublisherTxn) -> Result<(), StoreError> {
        let value = postcard::to_stdvec(txn).expect("transactions serialize");
        self.db.put_cf_opt(self.cf(CF_OFFSETS), TXN_KEY, value, &self.write_opts).map_err(backend)
    }

    /// Ends transaction `number`: when `committed`, its entries are removed
    /// from the outbox in the same write; either way none is in flight.
    pub fn end_publisher_txn(&self, number: u64, committed: bool) -> Result<(), StoreError> {
        let txn = self.publisher_txn()?;
        let mut wb = WriteBatch::default();
        if committed && txn.number == number {
            for s in &txn.seqs {
                wb.delete_cf(self.cf(CF_OUTBOX), s.to_be_bytes());
            }
        }
        let done = PublisherTxn { number: number.max(txn.number), seqs: Vec::new() };
        wb.put_cf(self.cf(CF_OFFSETS), TXN_KEY, postcard::to_stdvec(&done).expect("transactions serialize"));
        self.db.write_opt(wb, &self.write_opts).map_err(backend)
    }
}
