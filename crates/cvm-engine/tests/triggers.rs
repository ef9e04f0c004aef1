//! Trigger kinds end to end through the decision core: event filters,
//! delayed-with-cancel, inactivity, sweeps and cascades, with timers fired
//! the way the ingest loop fires them.

mod support;

use std::sync::Arc;

use cvm_engine::{Catalog, Engine, MemoryState, OfferDefinition, StateTxn};
use cvm_proto::v1::{AppEventKind, Channel, Outcome};
use support::*;

fn engine(docs: &[&str]) -> Engine {
    let defs = docs.iter().map(|d| OfferDefinition::parse("test", d.as_bytes()).unwrap());
    Engine::new(config(0.0), Catalog::new(defs))
}

const ABANDONED_CART: &str = r#"
id: abandoned-cart
version: 1
campaign_id: cart
trigger:
  kind: delayed
  event: add_to_cart
  filter: 'event.category == "sushi"'
  after: 2h
  cancel_on: purchase
channels:
  push: { title: "Still hungry?", body: "Your {{event.category}} is waiting: {{discount}} off" }
reward: { percent: 10 }
economics: { margin_per_redemption_minor: 500 }
"#;

fn ready(engine: &Engine, state: &mut MemoryState, customer: &str) {
    apply(engine, state, &consent(customer), 0);
}

#[test]
fn event_trigger_filter_narrows_the_candidates() {
    let e = engine(&[&ABANDONED_CART
        .replace("kind: delayed", "kind: event")
        .replace("  after: 2h\n  cancel_on: purchase\n", "")]);
    let mut s = MemoryState::default();
    ready(&e, &mut s, "c1");
    let wine = apply(&e, &mut s, &app("w", "c1", HOUR, AppEventKind::AddToCart, "wine"), HOUR);
    assert!(wine.emits.is_empty(), "the filter keeps wine carts out");
    let sushi = apply(&e, &mut s, &add_to_cart("s", "c1", HOUR), HOUR);
    assert_eq!(decisions(&sushi.emits), [(Channel::Push, Outcome::Treated)]);
}

#[test]
fn abandoned_cart_fires_after_the_delay_unless_a_purchase_cancels_it() {
    let e = engine(&[ABANDONED_CART]);
    let mut s = MemoryState::default();
    for c in ["keeps", "buys"] {
        ready(&e, &mut s, c);
        assert!(apply(&e, &mut s, &add_to_cart(&format!("a-{c}"), c, HOUR), HOUR).emits.is_empty());
    }
    assert_eq!(s.pending_timers(), 2);
    apply(&e, &mut s, &purchase("p", "buys", 2 * HOUR, "sushi"), 2 * HOUR);
    assert_eq!(s.pending_timers(), 1, "the purchase cancels the wait");

    assert!(fire_due(&e, &mut s, 3 * HOUR - 1).is_empty(), "not due before 2 h");
    let fired = fire_due(&e, &mut s, 3 * HOUR);
    let d = decision_list(&fired);
    assert_eq!(d.len(), 1);
    assert_eq!((d[0].customer_id.as_str(), d[0].outcome()), ("keeps", Outcome::Treated));
    assert_eq!((d[0].trigger.as_str(), d[0].event_id.as_str()), ("delayed", "a-keeps"));
    assert_eq!(offers(&fired)[0].content.as_ref().unwrap().body, "Your sushi is waiting: 10% off");
    assert!(fire_due(&e, &mut s, 10 * HOUR).is_empty(), "a timer fires once");
}

#[test]
fn a_new_trigger_event_restarts_the_wait() {
    let e = engine(&[ABANDONED_CART]);
    let mut s = MemoryState::default();
    ready(&e, &mut s, "c");
    apply(&e, &mut s, &add_to_cart("a1", "c", HOUR), HOUR);
    apply(&e, &mut s, &add_to_cart("a2", "c", 2 * HOUR), 2 * HOUR);
    assert_eq!(s.pending_timers(), 1);
    assert!(fire_due(&e, &mut s, 3 * HOUR + 1).is_empty());
    assert_eq!(decision_list(&fire_due(&e, &mut s, 4 * HOUR))[0].event_id, "a2");
}

const LAPSED: &str = r#"
id: lapsed
version: 1
campaign_id: winback
trigger: { kind: inactivity, days: 30 }
eligibility: orders_365d >= 1
channels:
  push: { title: "We miss you", body: "{{discount}} off your next order" }
reward: { ladder_percent: [5, 10, 15] }
economics: { margin_formula: avg_basket_margin_90d * 0.8 }
"#;

