//! Runs the accepted scan and WHERE filter with DataFusion and hands over each row's
//! privacy unit, group keys and aggregated values.
//!
//! The accepted WHERE predicates are row-wise, so the rows that pass for one person do not
//! depend on any other person's rows.

use carrel_model::ColumnType;
use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Float64Type, Int64Type};
use datafusion::common::Column;
use datafusion::logical_expr::{Expr, LogicalPlanBuilder};
use futures::StreamExt;

use crate::plan::CheckedQuery;
use crate::{QueryError, Value};

/// A value of a column that is counted, summed or averaged.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Number {
    Integer(i64),
    /// Always finite: NaN and infinities are read as missing.
    Float(f64),
}

/// One row after the WHERE filter.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Row {
    /// Values of the GROUP BY columns, in order.
    pub keys: Vec<Value>,
    /// Values of the spec's value columns, in order; `None` when missing.
    pub values: Vec<Option<Number>>,
}

/// Streams the filtered rows of `checked`, calling `visit(unit, row)` for each.
///
/// Rows whose privacy unit is missing are skipped: registration removes them, so they
/// appear only if the Parquet file was written by other means.
pub(crate) async fn scan_rows(
    checked: &CheckedQuery,
    mut visit: impl FnMut(Value, Row),
) -> Result<(), QueryError> {
    let spec = &checked.spec;
    let mut names = vec![checked.privacy.unit_column.clone()];
    let group_positions: Vec<usize> = spec
        .group_columns
        .iter()
        .map(|name| position_of(&mut names, name))
        .collect();
    let value_positions: Vec<usize> = spec
        .value_columns
        .iter()
        .map(|column| position_of(&mut names, &column.name))
        .collect();

    let projection: Vec<Expr> = names
        .iter()
        .map(|name| Expr::Column(Column::new_unqualified(name)))
        .collect();
    let plan = LogicalPlanBuilder::from(checked.input.clone())
        .project(projection)?
        .build()?;
    let mut stream = checked
        .ctx
        .execute_logical_plan(plan)
        .await?
        .execute_stream()
        .await?;

    while let Some(batch) = stream.next().await {
        let batch = batch?;
        let columns: Vec<ArrayRef> = batch
            .columns()
            .iter()
            .map(normalize)
            .collect::<Result<_, _>>()?;
        let value_arrays: Vec<ArrayRef> = spec
            .value_columns
            .iter()
            .zip(&value_positions)
            .map(|(column, &p)| as_number_array(&columns[p], column.column_type))
            .collect::<Result<_, _>>()?;

        for index in 0..batch.num_rows() {
            let unit = value_at(columns[0].as_ref(), index);
            if unit == Value::Null {
                continue;
            }
            let keys = group_positions
                .iter()
                .map(|&p| value_at(columns[p].as_ref(), index))
                .collect();
            let values = value_arrays
                .iter()
                .map(|a| number_at(a.as_ref(), index))
                .collect();
            visit(unit, Row { keys, values });
        }
    }
    Ok(())
}

/// Returns the position of `name` in `names`, appending it if absent.
fn position_of(names: &mut Vec<String>, name: &str) -> usize {
    if let Some(position) = names.iter().position(|n| n == name) {
        return position;
    }
    names.push(name.to_owned());
    names.len() - 1
}

/// Casts an array to Int64, Float64 or Utf8 so that [`value_at`] can read it.
fn normalize(array: &ArrayRef) -> Result<ArrayRef, QueryError> {
    match array.data_type() {
        DataType::Int64 | DataType::Float64 | DataType::Utf8 => Ok(array.clone()),
        DataType::Float16 | DataType::Float32 => Ok(cast(array, &DataType::Float64)?),
        t if t.is_integer() => Ok(cast(array, &DataType::Int64)?),
        _ => Ok(cast(array, &DataType::Utf8)?),
    }
}

/// Casts a value column to its declared numeric type; text columns stay as they are.
fn as_number_array(array: &ArrayRef, column_type: ColumnType) -> Result<ArrayRef, QueryError> {
    match column_type {
        ColumnType::Integer => Ok(cast(array, &DataType::Int64)?),
        ColumnType::Float => Ok(cast(array, &DataType::Float64)?),
        ColumnType::Text => Ok(array.clone()),
    }
}

fn value_at(array: &dyn Array, index: usize) -> Value {
    if array.is_null(index) {
        return Value::Null;
    }
    match array.data_type() {
        DataType::Int64 => Value::Integer(array.as_primitive::<Int64Type>().value(index)),
        DataType::Float64 => Value::float(array.as_primitive::<Float64Type>().value(index)),
        _ => Value::Text(array.as_string::<i32>().value(index).to_owned()),
    }
}

/// Reads a value column cell; text cells count as present with value zero, because text
/// columns are only ever counted.
fn number_at(array: &dyn Array, index: usize) -> Option<Number> {
    if array.is_null(index) {
        return None;
    }
    match array.data_type() {
        DataType::Int64 => Some(Number::Integer(
            array.as_primitive::<Int64Type>().value(index),
        )),
        DataType::Float64 => {
            let value = array.as_primitive::<Float64Type>().value(index);
            value.is_finite().then_some(Number::Float(value))
        }
        _ => Some(Number::Integer(0)),
    }
}
