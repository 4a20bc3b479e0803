//! Feature tables read from CSV under declared bounds, and train/test split files.
//!
//! Every value of a loaded [`FeatureTable`] is finite and every label is 0 or 1, so the
//! training and evaluation code never meets NaN or infinity from the input.
//!
//! # Ingestion rule
//!
//! [`read_csv`] reads one table per file: a header line, an id column, an optional label
//! column and numeric feature columns. Spaces around a cell are ignored. Each feature cell
//! is handled as follows:
//!
//! - An empty cell, a value that does not parse as a number and NaN are rejected. The error
//!   names the file, the line, the row id, the column and the value, and tells the data
//!   holder to correct the cell or remove the row before loading again.
//! - A value below or above the bounds `[lo, hi]` declared for its column is clipped to the
//!   nearer bound and counted. This includes 1e308, `inf` and `-inf`, and also a literal
//!   such as `1e400` that parses as infinity. [`LoadedTable::clipped`] returns the count per
//!   column so that the caller can log it.
//! - In a column without declared bounds, a finite value is kept as read and an infinite
//!   value is rejected. The error asks for bounds to be declared or the cell corrected.
//!
//! A label cell must parse as the number 0 or 1 (`0`, `1`, `0.0`, `1.0`). Any other label
//! is rejected, naming the row id and the value. Ids must be non-empty and unique within a
//! file, because joins and splits match rows by id.
//!
//! Error messages quote the rejected cell, so they are meant for the data holder's own
//! logs and must not be sent to other parties.
//!
//! # Split files
//!
//! [`read_test_ids`] reads a file with header `id,seed0,...` whose cells are `train` or
//! `test`, and returns the ids marked `test` in one seed column.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::Path;

use serde::{Deserialize, Serialize};

/// Name of the id column of a split file.
pub const SPLIT_ID_COLUMN: &str = "id";

/// A table of rows with an id, numeric features and an optional 0/1 label.
///
/// [`FeatureTable::new`] and [`read_csv`] check the shape, that values are finite, that
/// labels are 0 or 1 and that ids and column names are unique. Code that edits the public
/// fields directly must keep those properties.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureTable {
    /// Row ids, one per row, unique.
    pub ids: Vec<String>,
    /// Names of the feature columns, unique.
    pub columns: Vec<String>,
    /// Feature values, row-major: row `i` is `rows[i * k..(i + 1) * k]` with `k` columns.
    pub rows: Vec<f64>,
    /// Labels, 0 or 1, one per row, when the table has a label column.
    pub labels: Option<Vec<f64>>,
}

impl FeatureTable {
    /// Creates a table after checking its shape and values.
    ///
    /// # Errors
    ///
    /// [`DataError::ShapeMismatch`] when `rows` does not hold `ids.len() * columns.len()`
    /// values or `labels` does not hold one label per id, [`DataError::DuplicateTableId`] and
    /// [`DataError::DuplicateTableColumn`] for repeated names, [`DataError::NonFiniteValue`]
    /// for NaN or infinity, and [`DataError::InvalidTableLabel`] for a label other than 0 or 1.
    pub fn new(
        ids: Vec<String>,
        columns: Vec<String>,
        rows: Vec<f64>,
        labels: Option<Vec<f64>>,
    ) -> Result<Self, DataError> {
        let label_count = labels.as_ref().map_or(ids.len(), Vec::len);
        if rows.len() != ids.len() * columns.len() || label_count != ids.len() {
            return Err(DataError::ShapeMismatch {
                ids: ids.len(),
                columns: columns.len(),
                values: rows.len(),
                labels: labels.as_ref().map(Vec::len),
            });
        }
        if let Some(id) = first_duplicate(&ids) {
            return Err(DataError::DuplicateTableId { id: id.to_owned() });
        }
        if let Some(column) = first_duplicate(&columns) {
            return Err(DataError::DuplicateTableColumn {
                column: column.to_owned(),
            });
        }

        let table = Self {
            ids,
            columns,
            rows,
            labels,
        };
        if let Some(index) = table.rows.iter().position(|value| !value.is_finite()) {
            let k = table.features();
            return Err(DataError::NonFiniteValue {
                id: table.ids[index / k].clone(),
                column: table.columns[index % k].clone(),
            });
        }
        if let Some(labels) = &table.labels
            && let Some(index) = labels.iter().position(|&y| y != 0.0 && y != 1.0)
        {
            return Err(DataError::InvalidTableLabel {
                id: table.ids[index].clone(),
                value: labels[index],
            });
        }
        Ok(table)
    }

    /// Returns the number of feature columns.
    pub fn features(&self) -> usize {
        self.columns.len()
    }

    /// Returns the number of rows.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Returns true when the table has no rows.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Returns the feature values of row `index`.
    ///
    /// # Panics
    ///
    /// Panics when `index` is not below [`FeatureTable::len`].
    pub fn row(&self, index: usize) -> &[f64] {
        let k = self.features();
        &self.rows[index * k..(index + 1) * k]
    }

    /// Returns the labels.
    ///
    /// # Errors
    ///
    /// [`DataError::MissingLabels`] when the table has no label column.
    pub fn require_labels(&self) -> Result<&[f64], DataError> {
        self.labels.as_deref().ok_or(DataError::MissingLabels)
    }

    /// Returns the rows at `indices`, in that order.
    ///
    /// # Errors
    ///
    /// [`DataError::RowOutOfRange`] for an index not below [`FeatureTable::len`], and
    /// [`DataError::DuplicateTableId`] when an index appears twice.
    pub fn select_rows(&self, indices: &[usize]) -> Result<Self, DataError> {
        if let Some(&index) = indices.iter().find(|&&index| index >= self.len()) {
            return Err(DataError::RowOutOfRange {
                index,
                rows: self.len(),
            });
        }
        let mut seen = HashSet::with_capacity(indices.len());
        if let Some(&index) = indices.iter().find(|&&index| !seen.insert(index)) {
            return Err(DataError::DuplicateTableId {
                id: self.ids[index].clone(),
            });
        }
        Ok(self.take_rows(indices.iter().copied()))
    }

    /// Returns the rows whose id satisfies `keep`, in table order.
    pub fn filter_rows(&self, mut keep: impl FnMut(&str) -> bool) -> Self {
        let indices: Vec<usize> = (0..self.len()).filter(|&i| keep(&self.ids[i])).collect();
        self.take_rows(indices.into_iter())
    }

