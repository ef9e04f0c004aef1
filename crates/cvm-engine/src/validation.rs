//! The one validation step every input event passes before it touches
//! state, and the machine-readable reasons an event is refused.
//!
//! Producers are outside our control: a retailer's stream will, sooner or
//! later, carry a price of `i64::MAX`, a timestamp of 0, a 10 MB search
//! query or an enum value from a newer schema. Each of those used to reach
//! arithmetic or state: one message could panic the ingest thread (and,
//! because its offset was never stored, every restart after it) or wipe a
//! customer's purchase windows. Here every field the core reads is bounded
//! first, so the arithmetic after it works on values whose sums and
//! products fit (the arithmetic itself still saturates, as a second line).
//!
//! A refused event goes to the dead-letter topic with its [`Reason`]'s code
//! in a header, and is counted by that code. What is checked, by kind:
//!
//! | field | rule |
//! |---|---|
//! | `event_id` / `request_id`, `customer_id`, `device_id` | present where the kind needs them; at most `max_id_bytes` |
//! | `timestamp_ms` | from `earliest_timestamp_ms` (2000-01-01) to before 2100-01-01, and inside the window around the partition's clock: at most `max_event_age` before it, at most `max_event_lead` after the wall clock (see [`TimeWindow`]) |
//! | purchase lines | 1 to `max_lines`; `quantity` ≤ `max_quantity` (0 means 1); unit price and cost in 0..=`max_amount_minor` |
//! | `sku`, `category`, `store_id`, `currency`, `offer_id`, `query`, `time_zone` | at most `max_text_bytes` |
//! | enums (`kind`, `channel`) | a value this version knows (an unknown app event kind or channel is refused, not guessed) |
//! | `utc_offset_minutes` | within ±18 h |

use std::time::Duration;

use cvm_proto::v1::{AppEventKind, Channel, PurchaseChannel};
use serde::{Deserialize, Serialize};

pub use crate::events::{Reason, Rejection};
use crate::{events::Event, time::millis};

/// The default earliest timestamp accepted: 2000-01-01T00:00:00Z.
pub const EARLIEST_MS: i64 = 946_684_800_000;
/// The first timestamp refused: 2100-01-01T00:00:00Z.
pub const LATEST_MS: i64 = 4_102_444_800_000;
/// The largest UTC offset of any time zone, with margin, in minutes.
const MAX_UTC_OFFSET_MINUTES: u32 = 18 * 60;

/// Bounds on input events (`engine.input` in the config file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InputLimits {
    /// How far an event may lie before the partition's clock (on the wall
    /// clock: before now; in event time: before the partition's watermark;
    /// in a replay also how far after the latest event read).
    #[serde(with = "humantime_serde")]
    pub max_event_age: Duration,
    /// How far after the wall clock an event may lie (clock skew of
    /// producers and devices).
    #[serde(with = "humantime_serde")]
    pub max_event_lead: Duration,
    /// The largest unit price or cost, in minor units.
    pub max_amount_minor: i64,
    /// The largest quantity of one purchase line.
    pub max_quantity: u32,
    /// The earliest event time accepted at all, epoch ms (default
    /// 2000-01-01; lower it to import older history).
    pub earliest_timestamp_ms: i64,
    /// The most lines one purchase may have.
    pub max_lines: usize,
    /// The longest id (event, customer, device, request), in bytes.
    pub max_id_bytes: usize,
    /// The longest free text (sku, category, query, time zone, …), in bytes.
    pub max_text_bytes: usize,
}

impl Default for InputLimits {
    fn default() -> Self {
        Self {
            max_event_age: Duration::from_secs(30 * 86_400),
            max_event_lead: Duration::from_secs(3_600),
            max_amount_minor: 10_000_000_000,
            max_quantity: 100_000,
            max_lines: 1_000,
            earliest_timestamp_ms: EARLIEST_MS,
            max_id_bytes: 256,
            max_text_bytes: 1_024,
        }
    }
}

