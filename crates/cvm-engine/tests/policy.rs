//! Contact policy, holdouts, attribution and erasure through the decision
//! core: each rule of the policy decides a scripted customer's contact.

mod support;

use std::sync::Arc;

use cvm_engine::{
    attribution::Group,
    policy::{QuietHours, TimeOfDay},
    Catalog, ConfigDocument, Engine, EngineConfig, Event, EventResult, MemoryState, OfferDefinition, StateTxn,
};
use cvm_proto::v1::{AppEvent, AppEventKind, Channel, Consent, EraseRequest, Identify, Outcome};
use support::*;

/// Noon UTC on day 100: outside the default quiet hours for UTC customers.
const NOON: i64 = 100 * DAY + 12 * HOUR;

fn offer(id: &str, campaign: &str, priority: i32, margin: i64, extra: &str) -> OfferDefinition {
    let doc = format!(
        r#"
id: {id}
version: 1
campaign_id: {campaign}
trigger: {{ kind: event, event: app_open }}
channels:
  push: {{ title: "{id}", body: "hello" }}
  stories: {{ template: t, call_to_action: "go" }}
economics: {{ margin_per_redemption_minor: {margin}, contact_cost_minor: 5 }}
priority: {priority}
ttl: 24h
{extra}
"#
    );
    OfferDefinition::parse(id, doc.as_bytes()).unwrap()
}

fn engine_with(config: EngineConfig, catalog: Catalog) -> Engine {
    Engine::new(config, catalog)
}

/// No global control group, no campaign holdouts, the default policy.
fn plain() -> EngineConfig {
    EngineConfig {
        global_control_percent: 0.0,
        default_holdout_percent: 0.0,
        input: epoch_input(),
        ..Default::default()
    }
}

fn open_app(id: &str, customer: &str, at: i64) -> Event {
    app(id, customer, at, AppEventKind::AppOpen, "")
}

fn in_zone(customer: &str, zone: &str, offset_minutes: i32, at: i64) -> Event {
    Event::Consent(Consent {
        event_id: format!("tz-{customer}-{at}"),
        customer_id: customer.into(),
        timestamp_ms: at,
        channel: Channel::Push as i32,
        granted: true,
        push_token_present: true,
        time_zone: zone.into(),
        utc_offset_minutes: offset_minutes,
    })
}

/// Opens the app at `at` and returns (channel, outcome, reason, offer definition) per decision.
fn open(e: &Engine, s: &mut MemoryState, customer: &str, at: i64) -> Vec<(Channel, Outcome, String, String)> {
    let out = apply(e, s, &open_app(&format!("open-{customer}-{at}"), customer, at), at);
    decision_list(&out.emits)
        .iter()
        .map(|d| (d.channel(), d.outcome(), d.reason.clone(), d.offer_definition_id.clone()))
        .collect()
}

fn outcome_on(decisions: &[(Channel, Outcome, String, String)], channel: Channel) -> Outcome {
    decisions.iter().find(|d| d.0 == channel).map_or(Outcome::Unspecified, |d| d.1)
}

fn ready(e: &Engine, s: &mut MemoryState, customer: &str) {
    apply(e, s, &consent(customer), 0);
}

