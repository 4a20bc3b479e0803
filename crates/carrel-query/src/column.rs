//! Reading columns of a registered dataset batch by batch, for the protocols that work on
//! identifiers: one column as text, or an identifier column with numeric columns.

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
    scan_id_numbers(path, id_column, &[value_column.to_owned()], |id, values| {
        visit(id, values[0])
    })
}

/// Calls `visit` with each row's identifier text and the numeric values of
/// `value_columns`, in the order given, from the registered Parquet file at `path`, in row
/// order. A null identifier is the empty string; a null value is `None`. Integer columns
/// are widened to `f64`.
///
/// # Errors
///
/// [`QueryError::Parquet`] when the file cannot be read, lacks a column or has a value
/// column that cannot be read as numbers; or the first error `visit` returns.
pub fn scan_id_numbers<E: From<QueryError>>(
    path: &Path,
    id_column: &str,
    value_columns: &[String],
    mut visit: impl FnMut(&str, &[Option<f64>]) -> Result<(), E>,
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
    let mut positions = vec![position(id_column)?];
    for name in value_columns {
        positions.push(position(name)?);
    }
    let mask = ProjectionMask::roots(builder.parquet_schema(), positions);
    let reader = builder
        .with_projection(mask)
        .build()
        .map_err(|e| parquet_error(path, e))?;
    let mut values = vec![None; value_columns.len()];
    for batch in reader {
        let batch = batch.map_err(|e| parquet_error(path, e))?;
        // The projected batch keeps the file's column order, so columns are found by name.
        let column = |name: &str| {
            batch
                .column_by_name(name)
                .ok_or_else(|| parquet_error(path, format!("the file has no column {name:?}")))
        };
        let ids = cast(column(id_column)?, &DataType::Utf8).map_err(|e| parquet_error(path, e))?;
        let ids = ids.as_string::<i32>();
        let mut numbers = Vec::with_capacity(value_columns.len());
        for name in value_columns {
            let number =
                cast(column(name)?, &DataType::Float64).map_err(|e| parquet_error(path, e))?;
            numbers.push(number);
        }
        let numbers: Vec<_> = numbers
            .iter()
            .map(|n| n.as_primitive::<datafusion::arrow::datatypes::Float64Type>())
            .collect();
        for i in 0..ids.len() {
            let id = if ids.is_null(i) { "" } else { ids.value(i) };
            for (value, column) in values.iter_mut().zip(&numbers) {
                *value = (!column.is_null(i)).then(|| column.value(i));
            }
            visit(id, &values)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{fixtures, register};

    #[test]
    fn id_numbers_keep_row_order_and_nulls() {
        let dir = tempfile::tempdir().unwrap();
        let csv = "id,region,age,spend\n7,north,30,1.5\n8,south,,2.25\n9,east,41,\n";
        let table = register(dir.path(), "t", csv, &fixtures::description());
        let columns = ["spend".to_owned(), "age".to_owned()];
        let mut rows = Vec::new();
        scan_id_numbers::<QueryError>(&table.parquet, "id", &columns, |id, values| {
            rows.push((id.to_owned(), values.to_vec()));
            Ok(())
        })
        .unwrap();
        assert_eq!(
            rows,
            vec![
                ("7".to_owned(), vec![Some(1.5), Some(30.0)]),
                ("8".to_owned(), vec![Some(2.25), None]),
                ("9".to_owned(), vec![None, Some(41.0)]),
            ]
        );
    }

    #[test]
    fn id_numbers_reject_an_unknown_column() {
        let dir = tempfile::tempdir().unwrap();
        let table = register(
            dir.path(),
            "t",
            &fixtures::regions_csv(),
            &fixtures::description(),
        );
        let columns = ["income".to_owned()];
        let error = scan_id_numbers::<QueryError>(&table.parquet, "id", &columns, |_, _| Ok(()))
            .unwrap_err();
        assert!(error.to_string().contains("income"), "{error}");
    }
}
