//! Tests of the store: atomic commits, timers, scans, stats, reopen.

use std::path::Path;

use cvm_engine::{
    attribution::{Group, Stats, StatsKey},
    driver::{ProfileScan, TimerQueue},
    Profile, StateTxn, Timer,
};

use super::*;
use cvm_proto::v1::{Purchase, PurchaseLine};

fn open(dir: &Path) -> Store {
    Store::open(&StoreConfig {
        path: dir.to_owned(),
        block_cache_mb: 8,
        memtable_budget_mb: 4,
        write_buffer_mb: 4,
        ..Default::default()
    })
    .unwrap()
}

fn bought(p: &mut Profile, at: i64) {
    p.apply_purchase(&Purchase {
        timestamp_ms: at,
        lines: vec![PurchaseLine {
            sku: "s".into(),
            category: "c".into(),
            quantity: 1,
            unit_price_minor: 100,
            unit_cost_minor: 60,
        }],
        ..Default::default()
    });
}

#[test]
fn batch_reads_its_own_writes_and_commits_atomically() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut b = store.begin();
    let mut p = Profile::default();
    bought(&mut p, 1);
    b.put_profile(3, "c1", p.clone()).unwrap();
    assert_eq!(b.profile(3, "c1").unwrap(), Some(p.clone()));
    assert!(b.first_sighting(3, "e1").unwrap());
    assert!(!b.first_sighting(3, "e1").unwrap(), "duplicate inside one batch");
    b.set_next_offset("cvm.events.purchases", 3, 42);
    b.publish(
        0,
        OutboxEntry {
            topic: "t".into(),
            key: b"k".to_vec(),
            payload: b"v".to_vec(),
            headers: vec![],
            ..Default::default()
        },
    );
    // Nothing is visible before commit.
    assert_eq!(store.profile(3, "c1").unwrap(), None);
    assert_eq!(store.next_offset("cvm.events.purchases", 3).unwrap(), None);
    assert_eq!(store.outbox_depth(0).unwrap(), 0);
    b.commit().unwrap();
    assert_eq!(store.profile(3, "c1").unwrap(), Some(p));
    assert_eq!(store.next_offset("cvm.events.purchases", 3).unwrap(), Some(42));
    assert_eq!(store.outbox_depth(0).unwrap(), 1);
    assert!(!store.begin().first_sighting(3, "e1").unwrap(), "replay after commit");
    assert!(store.begin().first_sighting(4, "e1").unwrap(), "event ids are scoped by partition");
}

#[test]
fn dropped_batch_leaves_no_trace() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut b = store.begin();
    b.put_profile(0, "c", Profile::default()).unwrap();
    assert!(b.first_sighting(0, "e").unwrap());
    drop(b);
    assert_eq!(store.profile(0, "c").unwrap(), None);
    assert!(store.begin().first_sighting(0, "e").unwrap());
}

#[test]
fn state_outbox_and_offsets_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        let mut b = store.begin();
        b.put_profile(1, "c", Profile { lifetime_orders: 7, ..Default::default() }).unwrap();
        for i in 0..3u8 {
            b.publish(
                0,
                OutboxEntry {
                    topic: "t".into(),
                    key: vec![i],
                    payload: vec![i],
                    headers: vec![("h".into(), vec![1])],
                    ..Default::default()
                },
            );
        }
        b.link_device(1, "d", "c").unwrap();
        b.set_next_offset("x", 1, 9);
        b.commit().unwrap();
        store.outbox_remove([0]).unwrap();
    }
    let store = open(dir.path());
    assert_eq!(store.profile(1, "c").unwrap().unwrap().lifetime_orders, 7);
    assert_eq!(store.next_offset("x", 1).unwrap(), Some(9));
    assert_eq!(store.begin().customer_of_device(1, "d").unwrap().as_deref(), Some("c"));
    let pending = store.outbox_peek(0, 10).unwrap();
    assert_eq!(pending.iter().map(|(s, e)| (*s, e.key[0])).collect::<Vec<_>>(), vec![(1, 1), (2, 2)]);
    assert_eq!(store.outbox_depth(0).unwrap(), 2);
    // New entries continue the sequence after a reopen.
    let mut b = store.begin();
    b.publish(
        0,
        OutboxEntry { topic: "t".into(), key: vec![9], payload: vec![], headers: vec![], ..Default::default() },
    );
    b.commit().unwrap();
    assert_eq!(store.outbox_peek(0, 10).unwrap().last().unwrap().0, 3);
    assert_eq!(store.profiles().count(), 1);
}

