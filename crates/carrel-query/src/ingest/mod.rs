//! Dataset registration: reads a provider's CSV or Parquet file, checks it against the
//! description and writes the kept rows to the Parquet file that queries read.
//!
//! Rules, in the order they apply to each row:
//!
//! 1. The file's columns must be exactly the declared ones, in any order.
//! 2. Every value must parse as its declared type (Integer as `i64`, Float as `f64`,
//!    Text as UTF-8); otherwise registration fails, naming row, column and value.
//! 3. A row whose privacy-unit value is missing is excluded, because no person can be
//!    charged for it; the report lists its row number.
//! 4. A Float value that is NaN, `inf` or `-inf` is stored as missing; the report lists
//!    its row number under its column. Missing values are never aggregated, so released
//!    results stay finite.
//! 5. Any other empty (or whitespace-only) cell is stored as missing.
//!
//! Nothing is written to the destination unless every row passes: rows go to a
//! `.partial` file beside it, which is renamed into place only at the end.

mod csv;
mod parquet;
mod writer;

pub(crate) use writer::parquet_error;

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use carrel_model::DatasetDescription;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::QueryError;
use writer::{TableWriter, WriteStats};

/// Counts and row numbers of what registration read, kept and excluded.
///
/// Row numbers count data rows from 1: for CSV the header and blank lines are not
/// counted, for Parquet rows are numbered in file order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistrationReport {
    /// Data rows in the source file.
    pub rows_read: u64,
    /// Rows written to the Parquet file.
    pub rows_kept: u64,
    /// Rows excluded because their privacy-unit value was missing.
    pub excluded_rows: Vec<u64>,
    /// Per Float column, the kept rows whose NaN or infinite value was stored as missing.
    pub non_finite_cells: BTreeMap<String, Vec<u64>>,
    /// SHA-256 of the written Parquet file, lower-case hex.
    pub sha256: String,
}

/// Registers the CSV or Parquet file at `source` under `description`, writing the kept
/// rows to `dest_parquet`.
///
/// The format is chosen by the extension (`.csv` or `.parquet`, in any case).
///
/// # Errors
///
/// - [`QueryError::InvalidDescription`] for an inconsistent description.
/// - [`QueryError::UndeclaredColumn`], [`QueryError::MissingColumn`] or
///   [`QueryError::DuplicateColumn`] when the header does not match it.
/// - [`QueryError::FieldCount`] for a CSV row of the wrong length.
/// - [`QueryError::InvalidValue`] or [`QueryError::ColumnTypeMismatch`] for a value that
///   is not of the declared type.
/// - I/O, CSV and Parquet errors otherwise.
///
/// On any error `dest_parquet` is left as it was.
pub fn register_dataset(
    source: &Path,
    description: &DatasetDescription,
    dest_parquet: &Path,
) -> Result<RegistrationReport, QueryError> {
    description
        .validate()
        .map_err(|e| QueryError::InvalidDescription(e.to_string()))?;
    let format = SourceFormat::of(source)?;

    let partial = partial_path(dest_parquet);
    let stats = match write_partial(source, format, description, &partial) {
        Ok(stats) => stats,
        Err(error) => {
            // The partial file is ours; failing to remove it leaves only litter.
            let _ = std::fs::remove_file(&partial);
            return Err(error);
        }
    };
    std::fs::rename(&partial, dest_parquet).map_err(|source| QueryError::Io {
        action: "rename into place",
        path: dest_parquet.to_owned(),
        source,
    })?;

    let sha256 = sha256_file(dest_parquet)?;
    tracing::info!(
        table = %description.name,
        rows_read = stats.rows_read,
        rows_kept = stats.rows_kept,
        "dataset registered"
    );
    Ok(RegistrationReport {
        rows_read: stats.rows_read,
        rows_kept: stats.rows_kept,
        excluded_rows: stats.excluded_rows,
        non_finite_cells: stats.non_finite_cells,
        sha256,
    })
}

#[derive(Debug, Clone, Copy)]
enum SourceFormat {
    Csv,
    Parquet,
}

impl SourceFormat {
    fn of(path: &Path) -> Result<Self, QueryError> {
        let extension = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        match extension.as_deref() {
            Some("csv") => Ok(SourceFormat::Csv),
            Some("parquet") => Ok(SourceFormat::Parquet),
            _ => Err(QueryError::UnsupportedSource {
                path: path.to_owned(),
            }),
        }
    }
}

fn write_partial(
    source: &Path,
    format: SourceFormat,
    description: &DatasetDescription,
    partial: &Path,
) -> Result<WriteStats, QueryError> {
    let mut writer = TableWriter::create(description, partial)?;
    match format {
        SourceFormat::Csv => csv::read_csv(source, description, &mut writer)?,
        SourceFormat::Parquet => parquet::read_parquet(source, description, &mut writer)?,
    }
    writer.finish()
}

fn partial_path(dest: &Path) -> PathBuf {
    let mut name = dest.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    dest.with_file_name(name)
}

/// Maps each declared column to its position among the file's column names.
fn column_positions(
    names: &[String],
    description: &DatasetDescription,
) -> Result<Vec<usize>, QueryError> {
    let mut positions = HashMap::new();
    for (position, name) in names.iter().enumerate() {
        if description.column(name).is_none() {
            return Err(QueryError::UndeclaredColumn {
                column: name.clone(),
            });
        }
        if positions.insert(name.as_str(), position).is_some() {
            return Err(QueryError::DuplicateColumn {
                column: name.clone(),
            });
        }
    }
    description
        .columns
        .iter()
        .map(|c| {
            positions
                .get(c.name.as_str())
                .copied()
                .ok_or_else(|| QueryError::MissingColumn {
                    column: c.name.clone(),
                })
        })
        .collect()
}

fn sha256_file(path: &Path) -> Result<String, QueryError> {
    let io_error = |source| QueryError::Io {
        action: "hash",
        path: path.to_owned(),
        source,
    };
    let mut reader = BufReader::new(File::open(path).map_err(io_error)?);
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let read = reader.read(&mut buffer).map_err(io_error)?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
    }
    Ok(hex::encode(hasher.finalize()))
}
