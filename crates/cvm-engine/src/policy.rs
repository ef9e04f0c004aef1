//! Contact policy: how often, and when, the customer may be written to.
//!
//! The policy is layered. [`ContactPolicy`] holds the global defaults (the
//! engine's configuration, overridden by a `policy/global` document on the
//! config topic). Campaign and offer documents carry a [`PolicyOverride`]:
//! its caps are *added* and count only that campaign's or offer's contacts;
//! its other settings *replace* the global ones for that offer (offer over
//! campaign over global). [`OfferPolicy`] is that merge for one offer, and
//! [`OfferPolicy::check`] the verdict for one contact, in a fixed order:
//!
//! 1. fatigue: the offer was ignored too often lately → suppressed;
//! 2. dismiss cooldown: a push was dismissed lately → no push (suppressed);
//! 3. caps: global, campaign, offer, each over a sliding window → capped;
//! 4. minimum gap since the previous contact → capped;
//! 5. quiet hours in the customer's local time → a push is deferred to
//!    their end (stories are pulled by the customer, so they are shown).
//!
//! Everything is a pure function of the profile and the time, so replays
//! give the same verdicts.

use std::time::Duration;

use cvm_proto::v1::{Channel, Outcome};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{
    profile::{Contact, Profile, MAX_CONTACTS},
    time::{duration_problem, millis},
};

const MINUTE_MS: i64 = 60_000;
const MINUTES_PER_DAY: i64 = 24 * 60;

/// Which contacts a cap counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CapChannel {
    /// Contacts on push.
    Push,
    /// Contacts on stories.
    Stories,
    /// Contacts on every channel together.
    All,
}

impl CapChannel {
    fn counts(self, channel: i32) -> bool {
        match self {
            CapChannel::Push => channel == Channel::Push as i32,
            CapChannel::Stories => channel == Channel::Stories as i32,
            CapChannel::All => true,
        }
    }
    fn applies_to(self, channel: Channel) -> bool {
        self == CapChannel::All || self.counts(channel as i32)
    }
}

/// At most `max` contacts on `channel` within `window`. Where the rule is
/// written decides whose contacts it counts: the customer's (global), the
/// campaign's or the offer's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CapRule {
    /// The channel counted (`all` = every channel together).
    #[serde(default = "all_channels")]
    pub channel: CapChannel,
    /// Contacts allowed in the window.
    pub max: u32,
    /// Window length, e.g. `24h` or `7d`.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub window: Duration,
}

fn all_channels() -> CapChannel {
    CapChannel::All
}

/// A time of day, written `"HH:MM"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, JsonSchema)]
#[schemars(with = "String")]
pub struct TimeOfDay {
    minutes: u16,
}

impl TimeOfDay {
    /// `hours:minutes`.
    pub fn new(hours: u16, minutes: u16) -> Self {
        Self { minutes: (hours % 24) * 60 + minutes % 60 }
    }
}

impl std::fmt::Display for TimeOfDay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:02}:{:02}", self.minutes / 60, self.minutes % 60)
    }
}

impl Serialize for TimeOfDay {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for TimeOfDay {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let parsed = text.split_once(':').and_then(|(h, m)| Some((h.parse::<u16>().ok()?, m.parse::<u16>().ok()?)));
        match parsed {
            Some((h, m)) if h < 24 && m < 60 && text.len() == 5 => Ok(Self::new(h, m)),
            _ => {
                Err(serde::de::Error::custom(format!("{text:?} is not a time of day; write \"HH:MM\", e.g. \"21:30\"")))
            }
        }
    }
}

/// No push between `from` and `to`, in the customer's local time; `from`
/// after `to` spans midnight. `from` equal to `to` turns quiet hours off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QuietHours {
    /// Start, e.g. `"21:00"`.
    pub from: TimeOfDay,
    /// End, e.g. `"08:00"`: deferred pushes are re-decided then.
    pub to: TimeOfDay,
}