#[test]
fn channel_and_cross_channel_caps_slide() {
    let mut config = plain();
    config.contact_policy.fatigue.ignored = 0; // unopened pushes would rest the offer
    let e = engine_with(config, Catalog::new([offer("o", "c", 0, 500, "")]));
    let mut s = MemoryState::default();
    ready(&e, &mut s, "a");
    // Day 1: push and story.
    let d = open(&e, &mut s, "a", NOON);
    assert_eq!((outcome_on(&d, Channel::Push), outcome_on(&d, Channel::Stories)), (Outcome::Treated, Outcome::Treated));
    // Two hours later: push capped at 1 a day; the story has room (5 a day).
    let d = open(&e, &mut s, "a", NOON + 2 * HOUR);
    assert_eq!(outcome_on(&d, Channel::Push), Outcome::Capped);
    assert!(d[0].2.contains("cap: 1 push in 1d"), "{d:?}");
    assert_eq!(outcome_on(&d, Channel::Stories), Outcome::Treated);
    // Day 2 and 3: a push each, then the weekly push cap (3) binds on day 4.
    for day in 1..3 {
        let d = open(&e, &mut s, "a", NOON + day * DAY);
        assert_eq!(outcome_on(&d, Channel::Push), Outcome::Treated, "day {day}: {d:?}");
    }
    // Six contacts this week already (3 push, 3 stories): everything is capped.
    let d = open(&e, &mut s, "a", NOON + 3 * DAY);
    assert!(d.iter().all(|x| x.1 == Outcome::Capped), "{d:?}");
    assert!(d.iter().any(|x| x.2.contains("cap: 6 contacts in 7d")), "{d:?}");
    // A week after the first contacts, the window has slid.
    let d = open(&e, &mut s, "a", NOON + 7 * DAY + HOUR);
    assert_eq!(outcome_on(&d, Channel::Push), Outcome::Treated, "{d:?}");
}

#[test]
fn campaign_and_offer_caps_count_only_their_own_contacts_and_yield_to_the_next_offer() {
    let campaign = "kind: campaign\nid: spring\nversion: 1\nholdout_percent: 0\ncontact_policy:\n  caps: [{channel: push, max: 1, window: 30d}]\n";
    let catalog = Catalog::new([
        offer("spring-a", "spring", 10, 500, ""),
        offer("capped-offer", "other", 5, 500, "contact_policy: { caps: [{ channel: all, max: 1, window: 30d }] }"),
        offer("fallback", "other", 0, 100, ""),
    ])
    .with_document(ConfigDocument::parse("campaign/spring", campaign.as_bytes()).unwrap());
    let mut config = plain();
    config.contact_policy.caps.clear();
    config.contact_policy.min_gap = std::time::Duration::ZERO;
    let e = engine_with(config, catalog);
    let mut s = MemoryState::default();
    ready(&e, &mut s, "a");
    let push_offer = |d: &[(Channel, Outcome, String, String)]| {
        d.iter().find(|x| x.0 == Channel::Push && x.1 == Outcome::Treated).map(|x| x.3.clone())
    };
    // The highest priority offer first; then its campaign cap sends the push
    // to the next offer, whose own cap then hands it to the fallback.
    assert_eq!(push_offer(&open(&e, &mut s, "a", NOON)).as_deref(), Some("spring-a"));
    assert_eq!(push_offer(&open(&e, &mut s, "a", NOON + DAY)).as_deref(), Some("capped-offer"));
    assert_eq!(push_offer(&open(&e, &mut s, "a", NOON + 2 * DAY)).as_deref(), Some("fallback"));
    // Stories: spring's cap counts push only, so spring-a still gets the story.
    let d = open(&e, &mut s, "a", NOON + 3 * DAY);
    let story = d.iter().find(|x| x.0 == Channel::Stories).unwrap();
    assert_eq!((story.1, story.3.as_str()), (Outcome::Treated, "spring-a"));
}

