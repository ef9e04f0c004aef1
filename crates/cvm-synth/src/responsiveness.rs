//! Hidden responsiveness types: the four kinds of customer uplift modelling
//! is about, known here so that targeting can be judged against the truth.
//!
//! - **sure things** buy anyway: contacting them only costs;
//! - **persuadables** buy only when contacted: the whole point;
//! - **lost causes** buy neither way;
//! - **sleeping dogs** buy unless contacted: contact puts them off.
//!
//! Types correlate with what the engine can observe but are not determined
//! by it: frequent buyers are mostly sure things or sleeping dogs, engaged
//! app users who buy rarely are mostly persuadables, disengaged rare buyers
//! mostly lost causes. A propensity model, which ranks by "buys when
//! contacted", therefore prefers sure things; an uplift model, which ranks
//! by the difference contact makes, should find the persuadables.

use cvm_proto::v1::{Purchase, PurchaseChannel, PurchaseLine};
use xxhash_rust::xxh3::xxh3_64_with_seed;

use cvm_engine::time::HOUR_MS;

/// A customer's hidden reaction to contact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Responsiveness {
    /// Buys anyway.
    SureThing,
    /// Buys only when contacted.
    Persuadable,
    /// Never buys.
    LostCause,
    /// Buys unless contacted.
    SleepingDog,
}

impl Responsiveness {
    /// All four, in order.
    pub const ALL: [Responsiveness; 4] = [Self::SureThing, Self::Persuadable, Self::LostCause, Self::SleepingDog];

    /// Probability of buying the campaign basket within the response window.
    pub fn conversion(self, contacted: bool) -> f64 {
        match (self, contacted) {
            (Self::SureThing, _) => 0.60,
            (Self::Persuadable, true) => 0.45,
            (Self::Persuadable, false) => 0.03,
            (Self::LostCause, _) => 0.02,
            (Self::SleepingDog, true) => 0.10,
            (Self::SleepingDog, false) => 0.50,
        }
    }

    /// The probability contact adds.
    pub fn uplift(self) -> f64 {
        self.conversion(true) - self.conversion(false)
    }

    /// Name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::SureThing => "sure things",
            Self::Persuadable => "persuadables",
            Self::LostCause => "lost causes",
            Self::SleepingDog => "sleeping dogs",
        }
    }

    /// Draws a type for a customer with the given traits; `u` is uniform 0..1.
    pub(crate) fn draw(frequent: bool, engaged: bool, u: f64) -> Self {
        // Cumulative shares of sure things, persuadables, lost causes (rest: sleeping dogs).
        let [s, p, l] = match (frequent, engaged) {
            (true, false) => [0.45, 0.50, 0.55],
            (true, true) => [0.50, 0.75, 0.80],
            (false, true) => [0.05, 0.80, 0.95],
            (false, false) => [0.05, 0.25, 0.90],
        };
        match u {
            u if u < s => Self::SureThing,
            u if u < p => Self::Persuadable,
            u if u < l => Self::LostCause,
            _ => Self::SleepingDog,
        }
    }
}

/// Answers decisions of a campaign by each customer's hidden type: a
/// contacted customer buys with `conversion(true)`, a held-out one with
/// `conversion(false)`, once per customer and decision time, 2 to 47 hours
/// after it.
#[derive(Debug, Clone)]
pub struct TypedResponder {
    seed: u64,
    /// Basket price, minor units.
    pub price_minor: i64,
    /// Basket cost of goods, minor units.
    pub cost_minor: i64,
}

impl TypedResponder {
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
        kind: Responsiveness,
        contacted: bool,
        offer_id: &str,
        at_ms: i64,
    ) -> Option<Purchase> {
        let draw = xxh3_64_with_seed(format!("{customer_id}\x1f{at_ms}").as_bytes(), self.seed);
        let uniform = (draw >> 11) as f64 / (1u64 << 53) as f64;
        if uniform >= kind.conversion(contacted) {
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

    #[test]
    fn the_four_types_differ_in_the_increment_not_only_the_rate() {
        assert_eq!(Responsiveness::SureThing.uplift(), 0.0);
        assert!(Responsiveness::Persuadable.uplift() > 0.4);
        assert!(Responsiveness::SleepingDog.uplift() < -0.3);
        // Contacted, sure things convert more than persuadables: propensity
        // ranks them first, although contact earns nothing from them.
        assert!(Responsiveness::SureThing.conversion(true) > Responsiveness::Persuadable.conversion(true));
        let r = TypedResponder::new(1, 4_000, 2_400);
        let bought = (0..10_000)
            .filter(|i| r.respond(&format!("c{i}"), Responsiveness::Persuadable, true, "o", 0).is_some())
            .count();
        assert!((4_300..4_700).contains(&bought), "{bought}");
    }
}
