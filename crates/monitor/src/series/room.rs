//! Disk pressure on a data folder: reads the room on the filesystem holding a component's data
//! folder from its scrape (`croupier_data_filesystem_*{folder}`), and predicts when it will be
//! full by a least-squares line through the free bytes of the last `WINDOW_S` seconds, as
//! Prometheus' `predict_linear` does. The rules `data_disk_full` and `data_disk_filling` read
//! these and name the folder in the alert and its incident.

use std::collections::VecDeque;

use super::Point;
use crate::promtext::Sample;

/// Seconds of points the prediction is fitted on.
pub const WINDOW_S: u64 = 300;
/// Fewest points before a prediction is trusted.
const MIN_POINTS: usize = 10;

/// Fills the data folder fields of `point` from `samples`, given the earlier points.
pub fn fill(point: &mut Point, samples: &[Sample], earlier: &VecDeque<Point>) {
    let Some(size) = samples
        .iter()
        .find(|s| s.name == "croupier_data_filesystem_size_bytes")
    else {
        return;
    };
    let folder = size.labels.get("folder").cloned();
    let available = samples
        .iter()
        .find(|s| s.name == "croupier_data_filesystem_available_bytes" && s.labels == size.labels)
        .map(|s| s.value);
    let (Some(available), true) = (available, size.value > 0.0) else {
        return;
    };
    point.data_folder = folder;
    point.data_used = Some(1.0 - available / size.value);
    point.data_available_bytes = Some(available);
    point.data_full_in_s = full_in_s(point.ts_s, available, earlier);
}

/// Seconds until no byte is left at the trend of the last `WINDOW_S`; `None` when the free
/// space is not shrinking (or too few points).
pub fn full_in_s(now_s: u64, available: f64, earlier: &VecDeque<Point>) -> Option<f64> {
    let from = now_s.saturating_sub(WINDOW_S);
    let mut xs_ys: Vec<(f64, f64)> = earlier
        .iter()
        .filter(|p| p.ts_s >= from)
        .filter_map(|p| Some((p.ts_s as f64, p.data_available_bytes?)))
        .collect();
    xs_ys.push((now_s as f64, available));
    if xs_ys.len() < MIN_POINTS {
        return None;
    }
    let n = xs_ys.len() as f64;
    let mean_x = xs_ys.iter().map(|(x, _)| x).sum::<f64>() / n;
    let mean_y = xs_ys.iter().map(|(_, y)| y).sum::<f64>() / n;
    let covariance: f64 = xs_ys.iter().map(|(x, y)| (x - mean_x) * (y - mean_y)).sum();
    let variance: f64 = xs_ys.iter().map(|(x, _)| (x - mean_x).powi(2)).sum();
    if variance <= 0.0 {
        return None;
    }
    let slope = covariance / variance;
    if slope >= 0.0 {
        return None;
    }
    // Where the fitted line stands now, then how long until it reaches zero.
    let fitted_now = mean_y + slope * (now_s as f64 - mean_x);
    Some((fitted_now.max(0.0) / -slope).max(0.0))
}

/// The words an alert on the data folder carries: which folder, how full, how long left.
pub fn detail(point: &Point) -> Option<String> {
    let folder = point.data_folder.as_deref()?;
    let used = point.data_used? * 100.0;
    let free_mib = point.data_available_bytes? / (1024.0 * 1024.0);
    let mut text = format!("data folder {folder} is {used:.1}% full ({free_mib:.1} MiB free)");
    if let Some(seconds) = point.data_full_in_s {
        text.push_str(&format!(
            ", full in about {:.0} min at the current rate",
            seconds / 60.0
        ));
    }
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn points(free: impl Fn(u64) -> f64, seconds: u64) -> VecDeque<Point> {
        (0..seconds)
            .map(|ts_s| Point {
                ts_s,
                data_available_bytes: Some(free(ts_s)),
                ..Point::default()
            })
            .collect()
    }

    #[test]
    fn a_steady_fill_is_predicted_and_a_flat_one_is_not() {
        // 1 MB a second out of 600 MB free at t=0: full at t=600.
        let filling = points(|t| 600e6 - t as f64 * 1e6, 100);
        let left = full_in_s(100, 500e6, &filling).unwrap();
        assert!((left - 500.0).abs() < 1.0, "{left}");
        let flat = points(|_| 600e6, 100);
        assert_eq!(full_in_s(100, 600e6, &flat), None);
        let freeing = points(|t| 100e6 + t as f64 * 1e6, 100);
        assert_eq!(full_in_s(100, 200e6, &freeing), None);
        assert_eq!(
            full_in_s(3, 1e6, &points(|_| 2e6, 3)),
            None,
            "too few points"
        );
    }

    #[test]
    fn the_folder_is_read_from_the_scrape_and_named() {
        let samples = crate::promtext::parse(
            "croupier_data_filesystem_size_bytes{folder=\"/srv/croupier/data\"} 1000\n\
             croupier_data_filesystem_available_bytes{folder=\"/srv/croupier/data\"} 30\n",
        );
        let mut point = Point {
            ts_s: 10,
            ..Point::default()
        };
        fill(&mut point, &samples, &VecDeque::new());
        assert_eq!(point.data_used, Some(0.97));
        let text = detail(&point).unwrap();
        assert!(
            text.starts_with("data folder /srv/croupier/data is 97.0% full"),
            "{text}"
        );
    }
}
