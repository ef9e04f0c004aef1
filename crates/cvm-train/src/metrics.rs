//! Model quality: AUC, calibration, Qini and AUUC.

/// Area under the ROC curve of `(prediction, outcome)` pairs: the chance
/// that a random converter is ranked above a random non-converter (ties
/// count half). 0.5 is random.
pub fn auc(rows: &[(f64, bool)]) -> f64 {
    let mut sorted: Vec<&(f64, bool)> = rows.iter().collect();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    let positives = rows.iter().filter(|r| r.1).count() as f64;
    let negatives = rows.len() as f64 - positives;
    if positives == 0.0 || negatives == 0.0 {
        return 0.5;
    }
    // Sum of the positives' ranks (average ranks for ties).
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < sorted.len() {
        let mut j = i;
        while j < sorted.len() && sorted[j].0 == sorted[i].0 {
            j += 1;
        }
        let average_rank = (i + j + 1) as f64 / 2.0;
        rank_sum += sorted[i..j].iter().filter(|r| r.1).count() as f64 * average_rank;
        i = j;
    }
    (rank_sum - positives * (positives + 1.0) / 2.0) / (positives * negatives)
}

/// Predicted against observed rate in `bins` equal-count bins of the prediction.
pub fn calibration(rows: &[(f64, bool)], bins: usize) -> Vec<cvm_engine::models::artifact::CalibrationBin> {
    let mut sorted: Vec<&(f64, bool)> = rows.iter().collect();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    (0..bins)
        .filter_map(|b| {
            let part = &sorted[sorted.len() * b / bins..sorted.len() * (b + 1) / bins];
            (!part.is_empty()).then(|| cvm_engine::models::artifact::CalibrationBin {
                predicted: part.iter().map(|r| r.0).sum::<f64>() / part.len() as f64,
                observed: part.iter().filter(|r| r.1).count() as f64 / part.len() as f64,
                rows: part.len() as u64,
            })
        })
        .collect()
}

/// A validation row for uplift metrics.
#[derive(Debug, Clone, Copy)]
pub struct UpliftRow {
    /// Predicted uplift (or any targeting score: higher = contact first).
    pub score: f64,
    /// Contacted.
    pub treated: bool,
    /// Converted.
    pub converted: bool,
}

/// Points of the Qini curve at each percent of the population, targeted in
/// score order: incremental conversions `Y_t(k) − Y_c(k)·N_t(k)/N_c(k)`.
pub fn qini_curve(rows: &[UpliftRow]) -> Vec<(f64, f64)> {
    let mut sorted: Vec<&UpliftRow> = rows.iter().collect();
    sorted.sort_by(|a, b| b.score.total_cmp(&a.score));
    let (mut nt, mut nc, mut yt, mut yc) = (0.0, 0.0, 0.0, 0.0);
    let mut curve = vec![(0.0, 0.0)];
    let n = sorted.len();
    for (i, r) in sorted.iter().enumerate() {
        if r.treated {
            nt += 1.0;
            yt += f64::from(u8::from(r.converted));
        } else {
            nc += 1.0;
            yc += f64::from(u8::from(r.converted));
        }
        let at = i + 1;
        if at * 100 / n != i * 100 / n || at == n {
            let gain = if nc > 0.0 { yt - yc * nt / nc } else { yt };
            curve.push((at as f64 / n as f64, gain));
        }
    }
    curve
}

/// Qini coefficient (area between the Qini curve and random targeting) and
/// AUUC (area under the Qini curve), both per row of the population.
pub fn qini_auuc(rows: &[UpliftRow]) -> (f64, f64) {
    let curve = qini_curve(rows);
    let n = rows.len().max(1) as f64;
    let total = curve.last().map_or(0.0, |p| p.1);
    let (mut area, mut random) = (0.0, 0.0);
    for w in curve.windows(2) {
        let dx = w[1].0 - w[0].0;
        area += dx * (w[0].1 + w[1].1) / 2.0;
        random += dx * total * (w[0].0 + w[1].0) / 2.0;
    }
    ((area - random) / n, area / n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_of_a_perfect_a_reversed_and_a_tied_ranking() {
        let perfect = [(0.1, false), (0.2, false), (0.8, true), (0.9, true)];
        assert_eq!(auc(&perfect), 1.0);
        let reversed: Vec<_> = perfect.iter().map(|&(p, y)| (p, !y)).collect();
        assert_eq!(auc(&reversed), 0.0);
        assert_eq!(auc(&[(0.5, true), (0.5, false)]), 0.5);
    }

    #[test]
    fn qini_is_positive_when_the_score_finds_the_persuadables() {
        // 200 persuadables (convert only if treated), 200 sure things (always).
        let rows: Vec<UpliftRow> = (0..800)
            .map(|i| {
                let persuadable = i < 400;
                let treated = i % 2 == 0;
                UpliftRow {
                    score: if persuadable { 1.0 } else { 0.0 } + f64::from(i % 7) * 0.01,
                    treated,
                    converted: if persuadable { treated } else { true },
                }
            })
            .collect();
        let (qini, auuc) = qini_auuc(&rows);
        assert!(qini > 0.05, "{qini}");
        let reversed: Vec<_> = rows.iter().map(|r| UpliftRow { score: -r.score, ..*r }).collect();
        assert!(qini_auuc(&reversed).0 < -0.05);
        assert!(auuc > qini);
        let calibration = calibration(&[(0.1, false), (0.1, true), (0.9, true), (0.9, true)], 2);
        assert_eq!((calibration[0].observed, calibration[1].observed), (0.5, 1.0));
    }
}
