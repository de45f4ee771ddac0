//! The dashboard's charts (agency guide R50): issuance and failures per day as an SVG bar
//! chart, drawn here, shown as an image (`data:` URI, which the CSP allows; no script, no
//! inline style), with the same figures in a table beside it for readers without images.
//!
//! Invariant: the chart holds only numbers and dates it formats itself; no text from the
//! database or a client reaches the SVG.

use std::collections::HashMap;

use serde::Serialize;

const WIDTH: f64 = 760.0;
const HEIGHT: f64 = 220.0;
const LEFT: f64 = 40.0;
const BOTTOM: f64 = 30.0;
const TOP: f64 = 24.0;

/// One day's figures, oldest first.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Day {
    /// `MM-DD` (UTC).
    pub date: String,
    pub issued: i64,
    pub failed: i64,
}

/// `days` days ending with `today` (day numbers since the epoch), from sparse per-day counts.
pub fn days(today: i64, days: i64, issued: &[(i64, i64)], failed: &[(i64, i64)]) -> Vec<Day> {
    let issued: HashMap<i64, i64> = issued.iter().copied().collect();
    let failed: HashMap<i64, i64> = failed.iter().copied().collect();
    (today - days + 1..=today)
        .map(|d| Day {
            date: date(d),
            issued: issued.get(&d).copied().unwrap_or(0),
            failed: failed.get(&d).copied().unwrap_or(0),
        })
        .collect()
}

fn date(day: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(day * 86400)
        .map(|t| format!("{:02}-{:02}", u8::from(t.month()), t.day()))
        .unwrap_or_default()
}

/// The SVG of a grouped bar chart of `days`.
pub fn svg(days: &[Day]) -> String {
    let max = days
        .iter()
        .map(|d| d.issued.max(d.failed))
        .max()
        .unwrap_or(0)
        .max(1);
    // A round top for the axis: 1, 2, 5 times a power of ten.
    let mut top = 1i64;
    while top < max {
        top = match top.to_string().as_bytes()[0] {
            b'1' => top * 2,
            b'2' => top / 2 * 5,
            _ => top * 2,
        };
    }
    let plot_w = WIDTH - LEFT - 10.0;
    let plot_h = HEIGHT - BOTTOM - TOP;
    let slot = plot_w / days.len().max(1) as f64;
    let bar = (slot * 0.38).max(1.0);
    let y = |v: i64| TOP + plot_h - plot_h * v as f64 / top as f64;
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{HEIGHT}\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" font-family=\"sans-serif\" font-size=\"11\">"
    );
    out.push_str(&format!(
        "<rect width=\"{WIDTH}\" height=\"{HEIGHT}\" fill=\"#ffffff\"/>"
    ));
    for i in 0..=4 {
        let v = top * i / 4;
        let yy = y(v);
        out.push_str(&format!(
            "<line x1=\"{LEFT}\" x2=\"{}\" y1=\"{yy:.1}\" y2=\"{yy:.1}\" stroke=\"#d7dde5\"/><text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"#5b6778\">{v}</text>",
            WIDTH - 10.0,
            LEFT - 6.0,
            yy + 4.0
        ));
    }
    for (i, d) in days.iter().enumerate() {
        let x = LEFT + slot * i as f64 + slot * 0.1;
        for (k, (v, color)) in [(d.issued, "#1f5fa8"), (d.failed, "#a3262a")]
            .into_iter()
            .enumerate()
        {
            if v > 0 {
                let yy = y(v);
                out.push_str(&format!(
                    "<rect x=\"{:.1}\" y=\"{yy:.1}\" width=\"{bar:.1}\" height=\"{:.1}\" fill=\"{color}\"/>",
                    x + bar * k as f64,
                    TOP + plot_h - yy
                ));
            }
        }
        if i % 5 == 0 || i + 1 == days.len() {
            out.push_str(&format!(
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#5b6778\">{}</text>",
                x + bar,
                HEIGHT - 10.0,
                d.date
            ));
        }
    }
    out.push_str(&format!(
        "<rect x=\"{LEFT}\" y=\"6\" width=\"10\" height=\"10\" fill=\"#1f5fa8\"/><text x=\"{}\" y=\"15\" fill=\"#1b2330\">issued</text><rect x=\"{}\" y=\"6\" width=\"10\" height=\"10\" fill=\"#a3262a\"/><text x=\"{}\" y=\"15\" fill=\"#1b2330\">failed (validations, refusals)</text></svg>",
        LEFT + 14.0,
        LEFT + 70.0,
        LEFT + 84.0
    ));
    out
}

/// [`svg`] as a `data:` URI for an `<img>`.
pub fn data_uri(days: &[Day]) -> String {
    use base64::Engine;
    format!(
        "data:image/svg+xml;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(svg(days))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_fill_the_gaps_and_end_today() {
        let today = 20_000;
        let d = days(today, 7, &[(today, 3), (today - 6, 1)], &[(today - 1, 2)]);
        assert_eq!(d.len(), 7);
        assert_eq!((d[0].issued, d[0].failed), (1, 0));
        assert_eq!((d[5].issued, d[5].failed), (0, 2));
        assert_eq!((d[6].issued, d[6].failed), (3, 0));
        // Day 20000 is 2024-10-04.
        assert_eq!(d[6].date, "10-04");
    }

    #[test]
    fn the_chart_has_a_bar_per_nonzero_figure() {
        let d = days(20_000, 30, &[(20_000, 7), (19_990, 2)], &[(19_995, 1)]);
        let s = svg(&d);
        assert!(s.starts_with("<svg") && s.ends_with("</svg>"));
        // Three bars plus the background and the two legend squares.
        assert_eq!(s.matches("<rect").count(), 6, "{s}");
        // The axis tops at a round value above the largest figure.
        assert!(s.contains(">10</text>"), "{s}");
    }
}
