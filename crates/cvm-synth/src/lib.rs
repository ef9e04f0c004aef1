//! A synthetic retailer: a seeded, deterministic stream of purchase and app
//! events for the quickstart, benchmarks and tests.
//!
//! Customers differ the way real ones do: about 60 % use the app and 70 % of
//! those allow push; each has two or three favourite categories, a purchase
//! rate and an app-session rate drawn from skewed distributions, and a time
//! zone. App sessions open the app, view products mostly in favourite
//! categories, sometimes add to cart, and sometimes buy online. Store
//! purchases come from app and non-app customers alike. Events come out in
//! time order, one simulated day at a time, so memory stays flat for any
//! number of days. A [`Responder`] adds how customers react to offers.

mod catalog;
mod responder;
mod responsiveness;
mod worlds;

pub use catalog::{generated_offers, sku_name};
pub use responder::{Effect, Responder};
pub use responsiveness::Responsiveness;
pub use worlds::{Response, Traits, World, WorldResponder, CAMPAIGN_CATEGORY};

use cvm_engine::Event;
use cvm_proto::v1::{AppEvent, AppEventKind, Channel, Consent, Purchase, PurchaseChannel, PurchaseLine};
use rand::{rngs::SmallRng, Rng, SeedableRng};

use cvm_engine::time::{DAY_MS, HOUR_MS};

/// A category with its price range and gross margin.
struct Category {
    name: &'static str,
    min_price: i64,
    max_price: i64,
    margin: f64,
}

/// Products per category (`<category>-000` to `-199`).
const SKUS_PER_CATEGORY: u32 = 200;

const CATEGORIES: [Category; 10] = [
    Category { name: "sushi", min_price: 499, max_price: 1899, margin: 0.45 },
    Category { name: "bakery", min_price: 99, max_price: 599, margin: 0.50 },
    Category { name: "dairy", min_price: 79, max_price: 499, margin: 0.22 },
    Category { name: "produce", min_price: 59, max_price: 599, margin: 0.30 },
    Category { name: "meat", min_price: 399, max_price: 2499, margin: 0.25 },
    Category { name: "wine", min_price: 599, max_price: 4999, margin: 0.35 },
    Category { name: "pharmacy", min_price: 299, max_price: 2999, margin: 0.40 },
    Category { name: "beauty", min_price: 399, max_price: 5999, margin: 0.55 },
    Category { name: "baby", min_price: 199, max_price: 3999, margin: 0.28 },
    Category { name: "household", min_price: 149, max_price: 1999, margin: 0.33 },
];

/// The retailer's categories.
pub fn category_names() -> impl Iterator<Item = &'static str> {
    CATEGORIES.iter().map(|c| c.name)
}

/// An IANA zone with the customer's (winter) offset, for consent events.
fn zone_of(utc_offset_minutes: i32) -> &'static str {
    match utc_offset_minutes {
        60 => "Europe/Berlin",
        120 => "Europe/Helsinki",
        _ => "Europe/London",
    }
}

/// Which topic an event belongs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Purchases.
    Purchases,
    /// App events, identifies and consents.
    App,
}

/// One generated event with its topic and key.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthEvent {
    /// Destination stream.
    pub stream: Stream,
    /// Message key (the customer id).
    pub key: String,
    /// The event.
    pub event: Event,
}

/// Shape of the simulated retailer.
#[derive(Debug, Clone)]
pub struct RetailerConfig {
    /// Seed; the same seed gives the same stream.
    pub seed: u64,
    /// Customers.
    pub customers: u32,
    /// Simulated days.
    pub days: u32,
    /// Time of day 0, epoch ms.
    pub start_ms: i64,
}

impl Default for RetailerConfig {
    fn default() -> Self {
        // 2026-11-01T00:00:00Z
        Self { seed: 42, customers: 50_000, days: 14, start_ms: 1_793_491_200_000 }
    }
}

#[derive(Debug, Clone)]
struct Customer {
    id: String,
    app: bool,
    push: bool,
    favourites: Vec<usize>,
    orders_per_day: f64,
    sessions_per_day: f64,
    utc_offset_minutes: i32,
    responsiveness: Responsiveness,
}

/// The generator; iterate it for events in time order.
#[derive(Debug)]
pub struct Retailer {
    config: RetailerConfig,
    rng: SmallRng,
    customers: Vec<Customer>,
    day: u32,
    pending: std::vec::IntoIter<SynthEvent>,
    seq: u64,
}