fn timer(customer: &str, due_ms: i64) -> Timer {
    Timer {
        due_ms,
        customer_id: customer.into(),
        kind: cvm_engine::TimerKind::Delayed,
        subject: "offer".into(),
        offer_id: "offer".into(),
        cause_event_id: "e".into(),
        parent_decision_id: String::new(),
        event_kind: None,
        event_category: String::new(),
        event_sku: String::new(),
    }
}

#[test]
fn attribution_stats_add_up_across_batches_and_survive_reopen_and_erasure() {
    let dir = tempfile::tempdir().unwrap();
    let key = |campaign: &str, group| StatsKey { campaign_id: campaign.into(), group, day: -3 };
    let delta = Stats { customers: 1, margin_minor: 7, margin_sq: 49, ..Stats::default() };
    {
        let store = open(dir.path());
        for _ in 0..2 {
            let mut b = store.begin();
            b.add_stats(1, key("spring", Group::Treated), &delta).unwrap();
            b.add_stats(1, key("spring", Group::Treated), &delta).unwrap();
            b.add_stats(2, key("", Group::GlobalControl), &delta).unwrap();
            b.commit().unwrap();
        }
        let mut b = store.begin();
        b.put_profile(1, "c1", Profile::default()).unwrap();
        b.link_device(1, "d1", "c1").unwrap();
        b.commit().unwrap();
        let mut b = store.begin();
        b.delete_profile(1, "c1").unwrap();
        b.unlink_device(1, "d1").unwrap();
        assert_eq!(b.profile(1, "c1").unwrap(), None, "the batch sees its own erasure");
        b.commit().unwrap();
    }
    let store = Store::open_read_only(dir.path()).unwrap();
    let stats = store.stats().unwrap();
    assert_eq!(stats.len(), 2);
    let (p, k, s) = &stats.iter().find(|(p, ..)| *p == 1).unwrap();
    assert_eq!((*p, k), (1, &key("spring", Group::Treated)));
    assert_eq!((s.customers, s.margin_minor, s.margin_sq), (4, 28, 196));
    assert!(store.profile(1, "c1").unwrap().is_none());
    assert_eq!(store.profiles().count(), 0);
}

#[test]
fn timers_survive_reopen_and_are_replaced_and_cancelled_by_key() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        let mut b = store.begin();
        b.set_timer(2, timer("a", 500)).unwrap();
        b.set_timer(2, timer("b", 100)).unwrap();
        b.set_timer(3, timer("c", 50)).unwrap();
        b.commit().unwrap();
        // Replace a's timer in a later batch: the old due time must vanish.
        let mut b = store.begin();
        b.set_timer(2, timer("a", 300)).unwrap();
        assert_eq!(b.timer_due(2, &timer("a", 0).key()).unwrap(), Some(300));
        b.commit().unwrap();
    }
    let store = open(dir.path());
    assert_eq!(store.pending_timers(), 3);
    let due: Vec<(String, i64)> =
        store.due_timers(2, 1_000, 10).unwrap().into_iter().map(|t| (t.customer_id, t.due_ms)).collect();
    assert_eq!(due, [("b".to_owned(), 100), ("a".to_owned(), 300)], "time order, partition 2 only");
    assert_eq!(store.due_timers(2, 299, 10).unwrap().len(), 1);
    let mut b = store.begin();
    assert!(b.cancel_timer(2, &timer("b", 0).key()).unwrap());
    assert!(!b.cancel_timer(2, &timer("b", 0).key()).unwrap(), "already cancelled in this batch");
    b.commit().unwrap();
    assert_eq!(store.due_timers(2, 1_000, 10).unwrap().len(), 1);
    assert_eq!(store.pending_timers(), 2);

    // A batch sees its own changes on top of the committed timers.
    let mut b = store.begin();
    assert_eq!(b.earliest_due(2).unwrap(), Some(300));
    b.set_timer(2, timer("d", 200)).unwrap();
    b.cancel_timer(2, &timer("a", 0).key()).unwrap();
    assert_eq!(b.take_earliest_set(2), Some(200));
    assert_eq!(b.take_earliest_set(2), None, "taken");
    let due: Vec<String> = b.due_timers(2, 1_000, 10).unwrap().into_iter().map(|t| t.customer_id).collect();
    assert_eq!(due, ["d"], "the cancelled committed timer is gone, the new one is there");
    assert_eq!(b.earliest_due(2).unwrap(), Some(200));
    assert_eq!(b.earliest_due(9).unwrap(), None);
}

