//! The customer profile: everything the engine remembers about a customer,
//! kept small enough to read, update and write back on every event.
//!
//! Spend windows (7/30/90/365 days) are exact: the profile keeps one
//! [`DayTotals`] per day with a purchase in the last year, which for real
//! customers is a few dozen entries. Bounded lists (categories, cart,
//! contacts, open decisions) drop their oldest or weakest entries first.

use cvm_proto::v1::{AppEvent, AppEventKind, Channel, Consent, Purchase};
use serde::{Deserialize, Serialize};

use crate::{error::StoreError, time::DAY_MS};

/// Days of purchase history kept.
pub const HISTORY_DAYS: i64 = 365;
/// Categories kept in the affinity list.
pub const TOP_CATEGORIES: usize = 8;
/// Cart lines kept.
pub const MAX_CART_LINES: usize = 32;
/// Contacts kept (for caps, fatigue and discount ladders).
pub const MAX_CONTACTS: usize = 64;
/// Open attribution episodes kept.
pub const MAX_EXPOSURES: usize = 16;
/// Devices remembered per customer.
pub const MAX_DEVICES: usize = 8;
/// Half-life of category affinity, in days.
const AFFINITY_HALF_LIFE_DAYS: f64 = 60.0;
/// Encoding version written in front of every stored profile.
const FORMAT_VERSION: u8 = 6;
/// The oldest version still read. Each version since appended one list to
/// the profile (4 lacks [`Profile::assigned`], 5 [`Profile::viewed`]).
const OLDEST_FORMAT_VERSION: u8 = 4;
/// Campaigns remembered per customer in [`Profile::assigned`].
pub const MAX_ASSIGNED: usize = 256;
/// Half-life of the engagement counters, in days.
const ENGAGEMENT_HALF_LIFE_DAYS: f64 = 30.0;
/// [`Contact::decile`] of a contact no model scored.
pub const NO_DECILE: u8 = u8::MAX;

/// Purchases of one UTC day.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct DayTotals {
    /// Days since the Unix epoch.
    pub day: i32,
    /// Orders on that day.
    pub orders: u32,
    /// Revenue in minor units.
    pub revenue_minor: i64,
    /// Margin (revenue minus cost of goods) in minor units.
    pub margin_minor: i64,
}

/// Sums over a window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WindowTotals {
    /// Orders.
    pub orders: u32,
    /// Revenue in minor units.
    pub revenue_minor: i64,
    /// Margin in minor units.
    pub margin_minor: i64,
}

/// Decayed spend in one category.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CategoryAffinity {
    /// Category name as sent in events.
    pub category: String,
    /// Spend in minor units, decayed to `as_of_day`.
    pub score: f64,
    /// Day the score was last decayed to.
    pub as_of_day: i32,
}

/// A line in the customer's cart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CartLine {
    /// Product.
    pub sku: String,
    /// Its category.
    pub category: String,
    /// Units.
    pub quantity: u32,
    /// When it was (last) added.
    pub added_ms: i64,
}

/// How the customer can be reached.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Reachability {
    /// Any app event was seen for the customer.
    pub has_app: bool,
    /// A push token is registered.
    pub push_token: bool,
    /// Push consent granted (opt-in).
    pub push_consent: bool,
    /// In-app stories revoked (stories are shown unless revoked).
    pub stories_revoked: bool,
}

impl Reachability {
    /// Whether a push can be sent now.
    pub fn push(&self) -> bool {
        self.has_app && self.push_token && self.push_consent
    }
    /// Whether a story can be shown.
    pub fn stories(&self) -> bool {
        self.has_app && !self.stories_revoked
    }
    /// Whether `channel` can reach the customer.
    pub fn reaches(&self, channel: Channel) -> bool {
        match channel {
            Channel::Push => self.push(),
            Channel::Stories => self.stories(),
            Channel::Unspecified => false,
        }
    }
}

/// What the customer did with a contact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Response {
    /// Nothing yet.
    #[default]
    None,
    /// Push opened or story viewed.
    Opened,
    /// Push dismissed.
    Dismissed,
    /// The offer was redeemed.
    Redeemed,
}

