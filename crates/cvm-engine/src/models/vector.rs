//! The model feature vector: one function computes it, at decision time for
//! scoring and for the `model_features` every treated, held-out or held-back
//! (not incremental) decision records, which is what `cvm train` learns from.
//! Training and scoring therefore cannot disagree on what a feature means.
//!
//! Counts and money are log-compressed (`ln(1 + x)`) so that a few heavy
//! buyers do not dominate a linear model; rates are smoothed so that one
//! contact does not make a rate of 0 or 1.

use std::sync::OnceLock;

use cvm_proto::v1::Channel;

use crate::{
    features::{Features, Num},
    offers::OfferDefinition,
    profile::{Profile, Response},
    time::DAY_MS,
};

/// Every model feature: name and meaning, in vector order.
pub const FEATURES: [(&str, &str); 20] = [
    ("recency_log_days", "ln(1 + days since the last purchase); ln(366) without one"),
    ("tenure_log_days", "ln(1 + days since first seen)"),
    ("orders_30d", "orders in the last 30 days"),
    ("orders_90d", "orders in the last 90 days"),
    ("orders_365d_log", "ln(1 + orders in the last 365 days)"),
    ("revenue_90d_log", "ln(1 + revenue of the last 90 days, currency units)"),
    ("margin_365d_log", "ln(1 + margin of the last 365 days, currency units)"),
    ("avg_basket_margin_90d", "average order margin over 90 days, currency units"),
    ("app_inactive_log_days", "ln(1 + days since the last app event); ln(366) without one"),
    ("app_opens_30d", "app opens, decayed with a 30-day half-life"),
    ("story_views_30d", "stories viewed, decayed with a 30-day half-life"),
    ("push_open_rate", "(pushes opened + 1) / (pushes sent + 2), last year"),
    ("redemption_rate", "discount sensitivity: (offers redeemed + 0.5) / (offers sent + 5), last year"),
    ("contacts_30d", "offers sent in the last 30 days, all channels"),
    ("push_reachable", "1 if a push can be sent, else 0"),
    ("clv_12m_log", "ln(1 + estimated margin of the next 12 months, currency units)"),
    ("offer_category_share", "share of the customer's decayed spend in the offer's category (0 without one)"),
    ("offer_category_in_cart", "1 if a product of the offer's category is in the cart"),
    (
        "offer_category_viewed_share",
        "share of the customer's decayed product views and cart adds in the offer's category",
    ),
    ("discount_percent", "the discount offered, percent (the treatment's depth)"),
];

/// Length of the vector.
pub const LEN: usize = FEATURES.len();

/// Slot of the discount depth, the one feature set per ladder step.
pub const DISCOUNT_SLOT: usize = LEN - 1;
/// The offer's part of the vector: its last four slots.
pub const OFFER_SLOTS: usize = 4;
const CATEGORY_SHARE_SLOT: usize = LEN - OFFER_SLOTS;

/// Features the drift monitor watches besides the score: the ones that move
/// first when the economy turns (spend, frequency, recency, engagement).
pub const MONITORED: [usize; 5] = [0, 3, 5, 9, 15];

/// Identifies the vector's layout: names and meanings, hashed. An artifact
/// trained on another layout is refused.
pub fn schema_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| hash_of(&FEATURES))
}

/// The hash of a feature list: every name and meaning, in order.
fn hash_of(features: &[(&str, &str)]) -> String {
    let mut text = String::from("cvm-model-features/1");
    for (name, meaning) in features {
        text.push('\n');
        text.push_str(name);
        text.push('=');
        text.push_str(meaning);
    }
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(text.as_bytes()))
}

/// A model feature vector.
pub type Vector = [f64; LEN];

fn log1p_days(days: f64) -> f64 {
    days.min(365.0).ln_1p()
}

