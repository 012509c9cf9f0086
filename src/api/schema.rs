//! The shapes of the API's answers as its OpenAPI document describes them. The answers are the
//! store's and the statistics' own types, serialized; these mirrors only describe them (with
//! examples), so that neither the store nor `stats` depends on the API's documentation. A test
//! checks that each mirror names exactly the fields its type serializes.

#![allow(dead_code)] // never built: only their schemas are used

use chrono::NaiveDate;
use serde::Serialize;

/// The statistics of one group or range, in the order the API prints them.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Statistics {
    /// Requests with a 2xx status.
    #[schema(example = 97)]
    success_requests: u64,
    /// All other requests (1xx, 3xx, 4xx, 5xx).
    #[schema(example = 104)]
    failed_requests: u64,
    /// 100 x (duration of successful requests) / (duration of all requests); 0 when that is 0.
    #[schema(example = 47.72)]
    uptime_percentage: f64,
    /// Mean duration, seconds.
    #[schema(example = 1.043)]
    duration_mean: f64,
    /// Median duration (nearest rank), seconds.
    #[schema(example = 1.031)]
    duration_p50: f64,
    /// 99th percentile duration (nearest rank), seconds.
    #[schema(example = 1.982)]
    duration_p99: f64,
    /// All requests.
    #[schema(example = 201)]
    total_requests: u64,
    status_1xx: u64,
    status_2xx: u64,
    status_3xx: u64,
    status_4xx: u64,
    status_5xx: u64,
    /// 100 x (requests with status < 500) / all requests.
    #[schema(example = 86.07)]
    availability_percentage: f64,
    /// 90th percentile duration (nearest rank), seconds.
    duration_p90: f64,
    /// 95th percentile duration (nearest rank), seconds.
    duration_p95: f64,
    /// Longest duration, seconds.
    duration_max: f64,
}

/// One stored day of one customer (with `group_by=resource`: one resource of the day).
#[derive(Serialize, utoipa::ToSchema)]
pub struct DayRow {
    #[schema(example = "cust_1")]
    customer_id: String,
    date: NaiveDate,
    /// Only with `group_by=resource` (or `resource=`): the resource, e.g. `/users/{id}/orders`;
    /// `(other)` for requests past the day's 1,000 resources; `null` for requests stored without
    /// their resource.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "/api/v1/resource1")]
    resource: Option<Option<String>>,
    #[serde(flatten)]
    statistics: Statistics,
}

/// One resource's statistics over a range (`group_by=resource`).
#[derive(Serialize, utoipa::ToSchema)]
pub struct ResourceSummary {
    #[schema(example = "cust_1")]
    customer_id: String,
    from: NaiveDate,
    /// The last day asked for; absent when the request gave no `to`.
    #[serde(skip_serializing_if = "Option::is_none")]
    to: Option<NaiveDate>,
    /// The resource; `(other)` for requests past a day's 1,000 resources; `null` for requests
    /// stored without their resource.
    #[schema(example = "/api/v1/resource1", required = true)]
    resource: Option<String>,
    #[serde(flatten)]
    statistics: Statistics,
}

/// A summary: one object for the range, or with `group_by=resource` an array of one object per
/// resource, by resource.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum SummaryAnswer {
    Range(super::handlers::RangeSummary),
    ByResource(Vec<ResourceSummary>),
}

/// One customer in the customer list.
#[derive(Serialize, utoipa::ToSchema)]
pub struct CustomerSummary {
    #[schema(example = "cust_1")]
    customer_id: String,
    /// The first day with data.
    first_day: NaiveDate,
    /// The last day with data.
    last_day: NaiveDate,
    #[schema(example = 6013)]
    total_requests: u64,
}