#[test]
fn sweep_progress_and_customer_pages() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut b = store.begin();
    for c in ["c1", "c2", "c3"] {
        b.put_profile(5, c, Profile::default()).unwrap();
    }
    b.put_profile(6, "other", Profile::default()).unwrap();
    b.set_sweep_progress("storm", 2, 5, SweepProgress::After("c1".into()));
    b.commit().unwrap();
    assert_eq!(store.customers_after(5, "", 10).unwrap(), ["c1", "c2", "c3"]);
    assert_eq!(store.customers_after(5, "c1", 1).unwrap(), ["c2"]);
    assert!(store.customers_after(5, "c3", 10).unwrap().is_empty(), "stays inside the partition");
    assert_eq!(store.sweep_progress("storm", 2, 5).unwrap(), Some(SweepProgress::After("c1".into())));
    assert_eq!(store.sweep_progress("storm", 3, 5).unwrap(), None, "per version");
}

#[test]
fn a_scanned_page_reads_as_the_batch_sees_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut b = store.begin();
    for (c, orders) in [("c1", 1), ("c2", 2), ("c3", 3)] {
        b.put_profile(5, c, Profile { lifetime_orders: orders, ..Default::default() }).unwrap();
    }
    b.commit().unwrap();
    let mut b = store.begin();
    b.put_profile(5, "c2", Profile { lifetime_orders: 20, ..Default::default() }).unwrap();
    b.delete_profile(5, "c3").unwrap();
    assert_eq!(b.customers_after(5, "", 10).unwrap(), ["c1", "c2", "c3"]);
    let orders = |b: &mut Batch<'_>, c| b.profile(5, c).unwrap().map(|p| p.lifetime_orders);
    assert_eq!(orders(&mut b, "c1"), Some(1), "as committed");
    assert_eq!(orders(&mut b, "c2"), Some(20), "the batch's own write wins over the page");
    assert_eq!(orders(&mut b, "c3"), None, "deleted in the batch");
    b.put_profile(5, "c1", Profile { lifetime_orders: 10, ..Default::default() }).unwrap();
    assert_eq!(orders(&mut b, "c1"), Some(10));
    b.commit().unwrap();
    assert_eq!(store.profile(5, "c1").unwrap().map(|p| p.lifetime_orders), Some(10));
}

#[test]
fn scan_progress_written_by_an_older_version_moves_to_its_column_family_on_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        // How stores before the `scans` family kept it: in `offsets`, prefixed 0xff.
        let old_key = [&[0xff][..], &scan_key("storm", 2, 5)].concat();
        store.db.put_cf(store.cf(CF_OFFSETS), old_key, encode_progress(&SweepProgress::After("c9".into()))).unwrap();
        store.db.put_cf(store.cf(CF_OFFSETS), offset_key("cvm.events.app", 5), 42i64.to_be_bytes()).unwrap();
    }
    let store = open(dir.path());
    assert_eq!(store.sweep_progress("storm", 2, 5).unwrap(), Some(SweepProgress::After("c9".into())));
    assert_eq!(store.next_offset("cvm.events.app", 5).unwrap(), Some(42), "offsets are left alone");
    let leftovers = store
        .db
        .iterator_cf(store.cf(CF_OFFSETS), IteratorMode::Start)
        .filter(|r| r.as_ref().unwrap().0.first() == Some(&0xff))
        .count();
    assert_eq!(leftovers, 0, "the old keys are gone, so the move happens once");
}

fn changelog_of(store: &Store, topic: &str) -> Vec<(u64, OutboxEntry)> {
    store.outbox_peek(0, usize::MAX).unwrap().into_iter().filter(|(_, e)| e.topic == topic).collect()
}

