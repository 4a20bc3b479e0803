//! Reading each party's rows: the guest's CSV file and split file, and the host's
//! registered dataset under the ingestion rule of training.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use carrel_learn::data::{FeatureTable, LoadOptions, read_csv, read_test_ids};
use carrel_model::{Dataset, TrainingTerms};
use carrel_mpc::ids::{IdCollector, IdList, IdRule};

use super::super::StartTraining;
use super::MAX_ROWS;
use crate::error::{NodeError, NodeResult};
use crate::signing::sha256_hex;

/// Default id column of the guest's file.
pub(super) const DEFAULT_ID_COLUMN: &str = "id";

/// Default label column of the guest's file.
pub(super) const DEFAULT_LABEL_COLUMN: &str = "y";

/// The guest's rows.
pub(super) struct GuestTable {
    /// Ids, labels and features as read. Row `i` has canonical id `ids.text(i)`.
    pub table: FeatureTable,
    /// Canonical ids, one per row of `table`, in the same order.
    pub ids: IdList,
    /// SHA-256 of the data file, hex.
    pub sha256: String,
    /// Canonical ids the split file marks `test`, when a split was given.
    pub test_ids: Option<HashSet<String>>,
}

/// Reads the guest's data file and split file.
///
/// # Errors
///
/// [`NodeError::BadRequest`] naming the file, row, column and value at fault.
pub(super) fn read_guest_table(request: &StartTraining, rule: &IdRule) -> NodeResult<GuestTable> {
    let path = request
        .data
        .as_deref()
        .ok_or_else(|| NodeError::BadRequest("vertical training needs a data file".into()))?;
    let bytes = std::fs::read(path).map_err(|e| {
        NodeError::BadRequest(format!("data file {} cannot be read: {e}", path.display()))
    })?;
    let sha256 = sha256_hex(&bytes);
    drop(bytes);

    let id_column = request.id_column.as_deref().unwrap_or(DEFAULT_ID_COLUMN);
    let label_column = request
        .label_column
        .as_deref()
        .unwrap_or(DEFAULT_LABEL_COLUMN);
    let mut options = LoadOptions::new(id_column).with_label(label_column);
    if !request.feature_columns.is_empty() {
        options = options.with_features(request.feature_columns.iter().cloned());
    }
    let loaded = read_csv(path, &options).map_err(|e| NodeError::BadRequest(e.to_string()))?;
    let table = loaded.table;
    if table.len() as u64 > MAX_ROWS {
        return Err(NodeError::BadRequest(format!(
            "data file {} has {} rows; vertical training accepts at most {MAX_ROWS}",
            path.display(),
            table.len()
        )));
    }

    let ids = canonical_ids(&table, rule, path)?;
    let test_ids = match (&request.split_file, &request.split) {
        (Some(file), Some(seed)) => {
            let raw =
                read_test_ids(file, seed).map_err(|e| NodeError::BadRequest(e.to_string()))?;
            Some(raw.iter().filter_map(|id| rule.canonical(id)).collect())
        }
        _ => None,
    };
    Ok(GuestTable {
        table,
        ids,
        sha256,
        test_ids,
    })
}

/// Returns the canonical ids of the table's rows, in row order.
pub(super) fn canonical_ids(
    table: &FeatureTable,
    rule: &IdRule,
    path: &Path,
) -> NodeResult<IdList> {
    let mut collector = IdCollector::default();
    let mut first: HashMap<String, usize> = HashMap::new();
    for (row, id) in table.ids.iter().enumerate() {
        let canonical = rule.canonical(id).ok_or_else(|| {
            NodeError::BadRequest(format!(
                "data file {}: the id of row {} is blank; give every row an id",
                path.display(),
                row + 1
            ))
        })?;
        if let Some(&earlier) = first.get(&canonical) {
            return Err(NodeError::BadRequest(format!(
                "data file {}: ids {:?} and {:?} are the same identifier under the rule {}; \
                 make the ids unique",
                path.display(),
                table.ids[earlier],
                id,
                rule.statement()
            )));
        }
        first.insert(canonical, row);
        // The id is neither blank nor a repeat, so the collector keeps it at index `row`.
        collector
            .add(rule, id)
            .map_err(|e| NodeError::Internal(e.to_string()))?;
    }
    Ok(collector.finish().0)
}