/// The customer's part of the vector (offer slots zero): computed once per
/// decision, then completed per candidate with [`for_offer`].
pub fn customer(features: &Features<'_>) -> Vector {
    let profile = features.profile();
    let now_ms = features.now_ms();
    let year_ago = now_ms - 365 * DAY_MS;
    let month_ago = now_ms - 30 * DAY_MS;
    let (mut pushes, mut opened, mut sent, mut redeemed, mut recent) = (0u32, 0u32, 0u32, 0u32, 0u32);
    for c in profile.contacts.iter().filter(|c| c.at_ms > year_ago) {
        sent += 1;
        recent += u32::from(c.at_ms > month_ago);
        redeemed += u32::from(c.response == Response::Redeemed);
        if c.channel == Channel::Push as i32 {
            pushes += 1;
            opened += u32::from(matches!(c.response, Response::Opened | Response::Redeemed));
        }
    }
    let engaged = profile.engagement.at(now_ms.div_euclid(DAY_MS) as i32);
    let positive_log = |x: f64| x.max(0.0).ln_1p();
    [
        log1p_days(features.num(Num::DAYS_SINCE_LAST_PURCHASE)),
        log1p_days(features.num(Num::DAYS_SINCE_FIRST_SEEN)),
        features.num(Num::ORDERS_30D),
        features.num(Num::ORDERS_90D),
        positive_log(features.num(Num::ORDERS_365D)),
        positive_log(features.num(Num::REVENUE_90D)),
        positive_log(features.num(Num::MARGIN_365D)),
        features.num(Num::AVG_BASKET_MARGIN_90D),
        log1p_days(features.num(Num::DAYS_SINCE_LAST_APP_ACTIVITY)),
        f64::from(engaged.app_opens),
        f64::from(engaged.story_views),
        (f64::from(opened) + 1.0) / (f64::from(pushes) + 2.0),
        (f64::from(redeemed) + 0.5) / (f64::from(sent) + 5.0),
        f64::from(recent),
        f64::from(u8::from(profile.reach.push())),
        positive_log(features.num(Num::CLV_12M)),
        0.0,
        0.0,
        0.0,
        0.0,
    ]
}

/// The offer's slots for this customer: category share of spend, category
/// in cart, category share of views, discount percent.
pub fn offer_part(profile: &Profile, offer: &OfferDefinition, discount_percent: u32) -> [f64; OFFER_SLOTS] {
    let Some(category) = offer.doc.category.as_deref() else {
        return [0.0, 0.0, 0.0, f64::from(discount_percent)];
    };
    [
        profile.category_share(category),
        f64::from(u8::from(profile.cart.iter().any(|l| l.category == category))),
        profile.viewed_share(category),
        f64::from(discount_percent),
    ]
}

/// `customer` completed with an offer's part.
pub fn complete(customer: &Vector, part: &[f64; OFFER_SLOTS]) -> Vector {
    let mut v = *customer;
    v[CATEGORY_SHARE_SLOT..].copy_from_slice(part);
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::EventFacts;

    #[test]
    fn names_are_unique_and_the_hash_changes_with_any_name_meaning_or_order() {
        let names: std::collections::HashSet<_> = FEATURES.iter().map(|f| f.0).collect();
        assert_eq!(names.len(), LEN);
        assert_eq!(schema_hash(), hash_of(&FEATURES));
        assert_eq!(schema_hash().len(), 16);
        let mut renamed = FEATURES;
        renamed[3].0 = "renamed";
        let mut redefined = FEATURES;
        redefined[3].1 = "now counted in weeks";
        let mut reordered = FEATURES;
        reordered.swap(1, 2);
        for other in [renamed, redefined, reordered] {
            assert_ne!(hash_of(&other), schema_hash(), "a model trained on other features must not load");
        }
        assert_eq!(FEATURES[DISCOUNT_SLOT].0, "discount_percent");
        assert_eq!(FEATURES[CATEGORY_SHARE_SLOT].0, "offer_category_share");
    }

    #[test]
    fn an_unknown_customer_has_neutral_values() {
        let p = Profile::default();
        let f = Features::compute(&p, EventFacts::default(), 400 * DAY_MS);
        let v = customer(&f);
        assert!((v[0] - 366f64.ln()).abs() < 1e-9, "never bought");
        assert!((v[11] - 0.5).abs() < 1e-9 && (v[12] - 0.1).abs() < 1e-9, "smoothed rates");
        let offer = crate::offers::definition::tests::sample();
        let w = complete(&v, &offer_part(&p, &offer, 15));
        assert_eq!(w[DISCOUNT_SLOT], 15.0);
        assert!(v.iter().chain(w.iter()).all(|x| x.is_finite()));
    }
}
