//! Durations in epoch milliseconds, the engine's one unit of time: every
//! timestamp on the wire and in state is milliseconds since the Unix epoch.

/// One second.
pub const SECOND_MS: i64 = 1_000;
/// One minute.
pub const MINUTE_MS: i64 = 60 * SECOND_MS;
/// One hour.
pub const HOUR_MS: i64 = 60 * MINUTE_MS;
/// One day (UTC; local days are the profile's time zone's business).
pub const DAY_MS: i64 = 24 * HOUR_MS;

/// The longest duration a document or the config may give (ten years):
/// long enough for any campaign, short enough that adding it to any
/// accepted timestamp cannot overflow.
pub const MAX_DURATION: std::time::Duration = std::time::Duration::from_secs(3_650 * 86_400);

/// `d` in milliseconds, saturating (durations are bounded by
/// [`MAX_DURATION`] where they are read; this keeps a missed one from wrapping).
pub fn millis(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The problem with duration `d` at `path`, if it is longer than [`MAX_DURATION`].
pub fn duration_problem(path: &str, d: std::time::Duration) -> Option<String> {
    (d > MAX_DURATION).then(|| format!("{path}: is longer than 3650d; use a shorter duration"))
}