/// A contact made: for caps, the minimum gap, fatigue and discount ladders.
/// Offer and campaign are stored as [`contact_hash`]es to keep profiles small.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    /// When the offer was sent.
    pub at_ms: i64,
    /// `Channel` as its protobuf number.
    pub channel: i32,
    /// Hash of the offer definition id.
    pub offer: u64,
    /// Hash of the campaign id.
    pub campaign: u64,
    /// Hash of the sent offer's `offer_id` (what app events and purchases quote).
    pub sent: u64,
    /// When the offer expires; for a dismissed push, when it was dismissed.
    pub respond_by_ms: i64,
    /// What the customer did.
    pub response: Response,
    /// Purchases until then count as a conversion of this contact (the end
    /// of its campaign's attribution window); they teach the bandits.
    pub convert_by_ms: i64,
    /// Whether a purchase converted it.
    pub converted: bool,
    /// The customer's lifecycle segment when it was sent (bandit arm).
    pub segment: u8,
    /// Decile of the model's predicted conversion probability, for the
    /// calibration metrics; [`NO_DECILE`] when no model scored it.
    pub decile: u8,
}

impl Contact {
    /// When the contact counts as ignored, if it does by `now_ms`: a push
    /// dismissed, or expired without being opened or redeemed. Stories are
    /// pulled by the customer, so an unseen story says nothing: they never count.
    pub fn ignored_at(&self, now_ms: i64) -> Option<i64> {
        if self.channel != Channel::Push as i32 {
            return None;
        }
        match self.response {
            Response::Dismissed => Some(self.respond_by_ms),
            Response::None if self.respond_by_ms <= now_ms => Some(self.respond_by_ms),
            _ => None,
        }
    }
}

/// The hash under which ids are stored on [`Contact`]s and suppressions.
pub fn contact_hash(id: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(id.as_bytes())
}

/// An offer resting for this customer after fatigue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suppression {
    /// Hash of the offer definition id.
    pub offer: u64,
    /// Until when.
    pub until_ms: i64,
}

/// Purchases since the customer entered a campaign group; see [`crate::attribution`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Exposure {
    /// The campaign.
    pub campaign_id: String,
    /// Treated, campaign control or global control.
    pub group: Group,
    /// The first decision of the episode.
    pub start_ms: i64,
    /// The end of its attribution window.
    pub until_ms: i64,
    /// Attributed purchases, revenue and margin so far.
    pub totals: Totals,
}

/// App engagement as counts decayed with a 30-day half-life: "about how
/// many in the last month", without keeping the events.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Engagement {
    /// App opens.
    pub app_opens: f32,
    /// Stories viewed.
    pub story_views: f32,
    /// Pushes opened.
    pub push_opens: f32,
    /// Day the counts were last decayed to.
    pub as_of_day: i32,
}

impl Engagement {
    /// The counts decayed to `day`.
    pub fn at(&self, day: i32) -> Engagement {
        let f = 0.5f64.powf(f64::from((day - self.as_of_day).max(0)) / ENGAGEMENT_HALF_LIFE_DAYS) as f32;
        Engagement {
            app_opens: self.app_opens * f,
            story_views: self.story_views * f,
            push_opens: self.push_opens * f,
            as_of_day: day.max(self.as_of_day),
        }
    }
}

/// Purchase sums.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    /// Orders.
    pub orders: u32,
    /// Revenue in minor units.
    pub revenue_minor: i64,
    /// Margin in minor units.
    pub margin_minor: i64,
}

/// Everything the engine keeps per customer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    /// First event time.
    pub first_seen_ms: i64,
    /// Latest event time.
    pub last_seen_ms: i64,
    /// Latest purchase time.
    pub last_purchase_ms: Option<i64>,
    /// Latest app activity time.
    pub last_app_activity_ms: Option<i64>,
    /// Purchases per day over the last [`HISTORY_DAYS`], oldest first.
    pub days: Vec<DayTotals>,
    /// Orders since first seen.
    pub lifetime_orders: u64,
    /// Strongest categories by decayed spend, strongest first.
    pub categories: Vec<CategoryAffinity>,
    /// Current cart.
    pub cart: Vec<CartLine>,
    /// Channels the customer can be reached on.
    pub reach: Reachability,
    /// IANA time zone, if known.
    pub time_zone: String,
    /// Offset from UTC in minutes.
    pub utc_offset_minutes: i32,
    /// Contacts of the last year (at most [`MAX_CONTACTS`]), oldest first.
    pub contacts: Vec<Contact>,
    /// Latest dismissed push.
    pub last_push_dismiss_ms: Option<i64>,
    /// Offers resting after fatigue.
    pub suppressions: Vec<Suppression>,
    /// Open attribution episodes, oldest first.
    pub exposures: Vec<Exposure>,
    /// All purchases since the profile was created, for the programme-level
    /// comparison with the global control group.
    pub programme: Totals,
    /// Devices identified as this customer (to unlink them on erasure).
    pub devices: Vec<String>,
    /// Decayed app engagement counts.
    pub engagement: Engagement,
    /// [`contact_hash`]es of the campaigns the customer has had an
    /// attribution episode of, oldest first (at most [`MAX_ASSIGNED`]): a
    /// customer counts once per campaign in its report.
    pub assigned: Vec<u64>,
    /// Strongest categories by decayed interest in the app — product views
    /// and cart adds, one each — strongest first: what a customer browses
    /// says what they like before their spend does.
    pub viewed: Vec<CategoryAffinity>,
}

