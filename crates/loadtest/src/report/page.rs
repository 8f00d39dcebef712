//! The HTML report: one self-contained page with inline SVG plots of latency (p50, p99) and
//! throughput over time; no script, no CDN.

use std::fmt::Write;

use super::{Point, Summary};

/// A line chart as inline SVG: one polyline per series over `seconds`.
fn chart(title: &str, unit: &str, series: &[(&str, &str, Vec<f64>)]) -> String {
    let (width, height, pad) = (720.0, 240.0, 48.0);
    let points = series.iter().map(|s| s.2.len()).max().unwrap_or(0).max(2);
    let top = series
        .iter()
        .flat_map(|s| s.2.iter().copied())
        .filter(|v| v.is_finite())
        .fold(0.0_f64, f64::max)
        .max(1e-9)
        * 1.1;
    let x = |i: usize| pad + (width - 2.0 * pad) * i as f64 / (points - 1) as f64;
    let y = |v: f64| height - pad - (height - 2.0 * pad) * v / top;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r##"<figure><figcaption>{title}</figcaption><svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" aria-label="{title}"><rect width="100%" height="100%" fill="#fff"/><line x1="{pad}" y1="{b}" x2="{r}" y2="{b}" stroke="#999"/><line x1="{pad}" y1="{pad}" x2="{pad}" y2="{b}" stroke="#999"/><text x="4" y="{t}" font-size="11">{top:.1} {unit}</text><text x="4" y="{b}" font-size="11">0</text><text x="{r}" y="{lbl}" font-size="11" text-anchor="end">{n} s</text>"##,
        b = height - pad,
        r = width - pad,
        t = pad + 4.0,
        lbl = height - pad + 16.0,
        n = points - 1,
    );
    for (i, (name, colour, values)) in series.iter().enumerate() {
        let path: Vec<String> = values
            .iter()
            .enumerate()
            .map(|(i, v)| format!("{:.1},{:.1}", x(i), y(if v.is_finite() { *v } else { 0.0 })))
            .collect();
        let _ = write!(
            svg,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{}"/><text x="{}" y="{}" font-size="12" fill="{colour}">{name}</text>"#,
            path.join(" "),
            pad + 10.0 + 120.0 * i as f64,
            pad - 10.0
        );
    }
    svg.push_str("</svg></figure>");
    svg
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The HTML report: figures, thresholds, per-operation table and two charts.
pub fn html(summary: &Summary) -> String {
    let series = |f: &dyn Fn(&Point) -> f64| summary.timeline.iter().map(f).collect::<Vec<_>>();
    let latency = chart(
        "Latency over time (ms, from intended start)",
        "ms",
        &[
            ("p50", "#1f77b4", series(&|p| p.p50_ms)),
            ("p99", "#d62728", series(&|p| p.p99_ms)),
        ],
    );
    let throughput = chart(
        "Throughput (per second)",
        "/s",
        &[
            ("requests", "#2ca02c", series(&|p| p.requests as f64)),
            ("bets", "#9467bd", series(&|p| p.bets as f64)),
            ("errors", "#d62728", series(&|p| p.errors as f64)),
        ],
    );
    let mut ops = String::new();
    for (op, s) in &summary.ops {
        let _ = write!(
            ops,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td></tr>",
            escape(op),
            s.ok,
            s.errors,
            s.latency_ms.p50,
            s.latency_ms.p99,
            s.latency_ms.max
        );
    }
    let mut thresholds = String::new();
    for v in &summary.thresholds {
        let _ = write!(
            thresholds,
            "<tr><td>{}</td><td>{:.3}</td><td>{}</td></tr>",
            escape(&v.threshold),
            v.actual,
            if v.pass { "pass" } else { "<b>FAIL</b>" }
        );
    }
    format!(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>croupier loadtest</title>
<style>body{{font-family:sans-serif;max-width:780px;margin:2em auto}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:2px 8px;text-align:right}}td:first-child{{text-align:left}}</style></head><body>
<h1>croupier loadtest: {verdict}</h1>
<p>Target {target}, {model}, scenario {scenario}, {players} players, ramp {ramp:.0} s, duration {duration:.0} s.</p>
<p><b>{requests}</b> requests ({rps:.1}/s), <b>{bets}</b> bets ({bps:.1}/s), <b>{errors}</b> errors ({ep:.3}%), {dropped} arrivals dropped.
Latency from intended start (coordinated omission corrected): p50 {p50:.2} ms, p90 {p90:.2} ms, p99 {p99:.2} ms, p99.9 {p999:.2} ms, max {max:.2} ms.
WebSockets opened {wso}, reconnects {wsr}, messages {wsm}. Generator CPU {cpu:.2} s ({rpc:.0} requests per CPU-second).</p>
{latency}{throughput}
<h2>Operations</h2><table><tr><th>op</th><th>ok</th><th>errors</th><th>p50 ms</th><th>p99 ms</th><th>max ms</th></tr>{ops}</table>
<h2>Thresholds</h2><table><tr><th>threshold</th><th>actual</th><th>verdict</th></tr>{thresholds}</table>
</body></html>
"#,
        verdict = if summary.pass { "pass" } else { "FAIL" },
        target = escape(&summary.target),
        model = escape(&summary.model),
        scenario = summary.scenario,
        players = summary.players,
        ramp = summary.ramp_s,
        duration = summary.duration_s,
        requests = summary.requests,
        rps = summary.rps,
        bets = summary.bets,
        bps = summary.bets_per_s,
        errors = summary.errors,
        ep = summary.error_percent,
        dropped = summary.dropped,
        p50 = summary.latency_ms.p50,
        p90 = summary.latency_ms.p90,
        p99 = summary.latency_ms.p99,
        p999 = summary.latency_ms.p999,
        max = summary.latency_ms.max,
        wso = summary.websockets.opened,
        wsr = summary.websockets.reconnects,
        wsm = summary.websockets.messages,
        cpu = summary.cpu_seconds,
        rpc = summary.requests_per_cpu_second,
    )
}