#[test]
fn the_last_slot_goes_to_the_higher_expected_value_and_ties_break_by_id() {
    let mut config = plain();
    config.contact_policy.caps = vec![cvm_engine::policy::CapRule {
        channel: cvm_engine::policy::CapChannel::All,
        max: 1,
        window: std::time::Duration::from_secs(86_400),
    }];
    // Push-only and stories-only offers compete for the single daily slot.
    let only = |id: &str, margin, channel: Channel| {
        let mut doc = offer(id, "c", 0, margin, "").doc;
        match channel {
            Channel::Push => doc.channels.stories = None,
            _ => doc.channels.push = None,
        }
        OfferDefinition::compile(doc).unwrap()
    };
    let push_only = |id: &str, margin| only(id, margin, Channel::Push);
    let story_only = |id: &str, margin| only(id, margin, Channel::Stories);
    let e = engine_with(config.clone(), Catalog::new([push_only("p", 200), story_only("s", 900)]));
    let mut s = MemoryState::default();
    ready(&e, &mut s, "a");
    let d = open(&e, &mut s, "a", NOON);
    assert_eq!(outcome_on(&d, Channel::Stories), Outcome::Treated, "the richer story wins the slot: {d:?}");
    assert_eq!(outcome_on(&d, Channel::Push), Outcome::Capped);
    // Equal value: deterministic by offer id ("a-push" < "b-story").
    let e = engine_with(config, Catalog::new([push_only("a-push", 500), story_only("b-story", 500)]));
    let mut s = MemoryState::default();
    ready(&e, &mut s, "a");
    let d = open(&e, &mut s, "a", NOON);
    assert_eq!(outcome_on(&d, Channel::Push), Outcome::Treated, "{d:?}");
}

#[test]
fn minimum_gap_separates_decisions_not_the_channels_of_one() {
    let mut config = plain();
    config.contact_policy.min_gap = std::time::Duration::from_secs(4 * 3600);
    let e = engine_with(config, Catalog::new([offer("o", "c", 0, 500, "")]));
    let mut s = MemoryState::default();
    ready(&e, &mut s, "a");
    let d = open(&e, &mut s, "a", NOON);
    assert!(d.iter().all(|x| x.1 == Outcome::Treated), "push and story of one decision: {d:?}");
    let d = open(&e, &mut s, "a", NOON + 3 * HOUR);
    let story = d.iter().find(|x| x.0 == Channel::Stories).unwrap();
    assert_eq!(story.1, Outcome::Capped);
    assert!(story.2.starts_with("min gap"), "{story:?}");
    let d = open(&e, &mut s, "a", NOON + 5 * HOUR);
    assert_eq!(outcome_on(&d, Channel::Stories), Outcome::Treated);
}

#[test]
fn an_offer_ignored_twice_rests_for_sixty_days() {
    let e = engine_with(plain(), Catalog::new([offer("o", "c", 0, 500, ""), offer("z-other", "c", -1, 100, "")]));
    let mut s = MemoryState::default();
    ready(&e, &mut s, "a");
    // Two pushes a few days apart, never opened (they expire after 24h).
    for day in [0, 3] {
        let d = open(&e, &mut s, "a", NOON + day * DAY);
        assert!(d.iter().any(|x| x.0 == Channel::Push && x.1 == Outcome::Treated && x.3 == "o"), "{d:?}");
    }
    // Day 6: both are ignored; "o" rests, the other offer takes its place.
    let d = open(&e, &mut s, "a", NOON + 6 * DAY);
    let push = d.iter().find(|x| x.0 == Channel::Push).unwrap();
    assert_eq!((push.1, push.3.as_str()), (Outcome::Treated, "z-other"), "{d:?}");
    // Alone, "o" is suppressed with the reason, until 60 days after the second ignore.
    let only = engine_with(plain(), Catalog::new([offer("o", "c", 0, 500, "")]));
    let d = open(&only, &mut s, "a", NOON + 20 * DAY);
    assert!(d.iter().all(|x| x.1 == Outcome::Suppressed && x.2.starts_with("fatigue")), "{d:?}");
    let d = open(&only, &mut s, "a", NOON + 3 * DAY + DAY + 60 * DAY + HOUR);
    assert_eq!(outcome_on(&d, Channel::Push), Outcome::Treated, "{d:?}");
}