#[test]
fn inactivity_fires_n_days_after_the_last_purchase_and_moves_with_new_ones() {
    let e = engine(&[LAPSED]);
    let mut s = MemoryState::default();
    ready(&e, &mut s, "c");
    apply(&e, &mut s, &app("o", "c", 0, AppEventKind::AppOpen, ""), 0);
    apply(&e, &mut s, &purchase("p1", "c", DAY, "sushi"), DAY);
    apply(&e, &mut s, &purchase("p2", "c", 10 * DAY, "sushi"), 10 * DAY);
    assert_eq!(s.pending_timers(), 1, "one inactivity timer per customer and offer");
    assert!(fire_due(&e, &mut s, 31 * DAY).is_empty(), "the second purchase moved the check");
    let fired = fire_due(&e, &mut s, 40 * DAY);
    assert_eq!(decisions(&fired), [(Channel::Push, Outcome::Treated)]);
    assert_eq!(decision_list(&fired)[0].trigger, "inactivity");
    assert_eq!(offers(&fired)[0].discount.unwrap().percent, 5, "first ladder step");
}

const STORM: &str = r#"
id: storm-tonight
version: 1
campaign_id: situational
trigger: { kind: sweep, rate_per_second: 1000 }
eligibility: has_app && orders_90d >= 1
channels:
  push: { title: "Storm tonight", body: "Order ahead: free delivery" }
reward: { fixed_minor: 300 }
economics: { margin_per_redemption_minor: 400 }
"#;

#[test]
fn sweep_decides_each_known_customer_once_with_stable_ids() {
    let e = engine(&[STORM]);
    let mut s = MemoryState::default();
    for c in ["a", "b", "c"] {
        ready(&e, &mut s, c);
        apply(&e, &mut s, &app(&format!("o-{c}"), c, HOUR, AppEventKind::AppOpen, ""), HOUR);
    }
    apply(&e, &mut s, &purchase("p", "a", HOUR, "sushi"), HOUR);
    apply(&e, &mut s, &purchase("q", "b", HOUR, "wine"), HOUR);
    let def: Arc<OfferDefinition> = e.catalog().sweeps()[0].clone();
    let run = |state: &mut MemoryState| {
        let customers: Vec<String> = state.profiles(0).into_iter().map(|(c, _)| c).collect();
        let mut out = Vec::new();
        for c in customers {
            out.extend(e.sweep(state, 0, &c, &def, 2 * HOUR).unwrap());
        }
        out
    };
    let mut replay = s.clone();
    let out = run(&mut s);
    let d = decision_list(&out);
    let got: Vec<(&str, Outcome)> = d.iter().map(|d| (d.customer_id.as_str(), d.outcome())).collect();
    assert_eq!(got, [("a", Outcome::Treated), ("b", Outcome::Treated), ("c", Outcome::Ineligible)]);
    assert!(d.iter().all(|d| d.trigger == "sweep"));
    assert_eq!(run(&mut replay), out, "a re-run sweep reproduces the same decisions and ids");
}

const PUSH_THEN_STORY: &str = r#"
id: new-collection
version: 2
campaign_id: teaser
trigger: { kind: event, event: product_view }
channels:
  push: { title: "New in {{event.category}}", body: "Have a look" }
  stories: { template: teaser-v2, call_to_action: "See the collection" }
economics: { margin_per_redemption_minor: 300 }
cascade: { after: 4h, to: stories }
"#;

/// The first contact of a cascading offer: the push only, the story is held
/// back for the follow-up.
fn pushed(e: &Engine, s: &mut MemoryState, c: &str) -> cvm_proto::v1::Offer {
    ready(e, s, c);
    let out = apply(e, s, &app(&format!("v-{c}"), c, HOUR, AppEventKind::ProductView, "shoes"), HOUR);
    assert_eq!(decisions(&out.emits), [(Channel::Push, Outcome::Treated)]);
    offers(&out.emits)[0].clone()
}

#[test]
fn cascade_shows_the_story_when_the_push_is_not_opened() {
    let e = engine(&[PUSH_THEN_STORY]);
    let mut s = MemoryState::default();
    let push = pushed(&e, &mut s, "c");
    let fired = fire_due(&e, &mut s, 5 * HOUR);
    let d = decision_list(&fired);
    assert_eq!(d.len(), 1);
    assert_eq!(
        (d[0].channel(), d[0].outcome(), d[0].trigger.as_str()),
        (Channel::Stories, Outcome::Treated, "cascade")
    );
    assert_eq!(d[0].parent_decision_id, push.decision_id, "linked to the push decision");
    assert_ne!(d[0].decision_id, push.decision_id, "its own decision");
    assert_eq!(offers(&fired)[0].content.as_ref().unwrap().story_template_id, "teaser-v2");
}

