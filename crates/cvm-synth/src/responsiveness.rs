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

    /// Shares of the four types (in [`Responsiveness::ALL`] order) among
    /// customers of these traits: frequent buyers (more than 0.08 orders a
    /// day) and engaged app users (more than 0.15 sessions a day) differ.
    pub fn shares(orders_per_day: f64, sessions_per_day: f64) -> [f64; 4] {
        match (orders_per_day > 0.08, sessions_per_day > 0.15) {
            (true, false) => [0.45, 0.05, 0.05, 0.45],
            (true, true) => [0.50, 0.25, 0.05, 0.20],
            (false, true) => [0.05, 0.75, 0.15, 0.05],
            (false, false) => [0.05, 0.20, 0.65, 0.10],
        }
    }

    /// Draws a type for a customer with the given traits; `u` is uniform 0..1.
    pub(crate) fn draw(orders_per_day: f64, sessions_per_day: f64, u: f64) -> Self {
        let mut cumulative = 0.0;
        for (kind, share) in Self::ALL.into_iter().zip(Self::shares(orders_per_day, sessions_per_day)) {
            cumulative += share;
            if u < cumulative {
                return kind;
            }
        }
        Self::SleepingDog
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
        for traits in [(0.2, 0.0), (0.2, 0.5), (0.03, 0.5), (0.03, 0.0)] {
            let shares = Responsiveness::shares(traits.0, traits.1);
            assert!((shares.iter().sum::<f64>() - 1.0).abs() < 1e-9, "{shares:?}");
        }
    }
}
