//! The date range of a query string, validated into docs/spec.md's 422 errors.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use chrono::NaiveDate;

use super::error::{ApiError, Detail};
use crate::day::Day;
use crate::record::MAX_CUSTOMER_LEN;
use crate::resources;
use crate::sla::{Month, OBJECTIVE_DECIMALS, Objective};

/// The bound of an open range: the last date both backends store and compare as text alike.
pub const LAST_DATE: NaiveDate = NaiveDate::from_ymd_opt(9999, 12, 31).expect("a valid date");

/// `from` (required) and `to` (optional, inclusive) as dates, with `from <= to`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DateRange {
    pub from: NaiveDate,
    /// The last day: the one given, else [`LAST_DATE`].
    pub to: NaiveDate,
    /// Whether the request gave no `to` (a summary then echoes none, even when one is given as
    /// [`LAST_DATE`]).
    pub open: bool,
}

impl DateRange {
    /// Parses a raw query string (`from=...&to=...`); unknown parameters are ignored.
    pub fn parse(query: &str) -> Result<DateRange, ApiError> {
        let (mut from, mut to) = (None, None);
        for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
            match name.as_ref() {
                "from" => from = Some(value.into_owned()),
                "to" => to = Some(value.into_owned()),
                _ => {}
            }
        }
        let mut problems = Vec::new();
        let from = match from {
            None => {
                problems.push(Detail::new("query", "from", "field required"));
                None
            }
            Some(text) => parse_date("from", &text, &mut problems),
        };
        let to = to.and_then(|text| parse_date("to", &text, &mut problems));
        if let (Some(from), Some(to)) = (from, to)
            && to < from
        {
            problems.push(Detail::new(
                "query",
                "to",
                format!("'to' ({to}) is before 'from' ({from})"),
            ));
        }
        match from {
            Some(from) if problems.is_empty() => Ok(DateRange {
                from,
                to: to.unwrap_or(LAST_DATE),
                open: to.is_none(),
            }),
            _ => Err(ApiError::InvalidQuery(problems)),
        }
    }
}

fn parse_date(name: &str, text: &str, problems: &mut Vec<Detail>) -> Option<NaiveDate> {
    // Only days both backends store and compare alike: 0001-01-01..=9999-12-31.
    let parsed = Day::parse(text.as_bytes()).map(Day::to_naive_date);
    if parsed.is_none() {
        let shown = shown(text);
        problems.push(Detail::new(
            "query",
            name,
            format!("expected a date YYYY-MM-DD, got '{shown}'"),
        ));
    }
    parsed
}

impl<S: Send + Sync> FromRequestParts<S> for DateRange {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<DateRange, ApiError> {
        DateRange::parse(parts.uri.query().unwrap_or(""))
    }
}

/// `group_by=resource` and `resource=R`: whether an answer is broken down by resource, and the
/// one resource to keep (given as a path, normalised as ingestion does: `/users/123` keeps
/// `/users/{id}`). A resource alone implies the breakdown.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct ByResource {
    pub grouped: bool,
    pub only: Option<String>,
}

impl ByResource {
    /// Parses `group_by` and `resource` out of a raw query string (others are ignored).
    pub fn parse(query: &str) -> Result<ByResource, ApiError> {
        let mut by = ByResource::default();
        let mut problems = Vec::new();
        for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
            match name.as_ref() {
                "group_by" if value == "resource" => by.grouped = true,
                "group_by" => problems.push(unexpected("group_by", "'resource'", &value)),
                "resource" if value == resources::OTHER => by.only = Some(value.into_owned()),
                "resource" if value.starts_with('/') => {
                    let mut resource = String::new();
                    resources::resource_of(value.as_bytes(), &mut resource);
                    by.only = Some(resource);
                }
                "resource" => problems.push(unexpected(
                    "resource",
                    "a path starting with '/' or '(other)'",
                    &value,
                )),
                _ => {}
            }
        }
        by.grouped |= by.only.is_some();
        match problems.is_empty() {
            true => Ok(by),
            false => Err(ApiError::InvalidQuery(problems)),
        }
    }
}