#[test]
fn an_opened_offer_is_not_fatiguing() {
    let e = engine_with(plain(), Catalog::new([offer("o", "c", 0, 500, "")]));
    let mut s = MemoryState::default();
    ready(&e, &mut s, "a");
    for day in [0, 3] {
        let out = apply(&e, &mut s, &open_app(&format!("x{day}"), "a", NOON + day * DAY), NOON + day * DAY);
        let push = offers(&out.emits).into_iter().find(|o| o.channel() == Channel::Push).unwrap().offer_id.clone();
        let opened = push_open(&format!("po{day}"), "a", NOON + day * DAY + HOUR, &push);
        apply(&e, &mut s, &opened, NOON + day * DAY + HOUR);
    }
    let d = open(&e, &mut s, "a", NOON + 6 * DAY);
    assert_eq!(outcome_on(&d, Channel::Push), Outcome::Treated, "{d:?}");
}

#[test]
fn a_dismissed_push_cools_push_down_but_not_stories() {
    let e = engine_with(plain(), Catalog::new([offer("o", "c", 0, 500, "")]));
    let mut s = MemoryState::default();
    ready(&e, &mut s, "a");
    let dismiss = Event::App(AppEvent {
        event_id: "dismiss".into(),
        customer_id: "a".into(),
        timestamp_ms: NOON,
        kind: AppEventKind::PushDismiss as i32,
        ..Default::default()
    });
    apply(&e, &mut s, &dismiss, NOON);
    let d = open(&e, &mut s, "a", NOON + 2 * DAY);
    let push = d.iter().find(|x| x.0 == Channel::Push).unwrap();
    assert_eq!(push.1, Outcome::Suppressed);
    assert!(push.2.starts_with("dismiss cooldown"), "{push:?}");
    assert_eq!(outcome_on(&d, Channel::Stories), Outcome::Treated);
    let d = open(&e, &mut s, "a", NOON + 3 * DAY + HOUR);
    assert_eq!(outcome_on(&d, Channel::Push), Outcome::Treated);
}

#[test]
fn quiet_hours_are_local_and_a_deferred_push_fires_in_the_morning() {
    let e = engine_with(plain(), Catalog::new([offer("o", "c", 0, 500, "")]));
    let mut s = MemoryState::default();
    // 02:00 UTC: night in Berlin (UTC+1, 03:00), afternoon in Tokyo (UTC+9, 11:00).
    let at = 100 * DAY + 2 * HOUR;
    apply(&e, &mut s, &in_zone("berlin", "Europe/Berlin", 60, 0), 0);
    apply(&e, &mut s, &in_zone("tokyo", "Asia/Tokyo", 540, 0), 0);
    let d = open(&e, &mut s, "tokyo", at);
    assert_eq!(outcome_on(&d, Channel::Push), Outcome::Treated, "{d:?}");
    let d = open(&e, &mut s, "berlin", at);
    let push = d.iter().find(|x| x.0 == Channel::Push).unwrap();
    assert_eq!(push.1, Outcome::Deferred);
    assert!(push.2.starts_with("quiet hours 21:00–08:00 local (UTC+60 min); deferred to"), "{push:?}");
    assert_eq!(outcome_on(&d, Channel::Stories), Outcome::Treated, "stories are pulled, so they are shown");
    // 08:00 in Berlin is 07:00 UTC: nothing before, the push then.
    let morning = 100 * DAY + 7 * HOUR;
    assert!(fire_due(&e, &mut s, morning - 1).is_empty());
    let fired = fire_due(&e, &mut s, morning);
    let d = decision_list(&fired);
    assert_eq!(d.len(), 1);
    assert_eq!((d[0].channel(), d[0].outcome(), d[0].trigger.as_str()), (Channel::Push, Outcome::Treated, "deferred"));
    assert_eq!(d[0].decided_at_ms, morning);
    assert!(!d[0].parent_decision_id.is_empty(), "linked to the deferred decision");
    assert_eq!(offers(&fired).len(), 1);
}

