//! The bulk export, `GET /export` (docs/spec.md section 5, "The bulk export"): every customer's
//! days in a date range, in (customer, date) order, as CSV or NDJSON, streamed in constant
//! memory.
//!
//! The store reads a page of [`PAGE_ROWS`] days at a time (keyset pagination on the primary key,
//! each page one read of its own on the read pool); a task encodes each page and hands it to the
//! response body through a channel of [`IN_FLIGHT`] chunks, so a slow client holds back the reads
//! instead of filling memory, and holds no database connection between pages. The first page is
//! read before the answer starts, under the request timeout as any request is (a database that
//! cannot serve is a 503 with the JSON error body); every later page must come within the request
//! timeout too, so a long export goes on while it makes progress. A page that fails or comes too
//! late ends the body without its last chunk: the client sees a transfer cut short, never a file
//! that looks whole. A client that goes away closes the channel: the read in progress is dropped
//! (which interrupts it) and no other is started.

use std::io::Write as _;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use tokio::sync::mpsc;

use super::Ctx;
use super::auth::{Access, Grant};
use super::error::{ApiError, ErrorBody};
use super::query::{ExportFormat, ExportQuery};
use crate::stats::Statistics;
use crate::store::{DayRow, ExportCursor, Store};

/// Days read (and encoded) at a time: about 1 MB of rows, few enough round trips for a month of
/// every customer.
const PAGE_ROWS: usize = 4096;

/// Encoded pages waiting for the client at most (besides the one being read).
const IN_FLIGHT: usize = 2;

/// A day's value as the export writes it.
#[derive(Clone, Copy)]
enum Value {
    Count(u64),
    Real(f64),
}

/// How a field's value is taken from a day's statistics.
type Field = fn(&Statistics) -> Value;

/// The statistics of a day object after `customer_id` and `date`, in the order section 5 gives
/// (the JSON day object's; a test checks they agree): the CSV header and each row's cells.
const FIELDS: [(&str, Field); 16] = [
    ("success_requests", |s| Value::Count(s.success_requests)),
    ("failed_requests", |s| Value::Count(s.failed_requests)),
    ("uptime_percentage", |s| Value::Real(s.uptime_percentage)),
    ("duration_mean", |s| Value::Real(s.duration_mean)),
    ("duration_p50", |s| Value::Real(s.duration_p50)),
    ("duration_p99", |s| Value::Real(s.duration_p99)),
    ("total_requests", |s| Value::Count(s.total_requests)),
    ("status_1xx", |s| Value::Count(s.status_1xx)),
    ("status_2xx", |s| Value::Count(s.status_2xx)),
    ("status_3xx", |s| Value::Count(s.status_3xx)),
    ("status_4xx", |s| Value::Count(s.status_4xx)),
    ("status_5xx", |s| Value::Count(s.status_5xx)),
    ("availability_percentage", |s| {
        Value::Real(s.availability_percentage)
    }),
    ("duration_p90", |s| Value::Real(s.duration_p90)),
    ("duration_p95", |s| Value::Real(s.duration_p95)),
    ("duration_max", |s| Value::Real(s.duration_max)),
];

impl ExportFormat {
    fn content_type(self) -> &'static str {
        match self {
            ExportFormat::Csv => "text/csv; charset=utf-8",
            ExportFormat::Ndjson => "application/x-ndjson",
        }
    }

    fn extension(self) -> &'static str {
        match self {
            ExportFormat::Csv => "csv",
            ExportFormat::Ndjson => "ndjson",
        }
    }

    /// What comes before the first row: CSV's header line.
    fn header(self, out: &mut Vec<u8>) {
        if self == ExportFormat::Csv {
            out.extend_from_slice(b"customer_id,date");
            for (name, _) in FIELDS {
                out.push(b',');
                out.extend_from_slice(name.as_bytes());
            }
            out.push(b'\n');
        }
    }

    /// One day: a CSV row, or a JSON object and a newline.
    fn write(self, out: &mut Vec<u8>, row: &DayRow) -> Result<(), serde_json::Error> {
        match self {
            ExportFormat::Ndjson => serde_json::to_writer(&mut *out, row)?,
            ExportFormat::Csv => {
                csv_cell(out, &row.customer_id);
                out.push(b',');
                write!(out, "{}", row.date).expect("writing to memory");
                for (_, value) in FIELDS {
                    out.push(b',');
                    // Numbers as JSON prints them: doubles in their shortest round-trip form.
                    match value(&row.statistics) {
                        Value::Count(count) => serde_json::to_writer(&mut *out, &count)?,
                        Value::Real(real) => serde_json::to_writer(&mut *out, &real)?,
                    }
                }
            }
        }
        out.push(b'\n');
        Ok(())
    }
}

