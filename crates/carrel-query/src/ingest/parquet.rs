//! Parquet sources: columns are matched by name and read as their declared type.

use std::fs::File;
use std::path::Path;

use carrel_model::{ColumnType, DatasetDescription};
use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::compute::{CastOptions, cast_with_options};
use datafusion::arrow::datatypes::{DataType, Float64Type, Int64Type};
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::column_positions;
use super::writer::{Cell, TableWriter, parquet_error};
use crate::QueryError;
use crate::table::arrow_type;

/// Reads the Parquet file at `path` into `writer`; rows are numbered from 1 in file order.
pub(crate) fn read_parquet(
    path: &Path,
    description: &DatasetDescription,
    writer: &mut TableWriter<'_>,
) -> Result<(), QueryError> {
    let file = File::open(path).map_err(|source| QueryError::Io {
        action: "open",
        path: path.to_owned(),
        source,
    })?;
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| parquet_error(path, e))?;
    let names: Vec<String> = builder
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let positions = column_positions(&names, description)?;
    for (&position, column) in positions.iter().zip(&description.columns) {
        let found = builder.schema().field(position).data_type();
        if !readable_as(found, column.column_type) {
            return Err(QueryError::ColumnTypeMismatch {
                column: column.name.clone(),
                found: found.to_string(),
                expected: column.column_type,
            });
        }
    }

    let reader = builder.build().map_err(|e| parquet_error(path, e))?;
    let mut row = 0u64;
    for batch in reader {
        let batch = batch.map_err(|e| parquet_error(path, e))?;
        let mut columns = Vec::with_capacity(positions.len());
        for (&position, column) in positions.iter().zip(&description.columns) {
            let options = CastOptions {
                safe: false,
                ..Default::default()
            };
            let target = arrow_type(column.column_type);
            let array =
                cast_with_options(batch.column(position), &target, &options).map_err(|e| {
                    QueryError::ColumnTypeMismatch {
                        column: column.name.clone(),
                        found: format!("{} ({e})", batch.column(position).data_type()),
                        expected: column.column_type,
                    }
                })?;
            columns.push(array);
        }
        for index in 0..batch.num_rows() {
            row += 1;
            let cells = columns
                .iter()
                .zip(&description.columns)
                .map(|(array, column)| cell_at(array.as_ref(), column.column_type, index))
                .collect();
            writer.push(row, cells)?;
        }
    }
    Ok(())
}

/// Returns whether a Parquet column of type `found` can be read losslessly as `declared`.
fn readable_as(found: &DataType, declared: ColumnType) -> bool {
    use DataType::*;
    match declared {
        ColumnType::Integer => matches!(
            found,
            Int8 | Int16 | Int32 | Int64 | UInt8 | UInt16 | UInt32
        ),
        ColumnType::Float => {
            matches!(
                found,
                Float16 | Float32 | Float64 | Int8 | Int16 | Int32 | UInt8 | UInt16
            )
        }
        ColumnType::Text => matches!(found, Utf8 | LargeUtf8 | Utf8View),
    }
}

/// Reads one cell of an array already cast to the declared type's Arrow type.
fn cell_at(array: &dyn Array, column_type: ColumnType, index: usize) -> Cell {
    if array.is_null(index) {
        return Cell::Missing;
    }
    match column_type {
        ColumnType::Integer => Cell::Integer(array.as_primitive::<Int64Type>().value(index)),
        ColumnType::Float => Cell::Float(array.as_primitive::<Float64Type>().value(index)),
        ColumnType::Text => {
            let text = array.as_string::<i32>().value(index);
            // The same rule as for CSV: empty or whitespace-only text is missing.
            if text.trim().is_empty() {
                Cell::Missing
            } else {
                Cell::Text(text.to_owned())
            }
        }
    }
}
