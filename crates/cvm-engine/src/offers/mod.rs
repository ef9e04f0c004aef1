//! Offer, campaign and policy documents: what marketers publish
//! ([`document`], [`campaign`]) and the checked, compiled form of an offer
//! ([`OfferDefinition`]). The live [`Catalog`](crate::Catalog) of all of them, and of
//! models, is one layer up.

pub mod campaign;
pub(crate) mod definition;
pub mod document;

pub use crate::events::EventKind;
pub use campaign::{CampaignDocument, PolicyDocument, CAMPAIGN_KEY_PREFIX, MAX_DOCUMENT_BYTES, POLICY_KEY};
pub use definition::{OfferDefinition, OfferError, MAX_RENDERED_BYTES, MAX_TEMPLATE_BYTES};
pub use document::{ChannelName, OfferDocument, Status, Trigger};