    /// Splits the table into training rows and the rows whose id is in `test_ids`, both in
    /// table order.
    ///
    /// Rows whose id is not in `test_ids` go to the training table.
    ///
    /// # Errors
    ///
    /// [`DataError::TestIdNotInTable`] when a test id is not in the table, which usually
    /// means the split file belongs to other data.
    pub fn split_by_test_ids(
        &self,
        test_ids: &BTreeSet<String>,
    ) -> Result<(Self, Self), DataError> {
        let ids: HashSet<&str> = self.ids.iter().map(String::as_str).collect();
        if let Some(id) = test_ids.iter().find(|id| !ids.contains(id.as_str())) {
            return Err(DataError::TestIdNotInTable {
                id: id.clone(),
                test_ids: test_ids.len(),
            });
        }
        let train = self.filter_rows(|id| !test_ids.contains(id));
        let test = self.filter_rows(|id| test_ids.contains(id));
        Ok((train, test))
    }

    /// Returns the table with only the named feature columns, in the order given.
    ///
    /// # Errors
    ///
    /// [`DataError::UnknownColumn`] for a name that is not a feature column, and
    /// [`DataError::DuplicateTableColumn`] for a name given twice.
    pub fn select_columns(&self, names: &[&str]) -> Result<Self, DataError> {
        let mut positions = Vec::with_capacity(names.len());
        for name in names {
            let position = self.column_position(name)?;
            if positions.contains(&position) {
                return Err(DataError::DuplicateTableColumn {
                    column: (*name).to_owned(),
                });
            }
            positions.push(position);
        }

        let mut rows = Vec::with_capacity(self.len() * positions.len());
        for i in 0..self.len() {
            let row = self.row(i);
            rows.extend(positions.iter().map(|&j| row[j]));
        }
        Ok(Self {
            ids: self.ids.clone(),
            columns: names.iter().map(|name| (*name).to_owned()).collect(),
            rows,
            labels: self.labels.clone(),
        })
    }

    /// Returns the table with `prefix` put before every feature column name, for example
    /// before joining two tables whose columns are both named `x0`, `x1`, ...
    pub fn with_column_prefix(mut self, prefix: &str) -> Self {
        for column in &mut self.columns {
            column.insert_str(0, prefix);
        }
        self
    }

    /// Joins two tables that hold the same ids: each row of `self` is followed by the
    /// features of the row of `other` with the same id.
    ///
    /// Rows keep the order of `self`, and the labels come from whichever table has them.
    ///
    /// # Errors
    ///
    /// [`DataError::JoinIdMissing`] when an id is in one table only,
    /// [`DataError::DuplicateTableColumn`] when both tables have a column of the same name
    /// (rename one side with [`FeatureTable::with_column_prefix`]), and
    /// [`DataError::JoinLabelsTwice`] when both tables have labels.
    pub fn join(&self, other: &Self) -> Result<Self, DataError> {
        let other_rows: HashMap<&str, usize> = other
            .ids
            .iter()
            .enumerate()
            .map(|(i, id)| (id.as_str(), i))
            .collect();
        if let Some(id) = self
            .ids
            .iter()
            .find(|id| !other_rows.contains_key(id.as_str()))
        {
            return Err(DataError::JoinIdMissing { id: id.clone() });
        }
        if self.len() != other.len() {
            let own: HashSet<&str> = self.ids.iter().map(String::as_str).collect();
            // Ids are unique in each table, every id of `self` is in `other` and the lengths
            // differ, so `other` has an id that `self` lacks.
            let id = other.ids.iter().find(|id| !own.contains(id.as_str()));
            return Err(DataError::JoinIdMissing {
                id: id.cloned().unwrap_or_default(),
            });
        }
        if let Some(column) = other.columns.iter().find(|c| self.columns.contains(c)) {
            return Err(DataError::DuplicateTableColumn {
                column: column.clone(),
            });
        }
        if self.labels.is_some() && other.labels.is_some() {
            return Err(DataError::JoinLabelsTwice);
        }

        let mut rows = Vec::with_capacity(self.len() * (self.features() + other.features()));
        let mut other_labels = other
            .labels
            .as_ref()
            .map(|_| Vec::with_capacity(self.len()));
        for (i, id) in self.ids.iter().enumerate() {
            let j = other_rows[id.as_str()];
            rows.extend_from_slice(self.row(i));
            rows.extend_from_slice(other.row(j));
            if let (Some(out), Some(labels)) = (&mut other_labels, &other.labels) {
                out.push(labels[j]);
            }
        }
        let mut columns = self.columns.clone();
        columns.extend(other.columns.iter().cloned());
        Ok(Self {
            ids: self.ids.clone(),
            columns,
            rows,
            labels: self.labels.clone().or(other_labels),
        })
    }

    fn column_position(&self, name: &str) -> Result<usize, DataError> {
        self.columns
            .iter()
            .position(|column| column == name)
            .ok_or_else(|| DataError::UnknownColumn {
                column: name.to_owned(),
                available: self.columns.clone(),
            })
    }

    fn take_rows(&self, indices: impl Iterator<Item = usize>) -> Self {
        let mut ids = Vec::new();
        let mut rows = Vec::new();
        let mut labels = self.labels.as_ref().map(|_| Vec::new());
        for i in indices {
            ids.push(self.ids[i].clone());
            rows.extend_from_slice(self.row(i));
            if let (Some(out), Some(all)) = (&mut labels, &self.labels) {
                out.push(all[i]);
            }
        }
        Self {
            ids,
            columns: self.columns.clone(),
            rows,
            labels,
        }
    }
}

/// Options of [`read_csv`]: the columns to read and the declared bounds of feature columns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadOptions {
    /// Name of the id column.
    pub id_column: String,
    /// Name of the label column, if the file has labels.
    pub label_column: Option<String>,
    /// Feature columns to read, in this order. `None` reads every other column in file order.
    pub feature_columns: Option<Vec<String>>,
    /// Declared bounds `[lo, hi]` per feature column. Values outside are clipped.
    pub bounds: BTreeMap<String, [f64; 2]>,
}

impl LoadOptions {
    /// Creates options that read the id column `id_column`, no labels, every other column as
    /// a feature, and no bounds.
    pub fn new(id_column: impl Into<String>) -> Self {
        Self {
            id_column: id_column.into(),
            label_column: None,
            feature_columns: None,
            bounds: BTreeMap::new(),
        }
    }

    /// Reads labels from `column`.
    pub fn with_label(mut self, column: impl Into<String>) -> Self {
        self.label_column = Some(column.into());
        self
    }