#[test]
fn a_commit_queues_each_partitions_changes_after_its_own_messages_then_a_marker() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).with_changelog("log");
    let mut b = store.begin();
    let mut p = Profile::default();
    bought(&mut p, 1);
    b.put_profile(3, "c1", p.clone()).unwrap();
    b.put_profile(4, "c2", p).unwrap();
    b.link_device(4, "d", "c2").unwrap();
    b.set_next_offset("in", 3, 10);
    b.publish(0, OutboxEntry { topic: "offers".into(), key: b"c1".to_vec(), ..Default::default() });
    let committed = b.commit().unwrap();
    assert_eq!(
        (committed.outbox, committed.changelog),
        (1, 4 + 4),
        "p3: profile, offset, commit number, marker; p4: profile, device, commit number, marker"
    );

    let all = store.outbox_peek(0, usize::MAX).unwrap();
    assert_eq!(all[0].1.topic, "offers", "the batch's own messages go first");
    let log = changelog_of(&store, "log");
    for partition in [3, 4] {
        let mine: Vec<_> = log.iter().filter(|(_, e)| e.partition == Some(partition)).collect();
        let (_, last) = mine.last().unwrap();
        let marker = commit_marker(&last.key, Some(&last.payload)).expect("the marker closes the partition's records");
        assert_eq!((marker.writer, marker.commit), (store.writer_id(), 1), "partition {partition}");
        assert_eq!(store.commit_number(partition as u32).unwrap(), 1);
        assert!(mine[..mine.len() - 1].iter().all(|(_, e)| commit_marker(&e.key, Some(&e.payload)).is_none()));
    }

    // A delete is a tombstone.
    let mut b = store.begin();
    b.unlink_device(4, "d").unwrap();
    b.commit().unwrap();
    let log = changelog_of(&store, "log");
    let tombstones: Vec<_> = log.iter().filter(|(_, e)| e.tombstone).collect();
    assert_eq!(tombstones.len(), 1);
    assert_eq!(tombstones[0].1.partition, Some(4));
}

#[test]
fn a_partition_restored_from_the_changelog_reads_as_the_writer_left_it() {
    let dir = tempfile::tempdir().unwrap();
    let writer = open(&dir.path().join("a")).with_changelog("log");
    let mut b = writer.begin();
    let mut p = Profile::default();
    bought(&mut p, 1);
    b.put_profile(2, "c1", p.clone()).unwrap();
    b.put_profile(2, "c2", p.clone()).unwrap();
    b.put_profile(5, "other", p.clone()).unwrap();
    b.set_timer(2, timer("c1", 500)).unwrap();
    b.set_next_offset("in", 2, 7);
    b.set_sweep_progress("sweep", 1, 2, SweepProgress::After("c1".into()));
    let clock = cvm_engine::driver::ClockState { inputs: vec![Some(40), None], emitted: Some(40) };
    b.set_clock(2, clock.clone());
    let mut ledger = cvm_engine::budget::Ledger::default().at(3 * 86_400_000);
    ledger.observe(120.0, 3 * 86_400_000);
    ledger.spend(40.0);
    b.put_budget(2, 77, ledger.clone()).unwrap();
    b.commit().unwrap();
    let mut b = writer.begin();
    b.delete_profile(2, "c2").unwrap();
    b.set_next_offset("in", 2, 8);
    b.commit().unwrap();
    assert_eq!(writer.commit_number(2).unwrap(), 2);

    // The reader has stale state of its own in partition 2, and other partitions.
    let reader = open(&dir.path().join("b")).with_changelog("log");
    let mut b = reader.begin();
    b.put_profile(2, "stale", p.clone()).unwrap();
    b.put_budget(2, 78, cvm_engine::budget::Ledger::default().at(1)).unwrap();
    b.put_profile(9, "kept", p.clone()).unwrap();
    b.set_next_offset("in", 2, 3);
    b.set_next_offset("in", 9, 4);
    b.publish(2, OutboxEntry { topic: "offers".into(), key: b"stale".to_vec(), ..Default::default() });
    b.publish(9, OutboxEntry { topic: "offers".into(), key: b"kept".to_vec(), ..Default::default() });
    b.commit().unwrap();
    assert!(reader.drop_unpublished(2).unwrap() > 0, "its own unpublished history of 2 is dropped");
    let left = reader.outbox_peek(0, usize::MAX).unwrap();
    assert!(left.iter().all(|(_, e)| e.source != Some(2)), "offers and changelog of 2 are gone");
    assert!(left.iter().any(|(_, e)| e.key == b"kept"), "those of 9 are kept");

    let records: Vec<ChangelogRecord> = changelog_of(&writer, "log")
        .into_iter()
        .filter(|(_, e)| e.partition == Some(2))
        .map(|(_, e)| (e.key, (!e.tombstone).then_some(e.payload)))
        .collect();
    reader.wipe_partition(2).unwrap();
    assert_eq!(reader.apply_changelog(&records).unwrap(), 0);

    assert_eq!(reader.profile(2, "c1").unwrap(), Some(p.clone()));
    assert_eq!(reader.profile(2, "c2").unwrap(), None, "deleted by the writer");
    assert_eq!(reader.profile(2, "stale").unwrap(), None, "the reader's own history of 2 is gone");
    assert_eq!(reader.profile(9, "kept").unwrap(), Some(p), "other partitions are untouched");
    assert_eq!(reader.next_offset("in", 2).unwrap(), Some(8));
    assert_eq!(reader.next_offset("in", 9).unwrap(), Some(4));
    assert_eq!(reader.due_timers(2, 1_000, 10).unwrap().len(), 1);
    assert_eq!(reader.sweep_progress("sweep", 1, 2).unwrap(), Some(SweepProgress::After("c1".into())));
    assert_eq!(reader.clock(2).unwrap(), Some(clock), "the event-time clock follows the partition");
    assert_eq!(reader.commit_number(2).unwrap(), 2, "and its commit number");
    let mut read = reader.begin();
    assert_eq!(read.budget(2, 77).unwrap(), ledger, "the campaign budget's ledger follows the partition");
    assert_eq!(read.budget(2, 78).unwrap(), Default::default(), "the reader's own ledger of 2 is gone");
    drop(read);
    assert_eq!(reader.profile(5, "other").unwrap(), None, "only partition 2 was restored");
    assert_ne!(reader.writer_id(), writer.writer_id());
}