impl InputLimits {
    /// Every problem serde cannot see, as `path: problem; fix`.
    pub fn problems(&self, path: &str) -> Vec<String> {
        let mut errors = Vec::new();
        let day = Duration::from_secs(86_400);
        if self.max_event_age < day || self.max_event_age > 3_650 * day {
            errors.push(format!("{path}.max_event_age: must be between 1d and 3650d"));
        }
        if self.max_event_lead > 7 * day {
            errors.push(format!("{path}.max_event_lead: must be at most 7d"));
        }
        // Bounds that keep a purchase's sums far from overflow:
        // lines × quantity × amount stays below 2^63 with room to add a year of them.
        if !(1..=1_000_000_000_000).contains(&self.max_amount_minor) {
            errors.push(format!("{path}.max_amount_minor: must be between 1 and 1000000000000"));
        }
        if !(1..=1_000_000).contains(&self.max_quantity) {
            errors.push(format!("{path}.max_quantity: must be between 1 and 1000000"));
        }
        if !(1..=10_000).contains(&self.max_lines) {
            errors.push(format!("{path}.max_lines: must be between 1 and 10000"));
        }
        if !(8..=4_096).contains(&self.max_id_bytes) {
            errors.push(format!("{path}.max_id_bytes: must be between 8 and 4096"));
        }
        if !(8..=65_536).contains(&self.max_text_bytes) {
            errors.push(format!("{path}.max_text_bytes: must be between 8 and 65536"));
        }
        if !(0..LATEST_MS).contains(&self.earliest_timestamp_ms) {
            errors.push(format!("{path}.earliest_timestamp_ms: must be between 0 and {LATEST_MS} (2100-01-01)"));
        }
        errors
    }
}

/// The timestamps accepted now on one partition, from its clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeWindow {
    /// The earliest accepted.
    pub from_ms: i64,
    /// The latest accepted.
    pub to_ms: i64,
}

impl TimeWindow {
    /// On the wall clock: from `max_event_age` before now to `max_event_lead` after.
    pub fn around_wall(limits: &InputLimits, wall_ms: i64) -> Self {
        Self::clamped(
            limits,
            wall_ms.saturating_sub(millis(limits.max_event_age)),
            wall_ms.saturating_add(millis(limits.max_event_lead)),
        )
    }

    /// In event time: from `max_event_age` before the `latest` event time
    /// read on the partition (from any input; none before the first); up
    /// to `max_event_lead` after the real wall clock where there is one
    /// (the Kafka edge), else up to `max_event_age` after `latest` (a
    /// replay of recorded history, whose first event is taken as it is).
    ///
    /// Only a real clock can bound the future safely: a window centred on
    /// the events alone lets the first one decide — a stale first event
    /// would refuse every current one after it, a far-future one would
    /// refuse everything else and fire every timer.
    pub fn in_event_time(limits: &InputLimits, latest_ms: Option<i64>, wall_ms: Option<i64>) -> Self {
        let age = millis(limits.max_event_age);
        let from = latest_ms.map_or(i64::MIN, |l| l.saturating_sub(age));
        let to = match (wall_ms, latest_ms) {
            (Some(wall), _) => wall.saturating_add(millis(limits.max_event_lead)),
            (None, Some(latest)) => latest.saturating_add(age),
            (None, None) => i64::MAX,
        };
        Self::clamped(limits, from, to)
    }

    /// Any plausible time: from `earliest_timestamp_ms` to before 2100.
    pub fn anytime(limits: &InputLimits) -> Self {
        Self::clamped(limits, i64::MIN, i64::MAX)
    }

    fn clamped(limits: &InputLimits, from_ms: i64, to_ms: i64) -> Self {
        Self { from_ms: from_ms.max(limits.earliest_timestamp_ms), to_ms: to_ms.min(LATEST_MS - 1) }
    }
}

