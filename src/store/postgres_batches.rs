//! Reads of a customer's range on PostgreSQL, batched. A read that finds one of the few read
//! connections free goes alone, as the single statement: batching never makes a read wait.
//! Otherwise it queues, and whenever a connection is given up, the longest waiting reads of one
//! statement (at most [`MAX_BATCH`]) are asked in one statement, in a task of their own: the
//! ranges as rows of `unnest`, each joined laterally to the single read. One round trip, one
//! executor start and one wake-up of each side then serve several answers instead of one; under
//! load (64 clients asking random customers) that was most of the database's work per answer and
//! much of this process's. Each read is handed its rows as soon as they have all arrived.
//!
//! Queued reads wait for their rows, not for a connection: nobody stands in line for a turn that
//! would go to a read already taken into a batch.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex};

use chrono::NaiveDate;
use futures_util::TryStreamExt as _;
use sqlx::Row as _;
use sqlx::postgres::{PgConnection, PgRow};
use tokio::sync::oneshot;

/// The most reads one statement answers.
const MAX_BATCH: usize = 8;

/// One read of a customer's range: the parameters of its statement (`$1` to `$3`, and `$4`, `$5`
/// for statements that read whole months).
#[derive(Clone, Debug)]
pub(super) struct RangeRead {
    pub customer: String,
    pub from: NaiveDate,
    pub to: NaiveDate,
    /// The first and the last whole month of the range.
    pub months: Option<(NaiveDate, NaiveDate)>,
}

/// A read's rows, or what failed (the error is shared by every read of a batch).
pub(super) type Answer = Result<Vec<PgRow>, String>;

/// A read waiting for a connection.
pub(super) struct Waiting {
    id: u64,
    pub statement: &'static str,
    pub read: RangeRead,
    pub answer: oneshot::Sender<Answer>,
}

/// The reads waiting for a connection, in the order they came.
#[derive(Default)]
pub(super) struct Waiters {
    queue: Mutex<Vec<Waiting>>,
    next_id: AtomicU64,
}

impl std::fmt::Debug for Waiters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let waiting = self.queue.lock().map_or(0, |queue| queue.len());
        f.debug_struct("Waiters")
            .field("waiting", &waiting)
            .finish()
    }
}

impl Waiters {
    /// Queues a read; its id, and where its rows will come if another read takes it.
    pub(super) fn push(
        &self,
        statement: &'static str,
        read: RangeRead,
    ) -> (u64, oneshot::Receiver<Answer>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (answer, rows) = oneshot::channel();
        let mut queue = self.queue.lock().expect("poisoned");
        // Reads whose callers are gone are nobody's to answer.
        queue.retain(|waiting| !waiting.answer.is_closed());
        queue.push(Waiting {
            id,
            statement,
            read,
            answer,
        });
        (id, rows)
    }

    pub(super) fn is_empty(&self) -> bool {
        self.queue.lock().expect("poisoned").is_empty()
    }

    /// Read `id` first, then the longest waiting reads of the same statement; nothing when
    /// another read has taken `id` already.
    pub(super) fn take(&self, id: u64, statement: &'static str) -> Vec<Waiting> {
        let mut queue = self.queue.lock().expect("poisoned");
        let Some(mine) = queue.iter().position(|waiting| waiting.id == id) else {
            return Vec::new();
        };
        Self::take_with(&mut queue, mine, statement)
    }

    /// The longest waiting read, then the next longest of the same statement.
    pub(super) fn take_oldest(&self) -> Vec<Waiting> {
        let mut queue = self.queue.lock().expect("poisoned");
        queue.retain(|waiting| !waiting.answer.is_closed());
        match queue.first() {
            Some(oldest) => {
                let statement = oldest.statement;
                Self::take_with(&mut queue, 0, statement)
            }
            None => Vec::new(),
        }
    }

    /// The read at `first`, then the longest waiting others of `statement`, [`MAX_BATCH`] in all.
    fn take_with(queue: &mut Vec<Waiting>, first: usize, statement: &'static str) -> Vec<Waiting> {
        let mut batch = vec![queue.remove(first)];
        let mut index = 0;
        while index < queue.len() && batch.len() < MAX_BATCH {
            if queue[index].statement == statement {
                batch.push(queue.remove(index));
            } else {
                index += 1;
            }
        }
        batch
    }
}

