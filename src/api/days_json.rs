//! The JSON of a customer's days, written directly. serde's derived serialisation escapes every
//! key of every day (eighteen a day) byte by byte, and that escaping was the largest part of an
//! uncached answer's work in this process. The bytes are serde_json's own (a test compares them
//! on random days): the keys are written as they are, numbers by the formatters serde_json uses
//! (itoa, zmij), the id and the date through serde_json.

use serde::Serialize;

use crate::stats::Statistics;
use crate::store::DayRow;

/// `rows` as the JSON array serde_json makes of them.
pub fn days_json(rows: &[DayRow]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + rows.len() * 600);
    out.push(b'[');
    // The customer's id, escaped once for all its days.
    let mut customer: Option<(&str, Vec<u8>)> = None;
    for (index, row) in rows.iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        if customer
            .as_ref()
            .is_none_or(|(id, _)| *id != row.customer_id)
        {
            customer = Some((&row.customer_id, json(&row.customer_id)));
        }
        out.extend_from_slice(b"{\"customer_id\":");
        out.extend_from_slice(customer.as_ref().map_or(&[][..], |(_, escaped)| escaped));
        field(&mut out, "date", &row.date);
        statistics(&mut out, &row.statistics);
        out.push(b'}');
    }
    out.push(b']');
    out
}

/// The fields of [`Statistics`], in its declaration order (serde's), each after a comma.
fn statistics(out: &mut Vec<u8>, s: &Statistics) {
    count(out, "success_requests", s.success_requests);
    count(out, "failed_requests", s.failed_requests);
    real(out, "uptime_percentage", s.uptime_percentage);
    real(out, "duration_mean", s.duration_mean);
    real(out, "duration_p50", s.duration_p50);
    real(out, "duration_p99", s.duration_p99);
    count(out, "total_requests", s.total_requests);
    count(out, "status_1xx", s.status_1xx);
    count(out, "status_2xx", s.status_2xx);
    count(out, "status_3xx", s.status_3xx);
    count(out, "status_4xx", s.status_4xx);
    count(out, "status_5xx", s.status_5xx);
    real(out, "availability_percentage", s.availability_percentage);
    real(out, "duration_p90", s.duration_p90);
    real(out, "duration_p95", s.duration_p95);
    real(out, "duration_max", s.duration_max);
}

/// `,"name":` before a value; `name` is a plain identifier, which JSON needs no escape for.
fn key(out: &mut Vec<u8>, name: &str) {
    out.extend_from_slice(b",\"");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":");
}

fn count(out: &mut Vec<u8>, name: &str, value: u64) {
    key(out, name);
    out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
}

/// A float as serde_json writes one: its shortest form (by the same formatter), `null` when it is
/// not finite.
fn real(out: &mut Vec<u8>, name: &str, value: f64) {
    key(out, name);
    if value.is_finite() {
        out.extend_from_slice(zmij::Buffer::new().format_finite(value).as_bytes());
    } else {
        out.extend_from_slice(b"null");
    }
}

/// `,"name":value`, through serde_json.
fn field<T: Serialize>(out: &mut Vec<u8>, name: &str, value: &T) {
    key(out, name);
    write(out, value);
}

fn json<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    write(&mut out, value);
    out
}

fn write<T: Serialize>(out: &mut Vec<u8>, value: &T) {
    // Numbers, dates and strings always serialize (a float that is not finite as `null`).
    serde_json::to_writer(out, value).expect("a value serializes into memory");
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn real() -> impl Strategy<Value = f64> {
        prop_oneof![
            any::<f64>(),
            (0u64..10_000_000).prop_map(|micros| micros as f64 / 1e6),
            Just(0.0),
            Just(100.0),
            Just(f64::NAN),
            Just(f64::INFINITY),
        ]
    }

    fn statistics() -> impl Strategy<Value = Statistics> {
        (
            proptest::array::uniform8(any::<u64>()),
            proptest::array::uniform8(real()),
        )
            .prop_map(|(n, r)| Statistics {
                success_requests: n[0],
                failed_requests: n[1],
                uptime_percentage: r[0],
                duration_mean: r[1],
                duration_p50: r[2],
                duration_p99: r[3],
                total_requests: n[2],
                status_1xx: n[3],
                status_2xx: n[4],
                status_3xx: n[5],
                status_4xx: n[6],
                status_5xx: n[7],
                availability_percentage: r[4],
                duration_p90: r[5],
                duration_p95: r[6],
                duration_max: r[7],
            })
    }

    fn day_row() -> impl Strategy<Value = DayRow> {
        let customer = prop_oneof![
            Just("cust_1".to_string()),
            Just("cust_2".to_string()),
            any::<String>(),
        ];
        (customer, 1i32..3_652_059, statistics()).prop_map(|(customer_id, days, statistics)| {
            DayRow {
                customer_id,
                date: chrono::NaiveDate::from_num_days_from_ce_opt(days).expect("in range"),
                statistics,
            }
        })
    }

    proptest! {
        #[test]
        fn days_are_written_as_serde_json_writes_them(
            rows in proptest::collection::vec(day_row(), 0..6),
        ) {
            let written = days_json(&rows);
            prop_assert_eq!(
                String::from_utf8(written).unwrap(),
                serde_json::to_string(&rows).unwrap()
            );
        }
    }
}
