//! The variables offer expressions and templates can use, and their values
//! for one customer at one moment.
//!
//! [`schema()`] declares every variable with its CEL type and meaning (the
//! README's variable reference is this list). [`Features::compute`] fills a
//! fixed-size vector from the profile and the triggering event once per
//! decision; every compiled expression then reads slots from it, so a
//! thousand offers cost one feature computation, not a thousand.
//!
//! Money is in currency units (minor units / 100) so that marketers write
//! `revenue_90d > 50.0`, not `revenue_90d_minor > 5000`.

use std::sync::OnceLock;

use cvm_expr::{Env, Schema, Type};
use cvm_proto::v1::{AppEventKind, Purchase};

use crate::{
    events::{Event, EventKind},
    profile::Profile,
    time::{DAY_MS, HOUR_MS},
};

/// Days reported for "never" (no purchase, no app activity yet).
pub const NEVER_DAYS: f64 = 99_999.0;

macro_rules! slots {
    ($kind:ident: $($name:ident = $text:literal, $ty:ident, $doc:literal;)*) => {
        #[allow(non_camel_case_types, clippy::upper_case_acronyms)]
        #[derive(Debug, Clone, Copy)]
        #[repr(u16)]
        pub(crate) enum $kind { $($name,)* }
        impl $kind {
            const ALL: &'static [($kind, &'static str, Type, &'static str)] = &[$(($kind::$name, $text, Type::$ty, $doc),)*];
        }
    };
}

slots! { Num:
    DAYS_SINCE_LAST_PURCHASE = "days_since_last_purchase", Int, "Whole days since the last purchase (99999 if none).";
    DAYS_SINCE_FIRST_SEEN = "days_since_first_seen", Int, "Whole days since the customer's first event.";
    DAYS_SINCE_LAST_APP_ACTIVITY = "days_since_last_app_activity", Int, "Whole days since the last app event (99999 if none).";
    ORDERS_7D = "orders_7d", Int, "Orders in the last 7 days.";
    ORDERS_30D = "orders_30d", Int, "Orders in the last 30 days.";
    ORDERS_90D = "orders_90d", Int, "Orders in the last 90 days.";
    ORDERS_365D = "orders_365d", Int, "Orders in the last 365 days.";
    LIFETIME_ORDERS = "lifetime_orders", Int, "Orders since the customer was first seen.";
    REVENUE_30D = "revenue_30d", Double, "Revenue in the last 30 days, currency units.";
    REVENUE_90D = "revenue_90d", Double, "Revenue in the last 90 days, currency units.";
    REVENUE_365D = "revenue_365d", Double, "Revenue in the last 365 days, currency units.";
    MARGIN_90D = "margin_90d", Double, "Margin (revenue - cost of goods) in the last 90 days, currency units.";
    MARGIN_365D = "margin_365d", Double, "Margin in the last 365 days, currency units.";
    AVG_BASKET_VALUE_90D = "avg_basket_value_90d", Double, "Average order value over 90 days (0 without orders), currency units.";
    AVG_BASKET_MARGIN_90D = "avg_basket_margin_90d", Double, "Average order margin over 90 days (0 without orders), currency units.";
    CLV_12M = "clv_12m", Double, "Estimated margin of the next 12 months (customer lifetime value), currency units.";
    CART_LINES = "cart_lines", Int, "Lines in the cart.";
    CART_UNITS = "cart_units", Int, "Units in the cart.";
    CONTACTS_7D = "contacts_7d", Int, "Offers sent to the customer in the last 7 days, all channels.";
    LOCAL_HOUR = "local_hour", Int, "Hour of day (0-23) in the customer's time zone (UTC if unknown).";
    LOCAL_WEEKDAY = "local_weekday", Int, "Day of week in the customer's time zone, 1 = Monday ... 7 = Sunday.";
    EVENT_AMOUNT = "event.amount", Double, "The triggering purchase's total, currency units (0 for other events).";
    EVENT_QUANTITY = "event.quantity", Int, "Units in the triggering event (cart adds, purchases).";
}

slots! { Flag:
    HAS_APP = "has_app", Bool, "The customer uses the mobile app.";
    PUSH_REACHABLE = "push_reachable", Bool, "A push can be sent: app, token and consent.";
    STORIES_REACHABLE = "stories_reachable", Bool, "Stories can be shown: app, not revoked.";
    HAS_PURCHASED = "has_purchased", Bool, "At least one purchase is known.";
}

