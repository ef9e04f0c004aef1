//! Drift: is live traffic still the population the model was trained on?
//!
//! Each model keeps a window of the customers it decided about (the same
//! population its training rows came from: treated and held-out decisions)
//! binned on the training deciles of the monitored features and the score.
//! When the window is full it computes the population stability index
//! `PSI = Σ (live − train) · ln(live / train)` per series, and the model is
//! *drifted* while the largest PSI is above the threshold (0.25 is the usual
//! "significant shift"). A drifted model stops scoring: its offer falls back
//! to rule priority until a later window is back under the threshold or a
//! retrained model is swapped in.

use std::sync::{
    atomic::{AtomicBool, Ordering},
    Mutex,
};

use super::artifact::Histogram;

/// Floor of a bin's share, so an empty bin does not make PSI infinite.
const MIN_SHARE: f64 = 1e-4;

/// The PSI of `live` counts against the `reference` shares.
pub fn psi(reference: &[f64], live: &[u64]) -> f64 {
    let n: u64 = live.iter().sum();
    if n == 0 {
        return 0.0;
    }
    reference
        .iter()
        .zip(live)
        .map(|(&e, &a)| {
            let (e, a) = (e.max(MIN_SHARE), (a as f64 / n as f64).max(MIN_SHARE));
            (a - e) * (a / e).ln()
        })
        .sum()
}

/// The result of a completed window.
#[derive(Debug, Clone, PartialEq)]
pub struct DriftCheck {
    /// PSI per monitored series (feature names, then `score`).
    pub psi: Vec<(String, f64)>,
    /// Whether the model is drifted after this window.
    pub drifted: bool,
    /// Whether that changed with this window.
    pub changed: bool,
}

impl DriftCheck {
    /// The series with the largest PSI.
    pub fn worst(&self) -> Option<&(String, f64)> {
        self.psi.iter().max_by(|a, b| a.1.total_cmp(&b.1))
    }
}

/// A model's drift window and state; shared by every thread that scores.
#[derive(Debug)]
pub struct DriftMonitor {
    reference: Vec<Histogram>,
    counts: Mutex<(usize, Vec<Vec<u64>>)>,
    drifted: AtomicBool,
    /// Why it is drifted, for decisions ("PSI 0.41 on score").
    reason: Mutex<String>,
}

impl DriftMonitor {
    /// A monitor over the `reference` series.
    pub fn new(reference: Vec<Histogram>) -> Self {
        let empty = reference.iter().map(|h| vec![0; h.shares.len()]).collect();
        Self {
            reference,
            counts: Mutex::new((0, empty)),
            drifted: AtomicBool::new(false),
            reason: Mutex::new(String::new()),
        }
    }

    /// Whether the last completed window drifted.
    pub fn drifted(&self) -> bool {
        self.drifted.load(Ordering::Relaxed)
    }

    /// Why, when [`drifted`](Self::drifted).
    pub fn reason(&self) -> String {
        self.reason.lock().expect("drift reason lock").clone()
    }

    /// Records one observation: `values[i]` for reference series `i`.
    /// Returns the check when this observation completed a window of
    /// `window` observations; drifted means a PSI above `threshold`.
    pub fn observe(&self, values: &[f64], window: usize, threshold: f64) -> Option<DriftCheck> {
        let mut guard = self.counts.lock().expect("drift window lock");
        let (n, counts) = &mut *guard;
        for ((h, c), &x) in self.reference.iter().zip(counts.iter_mut()).zip(values) {
            c[h.bin(x)] += 1;
        }
        *n += 1;
        if *n < window.max(1) {
            return None;
        }
        let psi: Vec<(String, f64)> =
            self.reference.iter().zip(counts.iter()).map(|(h, c)| (h.name.clone(), psi(&h.shares, c))).collect();
        *n = 0;
        counts.iter_mut().for_each(|c| c.iter_mut().for_each(|x| *x = 0));
        drop(guard);
        let mut check = DriftCheck { psi, drifted: false, changed: false };
        if let Some((name, value)) = check.worst().filter(|w| w.1 > threshold) {
            *self.reason.lock().expect("drift reason lock") = format!("PSI {value:.2} on {name} > {threshold:.2}");
            check.drifted = true;
        }
        check.changed = self.drifted.swap(check.drifted, Ordering::Relaxed) != check.drifted;
        Some(check)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uniform(name: &str) -> Histogram {
        Histogram { name: name.into(), edges: (1..10).map(|i| f64::from(i) / 10.0).collect(), shares: vec![0.1; 10] }
    }

    #[test]
    fn psi_is_zero_for_the_same_distribution_and_large_for_a_shift() {
        assert!(psi(&[0.5, 0.5], &[50, 50]).abs() < 1e-12);
        assert!(psi(&[0.5, 0.5], &[90, 10]) > 0.5);
    }

    #[test]
    fn a_window_of_shifted_scores_drifts_and_a_normal_one_recovers() {
        let m = DriftMonitor::new(vec![uniform("score")]);
        let check = (0..1_000).filter_map(|i| m.observe(&[f64::from(i % 100) / 100.0], 1_000, 0.25)).last().unwrap();
        assert!(!check.drifted && !m.drifted(), "{check:?}");
        let check =
            (0..1_000).filter_map(|i| m.observe(&[0.9 + f64::from(i % 10) / 100.0], 1_000, 0.25)).last().unwrap();
        assert!(check.drifted && check.changed && m.drifted());
        assert!(m.reason().starts_with("PSI ") && m.reason().contains("on score"), "{}", m.reason());
        let check = (0..1_000).filter_map(|i| m.observe(&[f64::from(i % 100) / 100.0], 1_000, 0.25)).last().unwrap();
        assert!(!check.drifted && check.changed && !m.drifted());
    }
}