/// Checks `event` against `limits` and `window`; see the module docs.
pub fn validate(event: &Event, limits: &InputLimits, window: TimeWindow) -> Result<(), Rejection> {
    let check = Checker { limits };
    match event {
        Event::Purchase(p) => {
            check.id("event_id", &p.event_id)?;
            check.id("customer_id", &p.customer_id)?;
            check.time(p.timestamp_ms, window)?;
            check.enumerated("channel", PurchaseChannel::try_from(p.channel).is_ok(), p.channel)?;
            check.text("store_id", &p.store_id)?;
            check.text("currency", &p.currency)?;
            check.text("offer_id", &p.offer_id)?;
            if p.lines.is_empty() || p.lines.len() > limits.max_lines {
                return Err(Rejection::new(
                    Reason::LineCount,
                    format!("purchase has {} lines; 1 to {} are accepted", p.lines.len(), limits.max_lines),
                ));
            }
            for (i, line) in p.lines.iter().enumerate() {
                check.text(&format!("lines[{i}].sku"), &line.sku)?;
                check.text(&format!("lines[{i}].category"), &line.category)?;
                if line.quantity > limits.max_quantity {
                    return Err(Rejection::new(
                        Reason::QuantityOutOfRange,
                        format!("lines[{i}].quantity {} is above {}", line.quantity, limits.max_quantity),
                    ));
                }
                check.amount(&format!("lines[{i}].unit_price_minor"), line.unit_price_minor)?;
                check.amount(&format!("lines[{i}].unit_cost_minor"), line.unit_cost_minor)?;
            }
        }
        Event::App(a) => {
            check.id("event_id", &a.event_id)?;
            if a.customer_id.is_empty() && a.device_id.is_empty() {
                return Err(Rejection::new(Reason::MissingField, "app event without customer_id or device_id"));
            }
            check.optional_id("customer_id", &a.customer_id)?;
            check.optional_id("device_id", &a.device_id)?;
            check.time(a.timestamp_ms, window)?;
            let known = AppEventKind::try_from(a.kind).is_ok_and(|k| k != AppEventKind::Unspecified);
            check.enumerated("kind", known, a.kind)?;
            check.text("sku", &a.sku)?;
            check.text("category", &a.category)?;
            check.text("offer_id", &a.offer_id)?;
            check.text("query", &a.query)?;
            if a.quantity > limits.max_quantity {
                return Err(Rejection::new(
                    Reason::QuantityOutOfRange,
                    format!("quantity {} is above {}", a.quantity, limits.max_quantity),
                ));
            }
        }
        Event::Identify(i) => {
            check.id("event_id", &i.event_id)?;
            check.id("customer_id", &i.customer_id)?;
            check.id("device_id", &i.device_id)?;
            check.time(i.timestamp_ms, window)?;
        }
        Event::Consent(c) => {
            check.id("event_id", &c.event_id)?;
            check.id("customer_id", &c.customer_id)?;
            check.time(c.timestamp_ms, window)?;
            check.enumerated("channel", Channel::try_from(c.channel).is_ok(), c.channel)?;
            check.text("time_zone", &c.time_zone)?;
            if c.utc_offset_minutes.unsigned_abs() > MAX_UTC_OFFSET_MINUTES {
                return Err(Rejection::new(
                    Reason::OutOfRange,
                    format!("utc_offset_minutes {} is beyond ±{MAX_UTC_OFFSET_MINUTES}", c.utc_offset_minutes),
                ));
            }
        }
        Event::DeviceLink(l) => {
            check.id("event_id", &l.event_id)?;
            check.id("device_id", &l.device_id)?;
            check.id("customer_id", &l.customer_id)?;
            // Links are cvm's own; an old one (a lagging partition) still holds.
            check.time(l.timestamp_ms, TimeWindow::anytime(limits))?;
        }
        Event::Erase(e) => {
            check.id("request_id", &e.request_id)?;
            check.id("customer_id", &e.customer_id)?;
            // An erasure is honoured whenever it was asked for: only a
            // plausible timestamp is required, not a recent one.
            check.time(e.timestamp_ms, TimeWindow::anytime(limits))?;
        }
    }
    Ok(())
}

struct Checker<'a> {
    limits: &'a InputLimits,
}