#[test]
fn opening_the_push_cancels_the_cascade() {
    let e = engine(&[PUSH_THEN_STORY]);
    let mut s = MemoryState::default();
    let push = pushed(&e, &mut s, "c");
    apply(&e, &mut s, &push_open("open", "c", 2 * HOUR, &push.offer_id), 2 * HOUR);
    assert_eq!(s.pending_timers(), 0);
    assert!(fire_due(&e, &mut s, 5 * HOUR).is_empty());
}

#[test]
fn without_push_the_story_goes_out_at_once() {
    let e = engine(&[PUSH_THEN_STORY]);
    let mut s = MemoryState::default();
    let out = apply(&e, &mut s, &app("v", "c", HOUR, AppEventKind::ProductView, "shoes"), HOUR);
    assert_eq!(decisions(&out.emits), [(Channel::Push, Outcome::Unreachable), (Channel::Stories, Outcome::Treated)]);
    assert_eq!(s.pending_timers(), 0);
}

#[test]
fn cascade_respects_caps() {
    let e = engine(&[
        &PUSH_THEN_STORY.replace("economics:", "contact_policy: { caps: [{ max: 1, window: 1d }] }\neconomics:")
    ]);
    let mut s = MemoryState::default();
    pushed(&e, &mut s, "c");
    let fired = fire_due(&e, &mut s, 5 * HOUR);
    let d = decision_list(&fired);
    assert_eq!((d[0].channel(), d[0].outcome()), (Channel::Stories, Outcome::Capped));
    assert!(d[0].reason.starts_with("offer cap new-collection: 1 contacts in 1d"), "{}", d[0].reason);
    assert!(offers(&fired).is_empty());
}

#[test]
fn timers_of_a_deleted_or_paused_offer_do_nothing() {
    let e = engine(&[ABANDONED_CART]);
    let mut s = MemoryState::default();
    ready(&e, &mut s, "c");
    apply(&e, &mut s, &add_to_cart("a", "c", HOUR), HOUR);
    let mut gone = e.clone();
    gone.set_catalog(Arc::new(e.catalog().without("abandoned-cart")));
    assert!(fire_due(&gone, &mut s, 4 * HOUR).is_empty());
    assert_eq!(s.pending_timers(), 0, "the timer is consumed, not left to fire later");
    assert!(s.profile(0, "c").unwrap().is_some());
}

#[test]
fn cancellation_follows_event_time_when_topics_interleave() {
    let e = engine(&[ABANDONED_CART]);
    let mut s = MemoryState::default();
    ready(&e, &mut s, "c");
    // The purchase (2 h) is applied before the cart add (1 h) it follows.
    apply(&e, &mut s, &purchase("p", "c", 2 * HOUR, "sushi"), 2 * HOUR);
    apply(&e, &mut s, &add_to_cart("a", "c", HOUR), HOUR);
    assert_eq!(s.pending_timers(), 0, "the cart was bought after it was filled");
    // A purchase older than the cart add does not cancel its wait.
    apply(&e, &mut s, &add_to_cart("b", "c", 5 * HOUR), 5 * HOUR);
    apply(&e, &mut s, &purchase("q", "c", 4 * HOUR, "sushi"), 4 * HOUR);
    assert_eq!(s.pending_timers(), 1);
}

#[test]
fn customers_lapsed_before_an_inactivity_offer_is_published_are_backfilled() {
    let before = engine(&[]);
    let mut s = MemoryState::default();
    ready(&before, &mut s, "c");
    apply(&before, &mut s, &app("o", "c", 0, AppEventKind::AppOpen, ""), 0);
    apply(&before, &mut s, &purchase("p1", "c", DAY, "sushi"), DAY);
    apply(&before, &mut s, &purchase("p2", "c", 2 * DAY, "sushi"), 2 * DAY);
    assert_eq!(s.pending_timers(), 0, "no inactivity offer yet");

    let after = engine(&[LAPSED]);
    let def = after.catalog().inactivity()[0].clone();
    assert!(after.schedule_inactivity(&mut s, 0, "c", &def).unwrap());
    assert!(!after.schedule_inactivity(&mut s, 0, "c", &def).unwrap(), "already pending");
    assert!(!after.schedule_inactivity(&mut s, 0, "nobody", &def).unwrap());
    // Published on day 50: the customer lapsed on day 32, so the timer is due at once.
    let fired = fire_due(&after, &mut s, 50 * DAY);
    assert_eq!(decisions(&fired), [(Channel::Push, Outcome::Treated)]);
    assert_eq!(decision_list(&fired)[0].trigger, "inactivity");
}
