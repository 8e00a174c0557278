//! The status page's replication-lag plot: an inline SVG (no script, no external asset),
//! because people read this page during incidents, when fetching anything else may be what
//! fails. The samples are the election's ([`History`]); drawing them is presentation, so it
//! lives with the page.

use crate::cluster::lag_history::History;
use std::fmt::Write;

/// The lag plot: one polyline per node, time on x, lag in seconds on y (scaled to the
/// largest lag seen, at least one second), with a legend. Node ids are hex, so they need
/// no escaping, but are escaped anyway.
pub fn svg(history: &History) -> String {
    const W: f64 = 600.0;
    const H: f64 = 160.0;
    const PAD: f64 = 30.0;
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{}" role="img" aria-label="replication lag per node">"#,
        H + 20.0
    );
    let (Some(first), Some(last)) = (history.samples().front(), history.samples().back()) else {
        out.push_str(r#"<text x="10" y="20">no samples yet</text></svg>"#);
        return out;
    };
    let t0 = first.0;
    let span = ((last.0 - t0) as f64).max(1.0);
    let max = history
        .samples()
        .iter()
        .flat_map(|(_, l)| l.iter().map(|(_, v)| *v))
        .fold(1.0_f64, f64::max);
    let mut nodes: Vec<&str> = history
        .samples()
        .iter()
        .flat_map(|(_, l)| l.iter().map(|(n, _)| n.as_str()))
        .collect();
    nodes.sort_unstable();
    nodes.dedup();
    let _ = write!(
        out,
        r##"<rect x="{PAD}" y="0" width="{}" height="{H}" fill="none" stroke="#999"/><text x="2" y="12" font-size="10">{max:.1}s</text><text x="2" y="{H}" font-size="10">0</text><text x="{PAD}" y="{}" font-size="10">-{span:.0}s</text><text x="{}" y="{}" font-size="10">now</text>"##,
        W - PAD,
        H + 12.0,
        W - 30.0,
        H + 12.0
    );
    const COLOURS: [&str; 6] = [
        "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
    ];
    for (i, node) in nodes.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let points: Vec<String> = history
            .samples()
            .iter()
            .filter_map(|(t, l)| {
                let v = l.iter().find(|(n, _)| n == node)?.1;
                let x = PAD + (W - 2.0 * PAD) * ((t - t0) as f64 / span);
                let y = H - (H - 4.0) * (v / max);
                Some(format!("{x:.1},{y:.1}"))
            })
            .collect();
        let _ = write!(
            out,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{}"/><text x="{}" y="{}" font-size="10" fill="{colour}">{}</text>"#,
            points.join(" "),
            W - PAD + 2.0,
            14.0 + 12.0 * i as f64,
            super::html_escape(node)
        );
    }
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_one_line_per_node() {
        let mut h = History::default();
        assert!(svg(&h).contains("no samples yet"));
        for t in 0..200 {
            h = h.with(t, vec![("aa".into(), 0.0), ("bb".into(), t as f64 / 10.0)]);
        }
        let svg = svg(&h);
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
    }
}
