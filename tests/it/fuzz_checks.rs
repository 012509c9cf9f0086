//! The checks behind the fuzz targets (`fuzz/fuzz_targets/*.rs` include this file) and behind the
//! regression tests over the inputs they saved (`fuzz_regressions.rs`). Each check takes raw bytes,
//! decodes its input from them by hand, and panics when logstats disagrees with docs/spec.md.

use chrono::{Datelike, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta};
use logstats::histogram::Histogram;
use logstats::record::{Reject, parse_line};
use logstats::stats::{DayStats, Statistics};

// ---------------------------------------------------------------------------------------------
// parse_line against a reference parser written from docs/spec.md section 1
// ---------------------------------------------------------------------------------------------

/// What the reference parser makes of a line.
#[derive(Debug)]
enum Expected {
    /// An empty or blank line: `Ok(None)`.
    Blank,
    Accepted {
        customer: Vec<u8>,
        day: NaiveDate,
        status: u16,
        duration_us: u64,
    },
    /// Rejected; the reasons that would be right. Every defective field contributes its reason, so
    /// when a line has one defect exactly one reason is right; the order in which a parser looks at
    /// fields is not specified, so with several defects any of theirs is.
    Rejected(Vec<Reject>),
}

/// `parse_line` and the reference agree: on blank, on accept (same customer, UTC day, status and
/// microseconds) or reject (with a reason that names a field that really is wrong).
pub fn check_parse_line(line: &[u8]) {
    let expected = reference_parse_line(line);
    compare_parse_line(line, &expected, &mut |message| panic!("{message}"));
}

/// Calls `disagree` with a description when `parse_line` does not give what `expected` says.
fn compare_parse_line(line: &[u8], expected: &Expected, disagree: &mut dyn FnMut(String)) {
    let actual = parse_line(line);
    let agree = match (expected, &actual) {
        (Expected::Blank, Ok(None)) => true,
        (
            Expected::Accepted {
                customer,
                day,
                status,
                duration_us,
            },
            Ok(Some(request)),
        ) => {
            request.customer.as_bytes() == customer.as_slice()
                && request.day.to_string() == format_day(*day)
                && request.status == *status
                && request.duration_us == *duration_us
        }
        (Expected::Rejected(reasons), Err(reason)) => reasons.contains(reason),
        _ => false,
    };
    if !agree {
        let day = match &actual {
            Ok(Some(request)) => request.day.to_string(),
            _ => "-".to_string(),
        };
        disagree(format!(
            "line b\"{}\": logstats returned {actual:?} (day {day}), the reference expected \
             {expected:?}",
            line.escape_ascii(),
        ));
    }
}

fn reference_parse_line(line: &[u8]) -> Expected {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let fields: Vec<&[u8]> = line
        .split(|&b| b == b' ' || b == b'\t')
        .filter(|field| !field.is_empty())
        .collect();
    let (day, rest) = match fields.len() {
        0 => return Expected::Blank,
        6 => (reference_date_time(fields[0], fields[1]), &fields[2..]),
        5 => (reference_iso8601(fields[0]), &fields[1..]),
        _ => return Expected::Rejected(vec![Reject::FieldCount]),
    };
    let day = day.filter(|day| {
        let first = NaiveDate::from_ymd_opt(1, 1, 1).expect("a date");
        let last = NaiveDate::from_ymd_opt(9999, 12, 31).expect("a date");
        (first..=last).contains(day)
    });
    let customer = reference_customer(rest[0]);
    let path_ok = rest[1].first() == Some(&b'/');
    let status = reference_status(rest[2]);
    let duration_us = reference_duration_us(rest[3]);
    match (day, customer, path_ok, status, duration_us) {
        (Some(day), Some(customer), true, Some(status), Some(duration_us)) => Expected::Accepted {
            customer: customer.as_bytes().to_vec(),
            day,
            status,
            duration_us,
        },
        _ => {
            let mut reasons = Vec::new();
            if day.is_none() {
                reasons.push(Reject::Timestamp);
                // Five fields without a well-formed ISO timestamp, or six whose first field is
                // one: the line may as well be said to have the wrong number of fields.
                if (fields.len() == 5) == reference_iso8601(fields[0]).is_none() {
                    reasons.push(Reject::FieldCount);
                }
            }
            if customer.is_none() {
                reasons.push(Reject::Customer);
            }
            if !path_ok {
                reasons.push(Reject::Path);
            }
            if status.is_none() {
                reasons.push(Reject::Status);
            }
            if duration_us.is_none() {
                reasons.push(Reject::Duration);
            }
            Expected::Rejected(reasons)
        }
    }
}