#[test]
fn two_deferrals_to_the_same_morning_are_two_decisions_with_two_ids() {
    let e = engine_with(plain(), Catalog::new([offer("o", "c", 0, 500, "")]));
    let mut fired_ids = Vec::new();
    // The same customer, offer and due time; deferred by two different decisions.
    for parent in ["deferred-by-a", "deferred-by-b"] {
        let mut s = MemoryState::default();
        ready(&e, &mut s, "a");
        let morning = 101 * DAY + 8 * HOUR;
        let key = cvm_engine::TimerKey::new("a", cvm_engine::TimerKind::Deferred, "o");
        let timer = cvm_engine::Timer::new(key, morning, "o", "cause", Default::default());
        s.set_timer(0, cvm_engine::Timer { parent_decision_id: parent.into(), ..timer }).unwrap();
        let fired = fire_due(&e, &mut s, morning);
        let d = decision_list(&fired);
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(d[0].parent_decision_id, parent);
        fired_ids.push(d[0].decision_id.clone());
    }
    assert_ne!(fired_ids[0], fired_ids[1], "the id derives from the cause, not from customer, offer and due time");
}

#[test]
fn revoked_consent_stops_the_next_push_including_a_deferred_one() {
    let e = engine_with(plain(), Catalog::new([offer("o", "c", 0, 500, "")]));
    let mut s = MemoryState::default();
    ready(&e, &mut s, "a");
    let night = 100 * DAY + 23 * HOUR;
    assert_eq!(outcome_on(&open(&e, &mut s, "a", night), Channel::Push), Outcome::Deferred);
    let revoke = Event::Consent(Consent {
        event_id: "revoke".into(),
        customer_id: "a".into(),
        timestamp_ms: night + HOUR,
        channel: Channel::Push as i32,
        granted: false,
        push_token_present: true,
        ..Default::default()
    });
    apply(&e, &mut s, &revoke, night + HOUR);
    let fired = fire_due(&e, &mut s, 101 * DAY + 8 * HOUR);
    assert_eq!(decisions(&fired), [(Channel::Push, Outcome::Unreachable)]);
    assert!(offers(&fired).is_empty());
    let d = open(&e, &mut s, "a", 102 * DAY + NOON % DAY);
    assert_eq!(outcome_on(&d, Channel::Push), Outcome::Unreachable);
}

#[test]
fn campaign_policy_overrides_quiet_hours_for_its_offers() {
    let campaign = "kind: campaign\nid: late\nversion: 1\nholdout_percent: 0\ncontact_policy:\n  quiet_hours: { from: \"23:00\", to: \"07:00\" }\n";
    let catalog = Catalog::new([offer("o", "late", 0, 500, "")])
        .with_document(ConfigDocument::parse("campaign/late", campaign.as_bytes()).unwrap());
    let e = engine_with(plain(), catalog);
    let mut s = MemoryState::default();
    ready(&e, &mut s, "a");
    // 22:00 UTC: quiet globally (from 21:00), not for this campaign (from 23:00).
    assert_eq!(outcome_on(&open(&e, &mut s, "a", 100 * DAY + 22 * HOUR), Channel::Push), Outcome::Treated);
    let mut no_campaign = e.clone();
    no_campaign.set_catalog(Arc::new(e.catalog().without_key("campaign/late")));
    let d = open(&no_campaign, &mut MemoryState::default(), "b", 100 * DAY + 22 * HOUR);
    assert_eq!(outcome_on(&d, Channel::Push), Outcome::Unreachable, "b has no consent: {d:?}");
    let mut s2 = MemoryState::default();
    ready(&no_campaign, &mut s2, "b");
    let d = open(&no_campaign, &mut s2, "b", 100 * DAY + 22 * HOUR);
    assert_eq!(outcome_on(&d, Channel::Push), Outcome::Deferred);
    let mut quiet = plain();
    quiet.contact_policy.quiet_hours = QuietHours { from: TimeOfDay::new(0, 0), to: TimeOfDay::new(0, 0) };
    let d = open(&engine_with(quiet, no_campaign.catalog().as_ref().clone()), &mut s2, "b", 100 * DAY + 23 * HOUR);
    assert_eq!(
        outcome_on(&d, Channel::Push),
        Outcome::Treated,
        "quiet hours off: sent at once, nothing was sent before"
    );
}

