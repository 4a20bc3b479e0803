//! Reading one column of a registered dataset as text, batch by batch, for the
//! protocols that work on identifiers.

use std::fs::File;
use std::path::Path;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::parquet::arrow::ProjectionMask;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::QueryError;
use crate::ingest::parquet_error;

/// Calls `visit` with the text of each value of `column` in the registered Parquet
/// file at `path`, in row order; a null is passed as the empty string. Integers are
/// written in decimal.
///
/// # Errors
///
/// [`QueryError::Parquet`] when the file cannot be read or has no such column, or the
/// first error `visit` returns.
pub fn scan_text_column<E: From<QueryError>>(
    path: &Path,
    column: &str,
    mut visit: impl FnMut(&str) -> Result<(), E>,
) -> Result<(), E> {
    let file = File::open(path).map_err(|source| QueryError::Io {
        action: "open",
        path: path.to_owned(),
        source,
    })?;
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| parquet_error(path, e))?;
    let position = builder
        .schema()
        .fields()
        .iter()
        .position(|f| f.name() == column)
        .ok_or_else(|| parquet_error(path, format!("the file has no column {column:?}")))?;
    let mask = ProjectionMask::roots(builder.parquet_schema(), [position]);
    let reader = builder
        .with_projection(mask)
        .build()
        .map_err(|e| parquet_error(path, e))?;
    for batch in reader {
        let batch = batch.map_err(|e| parquet_error(path, e))?;
        let text = cast(batch.column(0), &DataType::Utf8).map_err(|e| parquet_error(path, e))?;
        let text = text.as_string::<i32>();
        for i in 0..text.len() {
            visit(if text.is_null(i) { "" } else { text.value(i) })?;
        }
    }
    Ok(())
}

/// Calls `visit` with each row's identifier text and numeric value from two columns of
/// the registered Parquet file at `path`, in row order. A null identifier is the empty
/// string; a null value is `None`.
///
/// # Errors
///
/// [`QueryError::Parquet`] when the file cannot be read, lacks a column or holds a value
/// column that is not numeric; or the first error `visit` returns.
pub fn scan_id_values<E: From<QueryError>>(
    path: &Path,
    id_column: &str,
    value_column: &str,
    mut visit: impl FnMut(&str, Option<f64>) -> Result<(), E>,
) -> Result<(), E> {
    let file = File::open(path).map_err(|source| QueryError::Io {
        action: "open",
        path: path.to_owned(),
        source,
    })?;
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| parquet_error(path, e))?;
    let position = |name: &str| {
        builder
            .schema()
            .fields()
            .iter()
            .position(|f| f.name() == name)
            .ok_or_else(|| parquet_error(path, format!("the file has no column {name:?}")))
    };
    let (ids, values) = (position(id_column)?, position(value_column)?);
    let mask = ProjectionMask::roots(builder.parquet_schema(), [ids, values]);
    let (id_at, value_at) = if ids < values { (0, 1) } else { (1, 0) };
    let reader = builder
        .with_projection(mask)
        .build()
        .map_err(|e| parquet_error(path, e))?;
    for batch in reader {
        let batch = batch.map_err(|e| parquet_error(path, e))?;
        let text =
            cast(batch.column(id_at), &DataType::Utf8).map_err(|e| parquet_error(path, e))?;
        let text = text.as_string::<i32>();
        let numbers =
            cast(batch.column(value_at), &DataType::Float64).map_err(|e| parquet_error(path, e))?;
        let numbers = numbers.as_primitive::<datafusion::arrow::datatypes::Float64Type>();
        for i in 0..text.len() {
            let id = if text.is_null(i) { "" } else { text.value(i) };
            let value = (!numbers.is_null(i)).then(|| numbers.value(i));
            visit(id, value)?;
        }
    }
    Ok(())
}
