//! The report for people: a text table for terminals and a self-contained
//! HTML page with SVG plots drawn offline by plotters.

use std::fmt::Write;

use plotters::prelude::*;

use crate::{CampaignReport, Estimate, Report};

fn money(minor: f64) -> String {
    let units = minor / 100.0;
    let sign = if units < 0.0 { "-" } else { "" };
    let whole = units.abs().round() as i64;
    let digits = whole.to_string();
    let mut grouped = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(ch);
    }
    format!("{sign}{grouped}")
}

fn points(x: f64) -> String {
    format!("{:+.2} pp", x * 100.0)
}

fn interval(e: &Estimate, f: fn(f64) -> String) -> String {
    format!("{} [{}, {}]", f(e.value), f(e.low), f(e.high))
}

fn block(out: &mut String, r: &CampaignReport) {
    let control = if r.control_group == "global_control" { "global control" } else { "holdout" };
    let _ = writeln!(out, "{}  (treated vs {control})", r.campaign_id);
    let _ = writeln!(
        out,
        "  customers            {:>10} treated  {:>10} {control}",
        r.treated.customers, r.control.customers
    );
    let _ = writeln!(
        out,
        "  conversion           {:>9.2}%          {:>9.2}%",
        r.treated.conversion_rate * 100.0,
        r.control.conversion_rate * 100.0
    );
    let relative = r.relative_uplift.map_or("n/a".into(), |x| format!("{:+.1}%", x * 100.0));
    let _ = writeln!(out, "  uplift               {}  relative {relative}", interval(&r.uplift, points));
    let _ = writeln!(out, "  incremental revenue  {}", interval(&r.incremental_revenue_minor, money));
    let _ = writeln!(out, "  incremental margin   {}", interval(&r.incremental_margin_minor, money));
    let roi = r.incremental_roi.map_or("n/a (no contact cost)".into(), |x| format!("{:+.1}x", x));
    let _ = writeln!(
        out,
        "  contacts             {:>10}  cost {}  incremental ROI {roi}",
        r.treated.contacts,
        money(r.contact_cost_minor as f64)
    );
    if !r.flags.is_empty() {
        let _ = writeln!(out, "  ⚠ {}", r.flags.join("; "));
    }
}

/// The report as text (amounts in currency units, intervals at 95 %).
pub fn text(report: &Report) -> String {
    let mut out = String::from("cvm incrementality report (95% intervals; amounts in currency units)\n\n");
    block(&mut out, &report.programme);
    for c in &report.campaigns {
        out.push('\n');
        block(&mut out, c);
    }
    if !report.challengers.is_empty() {
        out.push_str(
            "\nchallengers in shadow (off-policy from the logged decisions; incremental margin net of contact cost)\n",
        );
    }
    for d in &report.challengers {
        let _ = writeln!(out, "\n{}  champion {} vs challenger {}", d.offer_definition_id, d.champion, d.challenger);
        let _ = writeln!(out, "  decisions            {:>10}", d.decisions);
        let _ = writeln!(
            out,
            "  champion             {}  contacts {:.0}",
            interval(&d.champion_increment_minor, money),
            d.champion_contacts
        );
        let _ = writeln!(
            out,
            "  challenger           {}  contacts {:.0}",
            interval(&d.challenger_increment_minor, money),
            d.challenger_contacts
        );
        let _ = writeln!(out, "  challenger − champion {}", interval(&d.difference_minor, money));
        let _ = writeln!(out, "  → {}", d.verdict);
    }
    out
}

