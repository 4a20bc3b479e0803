//! Errors: [`QueryRejection`] for rejections found before any data is read, which cost no
//! budget, and [`QueryError`] for everything else.
//!
//! The node sends both to the consumer as text. So a rejection quotes at most
//! [`MAX_QUOTED_CHARS`] characters of the query per field, and an execution error never
//! carries DataFusion's, Arrow's or OpenDP's own message, which can quote row values.

use std::fmt;
use std::path::PathBuf;

use carrel_model::ColumnType;
use datafusion::arrow::error::ArrowError;
use datafusion::error::DataFusionError;

/// Maximum characters of query text that one field of a [`QueryRejection`] quotes.
pub(crate) const MAX_QUOTED_CHARS: usize = 120;

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
    /// The SQL text is longer, or its expressions are nested deeper, than the checker
    /// accepts.
    #[error("the query is too large: {reason}")]
    TooLarge {
        /// The limit exceeded and how to shorten the query.
        reason: String,
    },
}

impl QueryRejection {
    /// Cuts every field that quotes the query to [`MAX_QUOTED_CHARS`] characters.
    ///
    /// Reasons are left whole: they are written by this crate, and the few that quote
    /// the query cut the quote with [`excerpt`] where they are built.
    pub(crate) fn with_short_quotes(self) -> Self {
        match self {
            QueryRejection::InvalidSql { message, help } => QueryRejection::InvalidSql {
                message: excerpt(&message),
                help,
            },
            QueryRejection::UnknownColumn {
                column,
                table,
                available,
            } => QueryRejection::UnknownColumn {
                column: excerpt(&column),
                table,
                available,
            },
            QueryRejection::UnknownTable { table, expected } => QueryRejection::UnknownTable {
                table: excerpt(&table),
                expected,
            },
            QueryRejection::RowLevel { columns, reason } => QueryRejection::RowLevel {
                columns: excerpt(&columns),
                reason,
            },
            QueryRejection::ColumnNotPermitted {
                column,
                clause,
                reason,
            } => QueryRejection::ColumnNotPermitted {
                column: excerpt(&column),
                clause,
                reason,
            },
            QueryRejection::ConstructNotPermitted { construct, reason } => {
                QueryRejection::ConstructNotPermitted {
                    construct: excerpt(&construct),
                    reason,
                }
            }
            QueryRejection::PlanningFailed { message } => QueryRejection::PlanningFailed {
                message: excerpt(&message),
            },
            other => other,
        }
    }
}

/// Returns `text` cut to [`MAX_QUOTED_CHARS`] characters, the last of them "…" when
/// anything was cut.
pub(crate) fn excerpt(text: &str) -> String {
    if text.chars().count() <= MAX_QUOTED_CHARS {
        return text.to_owned();
    }
    let mut short: String = text.chars().take(MAX_QUOTED_CHARS - 1).collect();
    short.push('…');
    short
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
    /// DataFusion or Arrow failed while running a checked query.
    ///
    /// Their message is dropped because it can quote row values, such as a value that a
    /// cast rejected.
    #[error(
        "query execution failed in DataFusion while reading or filtering the table; the \
         error text is withheld because it can contain row values"
    )]
    Execution {
        /// The kind of error, such as `Arrow CastError` or `I/O NotFound`, which names no
        /// values.
        kind: String,
    },
    /// OpenDP failed to build or run a noise measurement.
    ///
    /// OpenDP's message is dropped because, while noise is added, it can quote an exact
    /// total.
    #[error("noise measurement failed in OpenDP; the error text is withheld")]
    Noise {
        /// OpenDP's error variant, such as `FailedFunction`, which names no values.
        variant: String,
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
            variant: error.variant.to_string(),
        }
    }
}

impl From<DataFusionError> for QueryError {
    fn from(error: DataFusionError) -> Self {
        QueryError::Execution {
            kind: datafusion_error_kind(&error),
        }
    }
}

impl From<ArrowError> for QueryError {
    fn from(error: ArrowError) -> Self {
        QueryError::Execution {
            kind: format!("Arrow {}", arrow_error_kind(&error)),
        }
    }
}

