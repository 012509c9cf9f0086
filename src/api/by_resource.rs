//! Answers broken down by resource (`group_by=resource`, `resource=`; docs/spec.md section 5):
//! each stored day's breakdown, or the breakdowns of a range merged resource by resource.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use serde::Serialize;

use crate::resources::{Breakdown, UNATTRIBUTED};
use crate::stats::{DayStats, Statistics};

/// One resource of one day.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ResourceDay {
    pub customer_id: String,
    pub date: NaiveDate,
    /// The resource; `None` for requests stored without their resource.
    pub resource: Option<String>,
    #[serde(flatten)]
    pub statistics: Statistics,
}

/// One resource over a range.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ResourceSummary {
    pub customer_id: String,
    pub from: NaiveDate,
    /// The last day asked for; absent when the request gave no `to`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<NaiveDate>,
    pub resource: Option<String>,
    #[serde(flatten)]
    pub statistics: Statistics,
}

/// A day's requests by resource: its breakdown, or all of them unattributed when it has none.
fn entries(mut day: DayStats) -> Vec<(Box<str>, DayStats)> {
    let breakdown = match day.resources.take() {
        Some(breakdown) => *breakdown,
        None => Breakdown::unattributed(day),
    };
    breakdown.into_entries()
}

/// How the API names a resource: `None` for the unattributed requests.
fn shown(name: &str) -> Option<String> {
    (name != UNATTRIBUTED).then(|| name.to_string())
}

fn kept(name: &str, only: Option<&str>) -> bool {
    only.is_none_or(|only| only == name)
}

/// The objects of every (day, resource), by date then resource.
pub fn days(
    customer: &str,
    states: Vec<(NaiveDate, DayStats)>,
    only: Option<&str>,
) -> Vec<ResourceDay> {
    let mut answer = Vec::new();
    for (date, day) in states {
        for (name, mut state) in entries(day) {
            if kept(&name, only) {
                answer.push(ResourceDay {
                    customer_id: customer.to_string(),
                    date,
                    resource: shown(&name),
                    statistics: state.statistics(),
                });
            }
        }
    }
    answer
}

/// One summary per resource over the range (exact: the days' states merged), by resource.
pub fn summaries(
    customer: &str,
    (from, to): (NaiveDate, Option<NaiveDate>),
    states: Vec<(NaiveDate, DayStats)>,
    only: Option<&str>,
) -> Vec<ResourceSummary> {
    let mut merged: BTreeMap<Box<str>, DayStats> = BTreeMap::new();
    for (_, day) in states {
        for (name, state) in entries(day) {
            if kept(&name, only) {
                merged.entry(name).or_default().merge(state);
            }
        }
    }
    merged
        .into_iter()
        .map(|(name, mut state)| ResourceSummary {
            customer_id: customer.to_string(),
            from,
            to,
            resource: shown(&name),
            statistics: state.statistics(),
        })
        .collect()
}
