//! The wire contracts of cvm, generated from `proto/cvm/v1/*.proto`.
//!
//! Every message has two encodings: protobuf (via prost) and the canonical
//! proto3 JSON mapping (via pbjson's serde impls: camelCase or original field
//! names on input, enums by name, 64-bit integers as strings or numbers).
//! [`Format`] picks one per topic.
#![allow(missing_docs, unreachable_pub, missing_debug_implementations)]

/// Version 1 of the contracts.
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/cvm.v1.rs"));
    include!(concat!(env!("OUT_DIR"), "/cvm.v1.serde.rs"));
}

use serde::{de::DeserializeOwned, Deserialize, Serialize};

/// How messages on a topic are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Binary protobuf.
    #[default]
    Protobuf,
    /// The canonical proto3 JSON mapping.
    Json,
}

/// Why a payload could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The bytes are not a valid protobuf message of the expected type.
    #[error("not a valid protobuf {message}: {source}")]
    Protobuf { message: &'static str, source: prost::DecodeError },
    /// The bytes are not valid proto3 JSON for the expected type.
    #[error("not valid proto3 JSON for {message}: {source}")]
    Json { message: &'static str, source: serde_json::Error },
}

/// Decodes `bytes` as `T` in the given format.
pub fn decode<T>(format: Format, bytes: &[u8]) -> Result<T, DecodeError>
where
    T: prost::Message + Default + DeserializeOwned + prost::Name,
{
    match format {
        Format::Protobuf => T::decode(bytes).map_err(|source| DecodeError::Protobuf { message: T::NAME, source }),
        Format::Json => serde_json::from_slice(bytes).map_err(|source| DecodeError::Json { message: T::NAME, source }),
    }
}

/// Encodes `msg` in the given format.
pub fn encode<T>(format: Format, msg: &T) -> Vec<u8>
where
    T: prost::Message + Serialize,
{
    match format {
        Format::Protobuf => msg.encode_to_vec(),
        Format::Json => serde_json::to_vec(msg).expect("generated types always serialize"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use v1::*;

    #[test]
    fn purchase_round_trips_in_both_formats() {
        let p = Purchase {
            event_id: "e1".into(),
            customer_id: "c1".into(),
            timestamp_ms: 1_700_000_000_000,
            channel: PurchaseChannel::Online as i32,
            lines: vec![PurchaseLine {
                sku: "sku-1".into(),
                category: "sushi".into(),
                quantity: 2,
                unit_price_minor: 1299,
                unit_cost_minor: 700,
            }],
            currency: "EUR".into(),
            ..Default::default()
        };
        for f in [Format::Protobuf, Format::Json] {
            let back: Purchase = decode(f, &encode(f, &p)).unwrap();
            assert_eq!(back, p, "format {f:?}");
        }
    }

    #[test]
    fn json_accepts_canonical_mapping() {
        let json = br#"{"eventId":"e9","customerId":"c9","timestampMs":"1700000000000",
            "kind":"APP_EVENT_KIND_ADD_TO_CART","sku":"s","category":"sushi"}"#;
        let e: AppEvent = decode(Format::Json, json).unwrap();
        assert_eq!(e.kind(), AppEventKind::AddToCart);
        assert_eq!(e.timestamp_ms, 1_700_000_000_000);
    }

    #[test]
    fn garbage_is_an_error_naming_the_type() {
        let err = decode::<Purchase>(Format::Json, b"{not json").unwrap_err();
        assert!(err.to_string().contains("Purchase"), "{err}");
    }
}
