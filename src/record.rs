//! One log line to one [`Request`], over bytes (docs/spec.md section 1).
//!
//! Pure and allocation-free: the parser borrows from the line it is given and either returns the
//! request, `Ok(None)` for an empty line, or the [`Reject`] reason. It does no I/O and never panics.

use crate::day::{Day, digits};

/// One parsed request: the group it belongs to and what it measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request<'a> {
    pub customer: &'a str,
    pub day: Day,
    /// The request path as logged (it starts with `/`).
    pub path: &'a [u8],
    /// The line from the customer's first byte to the path's last: one key for the two.
    pub customer_and_path: &'a [u8],
    pub status: u16,
    pub duration_us: u64,
}

/// Why a line was rejected. Each reason is counted separately in the ingestion summary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Reject {
    #[error("wrong number of fields (expected: date time customer_id path status duration)")]
    FieldCount,
    #[error(
        "invalid timestamp (expected YYYY-MM-DD HH:MM:SS or ISO 8601, UTC day 0001-01-01..9999-12-31)"
    )]
    Timestamp,
    #[error(
        "invalid customer_id (1 to 255 bytes of UTF-8 without spaces, control or invisible format characters)"
    )]
    Customer,
    #[error("invalid request_path (must start with '/')")]
    Path,
    #[error("invalid status_code (expected an integer 100..=599)")]
    Status,
    #[error("invalid duration_seconds (non-negative decimal, at most 6 fractional digits)")]
    Duration,
    /// Found by the reader, not the parser: the line is never held whole.
    #[error("line too long (over 64 KiB)")]
    LineTooLong,
}

impl Reject {
    /// Every reason, in the order [`Reject::index`] numbers them.
    pub const ALL: [Reject; 7] = [
        Reject::FieldCount,
        Reject::Timestamp,
        Reject::Customer,
        Reject::Path,
        Reject::Status,
        Reject::Duration,
        Reject::LineTooLong,
    ];

    /// A dense index for counting by reason.
    pub fn index(self) -> usize {
        self as usize
    }

    /// A short machine-readable name (used in JSON summaries and the rejects file).
    pub fn code(self) -> &'static str {
        match self {
            Reject::FieldCount => "field_count",
            Reject::Timestamp => "timestamp",
            Reject::Customer => "customer_id",
            Reject::Path => "request_path",
            Reject::Status => "status_code",
            Reject::Duration => "duration",
            Reject::LineTooLong => "line_too_long",
        }
    }
}

/// The longest accepted customer id, in bytes.
pub const MAX_CUSTOMER_LEN: usize = 255;

const SECONDS_PER_DAY: i32 = 86_400;

/// Parses one line (without its `\n`). `Ok(None)` means the line is empty or blank.
#[inline]
pub fn parse_line(line: &[u8]) -> Result<Option<Request<'_>>, Reject> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let mut fields = [&line[..0]; 6];
    let count = split_fields(line, &mut fields).ok_or(Reject::FieldCount)?;
    let (day, rest) = match count {
        0 => return Ok(None),
        6 => (parse_date_time(fields[0], fields[1])?, &fields[2..6]),
        5 if fields[0].contains(&b'T') => (parse_iso8601(fields[0])?, &fields[1..5]),
        _ => return Err(Reject::FieldCount),
    };
    Ok(Some(Request {
        day,
        customer: parse_customer(rest[0])?,
        path: parse_path(rest[1])?,
        customer_and_path: spanning(line, rest[0], rest[1]),
        status: parse_status(rest[2])?,
        duration_us: parse_duration_us(rest[3])?,
    }))
}

/// The part of `line` from the first byte of `first` to the last of `last`, two of its fields in
/// that order.
fn spanning<'a>(line: &'a [u8], first: &[u8], last: &[u8]) -> &'a [u8] {
    let offset = |field: &[u8]| field.as_ptr() as usize - line.as_ptr() as usize;
    &line[offset(first)..offset(last) + last.len()]
}