    /// Reads only the named feature columns, in this order.
    pub fn with_features<S: Into<String>>(mut self, columns: impl IntoIterator<Item = S>) -> Self {
        self.feature_columns = Some(columns.into_iter().map(Into::into).collect());
        self
    }

    /// Declares the bounds `[lo, hi]` of feature column `column`.
    pub fn with_bound(mut self, column: impl Into<String>, lo: f64, hi: f64) -> Self {
        self.bounds.insert(column.into(), [lo, hi]);
        self
    }
}

/// A table read by [`read_csv`], with the number of values clipped in each column.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedTable {
    /// The table.
    pub table: FeatureTable,
    /// Number of values clipped to a declared bound, one count per feature column in the
    /// order of `table.columns`.
    pub clipped: Vec<usize>,
}

impl LoadedTable {
    /// Returns `(column, count)` for each column where at least one value was clipped.
    pub fn clipped_columns(&self) -> Vec<(&str, usize)> {
        self.table
            .columns
            .iter()
            .zip(&self.clipped)
            .filter(|(_, count)| **count > 0)
            .map(|(column, count)| (column.as_str(), *count))
            .collect()
    }

    /// Returns the number of clipped values over all columns.
    pub fn clipped_total(&self) -> usize {
        self.clipped.iter().sum()
    }
}

/// Reads a feature table from the CSV file at `path` under the ingestion rule of this module.
///
/// # Errors
///
/// [`DataError::ReadFailed`] when the file cannot be opened or is not well-formed CSV (for
/// example a row with a different number of fields than the header). Problems with the
/// options or the header: [`DataError::InvalidBounds`], [`DataError::BoundsForUnknownColumn`],
/// [`DataError::MissingColumn`], [`DataError::DuplicateColumn`],
/// [`DataError::ColumnRoleConflict`], [`DataError::NoFeatureColumns`]. Problems with a row:
/// [`DataError::EmptyId`], [`DataError::DuplicateId`], [`DataError::EmptyCell`],
/// [`DataError::InvalidNumber`], [`DataError::NanValue`], [`DataError::InfiniteValue`],
/// [`DataError::InvalidLabel`]. [`DataError::NoRows`] when the file has a header only.
pub fn read_csv(path: impl AsRef<Path>, options: &LoadOptions) -> Result<LoadedTable, DataError> {
    let path = path.as_ref().display().to_string();
    let mut reader = open_csv(&path)?;
    let header: Vec<String> = reader
        .headers()
        .map_err(|error| read_failed(&path, &error))?
        .iter()
        .map(str::to_owned)
        .collect();
    let layout = Layout::resolve(&path, &header, options)?;

    let mut ids = Vec::new();
    let mut rows = Vec::new();
    let mut labels = layout.label.map(|_| Vec::new());
    let mut clipped = vec![0; layout.features.len()];
    let mut seen = HashSet::new();
    for record in reader.records() {
        let record = record.map_err(|error| read_failed(&path, &error))?;
        let line = record.position().map_or(0, csv::Position::line);
        // The reader is not flexible, so every record has as many fields as the header and
        // the positions from the layout are in range.
        let id = &record[layout.id];
        if id.is_empty() {
            return Err(DataError::EmptyId { path, line });
        }
        if !seen.insert(id.to_owned()) {
            return Err(DataError::DuplicateId {
                path,
                line,
                id: id.to_owned(),
            });
        }
        let row = RowContext {
            path: &path,
            line,
            id,
        };

        for (j, feature) in layout.features.iter().enumerate() {
            let value = &record[feature.position];
            let (value, was_clipped) = parse_feature(value, feature.bounds).map_err(|problem| {
                problem.into_error(row.cell(&header[feature.position], value))
            })?;
            rows.push(value);
            clipped[j] += usize::from(was_clipped);
        }
        if let (Some(position), Some(labels)) = (layout.label, &mut labels) {
            let value = &record[position];
            labels.push(parse_label(row.cell(&header[position], value))?);
        }
        ids.push(id.to_owned());
    }
    if ids.is_empty() {
        return Err(DataError::NoRows { path });
    }

    let columns = layout
        .features
        .iter()
        .map(|f| header[f.position].clone())
        .collect();
    let table = FeatureTable {
        ids,
        columns,
        rows,
        labels,
    };
    Ok(LoadedTable { table, clipped })
}

/// Reads the ids marked `test` in column `seed` of the split file at `path`.
///
/// The file has an `id` column and one column per seed whose cells are `train` or `test`.
///
/// # Errors
///
/// [`DataError::ReadFailed`] for an unreadable or malformed file,
/// [`DataError::MissingColumn`] without an `id` column, [`DataError::UnknownSeed`] when
/// `seed` is not a column, [`DataError::InvalidSplitValue`] for a cell other than `train` or
/// `test`, and [`DataError::EmptyId`] or [`DataError::DuplicateId`] for a bad id.
pub fn read_test_ids(path: impl AsRef<Path>, seed: &str) -> Result<BTreeSet<String>, DataError> {
    let path = path.as_ref().display().to_string();
    let mut reader = open_csv(&path)?;
    let header = reader
        .headers()
        .map_err(|error| read_failed(&path, &error))?
        .clone();
    let id_position = header
        .iter()
        .position(|name| name == SPLIT_ID_COLUMN)
        .ok_or_else(|| DataError::MissingColumn {
            path: path.clone(),
            column: SPLIT_ID_COLUMN.to_owned(),
        })?;
    let Some(seed_position) = header
        .iter()
        .position(|name| name == seed && name != SPLIT_ID_COLUMN)
    else {
        return Err(DataError::UnknownSeed {
            path,
            seed: seed.to_owned(),
            available: header
                .iter()
                .filter(|name| *name != SPLIT_ID_COLUMN)
                .map(str::to_owned)
                .collect(),
        });
    };

    let mut seen = HashSet::new();
    let mut test_ids = BTreeSet::new();
    for record in reader.records() {
        let record = record.map_err(|error| read_failed(&path, &error))?;
        let line = record.position().map_or(0, csv::Position::line);
        // Records have as many fields as the header because the reader is not flexible.
        let id = &record[id_position];
        if id.is_empty() {
            return Err(DataError::EmptyId { path, line });
        }
        if !seen.insert(id.to_owned()) {
            return Err(DataError::DuplicateId {
                path,
                line,
                id: id.to_owned(),
            });
        }
        match &record[seed_position] {
            "test" => {
                test_ids.insert(id.to_owned());
            }
            "train" => {}
            other => {
                return Err(DataError::InvalidSplitValue {
                    path,
                    line,
                    id: id.to_owned(),
                    seed: seed.to_owned(),
                    value: other.to_owned(),
                });
            }
        }
    }
    Ok(test_ids)
}

