//! Files of recorded input events: what `cvm synth` writes and
//! `cvm offers simulate` reads.
//!
//! Two encodings of [`RecordedEvent`]: JSON lines (`.jsonl`, `.json`; easy
//! to produce from any platform's export) and length-delimited protobuf
//! (anything else; compact).

use std::{
    io::{BufRead, Write},
    path::Path,
};

use anyhow::{bail, Context};
use cvm_engine::Event;
use cvm_proto::v1::{app_envelope, recorded_event, AppEnvelope, RecordedEvent};
use prost::Message;

fn is_json(path: &Path) -> bool {
    matches!(path.extension().and_then(|e| e.to_str()), Some("jsonl" | "json"))
}

/// Wraps an engine event for recording.
pub fn record(event: &Event) -> RecordedEvent {
    let app = |e| recorded_event::Event::App(AppEnvelope { event: Some(e) });
    RecordedEvent {
        event: Some(match event {
            Event::Purchase(p) => recorded_event::Event::Purchase(p.clone()),
            Event::App(a) => app(app_envelope::Event::AppEvent(a.clone())),
            Event::Identify(i) => app(app_envelope::Event::Identify(i.clone())),
            Event::Consent(c) => app(app_envelope::Event::Consent(c.clone())),
            Event::Erase(e) => recorded_event::Event::Erase(e.clone()),
            Event::DeviceLink(e) => recorded_event::Event::DeviceLink(e.clone()),
        }),
    }
}

fn unwrap(recorded: RecordedEvent) -> Option<Event> {
    Some(match recorded.event? {
        recorded_event::Event::Purchase(p) => Event::Purchase(p),
        recorded_event::Event::App(a) => match a.event? {
            app_envelope::Event::AppEvent(e) => Event::App(e),
            app_envelope::Event::Identify(e) => Event::Identify(e),
            app_envelope::Event::Consent(e) => Event::Consent(e),
        },
        recorded_event::Event::Erase(e) => Event::Erase(e),
        recorded_event::Event::DeviceLink(e) => Event::DeviceLink(e),
    })
}

/// Writes `events` to `path` (JSON lines or length-delimited protobuf, by extension).
pub fn write(path: &Path, events: impl IntoIterator<Item = Event>) -> anyhow::Result<usize> {
    let file = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut out = std::io::BufWriter::new(file);
    let json = is_json(path);
    let mut n = 0;
    for e in events {
        let r = record(&e);
        if json {
            serde_json::to_writer(&mut out, &r)?;
            out.write_all(b"\n")?;
        } else {
            out.write_all(&r.encode_length_delimited_to_vec())?;
        }
        n += 1;
    }
    out.flush()?;
    Ok(n)
}

/// Reads every event of `path`; a bad line or frame is an error naming its position.
pub fn read(path: &Path) -> anyhow::Result<Vec<Event>> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut events = Vec::new();
    if is_json(path) {
        for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            let r: RecordedEvent = serde_json::from_str(&line)
                .with_context(|| format!("{}:{}: not a recorded event", path.display(), i + 1))?;
            events.extend(unwrap(r));
        }
    } else {
        let bytes = std::fs::read(path)?;
        let mut buf = bytes.as_slice();
        while !buf.is_empty() {
            let offset = bytes.len() - buf.len();
            let Ok(r) = RecordedEvent::decode_length_delimited(&mut buf) else {
                bail!("{}: byte {offset}: not a length-delimited RecordedEvent", path.display());
            };
            events.extend(unwrap(r));
        }
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use cvm_synth::{Retailer, RetailerConfig};

    #[test]
    fn both_encodings_round_trip() {
        let events: Vec<_> =
            Retailer::new(RetailerConfig { customers: 50, days: 3, ..Default::default() }).map(|e| e.event).collect();
        let dir = tempfile::tempdir().unwrap();
        for name in ["events.jsonl", "events.pb"] {
            let path = dir.path().join(name);
            assert_eq!(super::write(&path, events.clone()).unwrap(), events.len());
            assert_eq!(super::read(&path).unwrap(), events, "{name}");
        }
    }
}