slots! { Text:
    FAVOURITE_CATEGORY = "favourite_category", String, "The category with the most (decayed) spend; empty if none.";
    TIME_ZONE = "time_zone", String, "IANA time zone, if known.";
    EVENT_KIND = "event.kind", String, "Kind of the triggering event (e.g. \"add_to_cart\"); empty for timers and sweeps.";
    EVENT_CATEGORY = "event.category", String, "Category of the triggering event (a purchase's largest line).";
    EVENT_SKU = "event.sku", String, "Product of the triggering event (a purchase's largest line).";
}

slots! { Func:
    CATEGORY_SHARE = "category_share", Double, "Share 0..1 of the customer's decayed spend in the category.";
    IN_CART = "in_cart", Bool, "The product (sku) is in the cart.";
    CART_HAS_CATEGORY = "cart_has_category", Bool, "A product of the category is in the cart.";
    BASKET_HAS_CATEGORY = "basket_has_category", Bool, "The triggering purchase has a line in the category.";
}

const NUMS: usize = Num::ALL.len();
const FLAGS: usize = Flag::ALL.len();
const TEXTS: usize = Text::ALL.len();

/// The schema offer expressions are checked against.
pub fn schema() -> &'static Schema {
    static SCHEMA: OnceLock<Schema> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        let mut s = Schema::new();
        for (slot, name, ty, doc) in Num::ALL {
            s = s.variable(name, *ty, *slot as u16, doc);
        }
        for (slot, name, ty, doc) in Flag::ALL {
            s = s.variable(name, *ty, *slot as u16, doc);
        }
        for (slot, name, ty, doc) in Text::ALL {
            s = s.variable(name, *ty, *slot as u16, doc);
        }
        for (id, name, ty, doc) in Func::ALL {
            s = s.function(name, *ty, *id as u16, doc);
        }
        s
    })
}

/// What is known of the event a decision is about (empty for timers and sweeps).
#[derive(Debug, Clone, Copy, Default)]
pub struct EventFacts<'a> {
    /// Kind, as written in documents.
    pub kind: Option<EventKind>,
    /// Category (a purchase's largest line).
    pub category: &'a str,
    /// Product (a purchase's largest line).
    pub sku: &'a str,
    /// A purchase's total, minor units.
    pub amount_minor: i64,
    /// Units.
    pub quantity: u32,
    /// The purchase, to test all its lines.
    pub purchase: Option<&'a Purchase>,
}

impl<'a> EventFacts<'a> {
    /// The facts of `event`.
    pub fn of(event: &'a Event) -> Self {
        match event {
            Event::Purchase(p) => {
                let line_total =
                    |l: &cvm_proto::v1::PurchaseLine| l.unit_price_minor.saturating_mul(i64::from(l.quantity.max(1)));
                let main = p.lines.iter().max_by_key(|l| line_total(l));
                EventFacts {
                    kind: Some(EventKind::Purchase),
                    category: main.map_or("", |l| l.category.as_str()),
                    sku: main.map_or("", |l| l.sku.as_str()),
                    amount_minor: p.lines.iter().map(line_total).sum(),
                    quantity: p.lines.iter().map(|l| l.quantity.max(1)).sum(),
                    purchase: Some(p),
                }
            }
            Event::App(a) => EventFacts {
                kind: EventKind::of_app_event(a.kind()),
                category: &a.category,
                sku: &a.sku,
                amount_minor: 0,
                quantity: if a.kind() == AppEventKind::AddToCart { a.quantity.max(1) } else { a.quantity },
                purchase: None,
            },
            Event::Identify(_) | Event::Consent(_) | Event::Erase(_) | Event::DeviceLink(_) => EventFacts::default(),
        }
    }
}

/// The feature vector of one customer at one moment; the [`Env`] every
/// offer expression is evaluated against.
#[derive(Debug, Clone)]
pub struct Features<'a> {
    nums: [f64; NUMS],
    flags: [bool; FLAGS],
    texts: [&'a str; TEXTS],
    profile: &'a Profile,
    event: EventFacts<'a>,
    now_ms: i64,
}

fn days_between(from_ms: i64, to_ms: i64) -> f64 {
    (to_ms.saturating_sub(from_ms).max(0) / DAY_MS) as f64
}