/// Reads `reads` (of `statement`, more than one) in one statement, and sends each its rows
/// through its answer as soon as they are all in.
pub(super) async fn read_batch(
    connection: &mut PgConnection,
    statement: &'static str,
    reads: &[RangeRead],
    answers: &mut [Option<oneshot::Sender<Answer>>],
) -> anyhow::Result<()> {
    let months = reads[0].months.is_some();
    let customers: Vec<&str> = reads.iter().map(|read| read.customer.as_str()).collect();
    let (froms, tos): (Vec<NaiveDate>, Vec<NaiveDate>) =
        reads.iter().map(|read| (read.from, read.to)).unzip();
    let mut query = sqlx::query(sqlx::AssertSqlSafe(batched(statement, months)))
        .bind(customers)
        .bind(froms)
        .bind(tos);
    if months {
        let (firsts, lasts): (Vec<NaiveDate>, Vec<NaiveDate>) = reads
            .iter()
            .map(|read| read.months.unwrap_or((read.from, read.to)))
            .unzip();
        query = query.bind(firsts).bind(lasts);
    }
    // The rows come by read: a read's are complete when the next read's start.
    let mut rows = query.fetch(connection);
    let (mut current, mut gathered) = (0, Vec::new());
    while let Some(row) = rows.try_next().await? {
        let ordinal: i64 = row.try_get(row.len() - 1)?;
        let read = usize::try_from(ordinal - 1)
            .ok()
            .filter(|&read| read >= current && read < reads.len())
            .ok_or_else(|| anyhow::anyhow!("a batched read answered out of order ({ordinal})"))?;
        while current < read {
            send(&mut answers[current], std::mem::take(&mut gathered));
            current += 1;
        }
        gathered.push(row);
    }
    while current < reads.len() {
        send(&mut answers[current], std::mem::take(&mut gathered));
        current += 1;
    }
    Ok(())
}

fn send(answer: &mut Option<oneshot::Sender<Answer>>, rows: Vec<PgRow>) {
    if let Some(answer) = answer.take() {
        let _ = answer.send(Ok(rows));
    }
}

/// The batched form of a range's statement, made once per statement: the parameters become
/// arrays, one element per read, whose rows join the statement laterally; each row ends with the
/// read's position in the batch, from 1, and the rows come in that order. A statement that orders
/// its rows by date keeps that order within each read.
fn batched(statement: &'static str, months: bool) -> &'static str {
    static MADE: LazyLock<Mutex<HashMap<(&'static str, bool), &'static str>>> =
        LazyLock::new(Default::default);
    let mut made = MADE.lock().expect("poisoned");
    made.entry((statement, months))
        .or_insert_with(|| Box::leak(batched_sql(statement, months).into_boxed_str()))
}

fn batched_sql(statement: &str, months: bool) -> String {
    let parameters: &[(&str, &str)] = &[
        ("wanted_customer", "text[]"),
        ("wanted_from", "date[]"),
        ("wanted_to", "date[]"),
        ("wanted_first_month", "date[]"),
        ("wanted_last_month", "date[]"),
    ];
    let parameters = &parameters[..if months { 5 } else { 3 }];
    // From the last, so that `$1` does not match the start of a `$10`.
    let mut single = statement.to_owned();
    for (number, (name, _)) in parameters.iter().enumerate().rev() {
        single = single.replace(&format!("${}", number + 1), &format!("wanted.{name}"));
    }
    let arrays: Vec<String> = (1..=parameters.len())
        .map(|number| format!("${number}::{}", parameters[number - 1].1))
        .collect();
    let names: Vec<&str> = parameters.iter().map(|(name, _)| *name).collect();
    let order = if statement.ends_with("ORDER BY date") {
        ", single.date"
    } else {
        ""
    };
    format!(
        "SELECT single.*, wanted.batch_index FROM unnest({}) WITH ORDINALITY \
         AS wanted({}, batch_index) CROSS JOIN LATERAL ({single}) AS single \
         ORDER BY wanted.batch_index{order}",
        arrays.join(", "),
        names.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batched_statement_reads_each_parameter_from_its_array() {
        let sql = batched_sql(
            "SELECT date FROM t WHERE customer_id = $1 AND date >= $2 AND date <= $3 ORDER BY date",
            false,
        );
        assert_eq!(
            sql,
            "SELECT single.*, wanted.batch_index FROM unnest($1::text[], $2::date[], $3::date[]) \
             WITH ORDINALITY AS wanted(wanted_customer, wanted_from, wanted_to, batch_index) \
             CROSS JOIN LATERAL (SELECT date FROM t WHERE customer_id = wanted.wanted_customer \
             AND date >= wanted.wanted_from AND date <= wanted.wanted_to ORDER BY date) AS single \
             ORDER BY wanted.batch_index, single.date"
        );
    }

    #[test]
    fn a_batch_takes_its_own_read_first_then_the_oldest_of_its_statement() {
        let waiters = Waiters::default();
        let read = RangeRead {
            customer: "c".into(),
            from: NaiveDate::MIN,
            to: NaiveDate::MAX,
            months: None,
        };
        let queued: Vec<_> = ["a", "b", "a", "a"]
            .into_iter()
            .map(|statement| waiters.push(statement, read.clone()))
            .collect();
        let ids = |batch: Vec<Waiting>| batch.iter().map(|w| w.id).collect::<Vec<_>>();
        let (first, second, third, fourth) = (queued[0].0, queued[1].0, queued[2].0, queued[3].0);
        assert_eq!(ids(waiters.take(third, "a")), [third, first, fourth]);
        assert!(waiters.take(first, "a").is_empty(), "taken already");
        assert_eq!(ids(waiters.take(second, "b")), [second]);
    }
}