/// Error of reading or reshaping a feature table.
///
/// Messages about a cell quote its value, so they belong in the data holder's own logs.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum DataError {
    // The file and its header.
    /// The file could not be opened or is not well-formed CSV.
    #[error("failed to read {path}: {reason}")]
    ReadFailed {
        /// Path of the file.
        path: String,
        /// Error reported by the CSV reader, with the line where it has one.
        reason: String,
    },
    /// A column named in the options or required by the format is not in the header.
    #[error("{path} has no column {column:?}; check the header line and the column names")]
    MissingColumn {
        /// Path of the file.
        path: String,
        /// Name of the missing column.
        column: String,
    },
    /// The header names a column twice.
    #[error("{path} has two columns named {column:?}; rename one of them")]
    DuplicateColumn {
        /// Path of the file.
        path: String,
        /// Repeated column name.
        column: String,
    },
    /// The same column was given two roles, such as id and feature.
    #[error("column {column:?} is given as both {first} and {second}; each column has one role")]
    ColumnRoleConflict {
        /// Name of the column.
        column: String,
        /// First role, for example "the id column".
        first: &'static str,
        /// Second role.
        second: &'static str,
    },
    /// No feature column is left after the id and the label.
    #[error("{path} has no feature columns besides the id and the label")]
    NoFeatureColumns {
        /// Path of the file.
        path: String,
    },
    /// Declared bounds are not finite or have `lo > hi`.
    #[error("bounds [{lo}, {hi}] of column {column:?} are invalid; expected finite lo <= hi")]
    InvalidBounds {
        /// Name of the column.
        column: String,
        /// Declared lower bound.
        lo: f64,
        /// Declared upper bound.
        hi: f64,
    },
    /// Bounds are declared for a column that is not read as a feature.
    #[error(
        "bounds are declared for column {column:?}, which is not a feature column of {path}; \
         check the column name"
    )]
    BoundsForUnknownColumn {
        /// Path of the file.
        path: String,
        /// Name given in the bounds.
        column: String,
    },
    /// The file has a header but no rows.
    #[error("{path} has a header but no rows")]
    NoRows {
        /// Path of the file.
        path: String,
    },

    // Rows of the file.
    /// A row has an empty id.
    #[error("{path} line {line}: the id is empty; give every row a unique id")]
    EmptyId {
        /// Path of the file.
        path: String,
        /// Line number in the file, the header being line 1.
        line: u64,
    },
    /// Two rows have the same id.
    #[error("{path} line {line}: id {id:?} appears twice; ids must be unique")]
    DuplicateId {
        /// Path of the file.
        path: String,
        /// Line of the second occurrence.
        line: u64,
        /// Repeated id.
        id: String,
    },
    /// A feature cell is empty.
    #[error(
        "{path} line {line}, row id {id:?}, column {column:?}: the cell is empty; fill it in \
         or remove the row, then load again"
    )]
    EmptyCell {
        /// Path of the file.
        path: String,
        /// Line number.
        line: u64,
        /// Row id.
        id: String,
        /// Column name.
        column: String,
    },
    /// A feature cell does not parse as a number.
    #[error(
        "{path} line {line}, row id {id:?}, column {column:?}: {value:?} is not a number; \
         correct the cell or remove the row, then load again"
    )]
    InvalidNumber {
        /// Path of the file.
        path: String,
        /// Line number.
        line: u64,
        /// Row id.
        id: String,
        /// Column name.
        column: String,
        /// The cell as read.
        value: String,
    },
    /// A feature cell is NaN.
    #[error(
        "{path} line {line}, row id {id:?}, column {column:?}: {value:?} is NaN, which is \
         not accepted; replace it with a number or remove the row, then load again"
    )]
    NanValue {
        /// Path of the file.
        path: String,
        /// Line number.
        line: u64,
        /// Row id.
        id: String,
        /// Column name.
        column: String,
        /// The cell as read.
        value: String,
    },
    /// A feature cell is infinite and its column has no declared bounds.
    #[error(
        "{path} line {line}, row id {id:?}, column {column:?}: {value:?} is infinite and the \
         column has no declared bounds; declare bounds to clip it, or correct the cell"
    )]
    InfiniteValue {
        /// Path of the file.
        path: String,
        /// Line number.
        line: u64,
        /// Row id.
        id: String,
        /// Column name.
        column: String,
        /// The cell as read.
        value: String,
    },
    /// A label cell is not 0 or 1.
    #[error(
        "{path} line {line}, row id {id:?}, label column {column:?}: {value:?} is not a \
         valid label; expected 0 or 1"
    )]
    InvalidLabel {
        /// Path of the file.
        path: String,
        /// Line number.
        line: u64,
        /// Row id.
        id: String,
        /// Label column name.
        column: String,
        /// The cell as read.
        value: String,
    },

    // Split files.
    /// The requested seed is not a column of the split file.
    #[error("{path} has no split column {seed:?}; available columns: {available:?}")]
    UnknownSeed {
        /// Path of the file.
        path: String,
        /// Requested seed column.
        seed: String,
        /// Seed columns in the file.
        available: Vec<String>,
    },
    /// A split cell is neither `train` nor `test`.
    #[error(
        "{path} line {line}, id {id:?}, column {seed:?}: {value:?} is not a split; expected \
         \"train\" or \"test\""
    )]
    InvalidSplitValue {
        /// Path of the file.
        path: String,
        /// Line number.
        line: u64,
        /// Row id.
        id: String,
        /// Seed column.
        seed: String,
        /// The cell as read.
        value: String,
    },

    // Tables built or reshaped in memory.
    /// Row, column, value and label counts do not agree.
    #[error(
        "a table of {ids} rows and {columns} columns needs {} values and {ids} labels, but \
         has {values} values and {labels:?} labels",
        .ids * .columns
    )]
    ShapeMismatch {
        /// Number of ids.
        ids: usize,
        /// Number of columns.
        columns: usize,
        /// Number of feature values.
        values: usize,
        /// Number of labels, if any.
        labels: Option<usize>,
    },
    /// An id appears twice in a table.
    #[error("id {id:?} appears twice in the table; ids must be unique")]
    DuplicateTableId {
        /// Repeated id.
        id: String,
    },
    /// A column name appears twice in a table.
    #[error("column {column:?} appears twice; rename one side, for example with a column prefix")]
    DuplicateTableColumn {
        /// Repeated column name.
        column: String,
    },
    /// A feature value is NaN or infinite.
    #[error("row id {id:?}, column {column:?}: the value is not finite; expected a number")]
    NonFiniteValue {
        /// Row id.
        id: String,
        /// Column name.
        column: String,
    },
    /// A label is not 0 or 1.
    #[error("row id {id:?}: label {value} is invalid; expected 0 or 1")]
    InvalidTableLabel {
        /// Row id.
        id: String,
        /// The label.
        value: f64,
    },
    /// The table has no labels but labels are needed.
    #[error("the table has no labels; load it with a label column")]
    MissingLabels,
    /// A row index is out of range.
    #[error("row index {index} is out of range; the table has {rows} rows")]
    RowOutOfRange {
        /// Requested index.
        index: usize,
        /// Number of rows.
        rows: usize,
    },
    /// A column name is not a feature column of the table.
    #[error("the table has no feature column {column:?}; available columns: {available:?}")]
    UnknownColumn {
        /// Requested name.
        column: String,
        /// Feature columns of the table.
        available: Vec<String>,
    },
    /// An id of one table of a join is not in the other.
    #[error(
        "id {id:?} is in one table of the join but not in the other; both tables must hold \
         the same ids"
    )]
    JoinIdMissing {
        /// The unmatched id.
        id: String,
    },
    /// Both tables of a join have labels.
    #[error("both tables of the join have labels; load the labels from one side only")]
    JoinLabelsTwice,
    /// A test id of a split is not in the table.
    #[error(
        "test id {id:?} is not in the table ({test_ids} test ids in all); check that the \
         split file belongs to this data"
    )]
    TestIdNotInTable {
        /// The unmatched id.
        id: String,
        /// Number of test ids in the split.
        test_ids: usize,
    },
}