/// Names the kind of a DataFusion error without any of its text.
fn datafusion_error_kind(error: &DataFusionError) -> String {
    let mut error = error;
    // Context, diagnostic and shared errors wrap the error that names the failure.
    loop {
        error = match error {
            DataFusionError::Context(_, inner) | DataFusionError::Diagnostic(_, inner) => inner,
            DataFusionError::Shared(inner) => inner,
            DataFusionError::Collection(errors) if !errors.is_empty() => &errors[0],
            _ => break,
        };
    }
    let kind = match error {
        DataFusionError::ArrowError(arrow, _) => {
            return format!("Arrow {}", arrow_error_kind(arrow));
        }
        DataFusionError::IoError(io) => return format!("I/O {:?}", io.kind()),
        DataFusionError::ParquetError(_) => "Parquet",
        DataFusionError::ObjectStore(_) => "object store",
        DataFusionError::SQL(..) => "SQL",
        DataFusionError::NotImplemented(_) => "not implemented",
        DataFusionError::Internal(_) => "internal",
        DataFusionError::Plan(_) => "plan",
        DataFusionError::Configuration(_) => "configuration",
        DataFusionError::SchemaError(..) => "schema",
        DataFusionError::Execution(_) => "execution",
        DataFusionError::ExecutionJoin(_) => "task join",
        DataFusionError::ResourcesExhausted(_) => "resources exhausted",
        DataFusionError::External(_) => "external",
        _ => "other",
    };
    kind.to_owned()
}

/// Names the variant of an Arrow error without its text.
fn arrow_error_kind(error: &ArrowError) -> &'static str {
    match error {
        ArrowError::NotYetImplemented(_) => "NotYetImplemented",
        ArrowError::ExternalError(_) => "ExternalError",
        ArrowError::CastError(_) => "CastError",
        ArrowError::MemoryError(_) => "MemoryError",
        ArrowError::ParseError(_) => "ParseError",
        ArrowError::SchemaError(_) => "SchemaError",
        ArrowError::ComputeError(_) => "ComputeError",
        ArrowError::DivideByZero => "DivideByZero",
        ArrowError::ArithmeticOverflow(_) => "ArithmeticOverflow",
        ArrowError::IoError(..) => "IoError",
        ArrowError::InvalidArgumentError(_) => "InvalidArgumentError",
        ArrowError::ParquetError(_) => "ParquetError",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpt_keeps_short_text() {
        let text = "x".repeat(MAX_QUOTED_CHARS);
        assert_eq!(excerpt(&text), text);
    }

    #[test]
    fn excerpt_cuts_long_text_with_ellipsis() {
        let short = excerpt(&"é".repeat(100_000));
        assert_eq!(short.chars().count(), MAX_QUOTED_CHARS);
        assert!(short.ends_with('…'), "{short}");
        assert!(short.starts_with("éé"), "{short}");
    }

    #[test]
    fn rejection_fields_are_cut() {
        let long = "y".repeat(1_000);
        let rejection = QueryRejection::ConstructNotPermitted {
            construct: long.clone(),
            reason: "a reason".into(),
        }
        .with_short_quotes();
        let QueryRejection::ConstructNotPermitted { construct, reason } = &rejection else {
            panic!("{rejection:?}");
        };
        assert_eq!(construct.chars().count(), MAX_QUOTED_CHARS);
        assert_eq!(reason, "a reason");
    }

    #[test]
    fn datafusion_error_message_is_withheld() {
        let cast = ArrowError::CastError("Cannot cast string 'south' to value of Int32".into());
        let wrapped = DataFusionError::Context(
            "while filtering 'south'".into(),
            Box::new(DataFusionError::ArrowError(Box::new(cast), None)),
        );
        let error = QueryError::from(wrapped);
        let QueryError::Execution { kind } = &error else {
            panic!("{error:?}");
        };
        assert_eq!(kind, "Arrow CastError");
        assert!(!error.to_string().contains("south"), "{error}");
        assert!(!format!("{error:?}").contains("south"), "{error:?}");
    }

    #[test]
    fn io_error_kind_is_kept() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "/data/south.parquet");
        let error = QueryError::from(DataFusionError::IoError(io));
        let QueryError::Execution { kind } = &error else {
            panic!("{error:?}");
        };
        assert_eq!(kind, "I/O NotFound");
    }

    #[test]
    fn opendp_error_message_is_withheld() {
        let error = QueryError::from(opendp::error::Error {
            variant: opendp::error::ErrorVariant::FailedFunction,
            message: Some("exact total 12345".into()),
            backtrace: std::backtrace::Backtrace::disabled(),
        });
        let QueryError::Noise { variant } = &error else {
            panic!("{error:?}");
        };
        assert_eq!(variant, "FailedFunction");
        assert!(!error.to_string().contains("12345"), "{error}");
        assert!(!format!("{error:?}").contains("12345"), "{error:?}");
    }
}