impl QuietHours {
    /// When the quiet period containing `now_ms` ends, if `now_ms` (shifted to
    /// local time by `utc_offset_minutes`) falls in one.
    pub fn ends_after(&self, now_ms: i64, utc_offset_minutes: i32) -> Option<i64> {
        let (from, to) = (i64::from(self.from.minutes), i64::from(self.to.minutes));
        let minute = (now_ms.div_euclid(MINUTE_MS) + i64::from(utc_offset_minutes)).rem_euclid(MINUTES_PER_DAY);
        let quiet = if from < to { (from..to).contains(&minute) } else { minute >= from || minute < to };
        (from != to && quiet).then(|| {
            let wait = (to - minute).rem_euclid(MINUTES_PER_DAY);
            now_ms.div_euclid(MINUTE_MS) * MINUTE_MS + wait * MINUTE_MS
        })
    }
}

/// "Ignored `ignored` times within `within` → not offered again for
/// `suppress_for`." A push is ignored when it is dismissed or expires
/// without being opened or redeemed; stories, pulled by the customer, never
/// count as ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Fatigue {
    /// Ignored contacts that trigger suppression (0 turns fatigue off).
    pub ignored: u32,
    /// Within how long, e.g. `30d`.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub within: Duration,
    /// How long the offer is then suppressed for the customer, e.g. `60d`.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub suppress_for: Duration,
}

/// The global contact policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ContactPolicy {
    /// Caps over every contact of the customer; all must allow a contact.
    pub caps: Vec<CapRule>,
    /// Minimum time between two contacts of different decisions (0 = none).
    #[serde(with = "humantime_serde")]
    pub min_gap: Duration,
    /// No push in these local hours; pushes are deferred to their end.
    pub quiet_hours: QuietHours,
    /// No push for this long after the customer dismissed one (0 = none).
    #[serde(with = "humantime_serde")]
    pub dismiss_cooldown: Duration,
    /// Per-offer fatigue suppression.
    pub fatigue: Fatigue,
    /// Offset from UTC (minutes) for customers whose time zone is unknown.
    pub default_utc_offset_minutes: i32,
}

impl Default for ContactPolicy {
    /// A conservative retail default: push at most once a day and three
    /// times a week, stories at most five a day, six contacts a week in all,
    /// an hour between contacts, no push from 21:00 to 08:00, three days of
    /// quiet after a dismissed push, and an offer ignored twice in 30 days
    /// rests for 60.
    fn default() -> Self {
        let rule = |channel, max, hours: u64| CapRule { channel, max, window: Duration::from_secs(hours * 3600) };
        Self {
            caps: vec![
                rule(CapChannel::Push, 1, 24),
                rule(CapChannel::Push, 3, 24 * 7),
                rule(CapChannel::Stories, 5, 24),
                rule(CapChannel::All, 6, 24 * 7),
            ],
            min_gap: Duration::from_secs(3600),
            quiet_hours: QuietHours { from: TimeOfDay::new(21, 0), to: TimeOfDay::new(8, 0) },
            dismiss_cooldown: Duration::from_secs(3 * 86_400),
            fatigue: Fatigue {
                ignored: 2,
                within: Duration::from_secs(30 * 86_400),
                suppress_for: Duration::from_secs(60 * 86_400),
            },
            default_utc_offset_minutes: 0,
        }
    }
}

impl ContactPolicy {
    /// Every problem of the policy, each prefixed by `path`.
    pub fn problems(&self, path: &str) -> Vec<String> {
        let mut out = caps_problems(&self.caps, &format!("{path}.caps"));
        out.extend(fatigue_problems(&self.fatigue, &format!("{path}.fatigue")));
        out.extend(duration_problem(&format!("{path}.min_gap"), self.min_gap));
        out.extend(duration_problem(&format!("{path}.dismiss_cooldown"), self.dismiss_cooldown));
        if self.default_utc_offset_minutes.unsigned_abs() > 14 * 60 {
            out.push(format!("{path}.default_utc_offset_minutes: must be within ±840 (UTC-14 to UTC+14)"));
        }
        out
    }

