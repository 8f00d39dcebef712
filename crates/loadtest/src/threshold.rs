//! k6-style pass/fail thresholds on a run's summary: `p99<50ms`, `p50<=5ms`, `max<2s`,
//! `errors<0.1%`, `rps>1000`, `bets_per_s>=500`. Any threshold that fails makes the run fail.

use serde::Serialize;

use crate::error::LoadError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// A latency percentile in milliseconds (p50, p90, p99, p99.9 = "p999").
    Percentile(u32),
    MaxMs,
    MeanMs,
    /// Share of requests that failed, in percent.
    ErrorsPercent,
    Rps,
    BetsPerS,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Comparison {
    #[serde(rename = "<")]
    Less,
    #[serde(rename = "<=")]
    AtMost,
    #[serde(rename = ">")]
    Greater,
    #[serde(rename = ">=")]
    AtLeast,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Threshold {
    pub expr: String,
    pub metric: Metric,
    pub comparison: Comparison,
    /// In the metric's unit: milliseconds, percent, or per second.
    pub limit: f64,
}

/// The figures thresholds are checked against.
pub trait Figures {
    fn percentile_ms(&self, per_mille: u32) -> f64;
    fn max_ms(&self) -> f64;
    fn mean_ms(&self) -> f64;
    fn error_percent(&self) -> f64;
    fn rps(&self) -> f64;
    fn bets_per_s(&self) -> f64;
}

#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    pub threshold: String,
    pub actual: f64,
    pub pass: bool,
}

fn split_comparison(expr: &str) -> Option<(&str, Comparison, &str)> {
    for (token, comparison) in [
        ("<=", Comparison::AtMost),
        (">=", Comparison::AtLeast),
        ("<", Comparison::Less),
        (">", Comparison::Greater),
    ] {
        if let Some((left, right)) = expr.split_once(token) {
            return Some((left.trim(), comparison, right.trim()));
        }
    }
    None
}

fn parse_number(text: &str) -> Option<f64> {
    text.trim()
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0)
}

/// A duration with its unit (us, ms, s) in milliseconds.
fn parse_ms(text: &str) -> Option<f64> {
    for (unit, factor) in [("us", 0.001), ("ms", 1.0), ("s", 1000.0)] {
        if let Some(number) = text.strip_suffix(unit) {
            return parse_number(number).map(|v| v * factor);
        }
    }
    None
}

impl Threshold {
    pub fn parse(expr: &str) -> Result<Threshold, LoadError> {
        let bad = |reason: &str| LoadError::Threshold {
            expr: expr.to_owned(),
            reason: reason.to_owned(),
        };
        let (name, comparison, value) = split_comparison(expr)
            .ok_or_else(|| bad("expected <metric><op><value>, e.g. p99<50ms"))?;
        let metric = match name {
            "max" => Metric::MaxMs,
            "mean" | "avg" => Metric::MeanMs,
            "errors" => Metric::ErrorsPercent,
            "rps" => Metric::Rps,
            "bets_per_s" => Metric::BetsPerS,
            p if p.starts_with('p') => {
                let digits = &p[1..];
                let per_mille = match digits {
                    "999" => 999,
                    d => d
                        .parse::<u32>()
                        .ok()
                        .filter(|v| (1..=99).contains(v))
                        .map(|v| v * 10)
                        .ok_or_else(|| bad("percentiles are p1..p99 or p999"))?,
                };
                Metric::Percentile(per_mille)
            }
            _ => {
                return Err(bad(
                    "metrics are pNN, p999, max, mean, errors, rps, bets_per_s",
                ));
            }
        };
        let limit = match metric {
            Metric::Percentile(_) | Metric::MaxMs | Metric::MeanMs => {
                parse_ms(value).ok_or_else(|| bad("latency needs a unit: us, ms or s"))?
            }
            Metric::ErrorsPercent => value
                .strip_suffix('%')
                .and_then(parse_number)
                .ok_or_else(|| bad("errors are a percentage, e.g. errors<0.1%"))?,
            Metric::Rps | Metric::BetsPerS => {
                parse_number(value).ok_or_else(|| bad("expected a number per second"))?
            }
        };
        Ok(Threshold {
            expr: expr.to_owned(),
            metric,
            comparison,
            limit,
        })
    }

    pub fn check(&self, figures: &dyn Figures) -> Verdict {
        let actual = match self.metric {
            Metric::Percentile(per_mille) => figures.percentile_ms(per_mille),
            Metric::MaxMs => figures.max_ms(),
            Metric::MeanMs => figures.mean_ms(),
            Metric::ErrorsPercent => figures.error_percent(),
            Metric::Rps => figures.rps(),
            Metric::BetsPerS => figures.bets_per_s(),
        };
        let pass = match self.comparison {
            Comparison::Less => actual < self.limit,
            Comparison::AtMost => actual <= self.limit,
            Comparison::Greater => actual > self.limit,
            Comparison::AtLeast => actual >= self.limit,
        };
        Verdict {
            threshold: self.expr.clone(),
            actual,
            pass,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed;
    impl Figures for Fixed {
        fn percentile_ms(&self, per_mille: u32) -> f64 {
            per_mille as f64 / 10.0
        }
        fn max_ms(&self) -> f64 {
            1500.0
        }
        fn mean_ms(&self) -> f64 {
            3.0
        }
        fn error_percent(&self) -> f64 {
            0.05
        }
        fn rps(&self) -> f64 {
            900.0
        }
        fn bets_per_s(&self) -> f64 {
            400.0
        }
    }

    #[test]
    fn parses_every_form() {
        let t = Threshold::parse("p99<50ms").unwrap();
        assert_eq!(
            (t.metric, t.comparison, t.limit),
            (Metric::Percentile(990), Comparison::Less, 50.0)
        );
        let t = Threshold::parse("p999 <= 0.2s").unwrap();
        assert_eq!(
            (t.metric, t.comparison, t.limit),
            (Metric::Percentile(999), Comparison::AtMost, 200.0)
        );
        let t = Threshold::parse("max<1500us").unwrap();
        assert_eq!((t.metric, t.limit), (Metric::MaxMs, 1.5));
        let t = Threshold::parse("errors<0.1%").unwrap();
        assert_eq!((t.metric, t.limit), (Metric::ErrorsPercent, 0.1));
        let t = Threshold::parse("bets_per_s>=500").unwrap();
        assert_eq!(
            (t.metric, t.comparison, t.limit),
            (Metric::BetsPerS, Comparison::AtLeast, 500.0)
        );
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        for bad in [
            "p99",
            "p99<50",
            "p100<5ms",
            "errors<0.1",
            "latency<5ms",
            "rps>fast",
            "p99<-5ms",
        ] {
            assert!(Threshold::parse(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn checks_against_figures() {
        let verdicts: Vec<bool> = [
            "p99<100ms",
            "p99<99ms",
            "p50<=50ms",
            "max<1s",
            "mean<5ms",
            "errors<0.1%",
            "errors<0.01%",
            "rps>1000",
            "bets_per_s>=400",
        ]
        .iter()
        .map(|e| Threshold::parse(e).unwrap().check(&Fixed).pass)
        .collect();
        assert_eq!(
            verdicts,
            [true, false, true, false, true, true, false, false, true]
        );
    }
}
