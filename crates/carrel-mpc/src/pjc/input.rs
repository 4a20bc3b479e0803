//! Deduplication, row bounding, clamping and fixed-point encoding of each party's input.

use std::collections::{HashMap, HashSet};

use super::{PjcError, PjcParams};

/// Fractional bits of the fixed-point encoding: a value `v` is stored as
/// `round_ties_even(v × 2^16)`, so each row is off by at most `2^-17`.
pub const FIXED_POINT_BITS: i32 = 16;

/// `2^FIXED_POINT_BITS`, as a float.
const FIXED_POINT_ONE: f64 = (1u64 << FIXED_POINT_BITS) as f64;

/// The IdParty's ids after deduplication: row positions per group, first group wins.
pub(crate) struct IdGroups {
    pub groups: Vec<Vec<usize>>,
    pub duplicates_dropped: usize,
}

/// Keeps each id once, in the group of its first row.
pub(crate) fn group_ids<I: AsRef<[u8]>>(
    ids: &[(I, usize)],
    group_count: usize,
    max_set_size: usize,
) -> Result<IdGroups, PjcError> {
    let mut seen: HashSet<&[u8]> = HashSet::with_capacity(ids.len());
    let mut groups = vec![Vec::new(); group_count];
    let mut duplicates_dropped = 0;
    for (row, (id, group)) in ids.iter().enumerate() {
        if *group >= group_count {
            return Err(PjcError::InvalidInput {
                row,
                reason: format!("group {group} is not below the group count {group_count}"),
            });
        }
        if !seen.insert(id.as_ref()) {
            duplicates_dropped += 1;
            continue;
        }
        groups[*group].push(row);
    }
    if seen.len() > max_set_size {
        return Err(PjcError::SetTooLarge {
            found: seen.len(),
            limit: max_set_size,
        });
    }
    Ok(IdGroups {
        groups,
        duplicates_dropped,
    })
}

/// One ValueParty id with the totals of its kept rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IdTotal {
    /// Position of the id's first row in the input.
    pub first_row: usize,
    /// Sum of the kept rows' fixed-point values.
    pub sum: i128,
    /// Number of kept rows.
    pub rows: u32,
}

/// The ValueParty's rows grouped per id.
pub(crate) struct ValueTotals {
    pub ids: Vec<IdTotal>,
    pub rows_dropped: usize,
}

/// Groups rows per id, keeps the first `max_rows_per_id` rows of each id in input order,
/// clamps each value to `[lower, upper]` and sums them in fixed point.
pub(crate) fn total_values<I: AsRef<[u8]>>(
    rows: &[(I, f64)],
    params: &PjcParams,
) -> Result<ValueTotals, PjcError> {
    let mut index: HashMap<&[u8], usize> = HashMap::with_capacity(rows.len());
    let mut ids: Vec<IdTotal> = Vec::new();
    let mut rows_dropped = 0;
    for (row, (id, value)) in rows.iter().enumerate() {
        if value.is_nan() {
            return Err(PjcError::InvalidInput {
                row,
                reason: "the value is NaN".to_owned(),
            });
        }
        let position = *index.entry(id.as_ref()).or_insert_with(|| {
            ids.push(IdTotal {
                first_row: row,
                sum: 0,
                rows: 0,
            });
            ids.len() - 1
        });
        let total = &mut ids[position];
        if total.rows >= params.max_rows_per_id {
            rows_dropped += 1;
            continue;
        }
        total.sum += i128::from(to_fixed(*value, params.lower, params.upper));
        total.rows += 1;
    }
    if ids.len() > params.max_set_size {
        return Err(PjcError::SetTooLarge {
            found: ids.len(),
            limit: params.max_set_size,
        });
    }
    Ok(ValueTotals { ids, rows_dropped })
}

/// Clamps a non-NaN value to `[lower, upper]` and encodes it in fixed point.
///
/// Multiplying by a power of two is exact, and validated bounds keep the result within
/// `2^56` in magnitude, so the conversion to `i64` is exact.
pub(crate) fn to_fixed(value: f64, lower: f64, upper: f64) -> i64 {
    (value.clamp(lower, upper) * FIXED_POINT_ONE).round_ties_even() as i64
}

/// Returns the largest fixed-point magnitude of a clamped value, `M` in the sum
/// sensitivity.
pub(crate) fn fixed_bound(lower: f64, upper: f64) -> i64 {
    let bound = lower.abs().max(upper.abs());
    (bound * FIXED_POINT_ONE).round_ties_even() as i64
}

/// Converts a fixed-point sum to a float (exact below `2^53` units, nearest otherwise).
pub(crate) fn from_fixed(sum: i128) -> f64 {
    sum as f64 / FIXED_POINT_ONE
}