/// The first 40 characters of a value, as error messages quote it.
fn shown(text: &str) -> String {
    text.chars().take(40).collect()
}

/// `month` (required, `YYYY-MM`) and `objective` (optional, a percentage, default 99.9) of the
/// SLA route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlaQuery {
    pub month: Month,
    pub objective: Objective,
}

impl SlaQuery {
    /// Parses `month=...&objective=...`; unknown parameters are ignored, every problem reported.
    pub fn parse(query: &str) -> Result<SlaQuery, ApiError> {
        let (mut month, mut objective) = (None, None);
        for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
            match name.as_ref() {
                "month" => month = Some(value.into_owned()),
                "objective" => objective = Some(value.into_owned()),
                _ => {}
            }
        }
        let mut problems = Vec::new();
        let month = match month {
            None => {
                problems.push(Detail::new("query", "month", "field required"));
                None
            }
            Some(text) => Month::parse(&text).or_else(|| {
                problems.push(Detail::new(
                    "query",
                    "month",
                    format!(
                        "expected a month YYYY-MM from 0001-01 to 9999-12, got '{}'",
                        shown(&text)
                    ),
                ));
                None
            }),
        };
        let objective = match objective {
            None => Some(Objective::DEFAULT),
            Some(text) => Objective::parse(&text).or_else(|| {
                problems.push(Detail::new(
                    "query",
                    "objective",
                    format!(
                        "expected a percentage above 0 and below 100 with at most \
                         {OBJECTIVE_DECIMALS} decimals, got '{}'",
                        shown(&text)
                    ),
                ));
                None
            }),
        };
        match (month, objective) {
            (Some(month), Some(objective)) if problems.is_empty() => {
                Ok(SlaQuery { month, objective })
            }
            _ => Err(ApiError::InvalidQuery(problems)),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ByResource {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<ByResource, ApiError> {
        ByResource::parse(parts.uri.query().unwrap_or(""))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for SlaQuery {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<SlaQuery, ApiError> {
        SlaQuery::parse(parts.uri.query().unwrap_or(""))
    }
}

/// How an export is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportFormat {
    /// A header row, then one row per day (the default).
    Csv,
    /// One JSON day object per line.
    Ndjson,
}

/// The export's range (as the stats routes take it) and `format` (`csv`, the default, or
/// `ndjson`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExportQuery {
    pub range: DateRange,
    pub format: ExportFormat,
}

impl ExportQuery {
    /// Parses `from=...&to=...&format=...`; every problem, dates and format, reported at once.
    pub fn parse(query: &str) -> Result<ExportQuery, ApiError> {
        let mut problems = Vec::new();
        let range = DateRange::parse(query).map_err(|error| match error {
            ApiError::InvalidQuery(detail) => problems.extend(detail),
            other => unreachable!("a date range fails only as a query: {other:?}"),
        });
        let given = url::form_urlencoded::parse(query.as_bytes())
            .filter(|(name, _)| name == "format")
            .last()
            .map(|(_, value)| value.into_owned());
        let format = match given.as_deref() {
            None | Some("csv") => Some(ExportFormat::Csv),
            Some("ndjson") => Some(ExportFormat::Ndjson),
            Some(other) => {
                problems.push(Detail::new(
                    "query",
                    "format",
                    format!("expected csv or ndjson, got '{}'", shown(other)),
                ));
                None
            }
        };
        match (range, format) {
            (Ok(range), Some(format)) if problems.is_empty() => Ok(ExportQuery { range, format }),
            _ => Err(ApiError::InvalidQuery(problems)),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ExportQuery {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<ExportQuery, ApiError> {
        ExportQuery::parse(parts.uri.query().unwrap_or(""))
    }
}

/// Customers listed per page by default, and at most.
pub const DEFAULT_PAGE: usize = 1_000;
pub const MAX_PAGE: usize = 10_000;

/// A page of `/customers`: at most `limit` customers whose id comes after `after`, by id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CustomerPage {
    pub limit: usize,
    pub after: Option<String>,
}

impl CustomerPage {
    /// Parses `limit=N&after=ID` (both optional; unknown parameters are ignored).
    pub fn parse(query: &str) -> Result<CustomerPage, ApiError> {
        let mut page = CustomerPage {
            limit: DEFAULT_PAGE,
            after: None,
        };
        let mut problems = Vec::new();
        for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
            match name.as_ref() {
                "limit" => match value.parse::<usize>() {
                    Ok(limit) if (1..=MAX_PAGE).contains(&limit) => page.limit = limit,
                    _ => {
                        let shown = shown(&value);
                        problems.push(Detail::new(
                            "query",
                            "limit",
                            format!("expected a number from 1 to {MAX_PAGE}, got '{shown}'"),
                        ));
                    }
                },
                "after" if value.len() > MAX_CUSTOMER_LEN => problems.push(Detail::new(
                    "query",
                    "after",
                    format!(
                        "expected at most {MAX_CUSTOMER_LEN} bytes, got {}",
                        value.len()
                    ),
                )),
                "after" => page.after = Some(value.into_owned()),
                _ => {}
            }
        }
        if problems.is_empty() {
            Ok(page)
        } else {
            Err(ApiError::InvalidQuery(problems))
        }
    }

    /// The query string of the page after this one, which ended at `last`.
    pub fn next_query(&self, last: &str) -> String {
        let after: String = url::form_urlencoded::byte_serialize(last.as_bytes()).collect();
        format!("limit={}&after={after}", self.limit)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for CustomerPage {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<CustomerPage, ApiError> {
        CustomerPage::parse(parts.uri.query().unwrap_or(""))
    }
}

/// Checks a customer id from the path: 1 to 255 bytes.
pub fn check_customer(customer_id: &str) -> Result<(), ApiError> {
    if customer_id.is_empty() || customer_id.len() > MAX_CUSTOMER_LEN {
        return Err(ApiError::InvalidQuery(vec![Detail::new(
            "path",
            "customer_id",
            format!(
                "expected 1 to {MAX_CUSTOMER_LEN} bytes, got {}",
                customer_id.len()
            ),
        )]));
    }
    Ok(())
}

/// The problem of query parameter `name`: `value` given where `expected` was.
fn unexpected(name: &str, expected: &str, value: &str) -> Detail {
    let shown = shown(value);
    Detail::new("query", name, format!("expected {expected}, got '{shown}'"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(query: &str) -> Vec<Detail> {
        match DateRange::parse(query) {
            Err(ApiError::InvalidQuery(detail)) => detail,
            other => panic!("expected a 422 for {query}, got {other:?}"),
        }
    }

    #[test]
    fn valid_ranges_parse_and_to_defaults_to_open() {
        let range = DateRange::parse("from=2024-09-03").unwrap();
        assert_eq!(range.from, NaiveDate::from_ymd_opt(2024, 9, 3).unwrap());
        assert_eq!((range.to, range.open), (LAST_DATE, true));
        let given = DateRange::parse("from=2024-09-03&to=9999-12-31").unwrap();
        assert_eq!(
            (given.to, given.open),
            (LAST_DATE, false),
            "the same day, given"
        );
        let range = DateRange::parse("to=2024-09-05&from=2024-09-05&x=1").unwrap();
        assert_eq!(range.from, range.to);
    }

    #[test]
    fn a_resource_is_kept_as_ingestion_names_it_and_implies_the_breakdown() {
        assert_eq!(ByResource::parse("from=x").unwrap(), ByResource::default());
        let by = ByResource::parse("resource=%2Fusers%2F12%3Fa%3D1").unwrap();
        assert_eq!(
            (by.grouped, by.only.as_deref()),
            (true, Some("/users/{id}"))
        );
        assert!(ByResource::parse("group_by=resource").unwrap().grouped);
        for bad in ["group_by=day", "resource=users"] {
            assert!(ByResource::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn customer_pages_default_to_a_thousand_and_refuse_bad_limits() {
        assert_eq!(
            CustomerPage::parse("").unwrap(),
            CustomerPage {
                limit: DEFAULT_PAGE,
                after: None
            }
        );
        let page = CustomerPage::parse("limit=2&after=cust_1%262").unwrap();
        assert_eq!((page.limit, page.after.as_deref()), (2, Some("cust_1&2")));
        assert_eq!(page.next_query("a b&c"), "limit=2&after=a+b%26c");
        for bad in ["limit=0", "limit=10001", "limit=x", "limit=-1"] {
            match CustomerPage::parse(bad) {
                Err(ApiError::InvalidQuery(detail)) => {
                    assert_eq!(detail[0].loc, ["query", "limit"])
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
        assert!(CustomerPage::parse(&format!("after={}", "x".repeat(256))).is_err());
    }

    #[test]
    fn each_problem_names_its_parameter() {
        assert_eq!(problems("")[0].loc, ["query", "from"]);
        let bad = problems("from=aaaa");
        assert_eq!(bad[0].msg, "expected a date YYYY-MM-DD, got 'aaaa'");
        assert_eq!(problems("from=2024-02-30")[0].loc, ["query", "from"]);
        assert_eq!(problems("from=2024-09-03&to=nope")[0].loc, ["query", "to"]);
        assert_eq!(
            problems("from=2024-09-03&to=2024-09-02")[0].loc,
            ["query", "to"]
        );
        assert_eq!(problems("from=+2024-09-03")[0].loc, ["query", "from"]);
        assert_eq!(problems("from=0000-12-31")[0].loc, ["query", "from"]);
        assert_eq!(
            problems("from=2024-09-03&to=-0001-01-01")[0].loc,
            ["query", "to"]
        );
    }

    fn sla_problems(query: &str) -> Vec<Detail> {
        match SlaQuery::parse(query) {
            Err(ApiError::InvalidQuery(detail)) => detail,
            other => panic!("expected a 422 for {query}, got {other:?}"),
        }
    }

    #[test]
    fn sla_queries_need_a_month_and_take_an_objective() {
        let query = SlaQuery::parse("month=2024-09").unwrap();
        assert_eq!(query.objective, Objective::DEFAULT);
        assert_eq!(query.month.to_string(), "2024-09");
        assert_eq!(sla_problems("")[0].loc, ["query", "month"]);
        assert_eq!(sla_problems("")[0].msg, "field required");
        assert_eq!(sla_problems("month=2024-13")[0].loc, ["query", "month"]);
        for bad in ["0", "100", "abc", "-5", "1e1"] {
            let problems = sla_problems(&format!("month=2024-09&objective={bad}"));
            assert_eq!(problems.len(), 1, "{bad}");
            assert_eq!(problems[0].loc, ["query", "objective"], "{bad}");
        }
        let both = sla_problems("month=x&objective=y");
        assert_eq!(both.len(), 2, "every problem at once: {both:?}");
    }

    #[test]
    fn export_queries_take_a_range_and_a_format() {
        let query = ExportQuery::parse("from=2024-09-01").unwrap();
        assert_eq!((query.format, query.range.open), (ExportFormat::Csv, true));
        let query = ExportQuery::parse("from=2024-09-01&to=2024-09-30&format=ndjson").unwrap();
        assert_eq!(query.format, ExportFormat::Ndjson);
        match ExportQuery::parse("format=xml&format=json") {
            Err(ApiError::InvalidQuery(detail)) => {
                let locs: Vec<_> = detail.iter().map(|d| d.loc.join(".")).collect();
                assert_eq!(locs, ["query.from", "query.format"], "{detail:?}");
            }
            other => panic!("{other:?}"),
        }
        assert!(
            ExportQuery::parse("from=2024-09-01&format=xml&format=csv").is_ok(),
            "the last value counts"
        );
    }
}
