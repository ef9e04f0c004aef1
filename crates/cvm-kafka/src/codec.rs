//! Between Kafka messages and the decision core's events and emits.

use cvm_engine::{
    attribution::{Group, Stats, StatsKey},
    Event, Outbound, Rejection,
};
use cvm_proto::{
    decode, encode,
    v1::{app_envelope, AppEnvelope, CampaignStats, Channel, DeviceLink, EraseRequest, Purchase},
    DecodeError,
};
use cvm_store::OutboxEntry;

use crate::Topics;

/// Header carrying why a message was dead-lettered, for people.
pub(crate) const ERROR_HEADER: &str = "cvm.error";
/// Header carrying the machine-readable reason code (see [`cvm_engine::Reason::code`]).
pub(crate) const ERROR_CODE_HEADER: &str = "cvm.error.code";

/// Which input a topic carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Input {
    Purchases,
    App,
    Erasure,
    DeviceLinks,
}

impl Input {
    /// The input a message from `topic` is, and its index in per-input meters.
    pub(crate) fn of(topics: &Topics, topic: &str) -> (Self, usize) {
        if topic == topics.purchases.name {
            (Input::Purchases, 0)
        } else if topic == topics.erasure.name {
            (Input::Erasure, 2)
        } else if topic == topics.device_links.name {
            (Input::DeviceLinks, 3)
        } else {
            (Input::App, 1)
        }
    }
}

/// Decodes one input message.
pub(crate) fn decode_event(topics: &Topics, input: Input, payload: Option<&[u8]>) -> Result<Event, String> {
    let Some(bytes) = payload.filter(|b| !b.is_empty()) else {
        return Err("empty payload".into());
    };
    let err = |e: DecodeError| e.to_string();
    match input {
        Input::Purchases => decode::<Purchase>(topics.purchases.format, bytes).map(Event::Purchase).map_err(err),
        Input::Erasure => decode::<EraseRequest>(topics.erasure.format, bytes).map(Event::Erase).map_err(err),
        Input::DeviceLinks => {
            decode::<DeviceLink>(topics.device_links.format, bytes).map(Event::DeviceLink).map_err(err)
        }
        Input::App => match decode::<AppEnvelope>(topics.app.format, bytes).map_err(err)?.event {
            Some(app_envelope::Event::AppEvent(e)) => Ok(Event::App(e)),
            Some(app_envelope::Event::Identify(e)) => Ok(Event::Identify(e)),
            Some(app_envelope::Event::Consent(e)) => Ok(Event::Consent(e)),
            None => Err("AppEnvelope without an event".into()),
        },
    }
}

/// The topic and payload that carry `event` as input (for producers such as
/// the demo's synthetic retailer, tools and tests).
pub fn input_message<'t>(topics: &'t Topics, event: &Event) -> (&'t str, Vec<u8>) {
    let app =
        |e: app_envelope::Event| (topics.app.name.as_str(), encode(topics.app.format, &AppEnvelope { event: Some(e) }));
    match event {
        Event::Purchase(p) => (topics.purchases.name.as_str(), encode(topics.purchases.format, p)),
        Event::App(e) => app(app_envelope::Event::AppEvent(e.clone())),
        Event::Identify(e) => app(app_envelope::Event::Identify(e.clone())),
        Event::Consent(e) => app(app_envelope::Event::Consent(e.clone())),
        Event::Erase(e) => (topics.erasure.name.as_str(), encode(topics.erasure.format, e)),
        Event::DeviceLink(e) => (topics.device_links.name.as_str(), encode(topics.device_links.format, e)),
    }
}

/// The outbox entry that publishes `emit`.
pub(crate) fn outbox_entry(topics: &Topics, emit: &Outbound) -> OutboxEntry {
    let (topic, key, payload) = match emit {
        Outbound::Decision(d) => (&topics.decisions.name, &d.customer_id, encode(topics.decisions.format, d)),
        Outbound::Offer(o) => {
            let spec = if o.channel() == Channel::Push { &topics.push } else { &topics.stories };
            (&spec.name, &o.customer_id, encode(spec.format, o))
        }
        Outbound::Rekeyed(e) => {
            let envelope = AppEnvelope { event: Some(app_envelope::Event::AppEvent(e.clone())) };
            (&topics.app.name, &e.customer_id, encode(topics.app.format, &envelope))
        }
        Outbound::Erased(c) => {
            let spec = &topics.erasure_confirmations;
            (&spec.name, &c.customer_id, encode(spec.format, c))
        }
        Outbound::DeviceLink(l) => (&topics.device_links.name, &l.device_id, encode(topics.device_links.format, l)),
    };
    OutboxEntry {
        topic: topic.clone(),
        key: key.as_bytes().to_vec(),
        payload,
        headers: Vec::new(),
        ..Default::default()
    }
}