#[test]
fn an_outbox_written_before_changelog_records_is_still_read() {
    #[derive(serde::Serialize)]
    struct Old {
        topic: String,
        key: Vec<u8>,
        payload: Vec<u8>,
        headers: Vec<(String, Vec<u8>)>,
    }
    let bytes =
        postcard::to_stdvec(&Old { topic: "t".into(), key: vec![1], payload: vec![2], headers: vec![] }).unwrap();
    let e = OutboxEntry::decode(&bytes).unwrap();
    assert_eq!((e.topic.as_str(), e.key, e.payload, e.partition, e.tombstone), ("t", vec![1], vec![2], None, false));
}

#[test]
fn a_store_lacking_column_families_is_refused_read_only_not_a_panic_later() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut opts = rocksdb::Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        rocksdb::DB::open_cf(&opts, dir.path(), ["profiles"]).unwrap();
    }
    match Store::open_read_only(dir.path()) {
        Err(OpenError::Incomplete { missing, .. }) => assert!(missing.contains(&"offsets".to_owned()), "{missing:?}"),
        other => panic!("expected Incomplete, got {other:?}"),
    }
    drop(open(dir.path()));
    assert!(Store::open_read_only(dir.path()).is_ok(), "opened read-write once, it has them all");
}

#[test]
fn each_commit_marks_its_last_entry_and_every_entry_its_partition() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).with_changelog("log");
    for customer in ["c1", "c2"] {
        let mut b = store.begin();
        b.put_profile(3, customer, Profile::default()).unwrap();
        b.publish(3, OutboxEntry { topic: "offers".into(), key: customer.into(), ..Default::default() });
        b.commit().unwrap();
    }
    let all = store.outbox_peek(0, usize::MAX).unwrap();
    let ends: Vec<bool> = all.iter().map(|(_, e)| e.commit_end).collect();
    let half = all.len() / 2;
    assert!(ends[half - 1] && ends[all.len() - 1], "each commit's last entry ends it: {ends:?}");
    assert_eq!(ends.iter().filter(|e| **e).count(), 2, "and no other: {ends:?}");
    assert!(all.iter().all(|(_, e)| e.source == Some(3)), "offers and changelog name their partition");
}

#[test]
fn outbox_entries_of_older_stores_still_decode_as_whole_commits() {
    #[derive(serde::Serialize)]
    struct V1<'a>(&'a str, Vec<u8>, Vec<u8>, Vec<(String, Vec<u8>)>, Option<i32>, bool);
    let bytes = postcard::to_stdvec(&V1("log", vec![1], vec![2], vec![], Some(4), true)).unwrap();
    let entry = OutboxEntry::decode(&bytes).unwrap();
    assert_eq!((entry.topic.as_str(), entry.partition, entry.tombstone), ("log", Some(4), true));
    assert_eq!((entry.source, entry.commit_end), (None, true));
    let current = OutboxEntry { source: Some(2), commit_end: false, ..entry.clone() };
    assert_eq!(OutboxEntry::decode(&postcard::to_stdvec(&current).unwrap()).unwrap(), current);
}