impl Retailer {
    /// A retailer with `config`'s customers.
    pub fn new(config: RetailerConfig) -> Self {
        let mut rng = SmallRng::seed_from_u64(config.seed);
        let customers = (0..config.customers)
            .map(|i| {
                let app = rng.random_bool(0.6);
                let mut favourites = vec![rng.random_range(0..CATEGORIES.len())];
                for _ in 0..rng.random_range(1..3) {
                    favourites.push(rng.random_range(0..CATEGORIES.len()));
                }
                // Skewed rates: most customers buy rarely, a few weekly or more.
                let u: f64 = rng.random();
                Customer {
                    id: format!("c{i:07}"),
                    app,
                    push: app && rng.random_bool(0.7),
                    favourites,
                    orders_per_day: 0.02 + 0.25 * u * u * u,
                    sessions_per_day: if app { 0.05 + 0.6 * rng.random::<f64>().powi(2) } else { 0.0 },
                    utc_offset_minutes: [0, 60, 120][rng.random_range(0..3)],
                    responsiveness: Responsiveness::SureThing,
                }
            })
            .collect::<Vec<_>>();
        // Hidden types come from their own stream, so the events stay the
        // same as before they existed.
        let mut types = SmallRng::seed_from_u64(config.seed ^ 0x7f4a_7c15_9e37_79b9);
        let customers = customers
            .into_iter()
            .map(|c| {
                let kind = Responsiveness::draw(c.orders_per_day, c.sessions_per_day, types.random());
                Customer { responsiveness: kind, ..c }
            })
            .collect();
        Self { config, rng, customers, day: 0, pending: Vec::new().into_iter(), seq: 0 }
    }

    /// Number of customers.
    pub fn customer_count(&self) -> usize {
        self.customers.len()
    }

    /// Every customer's id and hidden traits, in id order.
    pub fn traits(&self) -> Vec<(String, Traits)> {
        let traits = |c: &Customer| Traits {
            orders_per_day: c.orders_per_day,
            sessions_per_day: c.sessions_per_day,
            favourites: c.favourites.iter().map(|&i| CATEGORIES[i].name).collect(),
            responsiveness: c.responsiveness,
        };
        self.customers.iter().map(|c| (c.id.clone(), traits(c))).collect()
    }

    fn next_id(&mut self, prefix: &str) -> String {
        self.seq += 1;
        format!("{prefix}-{}-{}", self.config.seed, self.seq)
    }

    fn generate_day(&mut self) -> Vec<SynthEvent> {
        let day_start = self.config.start_ms + i64::from(self.day) * DAY_MS;
        let mut out = Vec::new();
        let customers = std::mem::take(&mut self.customers);
        for c in &customers {
            if self.day == 0 && c.app {
                let event_id = self.next_id("consent");
                out.push(SynthEvent {
                    stream: Stream::App,
                    key: c.id.clone(),
                    event: Event::Consent(Consent {
                        event_id,
                        customer_id: c.id.clone(),
                        timestamp_ms: day_start + self.rng.random_range(0..HOUR_MS),
                        channel: Channel::Push as i32,
                        granted: c.push,
                        push_token_present: c.push,
                        time_zone: zone_of(c.utc_offset_minutes).into(),
                        utc_offset_minutes: c.utc_offset_minutes,
                    }),
                });
            }
            if self.rng.random_bool(c.orders_per_day.min(1.0)) {
                let at = day_start + self.rng.random_range(HOUR_MS..DAY_MS - HOUR_MS);
                let online = c.app && self.rng.random_bool(0.3);
                out.push(self.purchase(c, at, online));
            }
            if c.app && self.rng.random_bool(c.sessions_per_day.min(1.0)) {
                let at = day_start + self.rng.random_range(HOUR_MS..DAY_MS - 2 * HOUR_MS);
                self.session(c, at, &mut out);
            }
        }
        self.customers = customers;
        out.sort_by_key(|e| e.event.timestamp_ms());
        out
    }

    fn pick_category(&mut self, c: &Customer) -> usize {
        if self.rng.random_bool(0.8) {
            c.favourites[self.rng.random_range(0..c.favourites.len())]
        } else {
            self.rng.random_range(0..CATEGORIES.len())
        }
    }

    fn sku(&mut self, cat: usize) -> String {
        sku_name(cat, self.rng.random_range(0..SKUS_PER_CATEGORY))
    }

    fn purchase(&mut self, c: &Customer, at: i64, online: bool) -> SynthEvent {
        let lines = (0..self.rng.random_range(1..7))
            .map(|_| {
                let cat = self.pick_category(c);
                let k = &CATEGORIES[cat];
                let price = self.rng.random_range(k.min_price..=k.max_price);
                PurchaseLine {
                    sku: self.sku(cat),
                    category: k.name.to_owned(),
                    quantity: self.rng.random_range(1..4),
                    unit_price_minor: price,
                    unit_cost_minor: (price as f64 * (1.0 - k.margin)).round() as i64,
                }
            })
            .collect();
        SynthEvent {
            stream: Stream::Purchases,
            key: c.id.clone(),
            event: Event::Purchase(Purchase {
                event_id: self.next_id("purchase"),
                customer_id: c.id.clone(),
                timestamp_ms: at,
                channel: if online { PurchaseChannel::Online } else { PurchaseChannel::Store } as i32,
                store_id: if online { String::new() } else { format!("store-{}", self.rng.random_range(1..40)) },
                lines,
                currency: "EUR".into(),
                offer_id: String::new(),
            }),
        }
    }

