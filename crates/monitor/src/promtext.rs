//! Reads the Prometheus text exposition format (and OpenMetrics text, which our components
//! serve) into samples: name, labels, value. Written here rather than taken from
//! `prometheus-parse`, which merges histogram series across label sets and splits label
//! values at commas; a sample line is all the control plane needs.

use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

impl Sample {
    /// A sample made here rather than parsed (the control plane's reads of a store).
    pub fn new(name: &str, labels: &[(&str, &str)], value: f64) -> Sample {
        Sample {
            name: name.to_owned(),
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            value,
        }
    }
}

/// Parses `name{a="b",c="d"} value [timestamp]`; `None` for comments and malformed lines.
fn parse_line(line: &str) -> Option<Sample> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line.find(|c: char| c == '{' || c.is_whitespace())?;
    let (name, rest) = line.split_at(name_end);
    let (labels, rest) = match rest.strip_prefix('{') {
        Some(after_brace) => parse_labels(after_brace)?,
        None => (BTreeMap::new(), rest),
    };
    Some(Sample {
        name: name.to_owned(),
        labels,
        value: parse_value(rest.split_whitespace().next()?)?,
    })
}

/// `a="b",c="d"} …` (after the opening brace): the labels, and the text after the closing
/// brace.
fn parse_labels(text: &str) -> Option<(BTreeMap<String, String>, &str)> {
    let mut labels = BTreeMap::new();
    let mut chars = text.char_indices().peekable();
    while let Some((start, c)) = chars.next() {
        if c == '}' {
            return Some((labels, &text[start + 1..]));
        }
        if c == ',' || c.is_whitespace() {
            continue;
        }
        let eq = text[start..].find('=')? + start;
        let key = text[start..eq].trim().to_owned();
        while chars.peek().is_some_and(|(i, _)| *i <= eq) {
            chars.next();
        }
        if chars.next()?.1 != '"' {
            return None;
        }
        labels.insert(key, quoted(&mut chars)?);
    }
    None
}

/// A label's value after its opening quote, unescaped, up to its closing quote.
fn quoted(chars: &mut impl Iterator<Item = (usize, char)>) -> Option<String> {
    let mut value = String::new();
    loop {
        match chars.next()?.1 {
            '"' => return Some(value),
            '\\' => match chars.next()?.1 {
                'n' => value.push('\n'),
                other => value.push(other),
            },
            other => value.push(other),
        }
    }
}

fn parse_value(text: &str) -> Option<f64> {
    match text {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        text => text.parse().ok(),
    }
}

pub fn parse(text: &str) -> Vec<Sample> {
    text.lines().filter_map(parse_line).collect()
}

/// The first sample named `name` whose labels include every pair in `matching`.
pub fn find<'a>(
    samples: &'a [Sample],
    name: &str,
    matching: &[(&str, &str)],
) -> Option<&'a Sample> {
    samples.iter().find(|s| {
        s.name == name
            && matching
                .iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_names_labels_values_and_skips_comments() {
        let text = "# HELP x Help.\n# TYPE x counter\nx_total{route=\"/a,b\",method=\"GET\"} 3\nplain 1.5e3 1700000000\nq{e=\"say \\\"hi\\\"\\n\"} +Inf\n# EOF\n";
        let samples = parse(text);
        assert_eq!(samples.len(), 3);
        assert_eq!(samples[0].name, "x_total");
        assert_eq!(samples[0].labels["route"], "/a,b");
        assert_eq!(samples[0].value, 3.0);
        assert_eq!(samples[1].value, 1500.0);
        assert_eq!(samples[2].labels["e"], "say \"hi\"\n");
        assert!(samples[2].value.is_infinite());
        assert_eq!(
            find(&samples, "x_total", &[("method", "GET")])
                .unwrap()
                .value,
            3.0
        );
        assert!(find(&samples, "x_total", &[("method", "POST")]).is_none());
    }

    #[test]
    fn malformed_lines_are_skipped() {
        assert!(
            parse("novalue\nbad{a=\"x\" 1\nok 2")
                .iter()
                .map(|s| s.name.as_str())
                .eq(["ok"])
        );
    }
}