impl<'a> Features<'a> {
    /// Computes every feature of `profile` at `now_ms` for `event`.
    pub fn compute(profile: &'a Profile, event: EventFacts<'a>, now_ms: i64) -> Self {
        let (w7, w30, w90, w365) = (
            profile.window(now_ms, 7),
            profile.window(now_ms, 30),
            profile.window(now_ms, 90),
            profile.window(now_ms, 365),
        );
        let major = |minor: i64| minor as f64 / 100.0;
        let per_order = |minor: i64, orders: u32| if orders == 0 { 0.0 } else { major(minor) / f64::from(orders) };
        let local_ms = now_ms.saturating_add(i64::from(profile.utc_offset_minutes) * 60_000);
        let week_ms = 7 * DAY_MS;
        // 1970-01-01 was a Thursday (weekday 4).
        let weekday = ((local_ms.rem_euclid(week_ms) / DAY_MS + 3) % 7) + 1;
        let mut nums = [0.0; NUMS];
        let mut set = |slot: Num, v: f64| nums[slot as usize] = v;
        set(Num::DAYS_SINCE_LAST_PURCHASE, profile.last_purchase_ms.map_or(NEVER_DAYS, |t| days_between(t, now_ms)));
        set(Num::DAYS_SINCE_FIRST_SEEN, days_between(profile.first_seen_ms, now_ms));
        set(
            Num::DAYS_SINCE_LAST_APP_ACTIVITY,
            profile.last_app_activity_ms.map_or(NEVER_DAYS, |t| days_between(t, now_ms)),
        );
        set(Num::ORDERS_7D, f64::from(w7.orders));
        set(Num::ORDERS_30D, f64::from(w30.orders));
        set(Num::ORDERS_90D, f64::from(w90.orders));
        set(Num::ORDERS_365D, f64::from(w365.orders));
        set(Num::LIFETIME_ORDERS, profile.lifetime_orders as f64);
        set(Num::REVENUE_30D, major(w30.revenue_minor));
        set(Num::REVENUE_90D, major(w90.revenue_minor));
        set(Num::REVENUE_365D, major(w365.revenue_minor));
        set(Num::MARGIN_90D, major(w90.margin_minor));
        set(Num::MARGIN_365D, major(w365.margin_minor));
        set(Num::AVG_BASKET_VALUE_90D, per_order(w90.revenue_minor, w90.orders));
        set(Num::AVG_BASKET_MARGIN_90D, per_order(w90.margin_minor, w90.orders));
        set(Num::CLV_12M, profile.clv_12m_minor(now_ms) / 100.0);
        set(Num::CART_LINES, profile.cart.len() as f64);
        set(Num::CART_UNITS, profile.cart.iter().map(|l| f64::from(l.quantity)).sum());
        set(
            Num::CONTACTS_7D,
            profile.contacts.iter().filter(|c| c.at_ms > now_ms.saturating_sub(week_ms)).count() as f64,
        );
        set(Num::LOCAL_HOUR, (local_ms.rem_euclid(DAY_MS) / HOUR_MS) as f64);
        set(Num::LOCAL_WEEKDAY, weekday as f64);
        set(Num::EVENT_AMOUNT, major(event.amount_minor));
        set(Num::EVENT_QUANTITY, f64::from(event.quantity));
        let mut flags = [false; FLAGS];
        flags[Flag::HAS_APP as usize] = profile.reach.has_app;
        flags[Flag::PUSH_REACHABLE as usize] = profile.reach.push();
        flags[Flag::STORIES_REACHABLE as usize] = profile.reach.stories();
        flags[Flag::HAS_PURCHASED as usize] = profile.last_purchase_ms.is_some();
        let mut texts = [""; TEXTS];
        texts[Text::FAVOURITE_CATEGORY as usize] = profile.favourite_category().unwrap_or("");
        texts[Text::TIME_ZONE as usize] = &profile.time_zone;
        texts[Text::EVENT_KIND as usize] = event.kind.map_or("", EventKind::name);
        texts[Text::EVENT_CATEGORY as usize] = event.category;
        texts[Text::EVENT_SKU as usize] = event.sku;
        Self { nums, flags, texts, profile, event, now_ms }
    }

    /// The value of numeric variable `slot`.
    pub(crate) fn num(&self, slot: Num) -> f64 {
        self.nums[slot as usize]
    }

    /// The moment the features describe.
    pub fn now_ms(&self) -> i64 {
        self.now_ms
    }