/// Splits `line` on runs of spaces and tabs into `fields`; `None` when there are more fields.
/// Looks at eight bytes at a time: this is most of the work of parsing a line.
fn split_fields<'a>(line: &'a [u8], fields: &mut [&'a [u8]]) -> Option<usize> {
    let mut count = 0;
    let mut start = 0;
    let mut take = |end: usize, start: &mut usize| -> Option<()> {
        if end > *start {
            *fields.get_mut(count)? = &line[*start..end];
            count += 1;
        }
        *start = end + 1;
        Some(())
    };
    let chunks = line.chunks_exact(8);
    let tail = chunks.remainder();
    for (index, chunk) in chunks.enumerate() {
        let word = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
        let mut separators = zero_bytes(word ^ SPACES) | zero_bytes(word ^ TABS);
        while separators != 0 {
            take(
                index * 8 + separators.trailing_zeros() as usize / 8,
                &mut start,
            )?;
            separators &= separators - 1;
        }
    }
    let tail_start = line.len() - tail.len();
    for (offset, &byte) in tail.iter().enumerate() {
        if byte == b' ' || byte == b'\t' {
            take(tail_start + offset, &mut start)?;
        }
    }
    take(line.len(), &mut start)?;
    Some(count)
}

const SPACES: u64 = u64::from_ne_bytes([b' '; 8]);
const TABS: u64 = u64::from_ne_bytes([b'\t'; 8]);

/// The high bit of every byte of `word` that is zero, exactly (no carries between bytes).
#[inline]
fn zero_bytes(word: u64) -> u64 {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    !(((word & LOW7) + LOW7) | word | LOW7)
}

