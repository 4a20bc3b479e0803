//! The exact result computed in the clear over both parties' inputs, for tests.

use std::collections::HashMap;

use super::PjcParams;

/// Exact per-group values, before noise.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlainGroup {
    /// Ids present on both sides, in this group.
    pub persons: u64,
    /// Their kept rows.
    pub rows: u64,
    /// Sum of their kept rows' clamped values, in floating point.
    pub sum: f64,
}

/// Computes the exact pooled result with the same rules as the protocol: the IdParty's
/// first group wins for a repeated id, the ValueParty keeps the first `max_rows_per_id`
/// rows of each id, and values are clamped to `[lower, upper]`.
///
/// It needs both parties' inputs in one place, so it serves only to check the protocol.
/// Its sums are plain `f64` sums, while the protocol sums in fixed point with `2^-16`
/// units: the two differ by at most `rows × 2^-17` plus the float rounding of this sum.
///
/// # Panics
///
/// Panics if a group index is not below `group_count`.
pub fn plain_result<I: AsRef<[u8]>, J: AsRef<[u8]>>(
    params: &PjcParams,
    ids: &[(I, usize)],
    group_count: usize,
    rows: &[(J, f64)],
) -> Vec<PlainGroup> {
    let mut group_of: HashMap<&[u8], usize> = HashMap::new();
    for (id, group) in ids {
        assert!(*group < group_count, "group {group} is out of range");
        group_of.entry(id.as_ref()).or_insert(*group);
    }

    let mut kept: HashMap<&[u8], Vec<f64>> = HashMap::new();
    for (id, value) in rows {
        let values = kept.entry(id.as_ref()).or_default();
        if values.len() < params.max_rows_per_id as usize {
            values.push(value.clamp(params.lower, params.upper));
        }
    }

    let mut result = vec![
        PlainGroup {
            persons: 0,
            rows: 0,
            sum: 0.0,
        };
        group_count
    ];
    for (id, values) in &kept {
        let Some(&group) = group_of.get(id) else {
            continue;
        };
        let totals = &mut result[group];
        totals.persons += 1;
        totals.rows += values.len() as u64;
        totals.sum += values.iter().sum::<f64>();
    }
    result
}
