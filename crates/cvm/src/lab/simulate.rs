//! `cvm offers simulate`: a dry run of one offer document against recorded
//! events, through the real decision core, publishing nothing.
//!
//! Events go through the same [`Driver`] as the ingest loop, in file order,
//! in event time (one input, so the watermark is the latest time read); a
//! sweep runs once over every profile after the last event. The result answers "how
//! many customers would this reach, on which channel, and what would they
//! read?" before the document goes live.

use std::{collections::BTreeMap, collections::HashSet, fmt::Write};

use cvm_engine::{
    driver::Source, time::DAY_MS, Catalog, Driver, Engine, EngineConfig, Event, MemoryState, OfferDefinition, Outbound,
    Output,
};
use cvm_proto::v1::{Channel, Offer, Outcome};

/// What a simulation found.
#[derive(Debug, Default)]
pub struct Simulation {
    /// Events applied.
    pub events: usize,
    /// Customers the trigger reached (any decision).
    pub triggered_customers: usize,
    /// Customers that met the eligibility at least once.
    pub eligible_customers: usize,
    /// Decisions by (channel, outcome).
    pub outcomes: BTreeMap<(i32, i32), usize>,
    /// Decisions by trigger (event, delayed, inactivity, cascade, sweep).
    pub triggers: BTreeMap<String, usize>,
    /// Offers that would be sent, per channel.
    pub offers: BTreeMap<i32, usize>,
    /// The first rendered offers.
    pub samples: Vec<Offer>,
}

/// Runs `def` over `events` with `config` (holdouts, contact policy), then
/// lets one more day pass for timers (deferred pushes, delays).
pub fn simulate(def: OfferDefinition, events: &[Event], config: EngineConfig, samples: usize) -> Simulation {
    let sweep = matches!(def.doc.trigger, cvm_engine::offers::Trigger::Sweep { .. });
    let mut driver = Driver::replay(Engine::new(config, Catalog::new([def])));
    let mut state = MemoryState::default();
    let mut sim = Simulation { events: events.len(), ..Default::default() };
    let (mut triggered, mut eligible) = (HashSet::new(), HashSet::new());
    let mut now = i64::MIN;
    let mut tally = |out: Output, sim: &mut Simulation| {
        for e in out.emits {
            match e {
                Outbound::Decision(d) => {
                    triggered.insert(d.customer_id.clone());
                    if d.outcome() != Outcome::Ineligible {
                        eligible.insert(d.customer_id.clone());
                    }
                    *sim.outcomes.entry((d.channel, d.outcome)).or_default() += 1;
                    *sim.triggers.entry(d.trigger.clone()).or_default() += 1;
                }
                Outbound::Offer(o) => {
                    *sim.offers.entry(o.channel).or_default() += 1;
                    if sim.samples.len() < samples {
                        sim.samples.push(o);
                    }
                }
                Outbound::Rekeyed(_) | Outbound::Erased(_) | Outbound::DeviceLink(_) => {}
            }
        }
    };
    // A dry run reports what it could decide: a store error (impossible in
    // memory) would only cut the event short.
    for event in events {
        now = now.max(event.timestamp_ms());
        let mut out = Output::default();
        let _ = driver.apply(&mut state, 0, Source::Input(0), event, 0, &mut out);
        tally(out, &mut sim);
    }
    if sweep {
        if let Some(def) = driver.engine().catalog().sweeps().first().cloned() {
            let mut out = Output::default();
            let _ = driver.sweep_everyone(&mut state, &[0], &def, now, &mut out);
            tally(out, &mut sim);
        }
    }
    // Let the day after the last event pass, so pushes deferred out of quiet
    // hours (and other timers due by then) are decided too.
    let mut out = Output::default();
    let _ = driver.fire_through(&mut state, 0, now.saturating_add(DAY_MS), &mut out);
    tally(out, &mut sim);
    sim.triggered_customers = triggered.len();
    sim.eligible_customers = eligible.len();
    sim
}

fn channel_name(c: i32) -> &'static str {
    match Channel::try_from(c).unwrap_or_default() {
        Channel::Push => "push",
        Channel::Stories => "stories",
        Channel::Unspecified => "-",
    }
}

impl Simulation {
    /// A readable report.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "events replayed        {}", self.events);
        let _ = writeln!(out, "customers triggered    {}", self.triggered_customers);
        let _ = writeln!(out, "customers eligible     {}", self.eligible_customers);
        for (channel, n) in &self.offers {
            let _ = writeln!(out, "offers on {:<12} {n}", channel_name(*channel));
        }
        let _ = writeln!(out, "\ndecisions by channel and outcome:");
        for ((channel, outcome), n) in &self.outcomes {
            let o = Outcome::try_from(*outcome).unwrap_or_default();
            let _ = writeln!(out, "  {:<8} {:<24} {n}", channel_name(*channel), o.as_str_name());
        }
        let _ = writeln!(out, "\ndecisions by trigger:");
        for (t, n) in &self.triggers {
            let _ = writeln!(out, "  {t:<12} {n}");
        }
        let _ = writeln!(out, "\nsample messages:");
        for o in &self.samples {
            let c = o.content.clone().unwrap_or_default();
            let text = if c.body.is_empty() { &c.call_to_action } else { &c.body };
            let _ = writeln!(out, "  [{}] {} | {:?} | {:?}", channel_name(o.channel), o.customer_id, c.title, text);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cvm_synth::{Retailer, RetailerConfig};

    #[test]
    fn simulates_the_abandoned_cart_sample_with_cascades() {
        let def = crate::lab::samples::sample_offers().into_iter().find(|d| d.id() == "abandoned-cart").unwrap();
        let events: Vec<_> =
            Retailer::new(RetailerConfig { customers: 500, days: 7, ..Default::default() }).map(|e| e.event).collect();
        let sim = simulate(def, &events, EngineConfig::default(), 3);
        assert!(sim.triggered_customers > 0 && sim.eligible_customers <= sim.triggered_customers, "{sim:?}");
        assert!(sim.triggers.get("delayed").is_some_and(|n| *n > 0), "{:?}", sim.triggers);
        assert!(sim.offers.get(&(Channel::Push as i32)).is_some_and(|n| *n > 0), "{:?}", sim.offers);
        assert_eq!(sim.samples.len(), 3);
        assert!(sim.render().contains("customers eligible"));
    }

    #[test]
    fn simulates_a_sweep_over_every_profile() {
        let def = crate::lab::samples::sample_offers().into_iter().find(|d| d.id() == "storm-tonight").unwrap();
        let events: Vec<_> =
            Retailer::new(RetailerConfig { customers: 300, days: 5, ..Default::default() }).map(|e| e.event).collect();
        let sim = simulate(def, &events, EngineConfig::default(), 0);
        // The sweep runs at the last event's time, late at night: its pushes
        // are deferred to the morning and decided then.
        assert_eq!(sim.triggers.keys().collect::<Vec<_>>(), ["deferred", "sweep"]);
        assert!(sim.offers.values().sum::<usize>() > 0, "{sim:?}");
    }
}