#[test]
fn holdouts_are_stable_across_restarts_and_share_changes() {
    let campaign = |share: u32| {
        let doc = format!("kind: campaign\nid: c\nversion: {share}\nholdout_percent: {share}\n");
        ConfigDocument::parse("campaign/c", doc.as_bytes()).unwrap()
    };
    let catalog = |share| Catalog::new([offer("o", "c", 0, 500, "")]).with_document(campaign(share));
    let config = EngineConfig { global_control_percent: 5.0, ..plain() };
    let customers: Vec<String> = (0..4000).map(|i| format!("cust-{i}")).collect();
    let held = |e: &Engine| -> Vec<bool> { customers.iter().map(|c| e.in_campaign_holdout("c", c)).collect() };
    let ten = engine_with(config.clone(), catalog(10));
    // A "restart": a new engine from the same configuration and documents.
    let restarted = engine_with(config.clone(), catalog(10));
    assert_eq!(held(&ten), held(&restarted));
    let control: Vec<bool> = customers.iter().map(|c| ten.in_global_control(c)).collect();
    assert_eq!(control, customers.iter().map(|c| restarted.in_global_control(c)).collect::<Vec<_>>());
    // Raising the share to 20 % only adds customers to the holdout.
    let twenty = held(&engine_with(config, catalog(20)));
    let before = held(&ten);
    assert!(before.iter().zip(&twenty).all(|(b, t)| !b || *t), "nobody leaves the holdout");
    let (n10, n20) = (before.iter().filter(|b| **b).count(), twenty.iter().filter(|b| **b).count());
    assert!((320..=480).contains(&n10) && (680..=920).contains(&n20), "{n10} {n20}");
    // The decisions agree with the assignment.
    let mut s = MemoryState::default();
    for (c, h) in customers.iter().zip(&before).take(300) {
        if ten.in_global_control(c) {
            continue;
        }
        ready(&ten, &mut s, c);
        let d = open(&ten, &mut s, c, NOON);
        let expected = if *h { Outcome::HoldoutCampaign } else { Outcome::Treated };
        assert_eq!(outcome_on(&d, Channel::Push), expected, "{c}");
    }
}

#[test]
fn purchases_are_attributed_to_open_episodes_of_both_groups() {
    let config = EngineConfig { global_control_percent: 0.0, default_holdout_percent: 50.0, ..plain() };
    let e = engine_with(config, Catalog::new([offer("o", "c", 0, 500, "")]));
    let mut s = MemoryState::default();
    let (mut treated, mut control) = (None, None);
    for i in 0..40 {
        let c = format!("k{i}");
        if e.in_campaign_holdout("c", &c) {
            control.get_or_insert(c)
        } else {
            treated.get_or_insert(c)
        };
    }
    let (t, c) = (treated.unwrap(), control.unwrap());
    for x in [&t, &c] {
        ready(&e, &mut s, x);
        open(&e, &mut s, x, NOON);
        apply(&e, &mut s, &purchase(&format!("buy-{x}"), x, NOON + DAY, "sushi"), NOON + DAY);
        // After the 7-day window: counted for the programme only.
        apply(&e, &mut s, &purchase(&format!("late-{x}"), x, NOON + 8 * DAY, "sushi"), NOON + 8 * DAY);
    }
    let total = |campaign: &str, group: Group| {
        s.stats().iter().filter(|(k, _)| k.campaign_id == campaign && k.group == group).fold(
            cvm_engine::attribution::Stats::default(),
            |mut a, (_, x)| {
                a.add(x);
                a
            },
        )
    };
    for group in [Group::Treated, Group::CampaignControl] {
        let g = total("c", group);
        assert_eq!((g.customers, g.converters, g.orders, g.margin_minor), (1, 1, 1, 500), "{group:?}");
        assert_eq!(g.margin_sq, 500 * 500);
    }
    assert_eq!(total("c", Group::Treated).contacts, 2, "push and story");
    let programme = total("", Group::Treated);
    assert_eq!((programme.customers, programme.orders, programme.margin_minor), (2, 4, 2000));
    // Σ(per-customer margin)² = 2 × 1000².
    assert_eq!(programme.margin_sq, 2 * 1000 * 1000);
}

