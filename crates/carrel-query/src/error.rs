//! Errors: [`QueryRejection`] for rejections found before any data is read, which cost no
//! budget, and [`QueryError`] for everything else.

use std::fmt;
use std::path::PathBuf;

use carrel_model::ColumnType;

/// A query, table or epsilon rejected before any data is read; no budget is spent.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum QueryRejection {
    /// The SQL text could not be parsed.
    #[error("invalid SQL: {message}; {help}")]
    InvalidSql {
        /// DataFusion's parser message, with the line and column.
        message: String,
        /// How to fix it.
        help: String,
    },
    /// The query names a column that the table does not have.
    #[error("unknown column {column:?}: table {table:?} has columns {available}; use one of them")]
    UnknownColumn {
        /// The column as written in the query.
        column: String,
        /// The registered table.
        table: String,
        /// The table's columns, comma separated.
        available: String,
    },
    /// The query reads a table other than the registered one.
    #[error("unknown table {table:?}: this offer's table is {expected:?}; query FROM {expected}")]
    UnknownTable {
        /// The table as written in the query.
        table: String,
        /// The registered table.
        expected: String,
    },
    /// The query has no aggregate, so it would release row values.
    #[error("the query returns row values ({columns}) without an aggregate: {reason}")]
    RowLevel {
        /// The columns that would be released, comma separated.
        columns: String,
        /// The reason for the rejection and what to write instead.
        reason: String,
    },
    /// A column is used where the policy or its role does not allow it.
    #[error("column {column:?} is not permitted in {clause}: {reason}")]
    ColumnNotPermitted {
        /// The column.
        column: String,
        /// The clause that uses it.
        clause: Clause,
        /// Why, and what is permitted instead.
        reason: String,
    },
    /// The query uses a construct outside the accepted form.
    #[error("{construct} is not permitted: {reason}")]
    ConstructNotPermitted {
        /// The construct, as SQL or as DataFusion displays it.
        construct: String,
        /// Why, and what to write instead.
        reason: String,
    },
    /// The usage policy cannot be enforced as written.
    #[error("invalid usage policy: {reason}")]
    InvalidPolicy {
        /// The problem and its fix.
        reason: String,
    },
    /// The registered table cannot be queried.
    #[error("invalid registered table: {reason}")]
    InvalidTable {
        /// The problem and its fix.
        reason: String,
    },
    /// The epsilon asked for cannot be spent.
    #[error("invalid epsilon {epsilon}: {reason}")]
    InvalidEpsilon {
        /// The epsilon asked for.
        epsilon: f64,
        /// The problem and its fix.
        reason: String,
    },
    /// DataFusion failed to plan the query for a reason not covered above.
    #[error("DataFusion could not plan the query: {message}; write a single aggregate SELECT")]
    PlanningFailed {
        /// DataFusion's message.
        message: String,
    },
}

/// The clause of a query in which a column appears.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Clause {
    /// The WHERE clause.
    Where,
    /// The GROUP BY clause.
    GroupBy,
    /// Inside COUNT.
    Count,
    /// Inside SUM.
    Sum,
    /// Inside AVG.
    Avg,
}

impl fmt::Display for Clause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Clause::Where => "WHERE",
            Clause::GroupBy => "GROUP BY",
            Clause::Count => "COUNT",
            Clause::Sum => "SUM",
            Clause::Avg => "AVG",
        })
    }
}