fn format_day(day: NaiveDate) -> String {
    format!("{:04}-{:02}-{:02}", day.year(), day.month(), day.day())
}

/// The value of a non-empty run of ASCII digits (short enough not to overflow).
fn decimal(text: &[u8]) -> Option<u64> {
    if text.is_empty() || text.len() > 18 || !text.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        text.iter()
            .fold(0, |value, digit| value * 10 + u64::from(digit - b'0')),
    )
}

/// `YYYY-MM-DD`, a real proleptic Gregorian date.
fn reference_date(text: &[u8]) -> Option<NaiveDate> {
    let [y1, y2, y3, y4, b'-', m1, m2, b'-', d1, d2] = *text else {
        return None;
    };
    let year = decimal(&[y1, y2, y3, y4])?;
    let month = decimal(&[m1, m2])?;
    let day = decimal(&[d1, d2])?;
    NaiveDate::from_ymd_opt(year as i32, month as u32, day as u32)
}

/// `HH:MM:SS`, a real time of day (no leap second).
fn reference_time(text: &[u8]) -> Option<NaiveTime> {
    let [h1, h2, b':', m1, m2, b':', s1, s2] = *text else {
        return None;
    };
    NaiveTime::from_hms_opt(
        decimal(&[h1, h2])? as u32,
        decimal(&[m1, m2])? as u32,
        decimal(&[s1, s2])? as u32,
    )
}