impl Checker<'_> {
    fn id(&self, field: &str, value: &str) -> Result<(), Rejection> {
        if value.is_empty() {
            return Err(Rejection::new(
                Reason::MissingField,
                format!("{field} is empty; producers must set it (event ids must be unique per producer)"),
            ));
        }
        self.optional_id(field, value)
    }

    fn optional_id(&self, field: &str, value: &str) -> Result<(), Rejection> {
        self.bounded(field, value, self.limits.max_id_bytes)
    }

    fn text(&self, field: &str, value: &str) -> Result<(), Rejection> {
        self.bounded(field, value, self.limits.max_text_bytes)
    }

    fn bounded(&self, field: &str, value: &str, max: usize) -> Result<(), Rejection> {
        if value.len() > max {
            return Err(Rejection::new(Reason::TooLong, format!("{field} is {} bytes; at most {max}", value.len())));
        }
        Ok(())
    }

    fn time(&self, at_ms: i64, window: TimeWindow) -> Result<(), Rejection> {
        if (window.from_ms..=window.to_ms).contains(&at_ms) {
            return Ok(());
        }
        let side = if at_ms < window.from_ms { "before" } else { "after" };
        Err(Rejection::new(
            Reason::TimestampOutOfWindow,
            format!(
                "timestamp_ms {at_ms} is {side} the accepted window {}..={} (epoch ms, around the partition's clock; see engine.input)",
                window.from_ms, window.to_ms,
            ),
        ))
    }

    fn amount(&self, field: &str, value: i64) -> Result<(), Rejection> {
        if (0..=self.limits.max_amount_minor).contains(&value) {
            return Ok(());
        }
        Err(Rejection::new(
            Reason::AmountOutOfRange,
            format!("{field} {value} is outside 0..={} (minor units)", self.limits.max_amount_minor),
        ))
    }

    fn enumerated(&self, field: &str, known: bool, value: i32) -> Result<(), Rejection> {
        if known {
            return Ok(());
        }
        Err(Rejection::new(Reason::UnknownEnum, format!("{field} {value} is not a value this version knows")))
    }
}

#[cfg(test)]
mod tests {
    use cvm_proto::v1::{AppEvent, Consent, EraseRequest, Identify, Purchase, PurchaseLine};

    use super::*;

    const NOW: i64 = 1_800_000_000_000;

    fn purchase(edit: impl FnOnce(&mut Purchase)) -> Event {
        let mut p = Purchase {
            event_id: "e".into(),
            customer_id: "c".into(),
            timestamp_ms: NOW,
            lines: vec![PurchaseLine {
                sku: "s".into(),
                quantity: 2,
                unit_price_minor: 500,
                unit_cost_minor: 300,
                ..Default::default()
            }],
            ..Default::default()
        };
        edit(&mut p);
        Event::Purchase(p)
    }

    fn app(edit: impl FnOnce(&mut AppEvent)) -> Event {
        let mut a = AppEvent {
            event_id: "e".into(),
            customer_id: "c".into(),
            timestamp_ms: NOW,
            kind: AppEventKind::AppOpen as i32,
            ..Default::default()
        };
        edit(&mut a);
        Event::App(a)
    }

