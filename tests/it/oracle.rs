//! A naive oracle: the reference's definitions computed directly from raw lines, with none of the
//! production code (its own tokenizer, decimal parsing and sort-based percentiles).

use std::collections::BTreeMap;

/// (customer, date) -> (status, duration in µs) of every valid line.
pub fn groups(text: &str) -> BTreeMap<(String, String), Vec<(u16, u64)>> {
    let mut groups: BTreeMap<(String, String), Vec<(u16, u64)>> = BTreeMap::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [date, _time, customer, _path, status, duration] = fields[..] else {
            continue;
        };
        let (Ok(status), Some(micros)) = (status.parse::<u16>(), micros(duration)) else {
            continue;
        };
        groups
            .entry((customer.to_string(), date.to_string()))
            .or_default()
            .push((status, micros));
    }
    groups
}

fn micros(text: &str) -> Option<u64> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let padded = format!("{fraction:0<6}");
    Some(whole.parse::<u64>().ok()? * 1_000_000 + padded.parse::<u64>().ok()?)
}

/// The statistics of one group, as the API names them.
pub fn statistics(requests: &[(u16, u64)]) -> serde_json::Value {
    let n = requests.len() as f64;
    let mut durations: Vec<u64> = requests.iter().map(|r| r.1).collect();
    durations.sort_unstable();
    let rank = |p: f64| ((n * p / 100.0).ceil().max(1.0) as usize) - 1;
    let seconds = |us: u64| us as f64 / 1e6;
    let success: Vec<&(u16, u64)> = requests
        .iter()
        .filter(|r| (200..=299).contains(&r.0))
        .collect();
    let total_duration: f64 = requests.iter().map(|r| seconds(r.1)).sum();
    let success_duration: f64 = success.iter().map(|r| seconds(r.1)).sum();
    let class = |c: u16| requests.iter().filter(|r| r.0 / 100 == c).count();
    serde_json::json!({
        "success_requests": success.len(),
        "failed_requests": requests.len() - success.len(),
        "uptime_percentage": if total_duration == 0.0 { 0.0 } else { 100.0 * success_duration / total_duration },
        "duration_mean": total_duration / n,
        "duration_p50": seconds(durations[rank(50.0)]),
        "duration_p99": seconds(durations[rank(99.0)]),
        "total_requests": requests.len(),
        "status_1xx": class(1), "status_2xx": class(2), "status_3xx": class(3),
        "status_4xx": class(4), "status_5xx": class(5),
        "availability_percentage": 100.0 * (requests.len() - class(5)) as f64 / n,
        "duration_p90": seconds(durations[rank(90.0)]),
        "duration_p95": seconds(durations[rank(95.0)]),
        "duration_max": seconds(*durations.last().unwrap()),
    })
}

/// Asserts that an API row carries the oracle's numbers (1e-9 relative for floats).
pub fn assert_row_matches(row: &serde_json::Value, expected: &serde_json::Value) {
    for (field, want) in expected.as_object().unwrap() {
        let got = &row[field];
        let (Some(got_f), Some(want_f)) = (got.as_f64(), want.as_f64()) else {
            panic!("field {field} missing in {row}");
        };
        let tolerance = 1e-9 * want_f.abs().max(1e-300);
        assert!(
            (got_f - want_f).abs() <= tolerance,
            "{field}: got {got_f}, want {want_f} in {row}"
        );
    }
}

/// Asserts that `rows` (every stored day) equal the oracle over `text`.
pub fn assert_rows_match_text(rows: &[serde_json::Value], text: &str) {
    let groups = groups(text);
    assert_eq!(rows.len(), groups.len(), "one row per (customer, day)");
    for row in rows {
        assert_row_is_its_group(row, &groups);
    }
}

/// Asserts that an API row carries the oracle's numbers for its own group of `groups`.
pub fn assert_row_is_its_group(
    row: &serde_json::Value,
    groups: &BTreeMap<(String, String), Vec<(u16, u64)>>,
) {
    let key = (
        row["customer_id"].as_str().unwrap().to_string(),
        row["date"].as_str().unwrap().to_string(),
    );
    let requests = groups
        .get(&key)
        .unwrap_or_else(|| panic!("no such group in the input: {key:?}"));
    assert_row_matches(row, &statistics(requests));
}
