//! Worlds: how customers answer one campaign, as a function of who they are.
//!
//! Uplift modelling is only as good as the worlds it is tried on. A model
//! designed around one simulator learns that simulator; so each world here
//! makes the increment depend on the customers' hidden traits in its own
//! way, and the engine, which sees only their events, has to find it:
//!
//! - **types**: the four classic types (sure thing, persuadable, lost cause,
//!   sleeping dog) drawn by purchase frequency × app engagement
//!   ([`Responsiveness`]); contact helps most cells and harms frequent
//!   buyers who rarely use the app.
//! - **interactions**: the increment needs three traits at once. Lovers of
//!   the campaign's category (wine) who use the app but seldom buy are
//!   persuadable; lovers who hardly open the app respond a little; heavy app
//!   users who buy often and do not care for wine are put off (contact
//!   costs them a purchase they would have made); everyone else is
//!   indifferent. No single trait separates helped from harmed.
//! - **no-persuadables**: contact never sells anything; engaged frequent
//!   buyers are put off. The right policy contacts nobody.
//!
//! Each customer has their own conversion probabilities, contacted and not
//! ([`World::response`]); the oracle knows what the traits imply
//! ([`World::expected`]) — for the types world the average over the types
//! such a customer may be, since the type itself is a coin flip no
//! observation reveals.

use cvm_proto::v1::{Purchase, PurchaseChannel, PurchaseLine};
use xxhash_rust::xxh3::xxh3_64_with_seed;

use crate::Responsiveness;
use cvm_engine::time::HOUR_MS;

/// The category the campaign of the interaction world sells.
pub const CAMPAIGN_CATEGORY: &str = "wine";

/// A customer's hidden traits: what makes them answer as they do.
#[derive(Debug, Clone, PartialEq)]
pub struct Traits {
    /// Expected orders per day.
    pub orders_per_day: f64,
    /// Expected app sessions per day (0 without the app).
    pub sessions_per_day: f64,
    /// Favourite categories.
    pub favourites: Vec<&'static str>,
    /// Type in the types world.
    pub responsiveness: Responsiveness,
}

impl Traits {
    fn loves(&self, category: &str) -> bool {
        self.favourites.contains(&category)
    }
}

/// Conversion probabilities within the response window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Response {
    /// When contacted.
    pub contacted: f64,
    /// When not.
    pub not_contacted: f64,
}

impl Response {
    /// The probability contact adds (negative: contact harms).
    pub fn uplift(&self) -> f64 {
        self.contacted - self.not_contacted
    }

    /// The probability for one arm.
    pub fn conversion(&self, contacted: bool) -> f64 {
        if contacted {
            self.contacted
        } else {
            self.not_contacted
        }
    }
}

/// One way customers answer the campaign.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum World {
    /// The four types by frequency × engagement.
    Types,
    /// Category affinity × engagement × frequency.
    Interactions,
    /// Nobody is persuadable; some are put off.
    NoPersuadables,
}

impl World {
    /// Every world.
    pub const ALL: [World; 3] = [World::Types, World::Interactions, World::NoPersuadables];

    /// The name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            World::Types => "types",
            World::Interactions => "interactions",
            World::NoPersuadables => "no-persuadables",
        }
    }

    /// The world called `name`.
    pub fn named(name: &str) -> Option<World> {
        World::ALL.into_iter().find(|w| w.name() == name)
    }

    /// The customer's own conversion probabilities.
    pub fn response(self, t: &Traits) -> Response {
        match self {
            World::Types => {
                let kind = t.responsiveness;
                Response { contacted: kind.conversion(true), not_contacted: kind.conversion(false) }
            }
            World::Interactions => {
                let base = 0.04 + 1.2 * t.orders_per_day;
                let fan = t.loves(CAMPAIGN_CATEGORY);
                let engaged = t.sessions_per_day > 0.2;
                let rare = t.orders_per_day < 0.1;
                let heavy = t.sessions_per_day > 0.35 && t.orders_per_day > 0.08;
                let uplift = match (fan, engaged, rare, heavy) {
                    (true, true, true, _) => 0.30,
                    (true, false, _, _) => 0.08,
                    (false, _, _, true) => -0.6 * base,
                    _ => 0.0,
                };
                Response { contacted: base + uplift, not_contacted: base }
            }
            World::NoPersuadables => {
                let base = 0.05 + t.orders_per_day;
                let put_off = t.sessions_per_day > 0.3 && t.orders_per_day > 0.06;
                Response { contacted: if put_off { 0.5 * base } else { base }, not_contacted: base }
            }
        }
    }

    /// What the customer's traits imply: the oracle's knowledge. Equal to
    /// [`World::response`] except in the types world, where it averages
    /// over the types the traits make possible.
    pub fn expected(self, t: &Traits) -> Response {
        match self {
            World::Types => {
                let shares = Responsiveness::shares(t.orders_per_day, t.sessions_per_day);
                let mut r = Response { contacted: 0.0, not_contacted: 0.0 };
                for (kind, share) in Responsiveness::ALL.into_iter().zip(shares) {
                    r.contacted += share * kind.conversion(true);
                    r.not_contacted += share * kind.conversion(false);
                }
                r
            }
            _ => self.response(t),
        }
    }
}

/// Answers decisions of a campaign: a customer buys the campaign basket with
/// their [`Response`] probability for the arm they were in, once per
/// decision time, 2 to 47 hours after it.
#[derive(Debug, Clone)]
pub struct WorldResponder {
    seed: u64,
    /// Basket price, minor units.
    pub price_minor: i64,
    /// Basket cost of goods, minor units.
    pub cost_minor: i64,
}

