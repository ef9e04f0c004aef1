//! Input events as the decision core sees them, the event kinds offer
//! documents trigger on, and what became of an event. The bottom of the
//! core: everything else reads events; events read nothing of the core.

use cvm_proto::v1::{AppEvent, AppEventKind, Consent, DeviceLink, EraseRequest, Identify, Purchase};
use schemars::JsonSchema;
use std::fmt;

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
    /// A device's link (or unlink), routed to the device's partition.
    DeviceLink(DeviceLink),
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
            Event::DeviceLink(e) => &e.event_id,
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
            Event::DeviceLink(e) => e.timestamp_ms,
        }
    }
}

/// Why an event was refused (see [`crate::validation`]): the `cvm.error.code` header and the `reason`
/// label of the dead-letter counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The payload is not a message of the topic's type and format.
    Undecodable,
    /// A field the kind needs is empty.
    MissingField,
    /// The timestamp is outside the accepted window.
    TimestampOutOfWindow,
    /// A price or cost is negative or too large.
    AmountOutOfRange,
    /// A quantity is too large.
    QuantityOutOfRange,
    /// A purchase has no lines or too many.
    LineCount,
    /// An id or text is too long.
    TooLong,
    /// An enum value this version does not know.
    UnknownEnum,
    /// A number outside its meaningful range (e.g. a UTC offset).
    OutOfRange,
    /// Processing the event failed (a bug): it is set aside, not retried.
    ProcessingFailed,
}

impl Reason {
    /// Every reason, for meters registered up front.
    pub const ALL: [Reason; 10] = [
        Reason::Undecodable,
        Reason::MissingField,
        Reason::TimestampOutOfWindow,
        Reason::AmountOutOfRange,
        Reason::QuantityOutOfRange,
        Reason::LineCount,
        Reason::TooLong,
        Reason::UnknownEnum,
        Reason::OutOfRange,
        Reason::ProcessingFailed,
    ];

    /// The machine-readable code, e.g. `timestamp_out_of_window`.
    pub fn code(self) -> &'static str {
        match self {
            Reason::Undecodable => "undecodable",
            Reason::MissingField => "missing_field",
            Reason::TimestampOutOfWindow => "timestamp_out_of_window",
            Reason::AmountOutOfRange => "amount_out_of_range",
            Reason::QuantityOutOfRange => "quantity_out_of_range",
            Reason::LineCount => "line_count",
            Reason::TooLong => "too_long",
            Reason::UnknownEnum => "unknown_enum",
            Reason::OutOfRange => "out_of_range",
            Reason::ProcessingFailed => "processing_failed",
        }
    }
}

/// A refused event: the reason's code and a sentence for the person who
/// reads the dead-letter topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// What kind of problem.
    pub reason: Reason,
    /// Which field, which value, what is accepted.
    pub detail: String,
}

impl Rejection {
    /// A rejection for `reason` saying `detail`.
    pub fn new(reason: Reason, detail: impl Into<String>) -> Self {
        Self { reason, detail: detail.into() }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason.code(), self.detail)
    }
}

/// What happened to an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventResult {
    /// Applied to state.
    Applied,
    /// Seen before; ignored.
    Duplicate,
    /// Anonymous device not yet identified: held (the last
    /// [`MAX_HELD_ANONYMOUS`](crate::MAX_HELD_ANONYMOUS) per device)
    /// until its link arrives, then re-keyed to its customer.
    Anonymous,
    /// Re-keyed to its customer (see [`Outbound::Rekeyed`]).
    Rekeyed,
    /// The customer was erased recently: an event still on its way is
    /// dropped rather than re-create them.
    Erased,
    /// Refused by validation; goes to the dead-letter topic with the reason.
    Invalid(Rejection),
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