/// A feature column to read: its position in the header and its declared bounds.
struct FeatureColumn {
    position: usize,
    bounds: Option<[f64; 2]>,
}

/// Header positions of the columns that [`LoadOptions`] names.
struct Layout {
    id: usize,
    label: Option<usize>,
    features: Vec<FeatureColumn>,
}

impl Layout {
    fn resolve(path: &str, header: &[String], options: &LoadOptions) -> Result<Self, DataError> {
        if let Some(column) = first_duplicate(header) {
            return Err(DataError::DuplicateColumn {
                path: path.to_owned(),
                column: column.to_owned(),
            });
        }
        let position = |column: &str| {
            header
                .iter()
                .position(|name| name == column)
                .ok_or_else(|| DataError::MissingColumn {
                    path: path.to_owned(),
                    column: column.to_owned(),
                })
        };

        let id = position(&options.id_column)?;
        let label = match &options.label_column {
            Some(column) if *column == options.id_column => {
                return Err(DataError::ColumnRoleConflict {
                    column: column.clone(),
                    first: "the id column",
                    second: "the label column",
                });
            }
            Some(column) => Some(position(column)?),
            None => None,
        };
        let positions = match &options.feature_columns {
            Some(columns) => feature_positions(header, columns, id, label, &position)?,
            None => (0..header.len())
                .filter(|&j| j != id && Some(j) != label)
                .collect(),
        };
        if positions.is_empty() {
            return Err(DataError::NoFeatureColumns {
                path: path.to_owned(),
            });
        }

        for (column, &[lo, hi]) in &options.bounds {
            if !(lo.is_finite() && hi.is_finite() && lo <= hi) {
                return Err(DataError::InvalidBounds {
                    column: column.clone(),
                    lo,
                    hi,
                });
            }
            if !positions.iter().any(|&j| header[j] == *column) {
                return Err(DataError::BoundsForUnknownColumn {
                    path: path.to_owned(),
                    column: column.clone(),
                });
            }
        }
        let features = positions
            .into_iter()
            .map(|position| FeatureColumn {
                position,
                bounds: options.bounds.get(&header[position]).copied(),
            })
            .collect();
        Ok(Self {
            id,
            label,
            features,
        })
    }
}

/// Returns the header positions of explicitly named feature columns.
fn feature_positions(
    header: &[String],
    columns: &[String],
    id: usize,
    label: Option<usize>,
    position: &dyn Fn(&str) -> Result<usize, DataError>,
) -> Result<Vec<usize>, DataError> {
    let mut positions = Vec::with_capacity(columns.len());
    for column in columns {
        let j = position(column)?;
        let conflict = if j == id {
            Some("the id column")
        } else if Some(j) == label {
            Some("the label column")
        } else if positions.contains(&j) {
            Some("a feature column")
        } else {
            None
        };
        if let Some(first) = conflict {
            return Err(DataError::ColumnRoleConflict {
                column: header[j].clone(),
                first,
                second: "a feature column",
            });
        }
        positions.push(j);
    }
    Ok(positions)
}

/// The file, line and id of the row being read.
struct RowContext<'a> {
    path: &'a str,
    line: u64,
    id: &'a str,
}

impl<'a> RowContext<'a> {
    fn cell(&self, column: &'a str, value: &'a str) -> Cell<'a> {
        Cell {
            path: self.path,
            line: self.line,
            id: self.id,
            column,
            value,
        }
    }
}

/// Context of a rejected cell, turned into an error by [`CellProblem::into_error`].
struct Cell<'a> {
    path: &'a str,
    line: u64,
    id: &'a str,
    column: &'a str,
    value: &'a str,
}

/// Reason a feature cell was rejected.
enum CellProblem {
    Empty,
    NotNumber,
    Nan,
    Infinite,
}

impl CellProblem {
    fn into_error(self, cell: Cell<'_>) -> DataError {
        let path = cell.path.to_owned();
        let line = cell.line;
        let id = cell.id.to_owned();
        let column = cell.column.to_owned();
        let value = cell.value.to_owned();
        match self {
            Self::Empty => DataError::EmptyCell {
                path,
                line,
                id,
                column,
            },
            Self::NotNumber => DataError::InvalidNumber {
                path,
                line,
                id,
                column,
                value,
            },
            Self::Nan => DataError::NanValue {
                path,
                line,
                id,
                column,
                value,
            },
            Self::Infinite => DataError::InfiniteValue {
                path,
                line,
                id,
                column,
                value,
            },
        }
    }
}

