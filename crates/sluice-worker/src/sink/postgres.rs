//! PostgreSQL sink: batches inserted into a table with a JSONB column, created when missing
//! (`id bigserial primary key, received_at timestamptz default now(), event jsonb`). The
//! connection is made (and remade after a failure) when a batch comes.
//!
//! A batch is one `INSERT`. When the database refuses it for a reason tied to the data
//! (SQLSTATE class 22, data exception, such as a `\u0000` JSONB refuses; class 23, integrity
//! constraint violation, such as a `CHECK` or unique constraint the table's owner added), the
//! batch is inserted again row by row in one transaction, each row under a savepoint: the
//! refused rows are reported one by one ([`SinkError::PartlyRejected`], they go to the
//! dead-letter subject with their own error) and the others are committed together.

use super::{SetupError, Sink, SinkError};
use crate::health::Probe;
use bytes::Bytes;
use sluice_core::route::Sink as SinkConfig;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Inserts batches into a table.
pub struct PostgresSink {
    url: String,
    table: String,
    client: Option<tokio_postgres::Client>,
    connected: Arc<AtomicBool>,
}

/// Quotes a validated (letters, digits, `_`), optionally schema-qualified table name.
pub fn quote_table(table: &str) -> String {
    table
        .split('.')
        .map(|p| format!("\"{}\"", p.replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join(".")
}

/// The statements creating the table (and its schema) when missing.
pub fn create_statements(table: &str) -> Vec<String> {
    let mut out = vec![];
    if let Some((schema, _)) = table.split_once('.') {
        out.push(format!(
            "CREATE SCHEMA IF NOT EXISTS {}",
            quote_table(schema)
        ));
    }
    out.push(format!(
        "CREATE TABLE IF NOT EXISTS {} (id bigserial PRIMARY KEY, \
         received_at timestamptz NOT NULL DEFAULT now(), event jsonb NOT NULL)",
        quote_table(table)
    ));
    out
}

impl PostgresSink {
    /// A sink for a `postgres` sink configuration; reads the URL file.
    pub fn new(config: &SinkConfig) -> Result<Self, SetupError> {
        let SinkConfig::Postgres {
            url_file,
            url,
            table,
        } = config
        else {
            return Err(SetupError("not a postgres sink".into()));
        };
        let url = match (url, url_file) {
            (Some(u), _) => u.clone(),
            (None, Some(p)) => crate::config::read_secret(p)
                .map_err(|e| SetupError(format!("sink.urlFile {p}: {e}")))?,
            (None, None) => return Err(SetupError("sink.urlFile: not set".into())),
        };
        Ok(PostgresSink {
            url,
            table: table.clone(),
            client: None,
            connected: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Connects and creates the table now (a failure is retried with the next batch).
    pub async fn prepare(&mut self) -> Result<(), SinkError> {
        self.client().await.map(|_| ())
    }

    async fn client(&mut self) -> Result<&tokio_postgres::Client, SinkError> {
        if self.client.as_ref().is_some_and(|c| c.is_closed()) {
            self.client = None;
            self.connected.store(false, Ordering::Relaxed);
        }
        if self.client.is_none() {
            let (client, connection) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
                .await
                .map_err(|e| SinkError::Transient(format!("postgres connect: {e}")))?;
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::warn!(error = %e, "postgres connection closed");
                }
            });
            for statement in create_statements(&self.table) {
                client
                    .batch_execute(&statement)
                    .await
                    .map_err(|e| SinkError::Transient(format!("postgres create table: {e}")))?;
            }
            self.client = Some(client);
            self.connected.store(true, Ordering::Relaxed);
        }
        Ok(self.client.as_ref().expect("client was just set"))
    }
}

/// Whether a database error will happen again for the same rows (class 22, data exception;
/// class 23, integrity constraint violation), rather than pass (connection, locks,
/// resources).
pub fn is_permanent_code(sqlstate: &str) -> bool {
    sqlstate.starts_with("22") || sqlstate.starts_with("23")
}

fn is_permanent(e: &tokio_postgres::Error) -> bool {
    e.code().is_some_and(|c| is_permanent_code(c.code()))
}

/// A database error in one line: its message and SQLSTATE.
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("postgres: {} (SQLSTATE {})", db.message(), db.code().code()),
        None => format!("postgres: {e}"),
    }
}

/// Inserts the rows one by one in a transaction, each under a savepoint; returns the rows
/// the database refused for good (index, why). Any other error rolls everything back.
async fn insert_row_by_row(
    client: &tokio_postgres::Client,
    table: &str,
    texts: &[&str],
) -> Result<Vec<(usize, String)>, tokio_postgres::Error> {
    let sql = format!(
        "INSERT INTO {} (event) SELECT $1::text::jsonb",
        quote_table(table)
    );
    client.batch_execute("BEGIN").await?;
    let result = async {
        let statement = client.prepare(&sql).await?;
        let mut refused = vec![];
        for (i, text) in texts.iter().enumerate() {
            client.batch_execute("SAVEPOINT sluice_row").await?;
            match client.execute(&statement, &[text]).await {
                Ok(_) => client.batch_execute("RELEASE SAVEPOINT sluice_row").await?,
                Err(e) if is_permanent(&e) => {
                    refused.push((i, describe(&e)));
                    client
                        .batch_execute("ROLLBACK TO SAVEPOINT sluice_row")
                        .await?;
                }
                Err(e) => return Err(e),
            }
        }
        client.batch_execute("COMMIT").await?;
        Ok(refused)
    }
    .await;
    if result.is_err() {
        let _ = client.batch_execute("ROLLBACK").await;
    }
    result
}

impl Sink for PostgresSink {
    async fn deliver(&mut self, events: &[Bytes]) -> Result<(), SinkError> {
        let texts: Vec<&str> = events
            .iter()
            .map(|e| std::str::from_utf8(e))
            .collect::<Result<_, _>>()
            .map_err(|e| SinkError::Rejected(format!("not UTF-8: {e}")))?;
        let sql = format!(
            "INSERT INTO {} (event) SELECT e::jsonb FROM unnest($1::text[]) AS e",
            quote_table(&self.table)
        );
        let table = self.table.clone();
        let client = self.client().await?;
        match client.execute(&sql, &[&texts]).await {
            Ok(_) => Ok(()),
            Err(e) if is_permanent(&e) => match insert_row_by_row(client, &table, &texts).await {
                Ok(refused) if refused.is_empty() => Ok(()),
                Ok(refused) => Err(SinkError::PartlyRejected(refused)),
                Err(e) => Err(SinkError::Transient(format!("insert: {}", describe(&e)))),
            },
            Err(e) => Err(SinkError::Transient(format!("insert: {}", describe(&e)))),
        }
    }

    fn readiness(&self) -> Probe {
        Probe::flag(self.connected.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_are_quoted_and_created() {
        assert_eq!(quote_table("events"), "\"events\"");
        assert_eq!(quote_table("s.events"), "\"s\".\"events\"");
        let st = create_statements("s.events");
        assert_eq!(st.len(), 2);
        assert!(st[1].contains("event jsonb"));
    }

    #[test]
    fn data_and_constraint_errors_are_permanent() {
        assert!(is_permanent_code("22P05"));
        assert!(is_permanent_code("23514"));
        assert!(is_permanent_code("23505"));
        assert!(!is_permanent_code("40001"));
        assert!(!is_permanent_code("53300"));
        assert!(!is_permanent_code("08006"));
    }
}
