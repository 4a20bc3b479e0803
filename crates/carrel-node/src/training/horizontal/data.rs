//! A provider's training rows: the terms' feature columns and label of its registered
//! dataset, clipped to the declared bounds.

use std::collections::BTreeMap;
use std::path::Path;

use carrel_learn::horizontal::PartyData;
use carrel_model::{DatasetDescription, TrainingTerms};

use crate::error::{NodeError, NodeResult};

/// A provider's rows, ready for training, with what reading them changed.
pub(super) struct Rows {
    /// Features and labels.
    pub data: PartyData,
    /// Values clipped to a declared bound, per feature column that had any.
    pub clipped: BTreeMap<String, u64>,
}

/// Reads the terms' feature columns and label column from the registered table at `path`,
/// in row order, clipping each feature to its declared bounds.
///
/// # Errors
///
/// [`NodeError::BadRequest`] naming the column and the row (counted from 1) of a missing or
/// NaN value, or of a label other than 0 or 1, and for a feature without declared bounds;
/// [`NodeError::Io`] when the table cannot be read.
pub(super) fn read_rows(
    path: &Path,
    description: &DatasetDescription,
    terms: &TrainingTerms,
) -> NodeResult<Rows> {
    let label = terms
        .label_column
        .clone()
        .ok_or_else(|| NodeError::BadRequest("the terms name no label column".into()))?;
    let bounds = declared_bounds(description, &terms.feature_columns)?;
    let mut columns = terms.feature_columns.clone();
    columns.push(label.clone());

    let mut reader = RowReader::new(&columns, bounds);
    // NOTE: the terms of horizontal training name no identifier column, so the label
    // column also serves as the row key that the scan requires. The key is not used.
    carrel_query::scan_id_numbers(path, &label, &columns, |_, values| reader.push(values))?;
    reader.finish()
}

/// Returns the declared `(lower, upper)` bounds of each feature column.
fn declared_bounds(
    description: &DatasetDescription,
    features: &[String],
) -> NodeResult<Vec<(f64, f64)>> {
    features
        .iter()
        .map(|name| {
            let spec = description.column(name).ok_or_else(|| {
                NodeError::BadRequest(format!("the dataset has no feature column {name:?}"))
            })?;
            let bounds = spec.bounds.ok_or_else(|| {
                NodeError::BadRequest(format!(
                    "feature column {name:?} has no declared bounds: register the dataset with \
                     bounds, so that values beyond them are clipped"
                ))
            })?;
            Ok((bounds.lower, bounds.upper))
        })
        .collect()
}

/// Collects rows one at a time: features clipped, then the label, checked.
struct RowReader<'a> {
    columns: &'a [String],
    bounds: Vec<(f64, f64)>,
    rows: Vec<f64>,
    labels: Vec<f64>,
    clipped: Vec<u64>,
}

impl<'a> RowReader<'a> {
    /// Reads `columns`: the features, then the label last.
    fn new(columns: &'a [String], bounds: Vec<(f64, f64)>) -> Self {
        Self {
            columns,
            clipped: vec![0; bounds.len()],
            bounds,
            rows: Vec::new(),
            labels: Vec::new(),
        }
    }

    fn push(&mut self, values: &[Option<f64>]) -> NodeResult<()> {
        let row = self.labels.len() + 1;
        let features = self.bounds.len();
        for (j, value) in values.iter().enumerate() {
            if !value.is_some_and(f64::is_finite) {
                return Err(NodeError::BadRequest(format!(
                    "column {:?} of row {row} is missing or not a finite number; training \
                     needs a value in every feature and label cell",
                    self.columns[j]
                )));
            }
        }
        for (j, value) in values[..features].iter().flatten().enumerate() {
            let (lower, upper) = self.bounds[j];
            let clipped = value.clamp(lower, upper);
            if clipped != *value {
                self.clipped[j] += 1;
            }
            self.rows.push(clipped);
        }
        let label = values[features].unwrap_or(f64::NAN);
        if label != 0.0 && label != 1.0 {
            return Err(NodeError::BadRequest(format!(
                "label column {:?} of row {row} is not 0 or 1",
                self.columns[features]
            )));
        }
        self.labels.push(label);
        Ok(())
    }

    fn finish(self) -> NodeResult<Rows> {
        let clipped = self
            .columns
            .iter()
            .zip(&self.clipped)
            .filter(|(_, count)| **count > 0)
            .map(|(column, count)| (column.clone(), *count))
            .collect();
        let data = PartyData::new(self.bounds.len(), self.rows, self.labels)
            .map_err(|e| NodeError::BadRequest(e.to_string()))?;
        Ok(Rows { data, clipped })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn columns() -> Vec<String> {
        vec!["x0".into(), "x1".into(), "y".into()]
    }

    #[test]
    fn values_beyond_bounds_are_clipped_and_counted() {
        let columns = columns();
        let mut reader = RowReader::new(&columns, vec![(-1.0, 1.0), (0.0, 10.0)]);
        reader.push(&[Some(-3.0), Some(4.0), Some(1.0)]).unwrap();
        reader.push(&[Some(0.5), Some(12.0), Some(0.0)]).unwrap();
        reader.push(&[Some(2.0), Some(-1.0), Some(1.0)]).unwrap();
        let rows = reader.finish().unwrap();
        assert_eq!(rows.data.rows(), &[-1.0, 4.0, 0.5, 10.0, 1.0, 0.0]);
        assert_eq!(rows.data.labels(), &[1.0, 0.0, 1.0]);
        let expected: BTreeMap<String, u64> = [("x0".to_owned(), 2), ("x1".to_owned(), 2)].into();
        assert_eq!(rows.clipped, expected);
    }

    #[test]
    fn missing_value_names_column_and_row() {
        let columns = columns();
        let mut reader = RowReader::new(&columns, vec![(-1.0, 1.0), (0.0, 10.0)]);
        reader.push(&[Some(0.0), Some(1.0), Some(1.0)]).unwrap();
        let error = reader
            .push(&[Some(0.0), None, Some(1.0)])
            .unwrap_err()
            .to_string();
        assert!(error.contains("column \"x1\" of row 2"), "{error}");
    }

    #[test]
    fn nan_value_names_column_and_row() {
        let columns = columns();
        let mut reader = RowReader::new(&columns, vec![(-1.0, 1.0), (0.0, 10.0)]);
        let error = reader
            .push(&[Some(f64::NAN), Some(1.0), Some(1.0)])
            .unwrap_err()
            .to_string();
        assert!(error.contains("column \"x0\" of row 1"), "{error}");
    }

    #[test]
    fn label_other_than_0_or_1_is_rejected() {
        let columns = columns();
        let mut reader = RowReader::new(&columns, vec![(-1.0, 1.0), (0.0, 10.0)]);
        let error = reader
            .push(&[Some(0.0), Some(1.0), Some(2.0)])
            .unwrap_err()
            .to_string();
        assert!(error.contains("label column \"y\" of row 1"), "{error}");
    }
}