/// A failure while registering a dataset or running a checked query.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueryError {
    /// The request was rejected before any data was read.
    #[error(transparent)]
    Rejected(#[from] QueryRejection),
    /// The dataset description is inconsistent.
    #[error("{0}")]
    InvalidDescription(String),
    /// A file could not be read or written.
    #[error("failed to {action} {path}: {source}")]
    Io {
        /// The failed operation: "open", "create", "rename into place" and so on.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The source file's extension names no supported format.
    #[error("unsupported source file {path}: give a .csv or .parquet file")]
    UnsupportedSource {
        /// The source file.
        path: PathBuf,
    },
    /// The source file has a column that the description does not declare.
    #[error(
        "the file has column {column:?}, which the description does not declare: declare it \
             or remove it from the file"
    )]
    UndeclaredColumn {
        /// The column.
        column: String,
    },
    /// The source file lacks a declared column.
    #[error(
        "the file has no column {column:?}, which the description declares: add it to the \
             file or remove it from the description"
    )]
    MissingColumn {
        /// The column.
        column: String,
    },
    /// The source file names a column twice.
    #[error("the file names column {column:?} twice: keep one")]
    DuplicateColumn {
        /// The column.
        column: String,
    },
    /// A CSV row has more or fewer fields than the header.
    #[error(
        "row {row} (line {line}) has {found} fields but the header has {expected}: quote \
             values that contain commas and give every row one field per column"
    )]
    FieldCount {
        /// 1-based data row, not counting the header or blank lines.
        row: u64,
        /// 1-based line in the file.
        line: u64,
        /// Fields in the header.
        expected: usize,
        /// Fields in the row.
        found: usize,
    },
    /// A value cannot be parsed as its column's declared type.
    #[error("row {row}, column {column:?}: value {value:?} is not {}; fix the value or the \
             declared type", type_phrase(*.expected))]
    InvalidValue {
        /// 1-based data row.
        row: u64,
        /// The column.
        column: String,
        /// The value as found in the file.
        value: String,
        /// The declared type.
        expected: ColumnType,
    },
    /// A Parquet source column has a type that cannot hold the declared type.
    #[error("column {column:?} has Parquet type {found}, which cannot be read as {}; convert the \
             column or change the declared type", type_phrase(*.expected))]
    ColumnTypeMismatch {
        /// The column.
        column: String,
        /// The Arrow type found in the file.
        found: String,
        /// The declared type.
        expected: ColumnType,
    },
    /// The CSV reader failed, for example on bytes that are not UTF-8.
    #[error("invalid CSV{}: {message}", .line.map(|l| format!(" at line {l}")).unwrap_or_default())]
    Csv {
        /// 1-based line, where known.
        line: Option<u64>,
        /// The reader's message.
        message: String,
    },
    /// Reading or writing Parquet failed.
    #[error("Parquet failed on {path}: {message}")]
    Parquet {
        /// The file.
        path: PathBuf,
        /// The library's message.
        message: String,
    },
    /// DataFusion failed while running a checked query.
    #[error("query execution failed: {message}")]
    Execution {
        /// DataFusion's message.
        message: String,
    },
    /// OpenDP failed to build or run a noise measurement.
    #[error("noise measurement failed: {message}")]
    Noise {
        /// OpenDP's message.
        message: String,
    },
    /// An internal invariant does not hold.
    #[error("internal error: {message}; this is a bug in carrel-query, please report it")]
    Internal {
        /// The broken invariant.
        message: String,
    },
}

fn type_phrase(column_type: ColumnType) -> &'static str {
    match column_type {
        ColumnType::Integer => "a 64-bit integer",
        ColumnType::Float => "a number",
        ColumnType::Text => "UTF-8 text",
    }
}

impl From<opendp::error::Error> for QueryError {
    fn from(error: opendp::error::Error) -> Self {
        QueryError::Noise {
            message: match &error.message {
                Some(message) => format!("{}: {message}", error.variant),
                None => error.variant.to_string(),
            },
        }
    }
}

impl From<datafusion::error::DataFusionError> for QueryError {
    fn from(error: datafusion::error::DataFusionError) -> Self {
        QueryError::Execution {
            message: error.to_string(),
        }
    }
}

impl From<datafusion::arrow::error::ArrowError> for QueryError {
    fn from(error: datafusion::arrow::error::ArrowError) -> Self {
        QueryError::Execution {
            message: error.to_string(),
        }
    }
}