    /// This policy with `o`'s settings applied (the `policy/global` document).
    pub fn overridden(&self, o: &PolicyOverride) -> Self {
        let mut caps = self.caps.clone();
        if !o.caps.is_empty() {
            caps.clone_from(&o.caps);
        }
        Self {
            caps,
            min_gap: o.min_gap.unwrap_or(self.min_gap),
            quiet_hours: o.quiet_hours.unwrap_or(self.quiet_hours),
            dismiss_cooldown: o.dismiss_cooldown.unwrap_or(self.dismiss_cooldown),
            fatigue: o.fatigue.unwrap_or(self.fatigue),
            default_utc_offset_minutes: self.default_utc_offset_minutes,
        }
    }

    /// How long contact history must be kept for these caps and fatigue.
    pub fn horizon_ms(&self) -> i64 {
        let caps = self.caps.iter().map(|c| millis(c.window)).max().unwrap_or(0);
        caps.max(millis(self.fatigue.within).saturating_add(millis(self.fatigue.suppress_for)))
    }
}

/// Contact-policy settings of a campaign or an offer (or, as the
/// `policy/global` document, of everyone). Caps are added and count the
/// campaign's or offer's own contacts; the other fields replace the global
/// setting for its offers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyOverride {
    /// Caps counting this campaign's (or offer's) contacts, e.g.
    /// `[{channel: push, max: 2, window: 7d}]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub caps: Vec<CapRule>,
    /// Minimum time since the customer's previous contact, e.g. `4h`.
    #[serde(default, with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub min_gap: Option<Duration>,
    /// Quiet hours, e.g. `{from: "21:00", to: "08:00"}`; equal times turn them off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quiet_hours: Option<QuietHours>,
    /// No push for this long after a dismissed push, e.g. `3d`.
    #[serde(default, with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub dismiss_cooldown: Option<Duration>,
    /// Fatigue suppression of the offer(s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fatigue: Option<Fatigue>,
}

impl PolicyOverride {
    /// Every problem, each prefixed by `path`.
    pub fn problems(&self, path: &str) -> Vec<String> {
        let mut out = caps_problems(&self.caps, &format!("{path}.caps"));
        if let Some(f) = &self.fatigue {
            out.extend(fatigue_problems(f, &format!("{path}.fatigue")));
        }
        out.extend(self.min_gap.and_then(|d| duration_problem(&format!("{path}.min_gap"), d)));
        out.extend(self.dismiss_cooldown.and_then(|d| duration_problem(&format!("{path}.dismiss_cooldown"), d)));
        out
    }
}

fn caps_problems(caps: &[CapRule], path: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, cap) in caps.iter().enumerate() {
        if cap.max as usize > MAX_CONTACTS {
            out.push(format!(
                "{path}[{i}].max: is {}; a profile keeps its last {MAX_CONTACTS} contacts, so a larger cap could not be counted; use at most {MAX_CONTACTS}",
                cap.max
            ));
        }
        out.extend(duration_problem(&format!("{path}[{i}].window"), cap.window));
        if cap.max == 0 {
            out.push(format!("{path}[{i}].max: is 0; pause the offer or campaign instead of capping it at zero"));
        }
        if cap.window.is_zero() {
            out.push(format!("{path}[{i}].window: is zero; give a window like \"24h\" or \"7d\""));
        }
    }
    out
}

fn fatigue_problems(f: &Fatigue, path: &str) -> Vec<String> {
    let mut out = Vec::new();
    if f.ignored > 0 && (f.within.is_zero() || f.suppress_for.is_zero()) {
        out.push(format!("{path}: within and suppress_for must be positive (or set ignored: 0 to turn fatigue off)"));
    }
    out.extend(duration_problem(&format!("{path}.within"), f.within));
    out.extend(duration_problem(&format!("{path}.suppress_for"), f.suppress_for));
    out
}

/// Why a contact may not be made now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Send it.
    Allow,
    /// Not now: capped or suppressed, with the reason.
    Block {
        /// `Capped` or `Suppressed`.
        outcome: Outcome,
        /// Which rule, in words.
        reason: String,
        /// For fatigue: until when the offer rests for this customer (to be
        /// remembered on the profile).
        suppressed_until_ms: Option<i64>,
    },
    /// A push in quiet hours: decide it again at `until_ms`.
    Defer {
        /// The end of the quiet hours.
        until_ms: i64,
        /// The rule, in words.
        reason: String,
    },
}