#[test]
fn erasure_removes_profile_contacts_timers_and_devices_but_keeps_aggregates() {
    let e = engine_with(plain(), Catalog::new([offer("o", "c", 0, 500, "")]));
    let mut s = MemoryState::default();
    ready(&e, &mut s, "a");
    // More devices than a profile lists: the oldest links go as new ones come.
    for d in 1..=12 {
        let id = Event::Identify(Identify {
            event_id: format!("i{d}"),
            customer_id: "a".into(),
            device_id: format!("d{d}"),
            timestamp_ms: 0,
        });
        apply(&e, &mut s, &id, 0);
    }
    // A deferred push leaves a pending timer.
    assert_eq!(outcome_on(&open(&e, &mut s, "a", 100 * DAY + 23 * HOUR), Channel::Push), Outcome::Deferred);
    assert_eq!(s.pending_timers(), 1);
    let stats_before = s.stats();
    let erase =
        Event::Erase(EraseRequest { request_id: "r1".into(), customer_id: "a".into(), timestamp_ms: 101 * DAY });
    let out = apply(&e, &mut s, &erase, 101 * DAY);
    let Some((cvm_engine::Outbound::Erased(confirmation), unlinks)) = out.emits.split_last() else {
        panic!("{:?}", out.emits)
    };
    // The unlinks, for the devices' own partitions.
    let unlinked: Vec<&str> = unlinks
        .iter()
        .map(|o| match o {
            cvm_engine::Outbound::DeviceLink(l) if l.unlink && l.customer_id == "a" => l.device_id.as_str(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(unlinked, (5..=12).map(|d| format!("d{d}")).collect::<Vec<_>>());
    assert!(confirmation.profile_erased);
    assert_eq!((confirmation.timers_removed, confirmation.devices_unlinked), (1, 8));
    assert_eq!(confirmation.request_id, "r1");
    assert!(s.profile(0, "a").unwrap().is_none());
    assert_eq!(s.pending_timers(), 0);
    for d in 1..=12 {
        assert!(!s.device_linked(0, &format!("d{d}")), "device d{d} is unlinked");
    }
    // Events still on their way do not bring the customer back.
    let lagging = app("late", "a", 101 * DAY + HOUR, AppEventKind::AppOpen, "");
    assert_eq!(apply(&e, &mut s, &lagging, 101 * DAY + HOUR).result, EventResult::Erased);
    let late_login = Event::Identify(Identify {
        event_id: "late-login".into(),
        customer_id: "a".into(),
        device_id: "d1".into(),
        timestamp_ms: 101 * DAY + HOUR,
    });
    assert_eq!(apply(&e, &mut s, &late_login, 101 * DAY + HOUR).result, EventResult::Erased);
    assert!(s.profile(0, "a").unwrap().is_none() && !s.device_linked(0, "d1"));
    assert_eq!(s.stats(), stats_before, "anonymous aggregates stay");
    // Nothing fires for the erased customer; a repeated request confirms again.
    assert!(fire_due(&e, &mut s, 102 * DAY).is_empty());
    let again = apply(&e, &mut s, &erase, 101 * DAY);
    assert!(matches!(&again.emits[..], [cvm_engine::Outbound::Erased(c)] if !c.profile_erased));
}
