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