fn parse_date_time(date: &[u8], time: &[u8]) -> Result<Day, Reject> {
    let day = Day::parse(date).ok_or(Reject::Timestamp)?;
    parse_time_of_day(time).ok_or(Reject::Timestamp)?;
    Ok(day)
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction][Z|+HH:MM|-HH:MM]`; an offset moves the instant to UTC.
fn parse_iso8601(field: &[u8]) -> Result<Day, Reject> {
    let bad = Reject::Timestamp;
    if field.len() < 19 || field[10] != b'T' {
        return Err(bad);
    }
    // The local date may lie a day outside the storable range when its UTC day does not.
    let day = Day::parse_any_year(&field[..10]).ok_or(bad)?;
    let seconds = parse_time_of_day(&field[11..19]).ok_or(bad)?;
    let mut rest = &field[19..];
    if let Some(fraction) = rest.strip_prefix(b".") {
        let len = fraction.iter().take_while(|b| b.is_ascii_digit()).count();
        if len == 0 {
            return Err(bad);
        }
        rest = &fraction[len..];
    }
    let offset_seconds = match rest {
        b"" | b"Z" => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let hours = digits(&[*h1, *h2]).filter(|h| *h <= 23).ok_or(bad)?;
            let minutes = digits(&[*m1, *m2]).filter(|m| *m <= 59).ok_or(bad)?;
            let magnitude = (hours * 3600 + minutes * 60) as i32;
            if *sign == b'+' { magnitude } else { -magnitude }
        }
        _ => return Err(bad),
    };
    let utc_seconds = seconds as i32 - offset_seconds;
    Some(day.plus(utc_seconds.div_euclid(SECONDS_PER_DAY)))
        .filter(|d| d.is_storable())
        .ok_or(bad)
}

/// `HH:MM:SS` to seconds since midnight.
fn parse_time_of_day(time: &[u8]) -> Option<u32> {
    if time.len() != 8 || time[2] != b':' || time[5] != b':' {
        return None;
    }
    let hours = digits(&time[0..2]).filter(|h| *h <= 23)?;
    let minutes = digits(&time[3..5]).filter(|m| *m <= 59)?;
    let seconds = digits(&time[6..8]).filter(|s| *s <= 59)?;
    Some((hours * 3600 + minutes * 60 + seconds) as u32)
}

fn parse_customer(field: &[u8]) -> Result<&str, Reject> {
    if field.len() > MAX_CUSTOMER_LEN {
        return Err(Reject::Customer);
    }
    if field.iter().all(|b| b.is_ascii_graphic()) {
        // SAFETY: every byte is printable ASCII, so the field is valid UTF-8. (Checking again with
        // `from_utf8` cost a tenth of the time of parsing a line.)
        return Ok(unsafe { std::str::from_utf8_unchecked(field) });
    }
    let text = std::str::from_utf8(field).map_err(|_| Reject::Customer)?;
    if text.is_empty() || text.chars().any(is_hidden) {
        return Err(Reject::Customer);
    }
    Ok(text)
}

/// Characters that would let two ids look alike: white space and separators (Zs, Zl, Zp),
/// controls (Cc) and invisible format characters (Cf).
#[cold]
fn is_hidden(c: char) -> bool {
    c.is_whitespace() || c.is_control() || is_format(c)
}

/// Unicode general category Cf (format characters), Unicode 16.
pub fn is_format(c: char) -> bool {
    const FORMAT: &[(u32, u32)] = &[
        (0x00AD, 0x00AD),
        (0x0600, 0x0605),
        (0x061C, 0x061C),
        (0x06DD, 0x06DD),
        (0x070F, 0x070F),
        (0x0890, 0x0891),
        (0x08E2, 0x08E2),
        (0x180E, 0x180E),
        (0x200B, 0x200F),
        (0x202A, 0x202E),
        (0x2060, 0x2064),
        (0x2066, 0x206F),
        (0xFEFF, 0xFEFF),
        (0xFFF9, 0xFFFB),
        (0x110BD, 0x110BD),
        (0x110CD, 0x110CD),
        (0x13430, 0x1343F),
        (0x1BCA0, 0x1BCA3),
        (0x1D173, 0x1D17A),
        (0xE0001, 0xE0001),
        (0xE0020, 0xE007F),
    ];
    let c = u32::from(c);
    FORMAT
        .iter()
        .any(|&(first, last)| (first..=last).contains(&c))
}

fn parse_path(field: &[u8]) -> Result<&[u8], Reject> {
    if field.first() == Some(&b'/') {
        Ok(field)
    } else {
        Err(Reject::Path)
    }
}

fn parse_status(field: &[u8]) -> Result<u16, Reject> {
    match field {
        [_, _, _] => digits(field)
            .filter(|s| (100..=599).contains(s))
            .map(|s| s as u16)
            .ok_or(Reject::Status),
        _ => Err(Reject::Status),
    }
}

/// The most digits of whole seconds accepted (about 31,700 years; sums are 128-bit, so any number
/// of such values adds up exactly).
const MAX_WHOLE_SECONDS_DIGITS: usize = 12;

/// The longest accepted duration, `999999999999.999999` s, in microseconds.
pub const MAX_DURATION_US: u64 = 999_999_999_999_999_999;

/// A non-negative decimal with at most 6 fractional digits, to integer microseconds, exactly.
pub fn parse_duration_us(field: &[u8]) -> Result<u64, Reject> {
    let bad = Reject::Duration;
    let (whole, fraction) = match field.iter().position(|&b| b == b'.') {
        Some(dot) => (&field[..dot], Some(&field[dot + 1..])),
        None => (field, None),
    };
    if whole.is_empty() || whole.len() > MAX_WHOLE_SECONDS_DIGITS {
        return Err(bad);
    }
    let mut micros = digits(whole).ok_or(bad)? * 1_000_000;
    if let Some(fraction) = fraction {
        // Microseconds per unit of the last fractional digit, by the number of digits.
        const SCALE: [u64; 7] = [0, 100_000, 10_000, 1_000, 100, 10, 1];
        let scale = *SCALE.get(fraction.len()).filter(|&&s| s > 0).ok_or(bad)?;
        micros += digits(fraction).ok_or(bad)? * scale;
    }
    Ok(micros)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::strategy::Just;

    fn day(text: &str) -> Day {
        Day::parse(text.as_bytes()).unwrap()
    }

    /// The obvious splitter, to check the word-at-a-time one against.
    fn split_naively(line: &[u8]) -> Vec<&[u8]> {
        line.split(|&b| b == b' ' || b == b'\t')
            .filter(|f| !f.is_empty())
            .collect()
    }

    proptest::proptest! {
        #[test]
        fn fields_split_like_the_naive_splitter(
            line in proptest::collection::vec(
                proptest::prop_oneof![Just(b' '), Just(b'\t'), Just(b'a'), Just(0u8), Just(0xa0u8), proptest::num::u8::ANY],
                0..80,
            )
        ) {
            let naive = split_naively(&line);
            let mut fields = [&line[..0]; 6];
            match split_fields(&line, &mut fields) {
                Some(count) => proptest::prop_assert_eq!(&fields[..count], &naive[..]),
                None => proptest::prop_assert!(naive.len() > 6),
            }
        }
    }

    #[test]
    fn the_reference_line_parses() {
        let request = parse_line(b"2024-09-15 20:51:37 cust_27 /api/v1/resource1 500 0.488");
        assert_eq!(
            request,
            Ok(Some(Request {
                customer: "cust_27",
                day: day("2024-09-15"),
                path: b"/api/v1/resource1",
                customer_and_path: b"cust_27 /api/v1/resource1",
                status: 500,
                duration_us: 488_000,
            }))
        );
    }

    #[test]
    fn accepted_variants_parse_to_the_expected_day_and_duration() {
        let table: &[(&str, &str, u64)] = &[
            (
                "2024-09-15 20:51:37\tcust_1\t/x 200 2",
                "2024-09-15",
                2_000_000,
            ),
            (
                "  2024-09-15   00:00:00 cust_1 /x 200 1.5  ",
                "2024-09-15",
                1_500_000,
            ),
            (
                "2024-09-15 23:59:59 cust_1 /x 200 0.000001\r",
                "2024-09-15",
                1,
            ),
            ("2024-09-15 23:59:59 cust_1 /x 200 0", "2024-09-15", 0),
            (
                "2024-09-15T20:51:37Z cust_1 /x 200 0.488",
                "2024-09-15",
                488_000,
            ),
            (
                "2024-09-15T20:51:37 cust_1 /x 200 0.488",
                "2024-09-15",
                488_000,
            ),
            (
                "2024-09-15T20:51:37+00:00 cust_1 /x 200 0.488",
                "2024-09-15",
                488_000,
            ),
            (
                "2024-09-15T20:51:37.123Z cust_1 /x 200 0.488",
                "2024-09-15",
                488_000,
            ),
            (
                "2024-09-15T23:30:00-02:00 cust_1 /x 200 0.488",
                "2024-09-16",
                488_000,
            ),
            (
                "2024-09-15T01:30:00+02:00 cust_1 /x 200 0.488",
                "2024-09-14",
                488_000,
            ),
            (
                "2024-12-31T23:00:00-01:00 cust_1 /x 200 0.488",
                "2025-01-01",
                488_000,
            ),
            (
                "2024-02-29 12:00:00 cust_1 /x 200 0.488",
                "2024-02-29",
                488_000,
            ),
            (
                "9999-12-31T23:00:00+02:00 cust_1 /x 200 999999999999.999999",
                "9999-12-31",
                MAX_DURATION_US,
            ),
            ("0001-01-01 00:00:00 cust_1 /x 200 0", "0001-01-01", 0),
            ("0000-12-31T23:30:00-01:00 cust_1 /x 200 0", "0001-01-01", 0),
        ];
        for (line, expected_day, expected_us) in table {
            let request = parse_line(line.as_bytes()).unwrap().unwrap();
            assert_eq!(request.day, day(expected_day), "{line}");
            assert_eq!(request.duration_us, *expected_us, "{line}");
            assert_eq!(request.customer, "cust_1", "{line}");
        }
    }

    #[test]
    fn every_rejection_reason_is_reported() {
        let long_customer = format!("2024-09-15 20:51:37 {} /x 200 1", "c".repeat(256));
        let table: &[(&str, Reject)] = &[
            ("2024-09-15 20:51:37 cust_1 /x 200", Reject::FieldCount),
            (
                "2024-09-15 20:51:37 cust_1 /x 200 1 extra",
                Reject::FieldCount,
            ),
            ("garbage", Reject::FieldCount),
            ("2024-09-15T20:51:37Z cust_1 /x 200", Reject::FieldCount),
            ("2024-02-30 20:51:37 cust_1 /x 200 1", Reject::Timestamp),
            ("2024-09-15 24:00:00 cust_1 /x 200 1", Reject::Timestamp),
            ("2024-09-15 20:60:00 cust_1 /x 200 1", Reject::Timestamp),
            ("2024-09-15 20:51 cust_1 /x 200 1", Reject::Timestamp),
            ("15/09/2024 20:51:37 cust_1 /x 200 1", Reject::Timestamp),
            (
                "2024-09-15T20:51:37+25:00 cust_1 /x 200 1",
                Reject::Timestamp,
            ),
            ("2024-09-15T20:51:37Q cust_1 /x 200 1", Reject::Timestamp),
            ("2024-09-15T20:51:37. cust_1 /x 200 1", Reject::Timestamp),
            (&long_customer, Reject::Customer),
            ("2024-09-15 20:51:37 cust\u{1}x /x 200 1", Reject::Customer),
            ("2024-09-15 20:51:37 cust\u{a0}x /x 200 1", Reject::Customer),
            (
                "2024-09-15 20:51:37 cust\u{202e}x /x 200 1",
                Reject::Customer,
            ),
            (
                "2024-09-15 20:51:37 cust\u{200b}x /x 200 1",
                Reject::Customer,
            ),
            (
                "2024-09-15 20:51:37 \u{feff}cust /x 200 1",
                Reject::Customer,
            ),
            (
                "2024-09-15 20:51:37 cust\u{2028}x /x 200 1",
                Reject::Customer,
            ),
            ("2024-09-15 20:51:37 cust\u{85}x /x 200 1", Reject::Customer),
            ("0000-12-31 20:51:37 cust_1 /x 200 1", Reject::Timestamp),
            (
                "9999-12-31T23:00:00-02:00 cust_1 /x 200 1",
                Reject::Timestamp,
            ),
            (
                "0001-01-01T01:00:00+02:00 cust_1 /x 200 1",
                Reject::Timestamp,
            ),
            ("2024-09-15 20:51:37 cust_1 api/x 200 1", Reject::Path),
            ("2024-09-15 20:51:37 cust_1 /x 99 1", Reject::Status),
            ("2024-09-15 20:51:37 cust_1 /x 600 1", Reject::Status),
            ("2024-09-15 20:51:37 cust_1 /x 2OO 1", Reject::Status),
            ("2024-09-15 20:51:37 cust_1 /x 0200 1", Reject::Status),
            ("2024-09-15 20:51:37 cust_1 /x 200 -1", Reject::Duration),
            ("2024-09-15 20:51:37 cust_1 /x 200 +1", Reject::Duration),
            ("2024-09-15 20:51:37 cust_1 /x 200 1e3", Reject::Duration),
            ("2024-09-15 20:51:37 cust_1 /x 200 NaN", Reject::Duration),
            ("2024-09-15 20:51:37 cust_1 /x 200 inf", Reject::Duration),
            (
                "2024-09-15 20:51:37 cust_1 /x 200 0.1234567",
                Reject::Duration,
            ),
            ("2024-09-15 20:51:37 cust_1 /x 200 .5", Reject::Duration),
            ("2024-09-15 20:51:37 cust_1 /x 200 5.", Reject::Duration),
            ("2024-09-15 20:51:37 cust_1 /x 200 1.2.3", Reject::Duration),
            (
                "2024-09-15 20:51:37 cust_1 /x 200 9999999999999",
                Reject::Duration,
            ),
        ];
        for (line, reason) in table {
            assert_eq!(parse_line(line.as_bytes()), Err(*reason), "{line}");
        }
    }

    #[test]
    fn blank_lines_are_neither_requests_nor_rejects() {
        for line in ["", "   ", "\t", "\r"] {
            assert_eq!(parse_line(line.as_bytes()), Ok(None), "{line:?}");
        }
    }

    #[test]
    fn utf8_customer_ids_are_accepted() {
        let request = parse_line("2024-09-15 20:51:37 café /x 200 1".as_bytes());
        assert_eq!(request.unwrap().unwrap().customer, "café");
        let invalid = b"2024-09-15 20:51:37 caf\xff /x 200 1";
        assert_eq!(parse_line(invalid), Err(Reject::Customer));
    }

    #[test]
    fn every_reason_has_a_distinct_index_and_code() {
        for (i, reason) in Reject::ALL.iter().enumerate() {
            assert_eq!(reason.index(), i);
        }
        let codes: std::collections::HashSet<_> = Reject::ALL.iter().map(|r| r.code()).collect();
        assert_eq!(codes.len(), Reject::ALL.len());
    }
}
