//! CSV sources: a header row naming every declared column, then one record per row.
//!
//! The `csv` crate handles quoting (so a quoted value may hold commas, quotes and line
//! breaks), LF and CRLF line endings, a leading UTF-8 byte-order mark and blank lines,
//! which it skips.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use carrel_model::DatasetDescription;

use super::column_positions;
use super::writer::{Cell, TableWriter, parse_cell};
use crate::QueryError;

/// Reads the CSV file at `path` into `writer`.
///
/// Data rows are numbered from 1, not counting the header or blank lines. Errors give the
/// row number and the 1-based line where the record starts.
pub(crate) fn read_csv(
    path: &Path,
    description: &DatasetDescription,
    writer: &mut TableWriter<'_>,
) -> Result<(), QueryError> {
    let file = File::open(path).map_err(|source| QueryError::Io {
        action: "open",
        path: path.to_owned(),
        source,
    })?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        // Field counts are checked below, so the error can name the row.
        .flexible(true)
        .from_reader(BufReader::new(file));

    let header: Vec<String> = reader
        .headers()
        .map_err(csv_error)?
        .iter()
        .map(|name| name.trim().to_owned())
        .collect();
    let positions = column_positions(&header, description)?;

    let mut record = csv::StringRecord::new();
    let mut row = 0u64;
    while reader.read_record(&mut record).map_err(csv_error)? {
        row += 1;
        if record.len() != header.len() {
            return Err(QueryError::FieldCount {
                row,
                line: record_line(path, record.position()),
                expected: header.len(),
                found: record.len(),
            });
        }
        let cells = positions
            .iter()
            .zip(&description.columns)
            .map(|(&position, column)| parse_cell(&record[position], column, row))
            .collect::<Result<Vec<Cell>, QueryError>>()?;
        writer.push(row, cells)?;
    }
    Ok(())
}

/// Returns the 1-based line where a record's first field starts.
///
/// The `csv` reader positions a record just after the previous one, so its line number
/// points at any blank lines before the record. This skips them by re-reading the file
/// from that byte offset.
fn record_line(path: &Path, position: Option<&csv::Position>) -> u64 {
    let Some(position) = position else {
        return 0;
    };
    let skipped = File::open(path).and_then(|mut file| {
        file.seek(SeekFrom::Start(position.byte()))?;
        let mut newlines = 0;
        for byte in BufReader::new(file).bytes() {
            match byte? {
                b'\n' => newlines += 1,
                b'\r' => {}
                _ => break,
            }
        }
        Ok(newlines)
    });
    // If the file cannot be re-read, the reader's own line is the best estimate.
    position.line() + skipped.unwrap_or(0)
}

fn csv_error(error: csv::Error) -> QueryError {
    QueryError::Csv {
        line: error.position().map(|p| p.line()),
        message: error.to_string(),
    }
}