/// The host's rows with a non-blank id, as training reads them.
pub(super) struct HostTable {
    /// Canonical ids, in dataset order.
    pub ids: IdList,
    /// Feature values of the terms' columns, row-major, one row per id.
    pub features: Vec<f64>,
    /// Values clipped to the declared bounds, per column in the terms' order.
    pub clipped: Vec<(String, u64)>,
    /// Rows skipped because their id is blank.
    pub blank_ids: u64,
}

/// Reads the id column and the feature columns of the terms from the host's registered
/// dataset at `path`.
///
/// Values beyond a column's declared bounds, infinities included, are clipped to the
/// nearer bound and counted. A row with a blank id is skipped and counted.
///
/// # Errors
///
/// [`NodeError::BadRequest`] for a missing or NaN value, naming the column and the row's
/// id, and for an id that appears twice. These messages quote the dataset, so they stay in
/// the host's log. [`NodeError::Io`] when the file cannot be read.
pub(super) fn read_host_table(
    path: &Path,
    dataset: &Dataset,
    terms: &TrainingTerms,
    rule: &IdRule,
) -> NodeResult<HostTable> {
    let id_column = terms
        .id_column
        .as_deref()
        .ok_or_else(|| NodeError::Internal("vertical terms without id_column".into()))?;
    let mut bounds = Vec::with_capacity(terms.feature_columns.len());
    for name in &terms.feature_columns {
        let declared = dataset
            .description
            .column(name)
            .and_then(|c| c.bounds)
            .ok_or_else(|| {
                NodeError::BadRequest(format!(
                    "training feature {name:?} has no declared bounds in dataset {}",
                    dataset.id
                ))
            })?;
        bounds.push((declared.lower, declared.upper));
    }

    let mut reader = HostReader {
        rule,
        bounds: &bounds,
        columns: &terms.feature_columns,
        collector: IdCollector::with_limit(MAX_ROWS),
        features: Vec::new(),
        clipped: vec![0; bounds.len()],
        row: 0,
    };
    carrel_query::scan_id_numbers(path, id_column, &terms.feature_columns, |id, values| {
        reader.add(id, values)
    })?;
    let (ids, report) = reader.collector.finish();
    Ok(HostTable {
        ids,
        features: reader.features,
        clipped: terms
            .feature_columns
            .iter()
            .cloned()
            .zip(reader.clipped)
            .collect(),
        blank_ids: report.blank,
    })
}

struct HostReader<'a> {
    rule: &'a IdRule,
    bounds: &'a [(f64, f64)],
    columns: &'a [String],
    collector: IdCollector,
    features: Vec<f64>,
    clipped: Vec<u64>,
    row: u64,
}

impl HostReader<'_> {
    fn add(&mut self, id: &str, values: &[Option<f64>]) -> NodeResult<()> {
        self.row += 1;
        let kept = self
            .collector
            .add(self.rule, id)
            .map_err(|e| NodeError::BadRequest(format!("the dataset's ids: {e}")))?;
        if !kept {
            if self.rule.canonical(id).is_none() {
                return Ok(());
            }
            return Err(NodeError::BadRequest(format!(
                "row {}: id {id:?} appears twice; vertical training needs one row per person",
                self.row
            )));
        }
        for (j, value) in values.iter().enumerate() {
            let (lower, upper) = self.bounds[j];
            let value = match value {
                Some(v) if !v.is_nan() => *v,
                _ => {
                    return Err(NodeError::BadRequest(format!(
                        "row {}, id {id:?}, column {:?}: the value is missing or NaN; training \
                         accepts numbers only, so correct the dataset and register it again",
                        self.row, self.columns[j]
                    )));
                }
            };
            let kept = value.clamp(lower, upper);
            if kept != value {
                self.clipped[j] += 1;
            }
            self.features.push(kept);
        }
        Ok(())
    }
}