/// Writes a CSV cell of text. Text that a spreadsheet would run as a formula (it starts with `=`,
/// `+`, `-`, `@`, a tab or a carriage return) gets a leading apostrophe and quotes, as OWASP's CSV
/// injection guidance says; text with quotes, commas or line breaks is quoted (quotes doubled).
/// The dashboard's CSV download applies the same rule (`csvCell` in dashboard/app.js).
pub fn csv_cell(out: &mut Vec<u8>, text: &str) {
    let formula = text
        .bytes()
        .next()
        .is_some_and(|first| matches!(first, b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r'));
    let quoted = formula
        || text
            .bytes()
            .any(|b| matches!(b, b'"' | b',' | b'\r' | b'\n'));
    if !quoted {
        out.extend_from_slice(text.as_bytes());
        return;
    }
    out.push(b'"');
    if formula {
        out.push(b'\'');
    }
    for piece in text.split_inclusive('"') {
        out.extend_from_slice(piece.as_bytes());
        if piece.ends_with('"') {
            out.push(b'"');
        }
    }
    out.push(b'"');
}

/// Every customer's days (with a customer's key: its own) with `from <= date <= to`, in
/// (customer, date) order, streamed as CSV or NDJSON.
#[utoipa::path(
    get,
    path = "/export",
    params(
        ("from" = chrono::NaiveDate, Query, description = "First day (YYYY-MM-DD), inclusive", example = "2024-09-01"),
        ("to" = Option<chrono::NaiveDate>, Query, description = "Last day (YYYY-MM-DD), inclusive; open when absent", example = "2024-09-30"),
        ("format" = Option<String>, Query, description = "csv (the default: a header row, then a row per day) or ndjson (a day object per line)", example = "csv"),
    ),
    security((), ("api_key" = [])),
    responses(
        (status = 200, description = "Every day in the range, by customer then date, each with exactly the fields of a day object (customer_id, date, then the statistics). Streamed; a transfer cut short means the export failed midway",
         content(
             (String = "text/csv", example = "customer_id,date,success_requests,failed_requests,uptime_percentage,duration_mean,duration_p50,duration_p99,total_requests,status_1xx,status_2xx,status_3xx,status_4xx,status_5xx,availability_percentage,duration_p90,duration_p95,duration_max\ncust_1,2024-09-03,97,104,47.72,1.043,1.031,1.982,201,0,97,0,76,28,86.07,1.8,1.9,1.999\n"),
             (String = "application/x-ndjson"),
         ),
         headers(("Content-Disposition" = String, description = "attachment; filename=\"logstats-FROM-TO.csv\" (or .ndjson; TO is 9999-12-31 for an open range)"))),
        (status = 401, description = "API keys are configured and the request has no known key", body = ErrorBody),
        (status = 422, description = "A missing or invalid date, to < from, or a format other than csv or ndjson", body = ErrorBody,
         example = json!({"error": "invalid_query", "message": "invalid query parameters", "detail": [{"loc": ["query", "format"], "msg": "expected csv or ndjson, got 'xml'"}]})),
        (status = 503, description = "The database is unavailable, or its first page took longer than the request timeout", body = ErrorBody),
    )
)]
pub async fn export(
    State(ctx): State<Ctx>,
    Access(grant): Access,
    query: ExportQuery,
) -> Result<Response, ApiError> {
    let only = match grant {
        Grant::All => None,
        Grant::Customer(own) => Some(own),
    };
    let (range, format) = (query.range, query.format);
    let mut cursor = ExportCursor::new(range.from, range.to, only);
    let first = ctx.store.export_page(&mut cursor, PAGE_ROWS).await?;
    let (sender, receiver) = mpsc::channel(IN_FLIGHT);
    tokio::spawn(produce(
        ctx.store.clone(),
        cursor,
        first,
        format,
        sender,
        ctx.request_timeout,
    ));
    // Fused: the compression layer polls the body once more after its end.
    let chunks = futures_util::StreamExt::fuse(futures_util::stream::unfold(
        receiver,
        |mut receiver| async move { receiver.recv().await.map(|chunk| (chunk, receiver)) },
    ));
    let disposition = format!(
        "attachment; filename=\"logstats-{}-{}.{}\"",
        range.from,
        range.to,
        format.extension()
    );
    Ok((
        [
            (header::CONTENT_TYPE, format.content_type().to_string()),
            (header::CONTENT_DISPOSITION, disposition),
            (header::CACHE_CONTROL, "no-store".to_string()),
        ],
        Body::from_stream(chunks),
    )
        .into_response())
}

