//! Collects parsed rows, applies the registration rules (privacy unit present, non-finite
//! floats stored as missing) and writes Parquet batches.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use carrel_model::{ColumnSpec, ColumnType, DatasetDescription};
use datafusion::arrow::array::{ArrayRef, Float64Builder, Int64Builder, StringBuilder};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::parquet::arrow::ArrowWriter;

use crate::QueryError;
use crate::table::arrow_schema;

/// Rows buffered before a Parquet batch is written.
const BATCH_ROWS: usize = 8192;

/// One parsed cell, before the registration rules are applied.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Cell {
    Missing,
    Integer(i64),
    /// Any float, including NaN and the infinities.
    Float(f64),
    Text(String),
}

/// Parses one CSV field as the column's declared type.
///
/// A field that is empty or only whitespace is missing. Numbers may have surrounding
/// whitespace; text is kept as written.
pub(crate) fn parse_cell(raw: &str, column: &ColumnSpec, row: u64) -> Result<Cell, QueryError> {
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Ok(Cell::Missing);
    }
    let invalid = || QueryError::InvalidValue {
        row,
        column: column.name.clone(),
        value: raw.to_owned(),
        expected: column.column_type,
    };
    match column.column_type {
        ColumnType::Integer => trimmed.parse().map(Cell::Integer).map_err(|_| invalid()),
        // Rust's parser accepts "NaN", "inf" and "-inf" in any case. They are kept here, and
        // the writer turns them into missing values and reports their rows.
        ColumnType::Float => trimmed.parse().map(Cell::Float).map_err(|_| invalid()),
        ColumnType::Text => Ok(Cell::Text(raw.to_owned())),
    }
}

/// Counts and row numbers of a written file, before it is renamed into place.
#[derive(Debug, Default)]
pub(crate) struct WriteStats {
    pub rows_read: u64,
    pub rows_kept: u64,
    pub excluded_rows: Vec<u64>,
    pub non_finite_cells: BTreeMap<String, Vec<u64>>,
}

enum ColumnBuilder {
    Integer(Int64Builder),
    Float(Float64Builder),
    Text(StringBuilder),
}

impl ColumnBuilder {
    fn new(column_type: ColumnType) -> Self {
        match column_type {
            ColumnType::Integer => ColumnBuilder::Integer(Int64Builder::new()),
            ColumnType::Float => ColumnBuilder::Float(Float64Builder::new()),
            ColumnType::Text => ColumnBuilder::Text(StringBuilder::new()),
        }
    }

    /// Appends a cell that has already been checked against the column type.
    fn append(&mut self, cell: Cell) {
        match (self, cell) {
            (ColumnBuilder::Integer(b), Cell::Integer(v)) => b.append_value(v),
            (ColumnBuilder::Float(b), Cell::Float(v)) => b.append_value(v),
            (ColumnBuilder::Text(b), Cell::Text(v)) => b.append_value(v),
            (ColumnBuilder::Integer(b), _) => b.append_null(),
            (ColumnBuilder::Float(b), _) => b.append_null(),
            (ColumnBuilder::Text(b), _) => b.append_null(),
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            ColumnBuilder::Integer(b) => Arc::new(b.finish()),
            ColumnBuilder::Float(b) => Arc::new(b.finish()),
            ColumnBuilder::Text(b) => Arc::new(b.finish()),
        }
    }
}

/// Writes kept rows to a Parquet file in declared column order.
pub(crate) struct TableWriter<'a> {
    description: &'a DatasetDescription,
    unit_index: Option<usize>,
    schema: SchemaRef,
    builders: Vec<ColumnBuilder>,
    buffered: usize,
    writer: ArrowWriter<File>,
    path: PathBuf,
    stats: WriteStats,
}

impl<'a> TableWriter<'a> {
    /// Creates `path` (truncating it) and prepares a writer for the description's schema.
    pub(crate) fn create(
        description: &'a DatasetDescription,
        path: &Path,
    ) -> Result<Self, QueryError> {
        let schema = arrow_schema(description);
        let file = File::create(path).map_err(|source| QueryError::Io {
            action: "create",
            path: path.to_owned(),
            source,
        })?;
        let writer =
            ArrowWriter::try_new(file, schema.clone(), None).map_err(|e| parquet_error(path, e))?;
        let unit_index = description
            .privacy_unit
            .as_ref()
            .and_then(|unit| description.columns.iter().position(|c| &c.name == unit));
        Ok(TableWriter {
            description,
            unit_index,
            schema,
            builders: description
                .columns
                .iter()
                .map(|c| ColumnBuilder::new(c.column_type))
                .collect(),
            buffered: 0,
            writer,
            path: path.to_owned(),
            stats: WriteStats::default(),
        })
    }

    /// Adds one row whose cells are in declared column order.
    ///
    /// A row whose privacy unit is missing (or a non-finite float) is excluded, and its
    /// row number is recorded. A non-finite float elsewhere is stored as missing.
    pub(crate) fn push(&mut self, row: u64, cells: Vec<Cell>) -> Result<(), QueryError> {
        self.stats.rows_read += 1;
        if let Some(unit) = self.unit_index {
            let present = match &cells[unit] {
                Cell::Missing => false,
                Cell::Float(v) => v.is_finite(),
                _ => true,
            };
            if !present {
                self.stats.excluded_rows.push(row);
                return Ok(());
            }
        }

        for (index, mut cell) in cells.into_iter().enumerate() {
            if let Cell::Float(v) = cell
                && !v.is_finite()
            {
                let name = &self.description.columns[index].name;
                self.stats
                    .non_finite_cells
                    .entry(name.clone())
                    .or_default()
                    .push(row);
                cell = Cell::Missing;
            }
            self.builders[index].append(cell);
        }
        self.stats.rows_kept += 1;
        self.buffered += 1;
        if self.buffered >= BATCH_ROWS {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), QueryError> {
        if self.buffered == 0 {
            return Ok(());
        }
        let columns: Vec<ArrayRef> = self.builders.iter_mut().map(|b| b.finish()).collect();
        let batch = RecordBatch::try_new(self.schema.clone(), columns).map_err(|e| {
            QueryError::Internal {
                message: format!("batch build failed: {e}"),
            }
        })?;
        self.writer
            .write(&batch)
            .map_err(|e| parquet_error(&self.path, e))?;
        self.buffered = 0;
        Ok(())
    }

    /// Writes the last batch and the Parquet footer, and syncs the file to disk.
    pub(crate) fn finish(mut self) -> Result<WriteStats, QueryError> {
        self.flush()?;
        let file = self
            .writer
            .into_inner()
            .map_err(|e| parquet_error(&self.path, e))?;
        file.sync_all().map_err(|source| QueryError::Io {
            action: "sync",
            path: self.path.clone(),
            source,
        })?;
        Ok(self.stats)
    }
}

pub(crate) fn parquet_error(path: &Path, error: impl std::fmt::Display) -> QueryError {
    QueryError::Parquet {
        path: path.to_owned(),
        message: error.to_string(),
    }
}