/// A customer's SLA over one calendar month.
#[derive(Serialize, utoipa::ToSchema)]
pub struct MonthlySla {
    #[schema(example = "cust_1")]
    customer_id: String,
    /// The month asked for, YYYY-MM.
    #[schema(example = "2024-09")]
    month: String,
    /// The month's first day.
    from: NaiveDate,
    /// The month's last day.
    to: NaiveDate,
    /// The availability objective, percent.
    #[schema(example = 99.9)]
    objective: f64,
    /// Every request of the month.
    #[schema(example = 201)]
    total_requests: u64,
    /// Requests the server failed (5xx).
    #[schema(example = 28)]
    failed_by_server: u64,
    /// 100 x (requests with status < 500) / all requests of the month; 0 without requests.
    #[schema(example = 86.07)]
    availability_percentage: f64,
    /// 100 x (duration of 2xx requests) / (duration of all requests); 0 when that is 0.
    #[schema(example = 47.72)]
    uptime_percentage: f64,
    /// (100 - objective) % of the month's requests: how many the server may fail.
    #[schema(example = 0.201)]
    error_budget_requests: f64,
    /// The budget less the 5xx requests; negative once overspent.
    #[schema(example = -27.799)]
    error_budget_remaining_requests: f64,
    /// Availability below the objective (compared exactly); false without requests.
    breached: bool,
    /// The day of lowest availability (the earliest of equals); null without data.
    #[schema(nullable = true)]
    worst_day: Option<WorstDay>,
}

/// The month's day of lowest availability.
#[derive(Serialize, utoipa::ToSchema)]
pub struct WorstDay {
    date: NaiveDate,
    #[schema(example = 201)]
    total_requests: u64,
    /// Requests the server failed (5xx).
    #[schema(example = 28)]
    failed_by_server: u64,
    #[schema(example = 86.07)]
    availability_percentage: f64,
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use utoipa::OpenApi;

    /// The property names the API document gives `schema` (its own and those of what it
    /// flattens in).
    fn documented(schema: &str) -> BTreeSet<String> {
        let document = serde_json::to_value(super::super::ApiDoc::openapi()).unwrap();
        let schemas = &document["components"]["schemas"];
        let mut names = BTreeSet::new();
        let mut pending = vec![schemas[schema].clone()];
        while let Some(value) = pending.pop() {
            if let Some(properties) = value["properties"].as_object() {
                names.extend(properties.keys().cloned());
            }
            if let Some(parts) = value["allOf"].as_array() {
                pending.extend(parts.iter().cloned());
            }
            if let Some(reference) = value["$ref"].as_str() {
                let name = reference.rsplit('/').next().unwrap();
                pending.push(schemas[name].clone());
            }
        }
        names
    }

    fn serialized(value: impl serde::Serialize) -> BTreeSet<String> {
        let value = serde_json::to_value(value).unwrap();
        value.as_object().unwrap().keys().cloned().collect()
    }

    #[test]
    fn every_answer_has_exactly_the_fields_the_document_names() {
        let statistics = {
            let mut empty = crate::stats::DayStats::default();
            empty.statistics()
        };
        let day = crate::store::DayRow {
            customer_id: "cust_1".into(),
            date: chrono::NaiveDate::from_ymd_opt(2024, 9, 3).unwrap(),
            statistics: statistics.clone(),
        };
        let customer = crate::store::CustomerSummary {
            customer_id: "cust_1".into(),
            first_day: day.date,
            last_day: day.date,
            total_requests: 0,
        };
        assert_eq!(documented("Statistics"), serialized(&statistics));
        let mut plain_day = documented("DayRow");
        plain_day.remove("resource");
        assert_eq!(plain_day, serialized(&day));
        assert_eq!(documented("CustomerSummary"), serialized(&customer));
        let summary = super::super::handlers::RangeSummary {
            customer_id: "cust_1".into(),
            from: day.date,
            to: Some(day.date),
            statistics,
        };
        assert_eq!(documented("RangeSummary"), serialized(&summary));
        let by_resource = super::super::by_resource::ResourceDay {
            customer_id: "cust_1".into(),
            date: day.date,
            resource: None,
            statistics: summary.statistics.clone(),
        };
        assert_eq!(documented("DayRow"), serialized(&by_resource));
        let resource = super::super::by_resource::ResourceSummary {
            customer_id: "cust_1".into(),
            from: day.date,
            to: Some(day.date),
            resource: None,
            statistics: summary.statistics,
        };
        assert_eq!(documented("ResourceSummary"), serialized(&resource));
        let days = [crate::sla::DayTotals {
            date: day.date,
            total_requests: 2,
            status_5xx: 1,
            duration_sum_us: 3,
            success_duration_sum_us: 1,
        }];
        let month = crate::sla::Month::from(day.date);
        let sla = crate::sla::MonthlySla::compute(
            "cust_1".into(),
            month,
            crate::sla::Objective::DEFAULT,
            &days,
        );
        assert_eq!(documented("WorstDay"), serialized(&sla.worst_day));
        assert_eq!(documented("MonthlySla"), serialized(&sla));
    }
}
