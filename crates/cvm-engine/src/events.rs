//! Input events as the decision core sees them, the event kinds offer
//! documents trigger on, and what became of an event. The bottom of the
//! core: everything else reads events; events read nothing of the core.

use cvm_proto::v1::{AppEvent, AppEventKind, Consent, EraseRequest, Identify, Purchase};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// An input event.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A purchase.
    Purchase(Purchase),
    /// An app event.
    App(AppEvent),
    /// A device identified as a customer.
    Identify(Identify),
    /// A consent or reachability change.
    Consent(Consent),
    /// A request to erase the customer.
    Erase(EraseRequest),
}

impl Event {
    /// The producer's event id.
    pub fn event_id(&self) -> &str {
        match self {
            Event::Purchase(e) => &e.event_id,
            Event::App(e) => &e.event_id,
            Event::Identify(e) => &e.event_id,
            Event::Consent(e) => &e.event_id,
            Event::Erase(e) => &e.request_id,
        }
    }

    /// Event time.
    pub fn timestamp_ms(&self) -> i64 {
        match self {
            Event::Purchase(e) => e.timestamp_ms,
            Event::App(e) => e.timestamp_ms,
            Event::Identify(e) => e.timestamp_ms,
            Event::Consent(e) => e.timestamp_ms,
            Event::Erase(e) => e.timestamp_ms,
        }
    }

    /// Why the event cannot be applied, if it cannot.
    pub(crate) fn invalid_reason(&self) -> Option<&'static str> {
        if self.event_id().is_empty() {
            return Some("event_id (request_id for erasure) is empty; producers must give every event a unique id");
        }
        match self {
            Event::Purchase(p) if p.customer_id.is_empty() => Some("purchase without customer_id"),
            Event::Purchase(p) if p.lines.is_empty() => Some("purchase without lines"),
            Event::App(a) if a.customer_id.is_empty() && a.device_id.is_empty() => {
                Some("app event without customer_id or device_id")
            }
            Event::Identify(i) if i.customer_id.is_empty() || i.device_id.is_empty() => {
                Some("identify needs both customer_id and device_id")
            }
            Event::Consent(c) if c.customer_id.is_empty() => Some("consent without customer_id"),
            Event::Erase(e) if e.customer_id.is_empty() => Some("erase request without customer_id"),
            _ => None,
        }
    }
}

/// What happened to an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventResult {
    /// Applied to state.
    Applied,
    /// Seen before; ignored.
    Duplicate,
    /// Anonymous device not yet identified; counted, not applied.
    Anonymous,
    /// Re-keyed to its customer (see [`Outbound::Rekeyed`]).
    Rekeyed,
    /// Cannot be applied; goes to the dead-letter topic with this reason.
    Invalid(&'static str),
}

/// An event kind, as written in documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A purchase.
    Purchase,
    /// App opened.
    AppOpen,
    /// Product viewed.
    ProductView,
    /// Added to cart.
    AddToCart,
    /// Removed from cart.
    RemoveFromCart,
    /// Searched.
    Search,
    /// Push opened.
    PushOpen,
    /// Push dismissed.
    PushDismiss,
    /// Story viewed.
    StoryView,
    /// An offer was redeemed.
    OfferRedeemed,
}

impl EventKind {
    /// The kind of an app event, if it has one.
    pub fn of_app_event(kind: AppEventKind) -> Option<Self> {
        Some(match kind {
            AppEventKind::AppOpen => Self::AppOpen,
            AppEventKind::ProductView => Self::ProductView,
            AppEventKind::AddToCart => Self::AddToCart,
            AppEventKind::RemoveFromCart => Self::RemoveFromCart,
            AppEventKind::Search => Self::Search,
            AppEventKind::PushOpen => Self::PushOpen,
            AppEventKind::PushDismiss => Self::PushDismiss,
            AppEventKind::StoryView => Self::StoryView,
            AppEventKind::OfferRedeemed => Self::OfferRedeemed,
            AppEventKind::Unspecified => return None,
        })
    }

    /// The name used in documents and in `event.kind`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Purchase => "purchase",
            Self::AppOpen => "app_open",
            Self::ProductView => "product_view",
            Self::AddToCart => "add_to_cart",
            Self::RemoveFromCart => "remove_from_cart",
            Self::Search => "search",
            Self::PushOpen => "push_open",
            Self::PushDismiss => "push_dismiss",
            Self::StoryView => "story_view",
            Self::OfferRedeemed => "offer_redeemed",
        }
    }
}