    fn app(&mut self, c: &Customer, at: i64, kind: AppEventKind, cat: Option<usize>) -> SynthEvent {
        let (sku, category) = match cat {
            Some(k) => (self.sku(k), CATEGORIES[k].name.to_owned()),
            None => (String::new(), String::new()),
        };
        SynthEvent {
            stream: Stream::App,
            key: c.id.clone(),
            event: Event::App(AppEvent {
                event_id: self.next_id("app"),
                customer_id: c.id.clone(),
                device_id: format!("d-{}", c.id),
                timestamp_ms: at,
                kind: kind as i32,
                sku,
                category,
                quantity: 1,
                ..Default::default()
            }),
        }
    }

    fn session(&mut self, c: &Customer, mut at: i64, out: &mut Vec<SynthEvent>) {
        out.push(self.app(c, at, AppEventKind::AppOpen, None));
        if self.rng.random_bool(0.4) {
            at += 5_000;
            out.push(self.app(c, at, AppEventKind::StoryView, None));
        }
        for _ in 0..self.rng.random_range(0..4) {
            at += self.rng.random_range(5_000..60_000);
            let cat = self.pick_category(c);
            out.push(self.app(c, at, AppEventKind::ProductView, Some(cat)));
            if self.rng.random_bool(0.25) {
                at += self.rng.random_range(2_000..30_000);
                out.push(self.app(c, at, AppEventKind::AddToCart, Some(cat)));
                if self.rng.random_bool(0.35) {
                    at += self.rng.random_range(60_000..600_000);
                    out.push(self.purchase(c, at, true));
                    return;
                }
            }
        }
    }
}

impl Iterator for Retailer {
    type Item = SynthEvent;

    fn next(&mut self) -> Option<SynthEvent> {
        loop {
            if let Some(e) = self.pending.next() {
                return Some(e);
            }
            if self.day >= self.config.days {
                return None;
            }
            self.pending = self.generate_day().into_iter();
            self.day += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> RetailerConfig {
        RetailerConfig { customers: 2_000, days: 7, ..Default::default() }
    }

    #[test]
    fn same_seed_same_stream() {
        let a: Vec<_> = Retailer::new(small()).take(5_000).collect();
        let b: Vec<_> = Retailer::new(small()).take(5_000).collect();
        assert_eq!(a, b);
        let c: Vec<_> = Retailer::new(RetailerConfig { seed: 7, ..small() }).take(5_000).collect();
        assert_ne!(a, c);
    }

    #[test]
    fn stream_is_time_ordered_within_days_and_realistic() {
        let events: Vec<_> = Retailer::new(small()).collect();
        let purchases = events.iter().filter(|e| e.stream == Stream::Purchases).count();
        let consents = events.iter().filter(|e| matches!(e.event, Event::Consent(_))).count();
        let opted_out = events.iter().filter(|e| matches!(&e.event, Event::Consent(c) if !c.granted)).count();
        let carts =
            events.iter().filter(|e| matches!(&e.event, Event::App(a) if a.kind() == AppEventKind::AddToCart)).count();
        // ~60 % app users, ~30 % of them opted out of push.
        assert!((1_050..1_350).contains(&consents), "{consents}");
        assert!(opted_out * 100 / consents > 20 && opted_out * 100 / consents < 40);
        assert!(purchases > 500 && carts > 100, "{purchases} purchases, {carts} carts");
        let ids: std::collections::HashSet<_> = events.iter().map(|e| e.event.event_id().to_owned()).collect();
        assert_eq!(ids.len(), events.len(), "event ids are unique");
        assert!(events.windows(2).all(|w| w[0].event.timestamp_ms() / DAY_MS <= w[1].event.timestamp_ms() / DAY_MS));
    }
}

#[cfg(test)]
mod reach_tests {
    use super::*;
    use cvm_engine::{MemoryState, StateTxn};

    #[test]
    fn app_users_who_opted_in_are_push_reachable() {
        let engine = cvm_engine::Engine::new(Default::default(), Default::default());
        let mut state = MemoryState::default();
        let events: Vec<_> = Retailer::new(RetailerConfig { customers: 500, days: 7, ..Default::default() }).collect();
        for e in &events {
            engine.process(&mut state, 0, &e.event, e.event.timestamp_ms()).unwrap();
        }
        let opted_in: Vec<&str> = events
            .iter()
            .filter_map(|e| match &e.event {
                Event::Consent(c) if c.granted => Some(c.customer_id.as_str()),
                _ => None,
            })
            .collect();
        let reachable =
            opted_in.iter().filter(|c| state.profile(0, c).unwrap().is_some_and(|p| p.reach.push())).count();
        // Opted-in customers become reachable once they use the app.
        assert!(reachable * 3 > opted_in.len(), "{reachable} of {} opted-in customers reachable", opted_in.len());
    }
}
