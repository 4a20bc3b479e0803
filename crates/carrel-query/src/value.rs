//! Cell values of group keys and released aggregates.

use std::cmp::Ordering;
use std::hash::{Hash, Hasher};

use serde::{Deserialize, Serialize};

/// One cell of a released or exact result: a group key or an aggregate.
///
/// Equality, hashing and ordering are total: floats compare with [`f64::total_cmp`], and
/// `Null` sorts before every other value. Values built by this crate never hold `-0.0`
/// (it is stored as `0.0`) nor a NaN or infinity (they are stored as `Null`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
#[non_exhaustive]
pub enum Value {
    /// Missing value (SQL NULL).
    Null,
    /// A 64-bit integer.
    Integer(i64),
    /// A finite 64-bit float.
    Float(f64),
    /// UTF-8 text.
    Text(String),
}

impl Value {
    /// Builds a float value, mapping non-finite values to `Null` and `-0.0` to `0.0`.
    pub fn float(value: f64) -> Value {
        if !value.is_finite() {
            Value::Null
        } else if value == 0.0 {
            Value::Float(0.0)
        } else {
            Value::Float(value)
        }
    }

    fn rank(&self) -> u8 {
        match self {
            Value::Null => 0,
            Value::Integer(_) => 1,
            Value::Float(_) => 2,
            Value::Text(_) => 3,
        }
    }
}

impl PartialEq for Value {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Value {}

impl PartialOrd for Value {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Value {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Value::Integer(a), Value::Integer(b)) => a.cmp(b),
            (Value::Float(a), Value::Float(b)) => a.total_cmp(b),
            (Value::Text(a), Value::Text(b)) => a.cmp(b),
            _ => self.rank().cmp(&other.rank()),
        }
    }
}

impl Hash for Value {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.rank().hash(state);
        match self {
            Value::Null => {}
            Value::Integer(v) => v.hash(state),
            Value::Float(v) => v.to_bits().hash(state),
            Value::Text(v) => v.hash(state),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_constructor_normalises() {
        assert_eq!(Value::float(f64::NAN), Value::Null);
        assert_eq!(Value::float(f64::INFINITY), Value::Null);
        assert!(matches!(Value::float(-0.0), Value::Float(v) if v.to_bits() == 0));
    }

    #[test]
    fn null_sorts_first() {
        let mut values = [Value::Text("a".into()), Value::Null, Value::Integer(3)];
        values.sort();
        assert_eq!(values[0], Value::Null);
    }

    #[test]
    fn serializes_untagged() {
        let json = serde_json::to_string(&vec![
            Value::Null,
            Value::Integer(2),
            Value::Float(1.5),
            Value::Text("x".into()),
        ])
        .unwrap();
        assert_eq!(json, r#"[null,2,1.5,"x"]"#);
    }
}
