//! A Grafana dashboard over the metric names Croupier exports (`croupier control export
//! --grafana-dashboard`), for operators who watch with their own Grafana: the players' traffic
//! through the gateways, errors and latency, bets, the nodes as the gateways see them, the
//! store, the SLOs (from the recorded series of the exported rules) and the control planes'
//! lease. The Prometheus data source is a dashboard variable, chosen on import.

use serde::Serialize;

/// One chart: a title and its PromQL queries with their legends.
pub struct Panel {
    pub title: &'static str,
    pub unit: &'static str,
    pub queries: Vec<(String, &'static str)>,
}

/// The panels, in reading order.
pub fn panels() -> Vec<Panel> {
    let panel = |title, unit, queries: &[(&str, &'static str)]| Panel {
        title,
        unit,
        queries: queries.iter().map(|(q, l)| ((*q).to_owned(), *l)).collect(),
    };
    vec![
        panel(
            "Player requests/s (gateways)",
            "reqps",
            &[(
                "sum by (instance) (rate(croupier_gateway_requests_total[1m]))",
                "{{instance}}",
            )],
        ),
        panel(
            "5xx share (gateways)",
            "percentunit",
            &[(
                "sum by (instance) (rate(croupier_gateway_requests_total{status=~\"5..\"}[1m])) / sum by (instance) (rate(croupier_gateway_requests_total[1m]))",
                "{{instance}}",
            )],
        ),
        panel(
            "p99 latency to the nodes",
            "s",
            &[(
                "histogram_quantile(0.99, sum by (le, node) (rate(croupier_gateway_upstream_duration_seconds_bucket[1m])))",
                "{{node}}",
            )],
        ),
        panel(
            "Bets/s by game",
            "ops",
            &[("sum by (game) (rate(croupier_bets_total[1m]))", "{{game}}")],
        ),
        panel(
            "Nodes healthy (gateways' view)",
            "short",
            &[("sum by (node) (croupier_gateway_node_healthy)", "{{node}}")],
        ),
        panel(
            "Retries and refusals/s",
            "reqps",
            &[
                (
                    "sum by (reason) (rate(croupier_gateway_retries_total[1m]))",
                    "retry {{reason}}",
                ),
                (
                    "sum by (reason) (rate(croupier_gateway_refused_total[1m]))",
                    "refused {{reason}}",
                ),
            ],
        ),
        panel(
            "Store up (nodes)",
            "short",
            &[("croupier_store_up", "{{instance}}")],
        ),
        panel(
            "Ledger commit p99",
            "s",
            &[(
                "histogram_quantile(0.99, sum by (le, instance) (rate(croupier_store_commit_seconds_bucket[1m])))",
                "{{instance}}",
            )],
        ),
        panel(
            "Data folder used",
            "percentunit",
            &[(
                "1 - croupier_data_filesystem_available_bytes / croupier_data_filesystem_size_bytes",
                "{{instance}} {{folder}}",
            )],
        ),
        panel(
            "SLO error ratio (1 h)",
            "percentunit",
            &[("croupier_slo:error_ratio:rate1h", "{{slo}}")],
        ),
        panel(
            "Control plane leader",
            "short",
            &[(
                "croupier_control_leader{job=\"croupier-control\"}",
                "{{instance}}",
            )],
        ),
    ]
}

#[derive(Serialize)]
struct DataSource {
    r#type: &'static str,
    uid: &'static str,
}

const DATA_SOURCE: DataSource = DataSource {
    r#type: "prometheus",
    uid: "${datasource}",
};

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Target {
    expr: String,
    legend_format: &'static str,
    ref_id: String,
    datasource: DataSource,
}

#[derive(Serialize)]
struct GridPos {
    x: u32,
    y: u32,
    w: u32,
    h: u32,
}

#[derive(Serialize)]
struct FieldConfig {
    defaults: Defaults,
    overrides: Vec<()>,
}

#[derive(Serialize)]
struct Defaults {
    unit: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GrafanaPanel {
    id: u32,
    r#type: &'static str,
    title: &'static str,
    datasource: DataSource,
    grid_pos: GridPos,
    field_config: FieldConfig,
    targets: Vec<Target>,
}

/// The dashboard as Grafana's JSON model (schema 39), two panels a row.
pub fn dashboard() -> String {
    let panels: Vec<GrafanaPanel> = panels()
        .into_iter()
        .enumerate()
        .map(|(i, panel)| GrafanaPanel {
            id: i as u32 + 1,
            r#type: "timeseries",
            title: panel.title,
            datasource: DATA_SOURCE,
            grid_pos: GridPos {
                x: (i as u32 % 2) * 12,
                y: (i as u32 / 2) * 8,
                w: 12,
                h: 8,
            },
            field_config: FieldConfig {
                defaults: Defaults { unit: panel.unit },
                overrides: Vec::new(),
            },
            targets: panel
                .queries
                .into_iter()
                .zip('A'..='Z')
                .map(|((expr, legend_format), ref_id)| Target {
                    expr,
                    legend_format,
                    ref_id: ref_id.to_string(),
                    datasource: DATA_SOURCE,
                })
                .collect(),
        })
        .collect();
    let model = serde_json::json!({
        "title": "Croupier",
        "uid": "croupier",
        "tags": ["croupier"],
        "schemaVersion": 39,
        "editable": true,
        "refresh": "10s",
        "time": {"from": "now-1h", "to": "now"},
        "templating": {"list": [{
            "name": "datasource", "label": "Prometheus", "type": "datasource",
            "query": "prometheus", "current": {}, "hide": 0
        }]},
        "panels": panels,
    });
    serde_json::to_string_pretty(&model).expect("the dashboard serializes") + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::default_rules;
    use crate::promrules::{PromRule, groups};
    use crate::slo::default_slos;

    /// The names of Croupier's own series an expression reads (recorded `croupier_slo:`
    /// series are the exported rules' own).
    fn croupier_names(expr: &str) -> Vec<String> {
        let mut names = Vec::new();
        let mut rest = expr;
        while let Some(at) = rest.find("croupier_") {
            let name: String = rest[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            rest = &rest[at + name.len()..];
            if !name.contains(':') {
                names.push(name.trim_end_matches("_bucket").to_owned());
            }
        }
        names
    }

    #[test]
    fn every_metric_the_rules_and_the_dashboard_read_is_documented() {
        let doc = include_str!("../../../docs/metrics.md");
        let mut exprs: Vec<String> = panels()
            .into_iter()
            .flat_map(|p| p.queries.into_iter().map(|(q, _)| q))
            .collect();
        for group in groups(&default_rules(), &default_slos(0.999)) {
            for rule in group.rules {
                match rule {
                    PromRule::Alert { expr, .. } | PromRule::Record { expr, .. } => {
                        exprs.push(expr)
                    }
                }
            }
        }
        let names: Vec<String> = exprs.iter().flat_map(|e| croupier_names(e)).collect();
        assert!(names.len() > 20, "{names:?}");
        for name in names {
            assert!(
                doc.contains(&format!("`{name}`")),
                "{name} is not in docs/metrics.md"
            );
        }
        let model: serde_json::Value = serde_json::from_str(&dashboard()).unwrap();
        assert_eq!(model["panels"].as_array().unwrap().len(), panels().len());
    }
}