#[test]
fn a_committed_publisher_transaction_removes_exactly_its_entries() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut b = store.begin();
    for key in [b"a", b"b", b"c"] {
        b.publish(0, OutboxEntry { topic: "t".into(), key: key.to_vec(), ..Default::default() });
    }
    b.commit().unwrap();
    assert_eq!(store.publisher_txn().unwrap(), PublisherTxn::default());

    store.begin_publisher_txn(&PublisherTxn { number: 1, seqs: vec![0, 2] }).unwrap();
    store.end_publisher_txn(1, false).unwrap();
    assert_eq!(store.outbox_peek(0, 10).unwrap().len(), 3, "an aborted transaction removes nothing");
    assert_eq!(store.publisher_txn().unwrap(), PublisherTxn { number: 1, seqs: vec![] });

    store.begin_publisher_txn(&PublisherTxn { number: 2, seqs: vec![0, 2] }).unwrap();
    store.end_publisher_txn(2, true).unwrap();
    let left: Vec<Vec<u8>> = store.outbox_peek(0, 10).unwrap().into_iter().map(|(_, e)| e.key).collect();
    assert_eq!(left, vec![b"b".to_vec()]);
    assert_eq!(store.publisher_txn().unwrap(), PublisherTxn { number: 2, seqs: vec![] });
}

#[test]
fn the_outbox_age_is_that_of_the_oldest_undelivered_commit() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let entry = || OutboxEntry { topic: "t".into(), payload: b"v".to_vec(), ..Default::default() };
    assert_eq!(store.outbox_oldest_age(), None, "empty");
    let mut b = store.begin();
    b.publish(0, entry());
    b.publish(0, entry());
    b.commit().unwrap();
    std::thread::sleep(Duration::from_millis(60));
    let mut b = store.begin();
    b.publish(0, entry());
    b.commit().unwrap();
    let first = store.outbox_oldest_age().unwrap();
    assert!(first >= Duration::from_millis(60), "{first:?}");
    // The publisher delivered the first entry only: the first commit is still the oldest.
    store.note_outbox_head(1);
    assert!(store.outbox_oldest_age().unwrap() >= first);
    // Past the first commit: the second commit's age, younger.
    store.note_outbox_head(2);
    assert!(store.outbox_oldest_age().unwrap() < Duration::from_millis(60));
    store.note_outbox_head(3);
    assert_eq!(store.outbox_oldest_age(), None, "all delivered");
    // Entries found at open count from the open.
    let mut b = store.begin();
    b.publish(0, entry());
    b.commit().unwrap();
    drop(store);
    let store = open(dir.path());
    assert!(store.outbox_oldest_age().is_some_and(|a| a < Duration::from_secs(5)));
}

#[test]
fn rocksdb_figures_follow_the_data() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let before = store.rocksdb_figures();
    assert_eq!(before.live_sst_bytes, 0);
    let mut b = store.begin();
    for i in 0..2_000 {
        let mut p = Profile::default();
        bought(&mut p, i);
        b.put_profile(0, &format!("customer-{i}"), p).unwrap();
    }
    b.commit().unwrap();
    let written = store.rocksdb_figures();
    assert!(written.memtable_bytes > before.memtable_bytes, "{written:?}");
    assert!(
        written.block_cache_usage_bytes >= written.memtable_bytes / 2,
        "memtables are charged to the cache: {written:?}"
    );
    store.compact().unwrap();
    for i in 0..2_000 {
        assert!(store.profile(0, &format!("customer-{i}")).unwrap().is_some());
    }
    let after = store.rocksdb_figures();
    assert!(after.live_sst_bytes > 0, "{after:?}");
    assert!((1_000..=4_000).contains(&after.estimated_profiles), "{after:?}");
    assert!(after.block_cache_hits + after.block_cache_misses > 0, "reads are counted: {after:?}");
    assert!(!after.write_stopped);
    // Beside it, read-only (as `cvm report --data-dir`): the same data, no statistics.
    let read_only = Store::open_read_only(dir.path()).unwrap().rocksdb_figures();
    assert_eq!(read_only.live_sst_bytes, after.live_sst_bytes);
    assert_eq!(read_only.block_cache_hits, 0);
}
