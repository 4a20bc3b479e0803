//! CSV loading of a [`FeatureTable`] with [`read_csv`]: the options, the header layout and
//! the parsing of each cell under the ingestion rule of [`crate::data`].

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{DataError, FeatureTable, first_duplicate};

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

/// Reads a feature table from the CSV file at `path` under the ingestion rule of [`crate::data`].
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

pub(super) fn open_csv(path: &str) -> Result<csv::Reader<std::fs::File>, DataError> {
    csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_path(path)
        .map_err(|error| read_failed(path, &error))
}

pub(super) fn read_failed(path: &str, error: &csv::Error) -> DataError {
    DataError::ReadFailed {
        path: path.to_owned(),
        reason: error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::test_files::{csv_file, fate_dir};

    fn load(contents: &str, options: &LoadOptions) -> Result<LoadedTable, DataError> {
        read_csv(csv_file(contents).path(), options)
    }

    fn labelled() -> LoadOptions {
        LoadOptions::new("id").with_label("y")
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
}
