//! Helpers for the crate's unit tests.

use std::path::Path;

use carrel_model::DatasetDescription;

use crate::{CheckedQuery, RegisteredTable, check_query, register_dataset};

#[path = "../tests/common/mod.rs"]
pub(crate) mod fixtures;

/// Writes `csv` beside a new Parquet file under `dir` and registers it.
pub(crate) fn register(
    dir: &Path,
    name: &str,
    csv: &str,
    description: &DatasetDescription,
) -> RegisteredTable {
    let source = dir.join(format!("{name}.csv"));
    std::fs::write(&source, csv).expect("temporary directory is writable");
    let parquet = dir.join(format!("{name}.parquet"));
    register_dataset(&source, description, &parquet).expect("fixture registers");
    RegisteredTable::new(description.clone(), parquet)
}

/// Checks `sql` against `table` under `policy`, panicking on rejection.
pub(crate) async fn checked(
    sql: &str,
    table: &RegisteredTable,
    policy: &carrel_model::UsagePolicy,
) -> CheckedQuery {
    match check_query(sql, table, policy).await {
        Ok(checked) => checked,
        Err(rejection) => panic!("{sql} rejected: {rejection}"),
    }
}