/// The outbox entry that republishes the attribution sums of `key` in `partition`.
pub(crate) fn stats_entry(topics: &Topics, partition: u32, key: &StatsKey, s: &Stats) -> OutboxEntry {
    let message = CampaignStats {
        partition,
        campaign_id: key.campaign_id.clone(),
        group: key.group.name().to_owned(),
        day: key.day,
        customers: s.customers,
        converters: s.converters,
        orders: s.orders,
        revenue_minor: s.revenue_minor,
        margin_minor: s.margin_minor,
        revenue_sq: s.revenue_sq as f64,
        margin_sq: s.margin_sq as f64,
        contacts: s.contacts,
        contact_cost_minor: s.contact_cost_minor,
    };
    OutboxEntry {
        topic: topics.stats.name.clone(),
        key: format!("{partition}/{}/{}/{}", key.group.name(), key.day, key.campaign_id).into_bytes(),
        payload: encode(topics.stats.format, &message),
        headers: Vec::new(),
        ..Default::default()
    }
}

/// The attribution sums a `cvm.stats` message carries.
pub fn decode_stats(topics: &Topics, payload: &[u8]) -> Result<(u32, StatsKey, Stats), String> {
    let m: CampaignStats = decode(topics.stats.format, payload).map_err(|e| e.to_string())?;
    let group = Group::from_name(&m.group).ok_or_else(|| format!("unknown group {:?}", m.group))?;
    let stats = Stats {
        customers: m.customers,
        converters: m.converters,
        orders: m.orders,
        revenue_minor: m.revenue_minor,
        margin_minor: m.margin_minor,
        revenue_sq: m.revenue_sq as i128,
        margin_sq: m.margin_sq as i128,
        contacts: m.contacts,
        contact_cost_minor: m.contact_cost_minor,
    };
    Ok((m.partition, StatsKey { campaign_id: m.campaign_id, group, day: m.day }, stats))
}

/// The dead-letter entry for an input message that cannot be applied.
pub(crate) fn dead_letter(
    topics: &Topics,
    source: &str,
    partition: i32,
    offset: i64,
    key: Option<&[u8]>,
    payload: Option<&[u8]>,
    rejection: &Rejection,
) -> OutboxEntry {
    OutboxEntry {
        topic: topics.dlq.clone(),
        key: key.unwrap_or_default().to_vec(),
        payload: payload.unwrap_or_default().to_vec(),
        headers: vec![
            (ERROR_HEADER.into(), rejection.detail.as_bytes().to_vec()),
            (ERROR_CODE_HEADER.into(), rejection.reason.code().as_bytes().to_vec()),
            ("cvm.source.topic".into(), source.as_bytes().to_vec()),
            ("cvm.source.partition".into(), partition.to_string().into_bytes()),
            ("cvm.source.offset".into(), offset.to_string().into_bytes()),
        ],
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cvm_proto::v1::Purchase as P;
    use cvm_proto::{v1::AppEvent, Format};

    #[test]
    fn app_envelope_decodes_in_either_format() {
        let mut topics = Topics::default();
        let env = AppEnvelope {
            event: Some(app_envelope::Event::AppEvent(AppEvent { event_id: "e".into(), ..Default::default() })),
        };
        for f in [Format::Protobuf, Format::Json] {
            topics.app.format = f;
            let e = decode_event(&topics, Input::App, Some(&encode(f, &env))).unwrap();
            assert_eq!(e.event_id(), "e");
        }
        assert!(decode_event(&topics, Input::App, Some(b"{\"nope\":1}")).unwrap_err().contains("AppEnvelope"));
        assert_eq!(decode_event(&topics, Input::Purchases, None).unwrap_err(), "empty payload");
        let p = Event::Purchase(P { event_id: "p".into(), ..Default::default() });
        let (topic, bytes) = input_message(&topics, &p);
        assert_eq!(topic, topics.purchases.name);
        assert_eq!(decode_event(&topics, Input::Purchases, Some(&bytes)).unwrap(), p);
    }
}
