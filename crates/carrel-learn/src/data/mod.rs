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

mod csv;
mod split;
mod table;

use std::collections::HashSet;

pub use self::csv::{LoadOptions, LoadedTable, read_csv};
pub use self::split::{SPLIT_ID_COLUMN, read_test_ids};
pub use self::table::FeatureTable;

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

fn first_duplicate(names: &[String]) -> Option<&str> {
    let mut seen = HashSet::with_capacity(names.len());
    names
        .iter()
        .find(|name| !seen.insert(name.as_str()))
        .map(String::as_str)
}

/// Test helpers shared by the submodules: the FATE example data folder and temporary CSV files.
#[cfg(test)]
mod test_files {
    use std::io::Write;
    use std::path::Path;

    /// Returns the folder of the FATE example data.
    pub(super) fn fate_dir() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/fate")
    }

    pub(super) fn csv_file(contents: &str) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(contents.as_bytes()).unwrap();
        file
    }
}