/// Parses a feature cell under the ingestion rule; returns the value and whether it was
/// clipped to `bounds`.
fn parse_feature(cell: &str, bounds: Option<[f64; 2]>) -> Result<(f64, bool), CellProblem> {
    if cell.is_empty() {
        return Err(CellProblem::Empty);
    }
    let value: f64 = cell.parse().map_err(|_| CellProblem::NotNumber)?;
    if value.is_nan() {
        return Err(CellProblem::Nan);
    }
    match bounds {
        Some([lo, _]) if value < lo => Ok((lo, true)),
        Some([_, hi]) if value > hi => Ok((hi, true)),
        Some(_) => Ok((value, false)),
        None if value.is_infinite() => Err(CellProblem::Infinite),
        None => Ok((value, false)),
    }
}

fn parse_label(cell: Cell<'_>) -> Result<f64, DataError> {
    match cell.value.parse::<f64>() {
        Ok(y) if y == 0.0 || y == 1.0 => Ok(y),
        _ => Err(DataError::InvalidLabel {
            path: cell.path.to_owned(),
            line: cell.line,
            id: cell.id.to_owned(),
            column: cell.column.to_owned(),
            value: cell.value.to_owned(),
        }),
    }
}

fn open_csv(path: &str) -> Result<csv::Reader<std::fs::File>, DataError> {
    csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_path(path)
        .map_err(|error| read_failed(path, &error))
}

fn read_failed(path: &str, error: &csv::Error) -> DataError {
    DataError::ReadFailed {
        path: path.to_owned(),
        reason: error.to_string(),
    }
}