fn day_of(ms: i64) -> i32 {
    ms.div_euclid(DAY_MS) as i32
}

impl Profile {
    /// Encodes the profile for storage (a version byte, then postcard).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![FORMAT_VERSION];
        postcard::to_io(self, &mut out).expect("writing to a Vec cannot fail");
        out
    }

    /// Decodes a stored profile.
    pub fn decode(bytes: &[u8]) -> Result<Self, StoreError> {
        match bytes.split_first() {
            Some((&FORMAT_VERSION, rest)) => {
                postcard::from_bytes(rest).map_err(|e| StoreError::Corrupt { what: "profile", detail: e.to_string() })
            }
            Some((&v, rest)) if (OLDEST_FORMAT_VERSION..FORMAT_VERSION).contains(&v) => {
                // Postcard writes fields in order, so the old bytes followed
                // by an empty list (a zero length) per list added since are
                // the new profile.
                let mut bytes = rest.to_vec();
                bytes.extend(std::iter::repeat_n(0, usize::from(FORMAT_VERSION - v)));
                postcard::from_bytes(&bytes).map_err(|e| StoreError::Corrupt { what: "profile", detail: e.to_string() })
            }
            Some((v, _)) => Err(StoreError::Corrupt { what: "profile", detail: format!("unknown format version {v}") }),
            None => Err(StoreError::Corrupt { what: "profile", detail: "empty record".into() }),
        }
    }

    fn touch(&mut self, at_ms: i64) {
        if self.first_seen_ms == 0 || at_ms < self.first_seen_ms {
            self.first_seen_ms = at_ms;
        }
        self.last_seen_ms = self.last_seen_ms.max(at_ms);
    }

    /// Applies a purchase: windows, categories, cart clean-up, redemption.
    /// Returns the purchase's own totals.
    pub fn apply_purchase(&mut self, p: &Purchase) -> Totals {
        self.touch(p.timestamp_ms);
        self.respond(&p.offer_id, Response::Redeemed, p.timestamp_ms);
        self.last_purchase_ms = Some(self.last_purchase_ms.map_or(p.timestamp_ms, |t| t.max(p.timestamp_ms)));
        self.lifetime_orders = self.lifetime_orders.saturating_add(1);
        let day = day_of(p.timestamp_ms);
        let (mut revenue, mut margin) = (0i64, 0i64);
        for line in &p.lines {
            let q = i64::from(line.quantity.max(1));
            // Validation bounds prices, costs and quantities so that these
            // fit; saturating keeps a missed case from panicking.
            let line_revenue = line.unit_price_minor.saturating_mul(q);
            revenue = revenue.saturating_add(line_revenue);
            margin =
                margin.saturating_add(line.unit_price_minor.saturating_sub(line.unit_cost_minor).saturating_mul(q));
            add_decayed(&mut self.categories, &line.category, line_revenue as f64, day);
            self.cart.retain(|c| c.sku != line.sku);
        }
        match self.days.binary_search_by_key(&day, |d| d.day) {
            Ok(i) => {
                let d = &mut self.days[i];
                d.orders = d.orders.saturating_add(1);
                d.revenue_minor = d.revenue_minor.saturating_add(revenue);
                d.margin_minor = d.margin_minor.saturating_add(margin);
            }
            Err(i) => self.days.insert(i, DayTotals { day, orders: 1, revenue_minor: revenue, margin_minor: margin }),
        }
        let oldest = day - HISTORY_DAYS as i32;
        self.days.retain(|d| d.day > oldest);
        Totals { orders: 1, revenue_minor: revenue, margin_minor: margin }
    }

    /// Applies an app event (with its customer already resolved).
    pub fn apply_app_event(&mut self, e: &AppEvent) {
        self.touch(e.timestamp_ms);
        self.reach.has_app = true;
        self.last_app_activity_ms = Some(self.last_app_activity_ms.map_or(e.timestamp_ms, |t| t.max(e.timestamp_ms)));
        if matches!(e.kind(), AppEventKind::ProductView | AppEventKind::AddToCart) {
            add_decayed(&mut self.viewed, &e.category, 1.0, day_of(e.timestamp_ms));
        }
        match e.kind() {
            AppEventKind::AddToCart if !e.sku.is_empty() => {
                let qty = e.quantity.max(1);
                match self.cart.iter_mut().find(|c| c.sku == e.sku) {
                    Some(line) => {
                        line.quantity = line.quantity.saturating_add(qty);
                        line.added_ms = e.timestamp_ms;
                    }
                    None => {
                        self.cart.push(CartLine {
                            sku: e.sku.clone(),
                            category: e.category.clone(),
                            quantity: qty,
                            added_ms: e.timestamp_ms,
                        });
                        if self.cart.len() > MAX_CART_LINES {
                            self.cart.remove(0);
                        }
                    }
                }
            }
            AppEventKind::RemoveFromCart => self.cart.retain(|c| c.sku != e.sku),
            AppEventKind::PushOpen | AppEventKind::StoryView => {
                self.respond(&e.offer_id, Response::Opened, e.timestamp_ms)
            }
            AppEventKind::OfferRedeemed => self.respond(&e.offer_id, Response::Redeemed, e.timestamp_ms),
            AppEventKind::PushDismiss => {
                self.last_push_dismiss_ms = Some(self.last_push_dismiss_ms.unwrap_or(i64::MIN).max(e.timestamp_ms));
                self.respond(&e.offer_id, Response::Dismissed, e.timestamp_ms);
            }
            _ => {}
        }
        let mut engaged = self.engagement.at(day_of(e.timestamp_ms));
        match e.kind() {
            AppEventKind::AppOpen => engaged.app_opens += 1.0,
            AppEventKind::StoryView => engaged.story_views += 1.0,
            AppEventKind::PushOpen => engaged.push_opens += 1.0,
            _ => {}
        }
        self.engagement = engaged;
    }

    /// Applies a consent change.
    pub fn apply_consent(&mut self, c: &Consent) {
        self.touch(c.timestamp_ms);
        match c.channel() {
            Channel::Push => {
                self.reach.push_consent = c.granted;
                self.reach.push_token = c.push_token_present;
            }
            Channel::Stories => self.reach.stories_revoked = !c.granted,
            Channel::Unspecified => {}
        }
        if !c.time_zone.is_empty() {
            self.time_zone.clone_from(&c.time_zone);
            self.utc_offset_minutes = c.utc_offset_minutes;
        }
    }

    /// Records `contact`, forgetting contacts older than a year.
    pub fn record_contact(&mut self, contact: Contact) {
        self.contacts.retain(|c| c.at_ms > contact.at_ms.saturating_sub(HISTORY_DAYS * DAY_MS));
        self.contacts.push(contact);
        if self.contacts.len() > MAX_CONTACTS {
            self.contacts.remove(0);
        }
    }

    /// Marks the contacts a purchase at `at_ms` converts (sent before it,
    /// within their window, not converted yet) and returns them.
    pub fn convert_contacts(&mut self, at_ms: i64) -> Vec<Contact> {
        let mut converted = Vec::new();
        for c in &mut self.contacts {
            if !c.converted && c.at_ms <= at_ms && at_ms <= c.convert_by_ms {
                c.converted = true;
                converted.push(*c);
            }
        }
        converted
    }

    /// How often the offer with [`contact_hash`] `offer` was sent after `since_ms`.
    pub fn offer_contacts_since(&self, offer: u64, since_ms: i64) -> usize {
        self.contacts.iter().filter(|c| c.offer == offer && c.at_ms > since_ms).count()
    }

    /// Remembers that an offer rests until `until_ms`, forgetting expired rests.
    pub fn suppress(&mut self, offer: u64, until_ms: i64, now_ms: i64) {
        self.suppressions.retain(|s| s.until_ms > now_ms && s.offer != offer);
        self.suppressions.push(Suppression { offer, until_ms });
    }

    /// Records the customer's response to the sent offer `offer_id`.
    fn respond(&mut self, offer_id: &str, response: Response, at_ms: i64) {
        if offer_id.is_empty() {
            return;
        }
        let sent = contact_hash(offer_id);
        if let Some(c) = self.contacts.iter_mut().rev().find(|c| c.sent == sent) {
            // A redemption outranks an open, an open outranks a dismissal.
            let rank = |r: Response| match r {
                Response::None => 0,
                Response::Dismissed => 1,
                Response::Opened => 2,
                Response::Redeemed => 3,
            };
            if rank(response) > rank(c.response) {
                c.response = response;
                if response == Response::Dismissed {
                    c.respond_by_ms = at_ms;
                }
            }
        }
    }

    /// Links a device to this customer.
    pub fn add_device(&mut self, device_id: &str) -> Option<String> {
        if !self.devices.iter().any(|d| d == device_id) {
            self.devices.push(device_id.to_owned());
            if self.devices.len() > MAX_DEVICES {
                return Some(self.devices.remove(0));
            }
        }
        None
    }

    /// The customer's offset from UTC in minutes, or `default` when their
    /// time zone is unknown.
    pub fn utc_offset_minutes(&self, default: i32) -> i32 {
        if self.time_zone.is_empty() {
            default
        } else {
            self.utc_offset_minutes
        }
    }

    /// Purchase totals over the `days` days up to and including `now_ms`'s day.
    pub fn window(&self, now_ms: i64, days: i64) -> WindowTotals {
        let first = day_of(now_ms) - days as i32;
        self.days.iter().filter(|d| d.day > first).fold(WindowTotals::default(), |mut t, d| {
            t.orders = t.orders.saturating_add(d.orders);
            t.revenue_minor = t.revenue_minor.saturating_add(d.revenue_minor);
            t.margin_minor = t.margin_minor.saturating_add(d.margin_minor);
            t
        })
    }

    /// Whole days since the last purchase, or `None` if the customer never bought.
    pub fn days_since_last_purchase(&self, now_ms: i64) -> Option<f64> {
        self.last_purchase_ms.map(|t| (now_ms.saturating_sub(t).max(0) / DAY_MS) as f64)
    }

    /// Expected margin of the next 12 months, minor units: the customer's
    /// purchase rate times the probability they are still a customer times
    /// their margin per order. In the spirit of BG/NBD, but closed-form:
    /// the rate is orders per day of the last year (shrunk towards one
    /// order per 60 days for short histories); "alive" decays with the days
    /// since the last purchase measured in expected gaps between orders, so
    /// a weekly buyer silent for a month is probably gone while a quarterly
    /// one is not. Computed from the profile on read, so it never goes stale.
    pub fn clv_12m_minor(&self, now_ms: i64) -> f64 {
        let Some(last) = self.last_purchase_ms else { return 0.0 };
        let year = self.window(now_ms, HISTORY_DAYS);
        if year.orders == 0 {
            return 0.0;
        }
        let observed_days = (now_ms.saturating_sub(self.first_seen_ms).max(0) as f64 / DAY_MS as f64).clamp(1.0, 365.0);
        let rate = (f64::from(year.orders) + 1.0 / 6.0) / (observed_days + 10.0);
        let silent_gaps = (now_ms.saturating_sub(last).max(0) as f64 / DAY_MS as f64) * rate;
        let alive = 1.0 / (1.0 + (silent_gaps / 3.0).powi(2));
        let margin_per_order = year.margin_minor.max(0) as f64 / f64::from(year.orders);
        alive * rate * 365.0 * margin_per_order
    }

    /// Share (0..=1) of the customer's decayed spend that went to `category`.
    pub fn category_share(&self, category: &str) -> f64 {
        share_of(&self.categories, category)
    }

    /// Share (0..=1) of the customer's decayed product views and cart adds
    /// that were in `category`.
    pub fn viewed_share(&self, category: &str) -> f64 {
        share_of(&self.viewed, category)
    }

    /// The strongest category, if any.
    pub fn favourite_category(&self) -> Option<&str> {
        self.categories.first().map(|c| c.category.as_str())
    }
}