    fn reason(event: &Event) -> Option<&'static str> {
        let limits = InputLimits::default();
        validate(event, &limits, TimeWindow::around_wall(&limits, NOW)).err().map(|r| r.reason.code())
    }

    #[test]
    fn the_extreme_values_that_used_to_panic_are_refused_by_name() {
        let cases: Vec<(Event, &str)> = vec![
            (purchase(|p| p.timestamp_ms = i64::MIN), "timestamp_out_of_window"),
            (purchase(|p| p.timestamp_ms = i64::MAX), "timestamp_out_of_window"),
            (purchase(|p| p.timestamp_ms = 0), "timestamp_out_of_window"),
            (purchase(|p| p.timestamp_ms = 253_402_300_799_000), "timestamp_out_of_window"), // year 9999
            (purchase(|p| p.timestamp_ms = NOW - 31 * 86_400_000), "timestamp_out_of_window"),
            (purchase(|p| p.timestamp_ms = NOW + 2 * 3_600_000), "timestamp_out_of_window"),
            (purchase(|p| p.lines[0].unit_price_minor = i64::MAX), "amount_out_of_range"),
            (purchase(|p| p.lines[0].unit_price_minor = i64::MIN), "amount_out_of_range"),
            (purchase(|p| p.lines[0].unit_cost_minor = -1), "amount_out_of_range"),
            (purchase(|p| p.lines[0].quantity = u32::MAX), "quantity_out_of_range"),
            (purchase(|p| p.lines.clear()), "line_count"),
            (purchase(|p| p.lines = vec![p.lines[0].clone(); 1_001]), "line_count"),
            (purchase(|p| p.event_id.clear()), "missing_field"),
            (purchase(|p| p.customer_id.clear()), "missing_field"),
            (purchase(|p| p.customer_id = "c".repeat(257)), "too_long"),
            (purchase(|p| p.lines[0].category = "x".repeat(1_025)), "too_long"),
            (purchase(|p| p.channel = 7), "unknown_enum"),
            (app(|a| a.kind = 42), "unknown_enum"),
            (app(|a| a.kind = 0), "unknown_enum"),
            (app(|a| a.query = "q".repeat(10_000_000)), "too_long"),
            (app(|a| a.customer_id.clear()), "missing_field"),
            (app(|a| a.quantity = u32::MAX), "quantity_out_of_range"),
            (
                Event::Consent(Consent {
                    event_id: "e".into(),
                    customer_id: "c".into(),
                    timestamp_ms: NOW,
                    utc_offset_minutes: i32::MIN,
                    ..Default::default()
                }),
                "out_of_range",
            ),
            (
                Event::Identify(Identify {
                    event_id: "e".into(),
                    customer_id: "c".into(),
                    timestamp_ms: NOW,
                    ..Default::default()
                }),
                "missing_field",
            ),
        ];
        for (event, want) in &cases {
            assert_eq!(reason(event), Some(*want), "{event:?}");
        }
        assert_eq!(reason(&purchase(|_| {})), None);
        assert_eq!(reason(&app(|a| a.customer_id.clear())), Some("missing_field"), "needs a customer or a device");
        assert_eq!(
            reason(&app(|a| {
                a.customer_id.clear();
                a.device_id = "d".into()
            })),
            None
        );
    }

    #[test]
    fn erasure_is_accepted_whenever_it_was_asked_for() {
        let old = Event::Erase(EraseRequest {
            request_id: "r".into(),
            customer_id: "c".into(),
            timestamp_ms: NOW - 400 * 86_400_000,
        });
        assert_eq!(reason(&old), None);
    }

    #[test]
    fn event_time_windows_follow_the_partition_and_the_real_clock() {
        let limits = InputLimits::default();
        let month = 30 * 86_400_000;
        let open = TimeWindow::in_event_time(&limits, None, None);
        assert_eq!((open.from_ms, open.to_ms), (EARLIEST_MS, LATEST_MS - 1), "a replay takes its first event as it is");
        let replay = TimeWindow::in_event_time(&limits, Some(NOW), None);
        assert_eq!((replay.from_ms, replay.to_ms), (NOW - month, NOW + month), "nights and weekends fit");
        let stale_first = TimeWindow::in_event_time(&limits, Some(NOW - 12 * month), Some(NOW));
        assert!(
            (stale_first.from_ms..=stale_first.to_ms).contains(&NOW),
            "a stale first event does not lock out the present"
        );
        let live = TimeWindow::in_event_time(&limits, None, Some(NOW));
        assert_eq!(live.to_ms, NOW + 3_600_000, "the future is bounded by the real clock from the first event on");
        let near_max = TimeWindow::around_wall(&limits, i64::MAX);
        assert_eq!(near_max.to_ms, LATEST_MS - 1, "saturates and clamps");
    }

    #[test]
    fn limits_are_checked_with_their_paths() {
        let bad =
            InputLimits { max_amount_minor: 0, max_lines: 0, max_event_age: Duration::ZERO, ..InputLimits::default() };
        let problems = bad.problems("engine.input").join("\n");
        for field in ["engine.input.max_event_age", "engine.input.max_amount_minor", "engine.input.max_lines"] {
            assert!(problems.contains(field), "{problems}");
        }
        assert!(InputLimits::default().problems("x").is_empty());
    }
}