/// The policy for one offer: global defaults with its campaign's and its own
/// overrides applied.
#[derive(Debug, Clone, Copy)]
pub struct OfferPolicy<'a> {
    /// The global policy.
    pub global: &'a ContactPolicy,
    /// The campaign's settings, if it has a document.
    pub campaign: Option<&'a PolicyOverride>,
    /// The offer's settings.
    pub offer: &'a PolicyOverride,
}

/// Hashed ids of the contact being considered, as stored on [`Contact`]s.
#[derive(Debug, Clone, Copy)]
pub struct ContactKey<'a> {
    /// Offer definition id.
    pub offer_id: &'a str,
    /// Campaign id.
    pub campaign_id: &'a str,
    /// `contact_hash(offer_id)`.
    pub offer: u64,
    /// `contact_hash(campaign_id)`.
    pub campaign: u64,
}

impl OfferPolicy<'_> {
    fn pick<T: Copy>(&self, f: impl Fn(&PolicyOverride) -> Option<T>, global: T) -> T {
        f(self.offer).or_else(|| self.campaign.and_then(&f)).unwrap_or(global)
    }

    /// The minimum gap in force.
    pub fn min_gap(&self) -> Duration {
        self.pick(|o| o.min_gap, self.global.min_gap)
    }

    /// The quiet hours in force.
    pub fn quiet_hours(&self) -> QuietHours {
        self.pick(|o| o.quiet_hours, self.global.quiet_hours)
    }

    /// The dismiss cooldown in force.
    pub fn dismiss_cooldown(&self) -> Duration {
        self.pick(|o| o.dismiss_cooldown, self.global.dismiss_cooldown)
    }

    /// The fatigue rule in force.
    pub fn fatigue(&self) -> Fatigue {
        self.pick(|o| o.fatigue, self.global.fatigue)
    }

    /// The verdict on contacting the customer of `profile` about `subject`
    /// on `channel` at `now_ms`. `earlier` is how many of the profile's
    /// contacts were made by earlier decisions: the minimum gap separates
    /// decisions, not the channels of one decision.
    pub fn check(
        &self,
        profile: &Profile,
        subject: ContactKey<'_>,
        channel: Channel,
        now_ms: i64,
        earlier: usize,
    ) -> Verdict {
        let block = |outcome, reason: String| Verdict::Block { outcome, reason, suppressed_until_ms: None };
        if let Some(until) = fatigued_until(profile, subject.offer, self.fatigue(), now_ms) {
            return Verdict::Block {
                outcome: Outcome::Suppressed,
                reason: format!("fatigue: {} ignored too often; rests until {}", subject.offer_id, iso(until)),
                suppressed_until_ms: Some(until),
            };
        }
        if channel == Channel::Push {
            let cooldown = millis(self.dismiss_cooldown());
            if profile.last_push_dismiss_ms.is_some_and(|t| cooldown > 0 && now_ms < t + cooldown) {
                let reason =
                    format!("dismiss cooldown: a push was dismissed within {}", human(self.dismiss_cooldown()));
                return block(Outcome::Suppressed, reason);
            }
        }
        let campaign_caps = self.campaign.map_or(&[][..], |c| c.caps.as_slice());
        let breached = breached_cap(profile, &self.global.caps, channel, now_ms, |_| true)
            .map(|rule| (String::new(), rule))
            .or_else(|| {
                breached_cap(profile, campaign_caps, channel, now_ms, |c| c.campaign == subject.campaign)
                    .map(|rule| (format!("campaign cap {}", subject.campaign_id), rule))
            })
            .or_else(|| {
                breached_cap(profile, &self.offer.caps, channel, now_ms, |c| c.offer == subject.offer)
                    .map(|rule| (format!("offer cap {}", subject.offer_id), rule))
            });
        if let Some((scope, rule)) = breached {
            let scope = if scope.is_empty() { "cap".to_owned() } else { scope };
            let counted = match rule.channel {
                CapChannel::Push => "push",
                CapChannel::Stories => "stories",
                CapChannel::All => "contacts",
            };
            let reason = format!("{scope}: {} {counted} in {}", rule.max, human(rule.window));
            return block(Outcome::Capped, reason);
        }
        let gap = millis(self.min_gap());
        if gap > 0 && profile.contacts[..earlier.min(profile.contacts.len())].iter().any(|c| c.at_ms > now_ms - gap) {
            return block(Outcome::Capped, format!("min gap: a contact within {}", human(self.min_gap())));
        }
        if channel == Channel::Push {
            let offset = profile.utc_offset_minutes(self.global.default_utc_offset_minutes);
            let quiet = self.quiet_hours();
            if let Some(until_ms) = quiet.ends_after(now_ms, offset) {
                let reason = format!(
                    "quiet hours {}–{} local (UTC{offset:+} min); deferred to {}",
                    quiet.from,
                    quiet.to,
                    iso(until_ms)
                );
                return Verdict::Defer { until_ms, reason };
            }
        }
        Verdict::Allow
    }
}

