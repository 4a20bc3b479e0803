//! Contribution bounding: each person keeps at most `k` rows of those that passed the
//! WHERE filter.
//!
//! The rows kept are the `k` with the lowest SHA-256 of their own content (privacy unit,
//! group keys and aggregated values). The choice for one person depends on that person's
//! rows alone, never on other persons or on row order, so adding or removing one person
//! changes the bounded table by at most that person's `k` rows.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

use sha2::{Digest, Sha256};

use super::rows::{Number, Row};
use crate::Value;

/// Keeps at most `k` rows per privacy unit.
pub(crate) struct Bounder {
    max_rows: usize,
    persons: HashMap<Value, BinaryHeap<RankedRow>>,
}

impl Bounder {
    pub(crate) fn new(max_rows: u32) -> Self {
        Bounder {
            max_rows: max_rows as usize,
            persons: HashMap::new(),
        }
    }

    /// Offers one row of `unit`; it is kept if it is among the unit's `k` lowest ranks.
    pub(crate) fn push(&mut self, unit: Value, row: Row) {
        let rank = rank_row(&unit, &row);
        let heap = self.persons.entry(unit).or_default();
        heap.push(RankedRow { rank, row });
        if heap.len() > self.max_rows {
            // The heap is a max-heap, so this drops the highest rank.
            heap.pop();
        }
    }

    /// Returns each person's kept rows.
    pub(crate) fn into_persons(self) -> impl Iterator<Item = Vec<Row>> {
        self.persons
            .into_values()
            .map(|heap| heap.into_iter().map(|ranked| ranked.row).collect())
    }
}

struct RankedRow {
    rank: [u8; 32],
    row: Row,
}

impl PartialEq for RankedRow {
    fn eq(&self, other: &Self) -> bool {
        self.rank == other.rank
    }
}

impl Eq for RankedRow {}

impl PartialOrd for RankedRow {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Rows with equal ranks have equal content, so which of them is kept does not matter.
impl Ord for RankedRow {
    fn cmp(&self, other: &Self) -> Ordering {
        self.rank.cmp(&other.rank)
    }
}

fn rank_row(unit: &Value, row: &Row) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(b"carrel-query row rank v1");
    hash_value(&mut hasher, unit);
    for key in &row.keys {
        hash_value(&mut hasher, key);
    }
    for value in &row.values {
        match value {
            None => hasher.update([0u8]),
            Some(Number::Integer(v)) => {
                hasher.update([1u8]);
                hasher.update(v.to_le_bytes());
            }
            Some(Number::Float(v)) => {
                hasher.update([2u8]);
                hasher.update(v.to_bits().to_le_bytes());
            }
        }
    }
    hasher.finalize().into()
}

fn hash_value(hasher: &mut Sha256, value: &Value) {
    match value {
        Value::Null => hasher.update([0u8]),
        Value::Integer(v) => {
            hasher.update([1u8]);
            hasher.update(v.to_le_bytes());
        }
        Value::Float(v) => {
            hasher.update([2u8]);
            hasher.update(v.to_bits().to_le_bytes());
        }
        Value::Text(v) => {
            hasher.update([3u8]);
            hasher.update((v.len() as u64).to_le_bytes());
            hasher.update(v.as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(value: i64) -> Row {
        Row {
            keys: vec![Value::Text("north".into())],
            values: vec![Some(Number::Integer(value))],
        }
    }

    #[test]
    fn keeps_at_most_k_rows_per_person() {
        let mut bounder = Bounder::new(1);
        for v in 0..4 {
            bounder.push(Value::Integer(7), row(v));
        }
        bounder.push(Value::Integer(8), row(9));
        let mut sizes: Vec<usize> = bounder.into_persons().map(|rows| rows.len()).collect();
        sizes.sort();
        assert_eq!(sizes, vec![1, 1]);
    }

    #[test]
    fn choice_ignores_row_order_and_other_persons() {
        let kept = |order: &[i64], others: bool| {
            let mut bounder = Bounder::new(2);
            if others {
                bounder.push(Value::Integer(1), row(100));
            }
            for v in order {
                bounder.push(Value::Integer(7), row(*v));
            }
            let mut rows: Vec<Vec<Row>> = bounder.into_persons().collect();
            rows.retain(|r| {
                r.iter()
                    .all(|row| row.values[0] != Some(Number::Integer(100)))
            });
            let mut values: Vec<Option<Number>> =
                rows.concat().into_iter().map(|r| r.values[0]).collect();
            values.sort_by_key(|v| match v {
                Some(Number::Integer(i)) => *i,
                _ => i64::MIN,
            });
            values
        };
        assert_eq!(kept(&[1, 2, 3, 4, 5], false), kept(&[5, 4, 3, 2, 1], true));
    }
}
