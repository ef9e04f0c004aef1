//! Cold start: offers without a trained model learn online with Thompson
//! sampling.
//!
//! Each offer × lifecycle segment is an arm with a Beta posterior over its
//! conversion rate. The prior is the rule score's propensity with the weight
//! of ten contacts, so a new offer starts where the rules would put it and
//! the data takes over after a few dozen contacts. Every contact adds a
//! trial and every conversion (a purchase inside the contact's attribution
//! window) a success; the counts live in the state store beside the
//! profiles, so they survive restarts and replays.
//!
//! Inside the exploration budget a decision draws each arm's rate from its
//! posterior — arms that might be best get tried — and outside it uses the
//! posterior mean. The draw is seeded by the decision, so a replay draws
//! the same numbers.

use rand::{rngs::SmallRng, SeedableRng};
use rand_distr::{Beta, Distribution};
use serde::{Deserialize, Serialize};

use crate::features::{Features, Num};

/// Weight of the rule-based prior, in contacts.
const PRIOR_CONTACTS: f64 = 10.0;

/// Lifecycle segments, the second half of an arm's key.
pub const SEGMENTS: [&str; 4] = ["new", "active", "lapsing", "lapsed"];

/// The customer's lifecycle segment: index into [`SEGMENTS`].
pub fn segment(features: &Features<'_>) -> u8 {
    let days = features.num(Num::DAYS_SINCE_LAST_PURCHASE);
    match (features.profile().lifetime_orders, days) {
        (0 | 1, _) => 0,
        (_, d) if d <= 30.0 => 1,
        (_, d) if d <= 90.0 => 2,
        _ => 3,
    }
}

/// An arm: an offer in a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ArmKey {
    /// [`contact_hash`](crate::profile::contact_hash) of the offer definition id.
    pub offer: u64,
    /// Index into [`SEGMENTS`].
    pub segment: u8,
}

/// What an arm has seen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArmCounts {
    /// Contacts.
    pub trials: u64,
    /// Contacts that converted.
    pub successes: u64,
}

impl ArmCounts {
    /// Adds `other`.
    pub fn add(&mut self, other: ArmCounts) {
        self.trials += other.trials;
        self.successes += other.successes;
    }

    /// The Beta posterior's parameters with the prior centred on `prior_rate`.
    fn posterior(&self, prior_rate: f64) -> (f64, f64) {
        let p = prior_rate.clamp(0.01, 0.99);
        let successes = self.successes.min(self.trials) as f64;
        let failures = (self.trials - self.successes.min(self.trials)) as f64;
        (1.0 + PRIOR_CONTACTS * p + successes, 1.0 + PRIOR_CONTACTS * (1.0 - p) + failures)
    }

    /// The posterior mean.
    pub fn mean(&self, prior_rate: f64) -> f64 {
        let (a, b) = self.posterior(prior_rate);
        a / (a + b)
    }

    /// A draw from the posterior, seeded by `seed`.
    pub fn sample(&self, prior_rate: f64, seed: u64) -> f64 {
        let (a, b) = self.posterior(prior_rate);
        let beta = Beta::new(a, b).expect("posterior parameters are positive and finite");
        beta.sample(&mut SmallRng::seed_from_u64(seed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three arms with true rates 4 %, 7 % and 12 %, all with the same
    /// prior: Thompson sampling must end up sending mostly the best.
    #[test]
    fn thompson_sampling_converges_on_the_best_arm() {
        let truth = [0.04, 0.07, 0.12];
        let mut arms = [ArmCounts::default(); 3];
        let mut rng = SmallRng::seed_from_u64(1);
        let mut late_pulls = [0u32; 3];
        for round in 0..6_000u64 {
            let pick = (0..3)
                .max_by(|&a, &b| {
                    let (sa, sb) =
                        (arms[a].sample(0.08, round * 3 + a as u64), arms[b].sample(0.08, round * 3 + b as u64));
                    sa.total_cmp(&sb)
                })
                .unwrap();
            let converted = rand::Rng::random_bool(&mut rng, truth[pick]);
            arms[pick].add(ArmCounts { trials: 1, successes: u64::from(converted) });
            if round >= 5_000 {
                late_pulls[pick] += 1;
            }
        }
        assert!(late_pulls[2] > 800, "the best arm gets most of the last 1,000 pulls: {late_pulls:?}");
        assert!((arms[2].mean(0.08) - 0.12).abs() < 0.02, "its estimate is close to the truth: {:?}", arms[2]);
    }

    #[test]
    fn the_prior_is_the_rule_propensity_and_data_takes_over() {
        let none = ArmCounts::default();
        assert!((none.mean(0.3) - (1.0 + 3.0) / 12.0).abs() < 1e-12);
        let seen = ArmCounts { trials: 1_000, successes: 50 };
        assert!((seen.mean(0.3) - 0.05).abs() < 0.005);
        assert_eq!(seen.sample(0.3, 9), seen.sample(0.3, 9), "seeded draws repeat");
    }
}