fn challenger_rows(report: &Report) -> String {
    if report.challengers.is_empty() {
        return String::new();
    }
    let mut rows = String::from(
        "<h2>Challengers in shadow</h2>\n<p>Each challenger against its champion, valued off-policy from the \
         logged decisions: incremental margin net of contact cost, 95&nbsp;% intervals.</p>\n<table><tr><th>offer</th>\
         <th>champion</th><th>challenger</th><th>decisions</th><th>champion</th><th>challenger</th>\
         <th>difference</th><th>verdict</th></tr>\n",
    );
    for d in &report.challengers {
        let _ = writeln!(
            rows,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&d.offer_definition_id),
            escape(&d.champion),
            escape(&d.challenger),
            d.decisions,
            interval(&d.champion_increment_minor, money),
            interval(&d.challenger_increment_minor, money),
            interval(&d.difference_minor, money),
            escape(d.verdict),
        );
    }
    rows.push_str("</table>\n");
    rows
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Uplift per campaign with its interval as a bar.
fn uplift_svg(report: &Report) -> Result<String, String> {
    let mut svg = String::new();
    let rows: Vec<&CampaignReport> = report.campaigns.iter().collect();
    let n = rows.len().max(1);
    {
        let root = SVGBackend::with_string(&mut svg, (760, 80 + 40 * n as u32)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let lo = rows.iter().map(|r| r.uplift.low * 100.0).fold(-1.0, f64::min);
        let hi = rows.iter().map(|r| r.uplift.high * 100.0).fold(1.0, f64::max);
        let pad = (hi - lo) * 0.1;
        let mut chart = ChartBuilder::on(&root)
            .caption("Conversion uplift, percentage points (95% CI)", ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(180)
            .build_cartesian_2d(lo - pad..hi + pad, 0.0..n as f64)
            .map_err(|e| e.to_string())?;
        let names: Vec<String> = rows.iter().map(|r| r.campaign_id.clone()).collect();
        chart
            .configure_mesh()
            .disable_y_mesh()
            // Ticks every half row; only the row centres get a name.
            .y_labels(2 * n + 1)
            .y_label_formatter(&|y| {
                let centre = (y.fract() - 0.5).abs() < 1e-6;
                names.get(y.floor() as usize).filter(|_| centre).cloned().unwrap_or_default()
            })
            .draw()
            .map_err(|e| e.to_string())?;
        chart.draw_series(LineSeries::new([(0.0, 0.0), (0.0, n as f64)], BLACK.mix(0.5))).map_err(|e| e.to_string())?;
        for (i, r) in rows.iter().enumerate() {
            let y = i as f64 + 0.5;
            let colour = if r.flags.is_empty() { RGBColor(30, 120, 60) } else { RGBColor(200, 120, 0) };
            let (l, v, h) = (r.uplift.low * 100.0, r.uplift.value * 100.0, r.uplift.high * 100.0);
            chart.draw_series(LineSeries::new([(l, y), (h, y)], colour.stroke_width(3))).map_err(|e| e.to_string())?;
            chart.draw_series([Circle::new((v, y), 5, colour.filled())]).map_err(|e| e.to_string())?;
        }
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

/// Cumulative incremental margin per campaign over time.
fn margin_svg(report: &Report) -> Result<String, String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (760, 360)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let all = report.series.iter().flat_map(|s| s.points.iter());
        let (mut x0, mut x1, mut y0, mut y1) = (i32::MAX, i32::MIN, 0.0f64, 1.0f64);
        for &(d, m) in all {
            x0 = x0.min(d);
            x1 = x1.max(d);
            y0 = y0.min(m / 100.0);
            y1 = y1.max(m / 100.0);
        }
        if x0 > x1 {
            (x0, x1) = (0, 1);
        }
        let mut chart = ChartBuilder::on(&root)
            .caption("Cumulative incremental margin (currency units) by day", ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(70)
            .build_cartesian_2d(x0..x1.max(x0 + 1), y0 - (y1 - y0) * 0.05..y1 + (y1 - y0) * 0.05)
            .map_err(|e| e.to_string())?;
        chart.configure_mesh().x_label_formatter(&|d| format!("day {}", d - x0)).draw().map_err(|e| e.to_string())?;
        for (i, s) in report.series.iter().enumerate() {
            let colour = Palette99::pick(i).to_rgba();
            chart
                .draw_series(LineSeries::new(s.points.iter().map(|&(d, m)| (d, m / 100.0)), colour.stroke_width(2)))
                .map_err(|e| e.to_string())?
                .label(s.campaign_id.clone())
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], colour.stroke_width(2)));
        }
        if !report.series.is_empty() {
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK.mix(0.3))
                .draw()
                .map_err(|e| e.to_string())?;
        }
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

/// The report as one self-contained HTML page (inline CSS and SVG; no
/// scripts, no network).
pub fn html(report: &Report) -> Result<String, String> {
    let mut rows = String::new();
    for r in std::iter::once(&report.programme).chain(&report.campaigns) {
        let flags = if r.flags.is_empty() { "✓".to_string() } else { escape(&r.flags.join("; ")) };
        let _ = write!(
            rows,
            "<tr class=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td>{:.2}%</td><td>{:.2}%</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            if r.flags.is_empty() { "ok" } else { "flag" },
            escape(&r.campaign_id),
            r.treated.customers,
            r.control.customers,
            r.treated.conversion_rate * 100.0,
            r.control.conversion_rate * 100.0,
            interval(&r.uplift, points),
            interval(&r.incremental_revenue_minor, money),
            interval(&r.incremental_margin_minor, money),
            money(r.contact_cost_minor as f64),
            r.incremental_roi.map_or("n/a".into(), |x| format!("{x:+.1}x")),
            flags,
        );
    }
    Ok(format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>cvm incrementality report</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; font-size: 14px; }}
th, td {{ border-bottom: 1px solid #ddd; padding: 4px 8px; text-align: right; }}
th:first-child, td:first-child {{ text-align: left; }}
tr.flag td:last-child {{ color: #b36b00; }} tr.ok td:last-child {{ color: #1e783c; }}
</style></head><body>
<h1>Incrementality</h1>
<p>Treated customers against their campaign's holdout (or the global control group where a campaign has none); the programme line compares everyone with the global control group. Intervals are 95&nbsp;%; amounts in currency units.</p>
<table><tr><th>campaign</th><th>treated</th><th>control</th><th>conv. treated</th><th>conv. control</th><th>uplift</th><th>incr. revenue</th><th>incr. margin</th><th>contact cost</th><th>incr. ROI</th><th>verdict</th></tr>
{rows}</table>
{}<h2>Uplift per campaign</h2>
{}
<h2>Incremental margin over time</h2>
{}
</body></html>
"#,
        challenger_rows(report),
        uplift_svg(report)?,
        margin_svg(report)?
    ))
}

#[cfg(test)]
mod tests {
    use cvm_engine::attribution::{Group, Stats, StatsKey};

    use super::*;

    #[test]
    fn html_is_self_contained_with_two_plots() {
        let k = |g, day| StatsKey { campaign_id: "spring <sale>".into(), group: g, day };
        let s = |customers, converters, margin| Stats {
            customers,
            converters,
            margin_minor: margin,
            margin_sq: i128::from(margin) * 10,
            ..Stats::default()
        };
        let stats = [
            (k(Group::Treated, 1), s(500, 100, 50_000)),
            (k(Group::CampaignControl, 1), s(500, 80, 40_000)),
            (k(Group::Treated, 2), s(10, 5, 900)),
        ];
        let report = Report::from_stats(stats.iter().map(|(k, s)| (k, s)));
        let page = html(&report).unwrap();
        assert_eq!(page.matches("<svg").count(), 2);
        assert!(page.contains("spring &lt;sale&gt;"));
        assert!(!page.contains("<script") && !page.contains("src="), "no scripts, no external resources");
        assert!(text(&report).contains("incremental margin"));
        assert_eq!(money(-123_456_789.0), "-1,234,568");
    }
}