/// Adds `amount` to `category` in a decayed top list (decaying the others
/// to `day` first), keeping the strongest [`TOP_CATEGORIES`].
fn add_decayed(list: &mut Vec<CategoryAffinity>, category: &str, amount: f64, day: i32) {
    if category.is_empty() {
        return;
    }
    for c in list.iter_mut() {
        c.score *= decay(day - c.as_of_day);
        c.as_of_day = day;
    }
    match list.iter_mut().find(|c| c.category == category) {
        Some(c) => c.score += amount,
        None => list.push(CategoryAffinity { category: category.to_owned(), score: amount, as_of_day: day }),
    }
    list.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.category.cmp(&b.category)));
    list.truncate(TOP_CATEGORIES);
}

/// Share (0..=1) of a decayed top list's total that is `category`'s.
fn share_of(list: &[CategoryAffinity], category: &str) -> f64 {
    let total: f64 = list.iter().map(|c| c.score).sum();
    if total <= 0.0 {
        return 0.0;
    }
    list.iter().find(|c| c.category == category).map_or(0.0, |c| c.score / total)
}

fn decay(days: i32) -> f64 {
    if days <= 0 {
        1.0
    } else {
        0.5f64.powf(f64::from(days) / AFFINITY_HALF_LIFE_DAYS)
    }
}