fn first_duplicate(names: &[String]) -> Option<&str> {
    let mut seen = HashSet::with_capacity(names.len());
    names
        .iter()
        .find(|name| !seen.insert(name.as_str()))
        .map(String::as_str)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    /// Returns the folder of the FATE example data.
    fn fate_dir() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/fate")
    }

    fn csv_file(contents: &str) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(contents.as_bytes()).unwrap();
        file
    }

    fn load(contents: &str, options: &LoadOptions) -> Result<LoadedTable, DataError> {
        read_csv(csv_file(contents).path(), options)
    }

    fn labelled() -> LoadOptions {
        LoadOptions::new("id").with_label("y")
    }

    fn table() -> FeatureTable {
        FeatureTable::new(
            vec!["a".into(), "b".into(), "c".into()],
            vec!["x0".into(), "x1".into()],
            vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
            Some(vec![1.0, 0.0, 1.0]),
        )
        .unwrap()
    }

    #[test]
    fn breast_guest_has_documented_shape() {
        let path = fate_dir().join("breast_hetero_guest.csv");
        let loaded = read_csv(path, &labelled()).unwrap();
        let table = &loaded.table;
        assert_eq!(table.len(), 569);
        assert_eq!(table.features(), 10);
        assert_eq!(table.columns[0], "x0");
        assert_eq!(table.columns[9], "x9");
        let positives = table
            .require_labels()
            .unwrap()
            .iter()
            .filter(|&&y| y == 1.0)
            .count();
        assert_eq!(positives, 357);
        assert_eq!(loaded.clipped_total(), 0);
        assert_eq!(table.ids[0], "133");
        assert_eq!(table.row(0)[0], 0.254879);
    }

    #[test]
    fn breast_host_loads_without_labels() {
        let path = fate_dir().join("breast_hetero_host.csv");
        let table = read_csv(path, &LoadOptions::new("id")).unwrap().table;
        assert_eq!(table.len(), 569);
        assert_eq!(table.features(), 20);
        assert_eq!(table.labels, None);
        assert_eq!(table.require_labels(), Err(DataError::MissingLabels));
    }

    #[test]
    fn features_default_to_other_columns() {
        let loaded = load("a,id,y,b\n1,r1,0,2\n3,r2,1,4\n", &labelled()).unwrap();
        assert_eq!(loaded.table.columns, ["a", "b"]);
        assert_eq!(loaded.table.rows, [1.0, 2.0, 3.0, 4.0]);
        assert_eq!(loaded.table.labels, Some(vec![0.0, 1.0]));
        assert_eq!(loaded.table.ids, ["r1", "r2"]);
    }

    #[test]
    fn explicit_features_keep_given_order() {
        let options = labelled().with_features(["c", "a"]);
        let loaded = load("id,y,a,b,c\nr1,1,1,2,3\n", &options).unwrap();
        assert_eq!(loaded.table.columns, ["c", "a"]);
        assert_eq!(loaded.table.rows, [3.0, 1.0]);
    }

    #[test]
    fn spaces_around_cells_are_ignored() {
        let loaded = load("id, y, x\n r1 , 1 , 2.5 \n", &labelled()).unwrap();
        assert_eq!(loaded.table.ids, ["r1"]);
        assert_eq!(loaded.table.rows, [2.5]);
    }

    #[test]
    fn empty_cell_rejected_naming_row_and_column() {
        let file = csv_file("id,y,x\nr1,1,0.5\nr2,0,\n");
        let error = read_csv(file.path(), &labelled()).unwrap_err();
        let path = file.path().display().to_string();
        assert_eq!(
            error,
            DataError::EmptyCell {
                path: path.clone(),
                line: 3,
                id: "r2".into(),
                column: "x".into(),
            }
        );
        let message = error.to_string();
        assert!(message.contains(&path), "{message}");
        assert!(message.contains("\"r2\""), "{message}");
        assert!(message.contains("remove the row"), "{message}");
    }

    #[test]
    fn unparsable_value_rejected_with_value() {
        let error = load("id,y,x\nr1,1,1.2.3\n", &labelled()).unwrap_err();
        assert!(
            matches!(&error, DataError::InvalidNumber { value, id, column, .. }
            if value == "1.2.3" && id == "r1" && column == "x")
        );
        let message = error.to_string();
        assert!(message.contains("\"1.2.3\" is not a number"), "{message}");
    }

    #[test]
    fn nan_rejected_even_with_bounds() {
        for cell in ["NaN", "nan", "-nan"] {
            let options = labelled().with_bound("x", -1.0, 1.0);
            let error = load(&format!("id,y,x\nr1,1,{cell}\n"), &options).unwrap_err();
            assert!(
                matches!(&error, DataError::NanValue { value, .. } if value == cell),
                "{cell}: {error:?}"
            );
        }
    }

    #[test]
    fn infinity_without_bounds_rejected() {
        for cell in ["inf", "-inf", "1e400"] {
            let error = load(&format!("id,y,x\nr1,1,{cell}\n"), &labelled()).unwrap_err();
            assert!(
                matches!(&error, DataError::InfiniteValue { value, .. } if value == cell),
                "{cell}: {error:?}"
            );
            assert!(error.to_string().contains("declare bounds"));
        }
    }

    #[test]
    fn huge_finite_value_kept_without_bounds() {
        let loaded = load("id,y,x\nr1,1,1e308\n", &labelled()).unwrap();
        assert_eq!(loaded.table.rows, [1e308]);
        assert_eq!(loaded.clipped_total(), 0);
    }

    #[test]
    fn values_beyond_bounds_clipped_and_counted() {
        let csv = "id,y,x,z\nr1,1,1e308,5\nr2,0,inf,-inf\nr3,1,-inf,0.5\nr4,0,0.25,1e400\n";
        let options = labelled()
            .with_bound("x", -1.0, 1.0)
            .with_bound("z", 0.0, 2.0);
        let loaded = load(csv, &options).unwrap();
        assert_eq!(
            loaded.table.rows,
            [1.0, 2.0, 1.0, 0.0, -1.0, 0.5, 0.25, 2.0]
        );
        assert_eq!(loaded.clipped, [3, 3]);
        assert_eq!(loaded.clipped_columns(), [("x", 3), ("z", 3)]);
        assert_eq!(loaded.clipped_total(), 6);
    }

    #[test]
    fn values_on_bounds_not_counted() {
        let options = labelled().with_bound("x", -1.0, 1.0);
        let loaded = load("id,y,x\nr1,1,1\nr2,0,-1\n", &options).unwrap();
        assert_eq!(loaded.clipped, [0]);
        assert!(loaded.clipped_columns().is_empty());
    }

    #[test]
    fn labels_other_than_zero_or_one_rejected() {
        for cell in ["2", "-1", "0.5", "yes", "", "nan"] {
            let error = load(&format!("id,y,x\nr7,{cell},1\n"), &labelled()).unwrap_err();
            assert!(
                matches!(&error, DataError::InvalidLabel { id, value, .. }
                    if id == "r7" && value == cell),
                "{cell:?}: {error:?}"
            );
            assert!(error.to_string().contains("expected 0 or 1"));
        }
    }

    #[test]
    fn labels_written_as_decimals_accepted() {
        let loaded = load("id,y,x\nr1,1.0,1\nr2,0.0,2\n", &labelled()).unwrap();
        assert_eq!(loaded.table.labels, Some(vec![1.0, 0.0]));
    }

    #[test]
    fn missing_columns_rejected() {
        let csv = "id,y,x\nr1,1,1\n";
        let cases = [
            LoadOptions::new("key"),
            LoadOptions::new("id").with_label("label"),
            labelled().with_features(["x", "w"]),
        ];
        for (options, column) in cases.iter().zip(["key", "label", "w"]) {
            let error = load(csv, options).unwrap_err();
            assert!(
                matches!(&error, DataError::MissingColumn { column: c, .. } if c == column),
                "{error:?}"
            );
        }
    }

    #[test]
    fn conflicting_column_roles_rejected() {
        let csv = "id,y,x\nr1,1,1\n";
        let cases = [
            LoadOptions::new("id").with_label("id"),
            labelled().with_features(["x", "id"]),
            labelled().with_features(["y"]),
            labelled().with_features(["x", "x"]),
        ];
        for options in &cases {
            let error = load(csv, options).unwrap_err();
            assert!(
                matches!(error, DataError::ColumnRoleConflict { .. }),
                "{error:?}"
            );
        }
    }

    #[test]
    fn duplicate_header_rejected() {
        let error = load("id,x,x\nr1,1,2\n", &LoadOptions::new("id")).unwrap_err();
        assert!(matches!(&error, DataError::DuplicateColumn { column, .. } if column == "x"));
    }

    #[test]
    fn table_without_features_rejected() {
        let error = load("id,y\nr1,1\n", &labelled()).unwrap_err();
        assert!(
            matches!(error, DataError::NoFeatureColumns { .. }),
            "{error:?}"
        );
    }

    #[test]
    fn header_only_file_rejected() {
        let error = load("id,y,x\n", &labelled()).unwrap_err();
        assert!(matches!(error, DataError::NoRows { .. }), "{error:?}");
    }

    #[test]
    fn empty_and_duplicate_ids_rejected() {
        let error = load("id,x\n,1\n", &LoadOptions::new("id")).unwrap_err();
        assert!(
            matches!(error, DataError::EmptyId { line: 2, .. }),
            "{error:?}"
        );
        let error = load("id,x\nr1,1\nr2,2\nr1,3\n", &LoadOptions::new("id")).unwrap_err();
        assert!(
            matches!(&error, DataError::DuplicateId { line: 4, id, .. } if id == "r1"),
            "{error:?}"
        );
    }

    #[test]
    fn ragged_row_rejected() {
        let error = load("id,x\nr1,1,2\n", &LoadOptions::new("id")).unwrap_err();
        assert!(matches!(error, DataError::ReadFailed { .. }), "{error:?}");
    }

    #[test]
    fn missing_file_rejected() {
        let path = fate_dir().join("no_such_file.csv");
        let error = read_csv(&path, &LoadOptions::new("id")).unwrap_err();
        assert!(matches!(error, DataError::ReadFailed { .. }), "{error:?}");
    }

    #[test]
    fn invalid_bounds_rejected() {
        let csv = "id,y,x\nr1,1,1\n";
        for [lo, hi] in [[1.0, -1.0], [f64::NEG_INFINITY, 0.0], [0.0, f64::NAN]] {
            let options = labelled().with_bound("x", lo, hi);
            let error = load(csv, &options).unwrap_err();
            assert!(
                matches!(error, DataError::InvalidBounds { .. }),
                "{error:?}"
            );
        }
        let options = labelled().with_bound("y", 0.0, 1.0);
        let error = load(csv, &options).unwrap_err();
        assert!(
            matches!(&error, DataError::BoundsForUnknownColumn { column, .. } if column == "y"),
            "{error:?}"
        );
    }

    #[test]
    fn split_file_gives_test_ids() {
        let path = fate_dir().join("splits/breast_hetero_splits.csv");
        for seed in ["seed0", "seed9"] {
            let test_ids = read_test_ids(&path, seed).unwrap();
            assert_eq!(test_ids.len(), 114, "{seed}");
        }
        let seed0 = read_test_ids(&path, "seed0").unwrap();
        assert!(!seed0.contains("0"));
        assert!(read_test_ids(&path, "seed2").unwrap().contains("0"));
    }

    #[test]
    fn unknown_seed_rejected_listing_seeds() {
        let file = csv_file("id,seed0,seed1\n1,train,test\n");
        let error = read_test_ids(file.path(), "seed7").unwrap_err();
        assert!(
            matches!(&error, DataError::UnknownSeed { seed, available, .. }
                if seed == "seed7" && *available == ["seed0", "seed1"]),
            "{error:?}"
        );
        let error = read_test_ids(file.path(), "id").unwrap_err();
        assert!(matches!(error, DataError::UnknownSeed { .. }), "{error:?}");
    }

    #[test]
    fn split_values_other_than_train_test_rejected() {
        let file = csv_file("id,seed0\n1,train\n2,Test\n");
        let error = read_test_ids(file.path(), "seed0").unwrap_err();
        assert!(
            matches!(&error, DataError::InvalidSplitValue { id, value, line: 3, .. }
                if id == "2" && value == "Test"),
            "{error:?}"
        );
        assert!(error.to_string().contains("\"train\" or \"test\""));
    }

    #[test]
    fn split_file_without_id_column_rejected() {
        let file = csv_file("key,seed0\n1,train\n");
        let error = read_test_ids(file.path(), "seed0").unwrap_err();
        assert!(
            matches!(error, DataError::MissingColumn { .. }),
            "{error:?}"
        );
    }

    #[test]
    fn new_checks_shape_and_values() {
        let ids = || vec!["a".to_owned(), "b".to_owned()];
        let columns = || vec!["x".to_owned()];
        let error = FeatureTable::new(ids(), columns(), vec![1.0], None).unwrap_err();
        assert!(
            matches!(error, DataError::ShapeMismatch { .. }),
            "{error:?}"
        );
        let error = FeatureTable::new(ids(), columns(), vec![1.0, 2.0], Some(vec![1.0]));
        assert!(matches!(error, Err(DataError::ShapeMismatch { .. })));
        let error = FeatureTable::new(ids(), columns(), vec![1.0, f64::NAN], None).unwrap_err();
        assert_eq!(
            error,
            DataError::NonFiniteValue {
                id: "b".into(),
                column: "x".into()
            }
        );
        let error =
            FeatureTable::new(ids(), columns(), vec![1.0, 2.0], Some(vec![1.0, 3.0])).unwrap_err();
        assert!(matches!(
            error,
            DataError::InvalidTableLabel { value: 3.0, .. }
        ));
        let repeated = vec!["a".to_owned(), "a".to_owned()];
        let error = FeatureTable::new(repeated, columns(), vec![1.0, 2.0], None).unwrap_err();
        assert!(matches!(error, DataError::DuplicateTableId { .. }));
    }

    #[test]
    fn rows_selected_by_index_and_predicate() {
        let table = table();
        let picked = table.select_rows(&[2, 0]).unwrap();
        assert_eq!(picked.ids, ["c", "a"]);
        assert_eq!(picked.rows, [5.0, 6.0, 1.0, 2.0]);
        assert_eq!(picked.labels, Some(vec![1.0, 1.0]));
        assert!(matches!(
            table.select_rows(&[3]),
            Err(DataError::RowOutOfRange { index: 3, rows: 3 })
        ));
        assert!(matches!(
            table.select_rows(&[1, 1]),
            Err(DataError::DuplicateTableId { .. })
        ));

        let filtered = table.filter_rows(|id| id != "b");
        assert_eq!(filtered.ids, ["a", "c"]);
        assert_eq!(filtered.row(1), [5.0, 6.0]);
    }

    #[test]
    fn columns_selected_by_name() {
        let table = table();
        let picked = table.select_columns(&["x1"]).unwrap();
        assert_eq!(picked.columns, ["x1"]);
        assert_eq!(picked.rows, [2.0, 4.0, 6.0]);
        assert_eq!(picked.labels, table.labels);
        assert!(matches!(
            table.select_columns(&["x2"]),
            Err(DataError::UnknownColumn { .. })
        ));
        assert!(matches!(
            table.select_columns(&["x0", "x0"]),
            Err(DataError::DuplicateTableColumn { .. })
        ));
    }

    #[test]
    fn split_puts_test_ids_aside() {
        let table = table();
        let test_ids = BTreeSet::from(["c".to_owned(), "a".to_owned()]);
        let (train, test) = table.split_by_test_ids(&test_ids).unwrap();
        assert_eq!(train.ids, ["b"]);
        assert_eq!(test.ids, ["a", "c"]);
        assert_eq!(test.labels, Some(vec![1.0, 1.0]));

        let unknown = BTreeSet::from(["z".to_owned()]);
        assert!(matches!(
            table.split_by_test_ids(&unknown),
            Err(DataError::TestIdNotInTable { .. })
        ));
    }

    #[test]
    fn join_matches_rows_by_id() {
        let guest = table();
        let host = FeatureTable::new(
            vec!["c".into(), "a".into(), "b".into()],
            vec!["x0".into()],
            vec![30.0, 10.0, 20.0],
            None,
        )
        .unwrap()
        .with_column_prefix("host_");
        let joined = guest.join(&host).unwrap();
        assert_eq!(joined.columns, ["x0", "x1", "host_x0"]);
        assert_eq!(joined.ids, guest.ids);
        assert_eq!(
            joined.rows,
            [1.0, 2.0, 10.0, 3.0, 4.0, 20.0, 5.0, 6.0, 30.0]
        );
        assert_eq!(joined.labels, guest.labels);

        let reversed = host.join(&guest).unwrap();
        assert_eq!(reversed.ids, ["c", "a", "b"]);
        assert_eq!(reversed.labels, Some(vec![1.0, 1.0, 0.0]));
    }

    #[test]
    fn join_rejects_mismatched_tables() {
        let guest = table();
        let same_names = guest.select_columns(&["x0"]).unwrap();
        assert!(matches!(
            guest.join(&same_names.clone().with_column_prefix("h_")),
            Err(DataError::JoinLabelsTwice)
        ));
        let mut unlabelled = same_names;
        unlabelled.labels = None;
        assert!(matches!(
            guest.join(&unlabelled),
            Err(DataError::DuplicateTableColumn { .. })
        ));

        let fewer = unlabelled
            .filter_rows(|id| id != "b")
            .with_column_prefix("h_");
        let error = guest.join(&fewer).unwrap_err();
        assert_eq!(error, DataError::JoinIdMissing { id: "b".into() });
        let error = fewer.join(&guest).unwrap_err();
        assert_eq!(error, DataError::JoinIdMissing { id: "b".into() });
    }
}