/// Encodes `first` and every later page of `cursor` into `sender`, each page read within
/// `timeout`; stops when the client has gone (the channel is closed).
async fn produce(
    store: Store,
    mut cursor: ExportCursor,
    first: Vec<DayRow>,
    format: ExportFormat,
    sender: mpsc::Sender<Result<Bytes, std::io::Error>>,
    timeout: Duration,
) {
    let mut page = first;
    let mut out = Vec::new();
    format.header(&mut out);
    loop {
        for row in &page {
            if let Err(error) = format.write(&mut out, row) {
                return fail(&sender, format!("encoding a day: {error}")).await;
            }
        }
        if !out.is_empty()
            && sender
                .send(Ok(Bytes::from(std::mem::take(&mut out))))
                .await
                .is_err()
        {
            return;
        }
        if cursor.is_done() {
            return;
        }
        let next = tokio::select! {
            // The client went away: dropping the read interrupts it.
            () = sender.closed() => return,
            next = tokio::time::timeout(timeout, store.export_page(&mut cursor, PAGE_ROWS)) => next,
        };
        page = match next {
            Ok(Ok(page)) => page,
            Ok(Err(error)) => return fail(&sender, format!("reading a page: {error:#}")).await,
            Err(_) => {
                let cause = format!("a page took longer than the request timeout ({timeout:?})");
                return fail(&sender, cause).await;
            }
        };
        out.reserve(page.len() * 256);
    }
}

/// Ends an export midway: logged, and the body aborted (no last chunk).
async fn fail(sender: &mpsc::Sender<Result<Bytes, std::io::Error>>, cause: String) {
    tracing::warn!("an export stopped midway: {cause}");
    let _ = sender.send(Err(std::io::Error::other(cause))).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(text: &str) -> String {
        let mut out = Vec::new();
        csv_cell(&mut out, text);
        String::from_utf8(out).unwrap()
    }

    /// The same cases as the dashboard's test of `csvCell` (tests/it/browser.rs).
    #[test]
    fn cells_a_spreadsheet_would_run_are_defused_as_the_dashboard_does() {
        let cases = [
            ("=1+2", "\"'=1+2\""),
            ("+1", "\"'+1\""),
            ("-1", "\"'-1\""),
            ("@SUM(A1)", "\"'@SUM(A1)\""),
            ("\tx", "\"'\tx\""),
            ("\rx", "\"'\rx\""),
            ("plain", "plain"),
            ("a,b", "\"a,b\""),
            ("say \"hi\"", "\"say \"\"hi\"\"\""),
            ("=\"x\"", "\"'=\"\"x\"\"\""),
            ("", ""),
        ];
        for (text, want) in cases {
            assert_eq!(cell(text), want, "{text:?}");
        }
    }

    #[test]
    fn a_csv_row_has_the_day_objects_fields_in_their_order() {
        let row = DayRow {
            customer_id: "=cmd".into(),
            date: chrono::NaiveDate::from_ymd_opt(2024, 9, 3).unwrap(),
            statistics: crate::stats::DayStats::default().statistics(),
        };
        let json = serde_json::to_string(&row).unwrap();
        let mut keys = Vec::new();
        let mut rest = json.as_str();
        while let Some(at) = rest.find("\":") {
            let key_start = rest[..at].rfind('"').unwrap() + 1;
            keys.push(&rest[key_start..at]);
            rest = &rest[at + 2..];
        }
        let mut header = Vec::new();
        ExportFormat::Csv.header(&mut header);
        assert_eq!(String::from_utf8(header).unwrap(), keys.join(",") + "\n");
        let mut line = Vec::new();
        ExportFormat::Csv.write(&mut line, &row).unwrap();
        assert_eq!(
            String::from_utf8(line).unwrap(),
            "\"'=cmd\",2024-09-03,0,0,0.0,0.0,0.0,0.0,0,0,0,0,0,0,0.0,0.0,0.0,0.0\n"
        );
    }
}