    /// The profile the features were computed from.
    pub fn profile(&self) -> &'a Profile {
        self.profile
    }

    /// The event facts the features were computed with.
    pub fn event(&self) -> EventFacts<'a> {
        self.event
    }

    /// The value of variable `name` as text (for templates and messages).
    pub fn display(&self, name: &str) -> Option<String> {
        let (slot, ty) = schema().lookup(name)?;
        Some(self.display_slot(slot, ty))
    }

    /// The value in `slot` of type `ty` as text (slots from [`schema()`]).
    pub fn display_slot(&self, slot: u16, ty: Type) -> String {
        match ty {
            Type::Int => format!("{}", self.number(slot)),
            Type::Double => format!("{:.2}", self.number(slot)),
            Type::Bool => self.flag(slot).to_string(),
            Type::String => self.text(slot).to_owned(),
        }
    }
}

impl Env for Features<'_> {
    #[inline]
    fn number(&self, slot: u16) -> f64 {
        self.nums[slot as usize]
    }
    #[inline]
    fn flag(&self, slot: u16) -> bool {
        self.flags[slot as usize]
    }
    #[inline]
    fn text(&self, slot: u16) -> &str {
        self.texts[slot as usize]
    }
    fn call_number(&self, function: u16, arg: &str) -> f64 {
        debug_assert_eq!(function, Func::CATEGORY_SHARE as u16, "the only number function");
        self.profile.category_share(arg)
    }
    fn call_flag(&self, function: u16, arg: &str) -> bool {
        if function == Func::IN_CART as u16 {
            self.profile.cart.iter().any(|l| l.sku == arg)
        } else if function == Func::CART_HAS_CATEGORY as u16 {
            self.profile.cart.iter().any(|l| l.category == arg)
        } else {
            self.event.purchase.is_some_and(|p| p.lines.iter().any(|l| l.category == arg))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cvm_expr::compile_predicate;
    use cvm_proto::v1::{AppEvent, PurchaseLine};

    #[test]
    fn variables_read_the_profile_and_the_event() {
        let mut p = Profile::default();
        let purchase = Purchase {
            event_id: "p".into(),
            customer_id: "c".into(),
            timestamp_ms: 10 * DAY_MS,
            lines: vec![
                PurchaseLine {
                    sku: "s1".into(),
                    category: "sushi".into(),
                    quantity: 2,
                    unit_price_minor: 1500,
                    unit_cost_minor: 900,
                },
                PurchaseLine {
                    sku: "w1".into(),
                    category: "wine".into(),
                    quantity: 1,
                    unit_price_minor: 1000,
                    unit_cost_minor: 500,
                },
            ],
            ..Default::default()
        };
        p.apply_purchase(&purchase);
        p.apply_app_event(&AppEvent {
            sku: "x".into(),
            category: "tea".into(),
            kind: AppEventKind::AddToCart as i32,
            timestamp_ms: 11 * DAY_MS,
            ..Default::default()
        });
        p.utc_offset_minutes = 120;
        let event = Event::Purchase(purchase);
        // Monday 1970-01-12 22:30 UTC = Tuesday 00:30 at UTC+2.
        let now = 11 * DAY_MS + 22 * 3_600_000 + 30 * 60_000;
        let f = Features::compute(&p, EventFacts::of(&event), now);
        let holds = |src: &str| compile_predicate(src, schema()).unwrap().eval(&f);
        assert!(holds("days_since_last_purchase == 1 && orders_30d == 1 && revenue_30d == 40.0 && margin_90d == 17.0"));
        assert!(holds("event.kind == \"purchase\" && event.category == \"sushi\" && event.amount == 40.0"));
        assert!(holds("basket_has_category(\"wine\") && !basket_has_category(\"tea\")"));
        assert!(holds("in_cart(\"x\") && cart_has_category(\"tea\") && cart_lines == 1"));
        assert!(holds("local_hour == 0 && local_weekday == 2"), "{:?}", f.display("local_weekday"));
        assert!(holds("favourite_category == \"sushi\" && category_share(\"sushi\") > 0.7 && has_purchased"));
        assert!(holds("has_app && !push_reachable && days_since_last_app_activity == 0"));
        assert_eq!(f.display("avg_basket_value_90d").as_deref(), Some("40.00"));
        assert_eq!(f.display("orders_90d").as_deref(), Some("1"));
    }

    #[test]
    fn every_variable_is_documented() {
        for v in schema().docs() {
            assert!(!v.doc.is_empty(), "{} has no documentation", v.name);
        }
        assert_eq!(schema().docs().len(), NUMS + FLAGS + TEXTS + Func::ALL.len());
    }

    #[test]
    fn the_readme_lists_every_variable() {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
        for v in schema().docs() {
            assert!(
                readme.contains(&format!("| `{}` | {} |", v.name, v.ty.name())),
                "README lacks variable {}",
                v.name
            );
        }
    }
}