/// Which side of a comparison a customer is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Group {
    /// Sent the offer (for the programme: not in the global control group).
    Treated,
    /// In the campaign's holdout: would have been sent the offer.
    CampaignControl,
    /// In the global control group: never sent anything.
    GlobalControl,
}

impl Group {
    /// Every group, in code order.
    pub const ALL: [Group; 3] = [Group::Treated, Group::CampaignControl, Group::GlobalControl];

    /// Lower-case name, for reports and metric labels.
    pub fn name(self) -> &'static str {
        match self {
            Group::Treated => "treated",
            Group::CampaignControl => "campaign_control",
            Group::GlobalControl => "global_control",
        }
    }

    /// One byte, for storage keys.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The group of a storage code.
    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL.get(usize::from(code)).copied()
    }

    /// The group of a [`name`](Self::name).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|g| g.name() == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cvm_proto::v1::PurchaseLine;

    fn purchase(at_ms: i64, cat: &str, price: i64, cost: i64) -> Purchase {
        Purchase {
            event_id: format!("p{at_ms}"),
            customer_id: "c".into(),
            timestamp_ms: at_ms,
            lines: vec![PurchaseLine {
                sku: format!("{cat}-1"),
                category: cat.into(),
                quantity: 2,
                unit_price_minor: price,
                unit_cost_minor: cost,
            }],
            ..Default::default()
        }
    }

    #[test]
    fn windows_count_exactly_the_days_inside_them() {
        let mut p = Profile::default();
        let now = 400 * DAY_MS;
        p.apply_purchase(&purchase(now - 100 * DAY_MS, "wine", 1000, 600)); // in 365 only
        p.apply_purchase(&purchase(now - 20 * DAY_MS, "sushi", 500, 200)); // in 30, 90, 365
        p.apply_purchase(&purchase(now - 2 * DAY_MS, "sushi", 500, 200)); // in all
        assert_eq!(p.window(now, 7), WindowTotals { orders: 1, revenue_minor: 1000, margin_minor: 600 });
        assert_eq!(p.window(now, 30).orders, 2);
        assert_eq!(p.window(now, 90).orders, 2);
        assert_eq!(p.window(now, 365), WindowTotals { orders: 3, revenue_minor: 4000, margin_minor: 2000 });
        assert_eq!(p.days_since_last_purchase(now), Some(2.0));
        assert_eq!(p.favourite_category(), Some("sushi"));
    }

    #[test]
    fn history_older_than_a_year_is_dropped() {
        let mut p = Profile::default();
        p.apply_purchase(&purchase(DAY_MS, "a", 100, 50));
        p.apply_purchase(&purchase(500 * DAY_MS, "a", 100, 50));
        assert_eq!(p.days.len(), 1);
        assert_eq!(p.lifetime_orders, 2);
    }

    #[test]
    fn purchase_removes_bought_items_from_cart() {
        let mut p = Profile::default();
        let add = AppEvent {
            sku: "sushi-1".into(),
            category: "sushi".into(),
            kind: AppEventKind::AddToCart as i32,
            timestamp_ms: 5,
            ..Default::default()
        };
        p.apply_app_event(&add);
        p.apply_app_event(&add);
        assert_eq!(p.cart.len(), 1);
        assert_eq!(p.cart[0].quantity, 2);
        p.apply_purchase(&purchase(10, "sushi", 500, 200));
        assert!(p.cart.is_empty());
    }

    #[test]
    fn encoding_round_trips_and_rejects_unknown_versions() {
        let mut p = Profile::default();
        p.apply_purchase(&purchase(3 * DAY_MS, "sushi", 500, 200));
        p.record_contact(Contact {
            at_ms: 3 * DAY_MS,
            channel: Channel::Push as i32,
            offer: contact_hash("o"),
            campaign: contact_hash("c"),
            sent: 7,
            respond_by_ms: 5 * DAY_MS,
            response: Response::None,
            convert_by_ms: 10 * DAY_MS,
            converted: false,
            segment: 1,
            decile: NO_DECILE,
        });
        let bytes = p.encode();
        assert_eq!(Profile::decode(&bytes).unwrap(), p);
        let mut bad = bytes.clone();
        bad[0] = 99;
        assert!(matches!(Profile::decode(&bad), Err(StoreError::Corrupt { .. })));
        // Profiles stored by the previous versions (without `viewed`, and
        // without `assigned` before it, at the end) still read, with those empty.
        assert!(bytes.ends_with(&[0, 0]), "an empty list is one zero byte");
        for (version, dropped) in [(5, 1), (4, 2)] {
            let mut old = bytes[..bytes.len() - dropped].to_vec();
            old[0] = version;
            assert_eq!(Profile::decode(&old).unwrap(), p, "version {version}");
        }
        let mut older = bytes.clone();
        older[0] = OLDEST_FORMAT_VERSION - 1;
        assert!(Profile::decode(&older).is_err(), "too old to read");
        p.assigned.push(contact_hash("c"));
        assert_eq!(Profile::decode(&p.encode()).unwrap(), p);
    }

    #[test]
    fn a_purchase_converts_each_open_contact_once_and_engagement_decays() {
        let mut p = Profile::default();
        let contact = |at_ms: i64, convert_by_ms: i64| Contact {
            at_ms,
            channel: Channel::Push as i32,
            offer: 1,
            campaign: 2,
            sent: at_ms as u64,
            respond_by_ms: at_ms,
            response: Response::None,
            convert_by_ms,
            converted: false,
            segment: 0,
            decile: NO_DECILE,
        };
        p.record_contact(contact(DAY_MS, 3 * DAY_MS));
        p.record_contact(contact(2 * DAY_MS, 9 * DAY_MS));
        assert_eq!(p.convert_contacts(4 * DAY_MS).len(), 1, "the first contact's window has ended");
        assert!(p.convert_contacts(5 * DAY_MS).is_empty(), "converted once");
        let open = |day: i64| AppEvent {
            kind: AppEventKind::AppOpen as i32,
            timestamp_ms: day * DAY_MS,
            ..Default::default()
        };
        p.apply_app_event(&open(0));
        p.apply_app_event(&open(0));
        assert!((p.engagement.at(30).app_opens - 1.0).abs() < 1e-6, "two opens, one half-life ago");
        p.apply_app_event(&open(30));
        assert!((p.engagement.app_opens - 2.0).abs() < 1e-6);
    }

    #[test]
    fn clv_rewards_frequent_recent_buyers_and_fades_with_silence() {
        let mut weekly = Profile::default();
        for week in 0..20 {
            weekly.apply_purchase(&purchase(week * 7 * DAY_MS, "sushi", 1_000, 600));
        }
        let now = 20 * 7 * DAY_MS;
        let active = weekly.clv_12m_minor(now);
        // ~49 orders a year at 8.00 margin, a week since the last: ~91 % alive.
        assert!((32_000.0..39_000.0).contains(&active), "{active}");
        assert!(weekly.clv_12m_minor(now + 60 * DAY_MS) < active / 4.0, "two silent months of a weekly buyer");
        assert_eq!(Profile::default().clv_12m_minor(now), 0.0);
    }

    #[test]
    fn push_needs_app_token_and_consent() {
        let mut p = Profile::default();
        assert!(!p.reach.push());
        p.apply_app_event(&AppEvent { kind: AppEventKind::AppOpen as i32, ..Default::default() });
        p.apply_consent(&Consent {
            channel: Channel::Push as i32,
            granted: true,
            push_token_present: true,
            ..Default::default()
        });
        assert!(p.reach.push() && p.reach.stories());
        p.apply_consent(&Consent {
            channel: Channel::Push as i32,
            granted: false,
            push_token_present: true,
            ..Default::default()
        });
        assert!(!p.reach.push());
    }
}
