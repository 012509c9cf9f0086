//! Planner statistics after a large commit on PostgreSQL: a table that grew a lot since it was
//! last analysed is analysed at once, since autovacuum may be off or late, and until then the
//! planner picks plans for the table it last saw (paging `/customers` after a first large
//! ingestion took a second a page, 18 ms once analysed).

use sqlx::postgres::PgPool;

/// Fewer rows written than this never call for an analysis.
const MANY_ROWS: usize = 10_000;

/// Analyses the days table (and the months, which grow with it) when a commit wrote `written` rows, at least [`MANY_ROWS`] and a
/// tenth of the rows the planner believes it holds (all of them when it was never analysed). A
/// failure is only reported: the data is committed.
pub(super) async fn analyze_if_grown(pool: &PgPool, written: usize) {
    if written < MANY_ROWS {
        return;
    }
    const BELIEVED_ROWS: &str =
        "SELECT reltuples::float8 FROM pg_class WHERE oid = 'resource_statistics_by_day'::regclass";
    let analysis = async {
        let believed: f64 = sqlx::query_scalar(BELIEVED_ROWS).fetch_one(pool).await?;
        if written as f64 >= believed / 10.0 {
            sqlx::query("ANALYZE resource_statistics_by_day, customer_months")
                .execute(pool)
                .await?;
        }
        Ok::<_, sqlx::Error>(())
    };
    if let Err(error) = analysis.await {
        tracing::warn!("analysing the days table after a large commit: {error}");
    }
}
