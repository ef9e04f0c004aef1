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

/// A small seeded generator (splitmix64: small, fast and good enough to
/// draw indices): the same seed draws the same bootstrap samples and grows
/// the same forest.
pub(crate) struct Draws(pub(crate) u64);

impl Draws {
    /// The next 64 random bits.
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in 0..1.
    pub(crate) fn uniform(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
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
    let mut last_percent = 0;
    for (i, r) in sorted.iter().enumerate() {
        if r.treated {
            nt += 1.0;
            yt += f64::from(u8::from(r.converted));
        } else {
            nc += 1.0;
            yc += f64::from(u8::from(r.converted));
        }
        let at = i + 1;
        // A point per percent of rows, never inside a group of tied scores:
        // their order is arbitrary, so a tie counts as random targeting.
        let tie_continues = at < n && sorted[at].score == r.score;
        if at == n || (!tie_continues && at * 100 / n != last_percent) {
            let gain = if nc > 0.0 { yt - yc * nt / nc } else { yt };
            curve.push((at as f64 / n as f64, gain));
            last_percent = at * 100 / n;
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

/// The 95 % interval of the Qini coefficient of `rows`, by a percentile
/// bootstrap over customers: `customers[i]` is row `i`'s customer, and a
/// customer's rows are drawn together, since the outcomes of one customer's
/// several decisions are correlated (drawing rows alone would make the
/// interval too narrow). `resamples` draws from a generator seeded with
/// `seed`: the same rows and seed give the same interval.
pub fn qini_interval(rows: &[UpliftRow], customers: &[&str], resamples: usize, seed: u64) -> (f64, f64) {
    let mut groups: std::collections::BTreeMap<&str, Vec<usize>> = std::collections::BTreeMap::new();
    for (i, c) in customers.iter().enumerate().take(rows.len()) {
        groups.entry(c).or_default().push(i);
    }
    let groups: Vec<Vec<usize>> = groups.into_values().collect();
    if groups.is_empty() || resamples == 0 {
        return (f64::NAN, f64::NAN);
    }
    let mut draws = Draws(seed ^ 0x2545_f491_4f6c_dd1d);
    let mut qinis: Vec<f64> = (0..resamples)
        .map(|_| {
            let mut sample = Vec::with_capacity(rows.len());
            for _ in 0..groups.len() {
                let g = &groups[(draws.next() % groups.len() as u64) as usize];
                sample.extend(g.iter().map(|&i| rows[i]));
            }
            qini_auuc(&sample).0
        })
        .collect();
    qinis.sort_by(f64::total_cmp);
    let at = |q: f64| qinis[((resamples as f64 - 1.0) * q).round() as usize];
    (at(0.025), at(0.975))
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
        // The same rows with one score for all: their order says nothing,
        // so the ranking is worth what random targeting is.
        let tied: Vec<_> = rows.iter().map(|r| UpliftRow { score: 0.3, ..*r }).collect();
        assert_eq!(qini_auuc(&tied).0, 0.0);
        let calibration = calibration(&[(0.1, false), (0.1, true), (0.9, true), (0.9, true)], 2);
        assert_eq!((calibration[0].observed, calibration[1].observed), (0.5, 1.0));
    }

    /// Rows of customers each decided `per_customer` times, whose uplift is
    /// `persuadable` (treated convert, held out do not) for the first half of
    /// the customers and zero for the rest (convert by a coin); `score`
    /// ranks them.
    fn customers_rows(
        n: usize,
        per_customer: usize,
        score: impl Fn(usize, bool) -> f64,
    ) -> (Vec<UpliftRow>, Vec<String>) {
        let mut rows = Vec::new();
        let mut ids = Vec::new();
        for c in 0..n {
            let persuadable = c < n / 2;
            for k in 0..per_customer {
                let treated = (c + k) % 2 == 0;
                let converted = if persuadable { treated } else { (c * 7 + k * 3) % 5 < 2 };
                rows.push(UpliftRow { score: score(c, persuadable), treated, converted });
                ids.push(format!("c{c}"));
            }
        }
        (rows, ids)
    }

    #[test]
    fn the_qini_interval_excludes_zero_for_a_real_ranking_and_not_for_noise() {
        let (rows, ids) = customers_rows(400, 3, |c, p| f64::from(u8::from(p)) + (c % 13) as f64 * 1e-3);
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        let (point, _) = qini_auuc(&rows);
        let (low, high) = qini_interval(&rows, &ids, 400, 7);
        assert!(low > 0.0 && low < point && point < high, "{low} {point} {high}");
        assert_eq!(qini_interval(&rows, &ids, 400, 7), (low, high), "seeded");
        // A score unrelated to who is persuadable: the interval spans zero.
        let (noise, _) = customers_rows(400, 3, |c, _| ((c * 2_654_435_761) % 1_000) as f64);
        let (low, high) = qini_interval(&noise, &ids, 400, 7);
        assert!(low < 0.0 && high > 0.0, "{low} {high}");
    }

    #[test]
    fn drawing_customers_not_rows_widens_the_interval_of_repeated_decisions() {
        // The same customers decided 6 times each: 6 correlated rows apiece.
        let (rows, ids) = customers_rows(300, 6, |c, _| ((c * 2_654_435_761) % 1_000) as f64);
        let by_customer: Vec<&str> = ids.iter().map(String::as_str).collect();
        let by_row: Vec<String> = (0..rows.len()).map(|i| i.to_string()).collect();
        let by_row: Vec<&str> = by_row.iter().map(String::as_str).collect();
        let width = |(l, h): (f64, f64)| h - l;
        let clustered = width(qini_interval(&rows, &by_customer, 400, 3));
        let naive = width(qini_interval(&rows, &by_row, 400, 3));
        assert!(clustered > naive * 1.3, "clustered {clustered} vs per row {naive}");
    }
}