/// The first of `rules` on `channel` that the `counted` contacts of the
/// profile already use up at `now_ms`.
fn breached_cap<'r>(
    profile: &Profile,
    rules: &'r [CapRule],
    channel: Channel,
    now_ms: i64,
    counted: impl Fn(&Contact) -> bool,
) -> Option<&'r CapRule> {
    rules.iter().filter(|r| r.channel.applies_to(channel)).find(|rule| {
        let since = now_ms.saturating_sub(millis(rule.window));
        let used =
            profile.contacts.iter().filter(|c| c.at_ms > since && rule.channel.counts(c.channel) && counted(c)).count();
        used >= rule.max as usize
    })
}

/// Until when the offer rests for this customer, if it does: remembered
/// suppressions first, then the contact history.
fn fatigued_until(profile: &Profile, offer: u64, rule: Fatigue, now_ms: i64) -> Option<i64> {
    if let Some(s) = profile.suppressions.iter().find(|s| s.offer == offer && s.until_ms > now_ms) {
        return Some(s.until_ms);
    }
    if rule.ignored == 0 {
        return None;
    }
    let mut ignored: Vec<i64> =
        profile.contacts.iter().filter(|c| c.offer == offer).filter_map(|c| c.ignored_at(now_ms)).collect();
    ignored.sort_unstable();
    let n = rule.ignored as usize;
    let within = millis(rule.within);
    ignored
        .windows(n)
        .filter(|w| w[n - 1] - w[0] <= within)
        .map(|w| w[n - 1].saturating_add(millis(rule.suppress_for)))
        .filter(|&until| until > now_ms)
        .max()
}

fn human(d: Duration) -> String {
    if d.as_secs().is_multiple_of(86_400) && !d.is_zero() {
        format!("{}d", d.as_secs() / 86_400)
    } else {
        humantime::format_duration(d).to_string()
    }
}

fn iso(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;

    #[test]
    fn quiet_hours_span_midnight_in_local_time() {
        let q = QuietHours { from: TimeOfDay::new(21, 0), to: TimeOfDay::new(8, 0) };
        // 02:00 UTC in UTC: quiet until 08:00 UTC.
        assert_eq!(q.ends_after(2 * H, 0), Some(8 * H));
        // 02:00 UTC is 11:00 in Tokyo (UTC+9): not quiet.
        assert_eq!(q.ends_after(2 * H, 9 * 60), None);
        // 02:00 UTC is 21:00 in New York (UTC-5): quiet until 08:00 local = 13:00 UTC.
        assert_eq!(q.ends_after(2 * H, -5 * 60), Some(13 * H));
        // 12:00 UTC in UTC: not quiet; equal from/to: never quiet.
        assert_eq!(q.ends_after(12 * H, 0), None);
        let off = QuietHours { from: TimeOfDay::new(8, 0), to: TimeOfDay::new(8, 0) };
        assert_eq!(off.ends_after(2 * H, 0), None);
    }

    #[test]
    fn times_of_day_parse_strictly() {
        let ok: TimeOfDay = serde_json::from_str("\"21:30\"").unwrap();
        assert_eq!(ok, TimeOfDay::new(21, 30));
        for bad in ["\"24:00\"", "\"9:00\"", "\"21h\"", "\"21:60\""] {
            let e = serde_json::from_str::<TimeOfDay>(bad).unwrap_err().to_string();
            assert!(e.contains("HH:MM"), "{bad}: {e}");
        }
    }
}