impl WorldResponder {
    /// A responder buying a basket of `price_minor` costing `cost_minor`.
    pub fn new(seed: u64, price_minor: i64, cost_minor: i64) -> Self {
        Self { seed, price_minor, cost_minor }
    }

    /// Basket margin, minor units.
    pub fn margin_minor(&self) -> i64 {
        self.price_minor - self.cost_minor
    }

    /// The purchase a decision at `at_ms` leads to, if any; `offer_id` is
    /// the sent offer (empty when held out).
    pub fn respond(
        &self,
        customer_id: &str,
        response: Response,
        contacted: bool,
        offer_id: &str,
        at_ms: i64,
    ) -> Option<Purchase> {
        let draw = xxh3_64_with_seed(format!("{customer_id}\x1f{at_ms}").as_bytes(), self.seed);
        let uniform = (draw >> 11) as f64 / (1u64 << 53) as f64;
        if uniform >= response.conversion(contacted) {
            return None;
        }
        let delay = 2 * HOUR_MS + (draw % 46) as i64 * HOUR_MS;
        Some(Purchase {
            event_id: format!("typed-{customer_id}-{at_ms}"),
            customer_id: customer_id.to_owned(),
            timestamp_ms: at_ms + delay,
            channel: PurchaseChannel::Online as i32,
            lines: vec![PurchaseLine {
                sku: "campaign-basket".into(),
                category: "campaign".into(),
                quantity: 1,
                unit_price_minor: self.price_minor,
                unit_cost_minor: self.cost_minor,
            }],
            currency: "EUR".into(),
            offer_id: offer_id.to_owned(),
            ..Default::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Retailer, RetailerConfig};

    fn population() -> Vec<(String, Traits)> {
        Retailer::new(RetailerConfig { customers: 20_000, days: 1, ..Default::default() }).traits()
    }

    /// Shares of customers helped (uplift above 1 pp) and harmed (below −1 pp).
    fn helped_and_harmed(world: World, people: &[(String, Traits)]) -> (f64, f64) {
        let n = people.len() as f64;
        let helped = people.iter().filter(|(_, t)| world.response(t).uplift() > 0.01).count() as f64 / n;
        let harmed = people.iter().filter(|(_, t)| world.response(t).uplift() < -0.01).count() as f64 / n;
        (helped, harmed)
    }

    #[test]
    fn each_world_has_its_own_mix_of_helped_and_harmed_customers() {
        let people = population();
        let (helped, harmed) = helped_and_harmed(World::Types, &people);
        assert!(helped > 0.2 && harmed > 0.05, "types: {helped} helped, {harmed} harmed");
        let (helped, harmed) = helped_and_harmed(World::Interactions, &people);
        assert!(helped > 0.05 && harmed > 0.03, "interactions: {helped} helped, {harmed} harmed");
        let (helped, harmed) = helped_and_harmed(World::NoPersuadables, &people);
        assert!(helped == 0.0 && harmed > 0.03, "no-persuadables: {helped} helped, {harmed} harmed");
        for w in World::ALL {
            assert!(people.iter().all(|(_, t)| {
                let r = w.response(t);
                (0.0..=1.0).contains(&r.contacted) && (0.0..=1.0).contains(&r.not_contacted)
            }));
            assert_eq!(World::named(w.name()), Some(w));
        }
    }

    #[test]
    fn in_the_interaction_world_no_single_trait_separates_helped_from_harmed() {
        let people = population();
        let mean_uplift = |keep: &dyn Fn(&Traits) -> bool| {
            let chosen: Vec<f64> =
                people.iter().filter(|(_, t)| keep(t)).map(|(_, t)| World::Interactions.response(t).uplift()).collect();
            chosen.iter().sum::<f64>() / chosen.len() as f64
        };
        let fan = |t: &Traits| t.loves(CAMPAIGN_CATEGORY);
        // Fans gain on average, but engaged frequent fans gain nothing and
        // engaged rare fans gain most: the effect of engagement depends on
        // frequency and on the category.
        assert!(mean_uplift(&|t| fan(t)) > 0.05);
        assert!(mean_uplift(&|t| fan(t) && t.sessions_per_day > 0.2 && t.orders_per_day >= 0.1).abs() < 1e-9);
        assert!(mean_uplift(&|t| fan(t) && t.sessions_per_day > 0.2 && t.orders_per_day < 0.1) > 0.25);
        assert!(mean_uplift(&|t| !fan(t) && t.sessions_per_day > 0.35 && t.orders_per_day > 0.08) < -0.05);
    }

    #[test]
    fn the_oracle_of_the_types_world_averages_over_the_possible_types() {
        let people = population();
        let n = people.len() as f64;
        let drawn: f64 = people.iter().map(|(_, t)| World::Types.response(t).uplift()).sum::<f64>() / n;
        let expected: f64 = people.iter().map(|(_, t)| World::Types.expected(t).uplift()).sum::<f64>() / n;
        assert!((drawn - expected).abs() < 0.01, "drawn {drawn}, expected {expected}");
    }

    #[test]
    fn customers_buy_at_their_arms_rate() {
        let r = WorldResponder::new(1, 4_000, 2_400);
        let response = Response { contacted: 0.45, not_contacted: 0.03 };
        let bought = |contacted| {
            (0..10_000).filter(|i| r.respond(&format!("c{i}"), response, contacted, "o", 0).is_some()).count()
        };
        assert!((4_300..4_700).contains(&bought(true)), "{}", bought(true));
        assert!((200..400).contains(&bought(false)), "{}", bought(false));
        assert_eq!(r.margin_minor(), 1_600);
    }
}
