//! Exact results for the demo's report, computed on the provider's registered table.
//!
//! # Security
//!
//! These results are not differentially private. The demo shows them beside each
//! release because it plays every role on one machine; a real consumer never sees
//! them.

use anyhow::Context;
use carrel_model::Product;
use carrel_node::NodeDir;
use rusqlite::{Connection, OpenFlags};
use serde_json::{Value, json};

/// Runs `sql` exactly (after contribution bounding and clamping, before noise and
/// suppression) on the provider's only product.
pub async fn answer(provider: &NodeDir, sql: &str) -> anyhow::Result<Value> {
    let (table, product) = {
        let conn =
            Connection::open_with_flags(provider.database(), OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        let product: String = conn
            .query_row(
                "SELECT body FROM products WHERE status = 'listed' LIMIT 1",
                [],
                |r| r.get(0),
            )
            .context("the provider has no listed product")?;
        let product: Product = serde_json::from_str(&product)?;
        let path: String = conn.query_row(
            "SELECT path FROM datasets WHERE id = ?1",
            [&product.dataset_id],
            |r| r.get(0),
        )?;
        (
            carrel_query::RegisteredTable::new(product.dataset.clone(), path),
            product,
        )
    };
    let checked = carrel_query::check_query(sql, &table, &product.policy).await?;
    let exact = carrel_query::execute_without_noise_insecure(&checked).await?;
    let rows: Vec<Value> = exact
        .groups
        .iter()
        .map(|group| {
            let cells: Vec<Value> = group.cells.iter().map(|c| json!(c.to_value())).collect();
            json!({ "cells": cells, "persons": group.persons })
        })
        .collect();
    Ok(json!({ "columns": exact.columns, "groups": rows }))
}

/// Formats exact groups on one line each: cells and the number of persons.
pub fn format(exact: &Value) -> String {
    let groups = exact["groups"].as_array().cloned().unwrap_or_default();
    let lines: Vec<String> = groups
        .iter()
        .map(|g| {
            let cells: Vec<String> = g["cells"]
                .as_array()
                .map(|c| c.iter().map(crate::output::cell).collect())
                .unwrap_or_default();
            format!("{} ({} persons)", cells.join(" | "), g["persons"])
        })
        .collect();
    format!("\n    {}", lines.join("\n    "))
}
