//! Contact policy: how often the customer may be written to.
//!
//! Caps are sliding windows over the customer's contact history: "at most
//! `max` contacts on `channel` (or on any channel) in the last `window`".
//! A decision is capped when sending would break any rule.

use std::time::Duration;

use cvm_proto::v1::Channel;
use serde::{Deserialize, Serialize};

use crate::profile::Profile;

/// Which contacts a cap counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CapScope {
    /// Contacts on push.
    Push,
    /// Contacts on stories.
    Stories,
    /// Contacts on every channel together.
    All,
}

impl CapScope {
    fn counts(self, channel: i32) -> bool {
        match self {
            CapScope::Push => channel == Channel::Push as i32,
            CapScope::Stories => channel == Channel::Stories as i32,
            CapScope::All => true,
        }
    }
    fn applies_to(self, channel: Channel) -> bool {
        self == CapScope::All || self.counts(channel as i32)
    }
}

/// At most `max` contacts in scope within `window`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapRule {
    /// The contacts counted.
    pub scope: CapScope,
    /// Contacts allowed in the window.
    pub max: u32,
    /// Window length, e.g. "24h" or "7days".
    #[serde(with = "humantime_serde")]
    pub window: Duration,
}

/// The frequency caps in force.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContactPolicy {
    /// Every rule must allow a contact for it to be sent.
    pub caps: Vec<CapRule>,
}

impl Default for ContactPolicy {
    /// A conservative retail default: push at most once a day and three times
    /// a week, stories at most three a day, six contacts a week in all.
    fn default() -> Self {
        const HOUR: u64 = 3600;
        let rule = |scope, max, hours: u64| CapRule { scope, max, window: Duration::from_secs(hours * HOUR) };
        Self {
            caps: vec![
                rule(CapScope::Push, 1, 24),
                rule(CapScope::Push, 3, 24 * 7),
                rule(CapScope::Stories, 3, 24),
                rule(CapScope::All, 6, 24 * 7),
            ],
        }
    }
}

impl ContactPolicy {
    /// The longest window, i.e. how long contact history must be kept.
    pub fn horizon_ms(&self) -> i64 {
        self.caps.iter().map(|c| c.window.as_millis() as i64).max().unwrap_or(0)
    }

    /// The first rule that forbids a contact on `channel` at `now_ms`, if any.
    pub fn blocking_rule(&self, profile: &Profile, channel: Channel, now_ms: i64) -> Option<&CapRule> {
        self.caps.iter().filter(|r| r.scope.applies_to(channel)).find(|rule| {
            let since = now_ms - rule.window.as_millis() as i64;
            let used = profile.contacts.iter().filter(|c| c.at_ms > since && rule.scope.counts(c.channel)).count();
            used >= rule.max as usize
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    const H: i64 = 3_600_000;

    #[test]
    fn push_cap_is_a_sliding_window() {
        let policy = ContactPolicy::default();
        let mut p = Profile::default();
        assert!(policy.blocking_rule(&p, Channel::Push, 0).is_none());
        p.record_contact(Channel::Push, 0, policy.horizon_ms());
        let rule = policy.blocking_rule(&p, Channel::Push, 23 * H).expect("capped within 24h");
        assert_eq!((rule.scope, rule.max), (CapScope::Push, 1));
        assert!(policy.blocking_rule(&p, Channel::Push, 24 * H).is_none(), "window slides past the contact");
        // A push does not use up the stories budget.
        assert!(policy.blocking_rule(&p, Channel::Stories, H).is_none());
    }

    #[test]
    fn cross_channel_cap_counts_every_channel() {
        let policy = ContactPolicy {
            caps: vec![CapRule { scope: CapScope::All, max: 2, window: Duration::from_secs(7 * 24 * 3600) }],
        };
        let mut p = Profile::default();
        p.record_contact(Channel::Push, 0, policy.horizon_ms());
        p.record_contact(Channel::Stories, H, policy.horizon_ms());
        assert!(policy.blocking_rule(&p, Channel::Stories, 2 * H).is_some());
        assert!(policy.blocking_rule(&p, Channel::Push, 2 * H).is_some());
        assert!(policy.blocking_rule(&p, Channel::Push, 7 * 24 * H + 1).is_none());
    }

    #[test]
    fn weekly_push_cap_binds_after_daily_slots() {
        let policy = ContactPolicy::default();
        let mut p = Profile::default();
        for d in 0..3 {
            p.record_contact(Channel::Push, d * 24 * H, policy.horizon_ms());
        }
        let rule = policy.blocking_rule(&p, Channel::Push, 3 * 24 * H).unwrap();
        assert_eq!(rule.max, 3);
    }
}
