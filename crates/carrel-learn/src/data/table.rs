//! [`FeatureTable`] and its methods that select, split and join rows and columns.

use std::collections::{BTreeSet, HashMap, HashSet};

use serde::{Deserialize, Serialize};

use super::{DataError, first_duplicate};

/// A table of rows with an id, numeric features and an optional 0/1 label.
///
/// [`FeatureTable::new`] and [`read_csv`](super::read_csv) check the shape, that values are
/// finite, that labels are 0 or 1 and that ids and column names are unique. Code that edits
/// the public fields directly must keep those properties.
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

#[cfg(test)]
mod tests {
    use super::*;

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