fn reference_date_time(date: &[u8], time: &[u8]) -> Option<NaiveDate> {
    reference_time(time)?;
    reference_date(date)
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction][Z|+HH:MM|-HH:MM]` to the UTC date of that instant.
fn reference_iso8601(field: &[u8]) -> Option<NaiveDate> {
    if field.len() < 19 || field[10] != b'T' {
        return None;
    }
    let local = NaiveDateTime::new(
        reference_date(&field[..10])?,
        reference_time(&field[11..19])?,
    );
    let mut zone = &field[19..];
    if let Some(fraction) = zone.strip_prefix(b".") {
        let digits = fraction.iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 {
            return None;
        }
        zone = &fraction[digits..];
    }
    let east_of_utc_seconds = match zone {
        b"" | b"Z" => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let hours = decimal(&[*h1, *h2]).filter(|&h| h <= 23)?;
            let minutes = decimal(&[*m1, *m2]).filter(|&m| m <= 59)?;
            let seconds = (hours * 3600 + minutes * 60) as i64;
            if *sign == b'+' { seconds } else { -seconds }
        }
        _ => return None,
    };
    let utc = local.checked_sub_signed(TimeDelta::seconds(east_of_utc_seconds))?;
    Some(utc.date())
}

/// 1 to 255 bytes of UTF-8 without whitespace or characters of categories Cc, Cf, Zs, Zl, Zp.
fn reference_customer(field: &[u8]) -> Option<&str> {
    if field.is_empty() || field.len() > 255 {
        return None;
    }
    let text = std::str::from_utf8(field).ok()?;
    let forbidden = |c: char| {
        c.is_whitespace() || c.is_control() || in_ranges(c, FORMAT) || in_ranges(c, SEPARATORS)
    };
    (!text.chars().any(forbidden)).then_some(text)
}

fn in_ranges(c: char, ranges: &[(char, char)]) -> bool {
    ranges
        .iter()
        .any(|&(first, last)| (first..=last).contains(&c))
}

/// General category Cf (Unicode 16.0).
const FORMAT: &[(char, char)] = &[
    ('\u{ad}', '\u{ad}'),
    ('\u{600}', '\u{605}'),
    ('\u{61c}', '\u{61c}'),
    ('\u{6dd}', '\u{6dd}'),
    ('\u{70f}', '\u{70f}'),
    ('\u{890}', '\u{891}'),
    ('\u{8e2}', '\u{8e2}'),
    ('\u{180e}', '\u{180e}'),
    ('\u{200b}', '\u{200f}'),
    ('\u{202a}', '\u{202e}'),
    ('\u{2060}', '\u{2064}'),
    ('\u{2066}', '\u{206f}'),
    ('\u{feff}', '\u{feff}'),
    ('\u{fff9}', '\u{fffb}'),
    ('\u{110bd}', '\u{110bd}'),
    ('\u{110cd}', '\u{110cd}'),
    ('\u{13430}', '\u{1343f}'),
    ('\u{1bca0}', '\u{1bca3}'),
    ('\u{1d173}', '\u{1d17a}'),
    ('\u{e0001}', '\u{e0001}'),
    ('\u{e0020}', '\u{e007f}'),
];

/// General categories Zs, Zl and Zp (Unicode 16.0). (Cc is `char::is_control`.)
const SEPARATORS: &[(char, char)] = &[
    (' ', ' '),
    ('\u{a0}', '\u{a0}'),
    ('\u{1680}', '\u{1680}'),
    ('\u{2000}', '\u{200a}'),
    ('\u{2028}', '\u{2029}'),
    ('\u{202f}', '\u{202f}'),
    ('\u{205f}', '\u{205f}'),
    ('\u{3000}', '\u{3000}'),
];

/// Exactly three digits, 100..=599.
fn reference_status(field: &[u8]) -> Option<u16> {
    if field.len() != 3 {
        return None;
    }
    decimal(field)
        .filter(|status| (100..=599).contains(status))
        .map(|status| status as u16)
}

/// 1 to 12 digits, then optionally `.` and 1 to 6 digits, to microseconds exactly.
fn reference_duration_us(field: &[u8]) -> Option<u64> {
    let (whole, fraction) = match field.iter().position(|&b| b == b'.') {
        Some(dot) => (&field[..dot], Some(&field[dot + 1..])),
        None => (field, None),
    };
    if whole.len() > 12 {
        return None;
    }
    let mut micros = decimal(whole)? * 1_000_000;
    if let Some(fraction) = fraction {
        if fraction.len() > 6 {
            return None;
        }
        let mut padded = fraction.to_vec();
        padded.resize(6, b'0');
        decimal(fraction)?;
        micros += decimal(&padded)?;
    }
    Some(micros)
}

// ---------------------------------------------------------------------------------------------
// Histogram::from_bytes on arbitrary bytes
// ---------------------------------------------------------------------------------------------

/// `Histogram::from_bytes` never panics (nor allocates without bound: the fuzzer's memory limit);
/// what it accepts is exactly the `(value, count)` pairs the bytes spell, and encoding the result
/// again decodes to an equal histogram.
pub fn check_histogram_decode(bytes: &[u8]) {
    let Ok(histogram) = Histogram::from_bytes(bytes) else {
        return;
    };
    let counts: Vec<(u64, u64)> = histogram.counts().collect();
    let spelled = reference_histogram_pairs(bytes);
    assert_eq!(
        Some(&counts),
        spelled.as_ref(),
        "b\"{}\" decoded to other pairs than it spells (None: the bytes are not a valid \
         encoding, e.g. a varint beyond 64 bits)",
        bytes.escape_ascii(),
    );
    let encoded = histogram.to_bytes();
    let again = Histogram::from_bytes(&encoded).unwrap_or_else(|_| {
        panic!(
            "b\"{}\" decoded, but its encoding b\"{}\" does not",
            bytes.escape_ascii(),
            encoded.escape_ascii(),
        )
    });
    assert!(
        again.counts().eq(histogram.counts()),
        "b\"{}\": re-encoded as b\"{}\", decoded again to {:?} instead of {counts:?}",
        bytes.escape_ascii(),
        encoded.escape_ascii(),
        again.counts().collect::<Vec<_>>(),
    );
}

/// The formats as documented on `Histogram::to_bytes`: version byte 1, then LEB128
/// (value delta, count) pairs; values strictly increasing, counts positive, every number and
/// the total within 64 bits. Version 2 and 3: a dense range and its slots' counts. `None` when
/// the bytes are not that.
fn reference_histogram_pairs(bytes: &[u8]) -> Option<Vec<(u64, u64)>> {
    fn varint(rest: &mut &[u8]) -> Option<u64> {
        let mut value: u128 = 0;
        for (i, &byte) in rest.iter().enumerate().take(10) {
            value |= u128::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                *rest = &rest[i + 1..];
                return u64::try_from(value).ok();
            }
        }
        None
    }
    let (&format, mut rest) = bytes.split_first()?;
    let rest = &mut rest;
    let mut pairs: Vec<(u64, u64)> = Vec::new();
    let mut total: u64 = 0;
    let mut counts: Vec<u64> = Vec::new();
    let (first, step) = match format {
        // (value delta, count) pairs.
        1 => loop {
            let Some(delta) = varint(rest) else {
                return rest.is_empty().then_some(pairs);
            };
            let count = varint(rest)?;
            let value = match pairs.last() {
                None => delta,
                Some(_) if delta == 0 => return None,
                Some(&(previous, _)) => previous.checked_add(delta)?,
            };
            if count == 0 {
                return None;
            }
            total = total.checked_add(count)?;
            pairs.push((value, count));
        },
        // First value, step, number of slots, then each slot's count: as a varint (2), or as a
        // nibble, low one first (3), where 15 is 15 plus a varint that follows the nibbles (in
        // the order of the slots) and the high nibble of an odd number of slots is 0. A range
        // and a total within 32 bits, at least one request.
        2 | 3 => {
            let (first, step, slots) = (varint(rest)?, varint(rest)?, varint(rest)?);
            if step == 0 || slots == 0 {
                return None;
            }
            let last = first.checked_add(step.checked_mul(slots - 1)?)?;
            if last > u64::from(u32::MAX) || step > u64::from(u32::MAX) {
                return None;
            }
            if format == 2 {
                for _ in 0..slots {
                    counts.push(varint(rest)?);
                }
            } else {
                let packed = usize::try_from(slots.div_ceil(2)).ok()?;
                if packed > rest.len() {
                    return None;
                }
                let (nibbles, escapes) = rest.split_at(packed);
                *rest = escapes;
                for slot in 0..slots as usize {
                    let nibble = u64::from(nibbles[slot / 2] >> (4 * (slot % 2)) & 0xf);
                    counts.push(match nibble {
                        15 => 15u64.checked_add(varint(rest)?)?,
                        _ => nibble,
                    });
                }
                if slots % 2 == 1 && nibbles[packed - 1] >> 4 != 0 {
                    return None;
                }
            }
            (first, step)
        }
        _ => return None,
    };
    for (slot, &count) in (0u64..).zip(&counts) {
        total = total.checked_add(count)?;
        if count > 0 {
            pairs.push((first + slot * step, count));
        }
    }
    let fits = (1..=u64::from(u32::MAX)).contains(&total);
    (fits && rest.is_empty()).then_some(pairs)
}

// ---------------------------------------------------------------------------------------------
// DayStats: record pieces, merge them in any order, compare with the sorting oracle
// ---------------------------------------------------------------------------------------------

/// The longest accepted duration, 999999999999.999999 s, in microseconds.
const MAX_DURATION_US: u64 = 999_999_999_999_999_999;

/// At most this many requests per input (keeps an execution fast).
const MAX_REQUESTS: usize = 20_000;

/// Input bytes, read front to back; zeros once they run out.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&byte, rest)) => {
                self.0 = rest;
                byte
            }
            None => 0,
        }
    }

    /// `n` bytes, little-endian.
    fn uint(&mut self, n: u32) -> u64 {
        (0..n).fold(0, |value, i| value | u64::from(self.byte()) << (8 * i))
    }
}

/// Requests split into pieces at chosen points, each recorded into its own `DayStats`, merged in a
/// chosen order (optionally through the histogram's byte form): the statistics equal those the
/// definitions of docs/spec.md section 3 give for all the requests.
///
/// Input: `cuts` (1 byte, 0..=6), each cut (2 bytes, an index into the requests), a flags byte
/// (bit k: piece k's histogram goes through `to_bytes`/`from_bytes`; bit 7: so does the merged
/// one), two bytes per merge (which state absorbs which), then requests until the end: status
/// (2 bytes, 100 + x % 500), a duration kind byte (low 3 bits: the encoding of the duration;
/// high bit: the request repeats 1 + 16 * (next byte) times), then the duration's bytes.
pub fn check_merge(data: &[u8]) {
    let mut input = Reader(data);
    let cut_count = usize::from(input.byte() % 7);
    let cuts: Vec<u64> = (0..cut_count).map(|_| input.uint(2)).collect();
    let flags = input.byte();
    let merges: Vec<(u8, u8)> = (0..cut_count)
        .map(|_| (input.byte(), input.byte()))
        .collect();
    let mut requests: Vec<(u16, u64)> = Vec::new();
    while !input.is_empty() && requests.len() < MAX_REQUESTS {
        let status = 100 + (input.uint(2) % 500) as u16;
        let kind = input.byte();
        let repeat = if kind & 0x80 != 0 {
            1 + 16 * usize::from(input.byte())
        } else {
            1
        };
        let duration_us = match kind & 7 {
            0..=2 => input.uint(1),                         // tiny values: ties
            3 => input.uint(2) * 1000,                      // milliseconds: dense histograms
            4 => input.uint(3),                             // up to 16.7 s
            5 => input.uint(4) + input.uint(1) * (1 << 32), // around the 32-bit boundary
            6 => input.uint(8) % (MAX_DURATION_US + 1),
            _ => MAX_DURATION_US - input.uint(1), // the longest durations
        };
        let repeat = repeat.min(MAX_REQUESTS - requests.len());
        requests.extend(std::iter::repeat_n((status, duration_us), repeat));
    }

    // Split at the cuts, record each piece into its own state.
    let mut ends: Vec<usize> = cuts
        .iter()
        .map(|&cut| (cut % (requests.len() as u64 + 1)) as usize)
        .collect();
    ends.sort_unstable();
    ends.push(requests.len());
    let mut start = 0;
    let mut states: Vec<DayStats> = Vec::new();
    for (k, &end) in ends.iter().enumerate() {
        let mut state = DayStats::default();
        for &(status, duration_us) in &requests[start..end] {
            state.record(status, duration_us);
        }
        if flags & (1 << k) != 0 {
            round_trip_histogram(&mut state);
        }
        states.push(state);
        start = end;
    }

    // Merge pairs in the chosen order until one state is left.
    for &(into, from) in &merges {
        let into = usize::from(into) % states.len();
        let mut from = usize::from(from) % (states.len() - 1);
        if from >= into {
            from += 1;
        }
        let absorbed = states.remove(from);
        let into = if from < into { into - 1 } else { into };
        states[into].merge(absorbed);
    }
    let mut merged = states.pop().expect("one state");
    assert!(states.is_empty());
    if flags & 0x80 != 0 {
        round_trip_histogram(&mut merged);
    }

    let actual = merged.statistics();
    let context = || {
        let mut shown: Vec<String> = requests
            .iter()
            .take(20)
            .map(|(s, d)| format!("({s}, {d})"))
            .collect();
        if requests.len() > 20 {
            shown.push(format!("... {} requests in all", requests.len()));
        }
        format!(
            "input b\"{}\"\nrequests {}\npieces end at {ends:?}, merges {merges:?}, flags {flags:#04x}",
            data.escape_ascii(),
            shown.join(" "),
        )
    };
    if requests.is_empty() {
        assert_eq!(actual.total_requests, 0, "{}", context());
        return;
    }
    compare_statistics(&actual, &oracle_statistics(&requests), &context);
}

/// Stores and loads the histogram the way the store does: compact, `to_bytes`, `from_bytes`.
fn round_trip_histogram(state: &mut DayStats) {
    state.compact();
    let bytes = state.histogram.to_bytes();
    state.histogram = Histogram::from_bytes(&bytes).expect("an encoded histogram decodes");
}

/// docs/spec.md section 3, computed naively from every request (sums in 128 bits: they never wrap).
fn oracle_statistics(requests: &[(u16, u64)]) -> Statistics {
    let n = requests.len() as u64;
    let mut durations: Vec<u64> = requests.iter().map(|r| r.1).collect();
    durations.sort_unstable();
    let at_rank = |p: u64| {
        let rank = (n * p).div_ceil(100); // ceil(n * p / 100), 1-based
        durations[rank as usize - 1] as f64 / 1e6
    };
    let class = |c: u16| requests.iter().filter(|r| r.0 / 100 == c).count() as u64;
    let sum: u128 = durations.iter().map(|&d| u128::from(d)).sum();
    let success_sum: u128 = requests
        .iter()
        .filter(|r| (200..=299).contains(&r.0))
        .map(|r| u128::from(r.1))
        .sum();
    let success = class(2);
    Statistics {
        success_requests: success,
        failed_requests: n - success,
        uptime_percentage: if sum == 0 {
            0.0
        } else {
            100.0 * success_sum as f64 / sum as f64
        },
        duration_mean: sum as f64 / n as f64 / 1e6,
        duration_p50: at_rank(50),
        duration_p99: at_rank(99),
        total_requests: n,
        status_1xx: class(1),
        status_2xx: class(2),
        status_3xx: class(3),
        status_4xx: class(4),
        status_5xx: class(5),
        availability_percentage: 100.0 * (n - class(5)) as f64 / n as f64,
        duration_p90: at_rank(90),
        duration_p95: at_rank(95),
        duration_max: durations[durations.len() - 1] as f64 / 1e6,
    }
}

fn compare_statistics(actual: &Statistics, expected: &Statistics, context: &dyn Fn() -> String) {
    let counts = |s: &Statistics| {
        [
            s.success_requests,
            s.failed_requests,
            s.total_requests,
            s.status_1xx,
            s.status_2xx,
            s.status_3xx,
            s.status_4xx,
            s.status_5xx,
        ]
    };
    let reals = |s: &Statistics| {
        [
            ("uptime_percentage", s.uptime_percentage),
            ("duration_mean", s.duration_mean),
            ("duration_p50", s.duration_p50),
            ("duration_p90", s.duration_p90),
            ("duration_p95", s.duration_p95),
            ("duration_p99", s.duration_p99),
            ("duration_max", s.duration_max),
            ("availability_percentage", s.availability_percentage),
        ]
    };
    assert_eq!(
        counts(actual),
        counts(expected),
        "counts differ\nlogstats {actual:?}\noracle   {expected:?}\n{}",
        context()
    );
    for ((name, a), (_, e)) in reals(actual).into_iter().zip(reals(expected)) {
        let close = a == e || (a - e).abs() <= 1e-9 * a.abs().max(e.abs());
        assert!(
            close,
            "{name}: logstats {a}, oracle {e}\nlogstats {actual:?}\noracle   {expected:?}\n{}",
            context()
        );
    }
}
