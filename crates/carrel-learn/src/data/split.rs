//! Train/test split files, read with [`read_test_ids`].

use std::collections::{BTreeSet, HashSet};
use std::path::Path;

use super::DataError;
use super::csv::{open_csv, read_failed};

/// Name of the id column of a split file.
pub const SPLIT_ID_COLUMN: &str = "id";

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::test_files::{csv_file, fate_dir};

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
}
