//! Checks a WHERE predicate: comparisons, AND/OR/NOT, IN lists, BETWEEN and IS [NOT] NULL
//! over permitted columns and constants. Each accepted predicate depends on one row only,
//! so filtering keeps the neighbouring relation: removing a person's rows changes only
//! which of that person's rows pass.
//!
//! The predicate is checked after DataFusion's type coercion, so it contains every cast
//! that execution will run. An accepted predicate cannot fail on any row: a column may
//! only be widened (see [`is_widening_cast`]), and every constant is evaluated here, as
//! constant folding will evaluate it. Otherwise a cast that fails on one stored value
//! would stop the query with an error that quotes the value, even when the value's group
//! would be suppressed.

use carrel_model::ColumnType;
use datafusion::arrow::compute::CastOptions;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::logical_expr::expr::{Cast, TryCast};
use datafusion::logical_expr::{Expr, ExprSchemable, Operator};

use super::rules::Rules;
use crate::QueryRejection;
use crate::error::excerpt;

/// Checks the predicate of a Filter below the Aggregate; `schema` is the Filter's input
/// schema, against which the predicate's types are resolved.
pub(crate) fn check_predicate(
    expr: &Expr,
    schema: &DFSchema,
    rules: &Rules<'_>,
) -> Result<(), QueryRejection> {
    PredicateCheck { schema, rules }.predicate(expr)
}

struct PredicateCheck<'a, 'r> {
    schema: &'a DFSchema,
    rules: &'a Rules<'r>,
}

/// Location of an operand in the predicate, for the rejection message.
#[derive(Clone, Copy)]
struct Site<'e> {
    /// The comparison, IN list, BETWEEN or IS NULL test that contains the operand.
    predicate: &'e Expr,
    /// The operand it is compared with, if any.
    other: Option<&'e Expr>,
}

impl PredicateCheck<'_, '_> {
    fn predicate(&self, expr: &Expr) -> Result<(), QueryRejection> {
        match expr {
            Expr::BinaryExpr(binary) if matches!(binary.op, Operator::And | Operator::Or) => {
                self.predicate(&binary.left)?;
                self.predicate(&binary.right)
            }
            Expr::BinaryExpr(binary) if is_comparison(binary.op) => {
                let left = Site {
                    predicate: expr,
                    other: Some(&binary.right),
                };
                let right = Site {
                    predicate: expr,
                    other: Some(&binary.left),
                };
                self.operand(&binary.left, left)?;
                self.operand(&binary.right, right)
            }
            Expr::Not(inner)
            | Expr::IsTrue(inner)
            | Expr::IsFalse(inner)
            | Expr::IsNotTrue(inner)
            | Expr::IsNotFalse(inner)
            | Expr::IsUnknown(inner)
            | Expr::IsNotUnknown(inner) => self.predicate(inner),
            Expr::IsNull(inner) | Expr::IsNotNull(inner) => {
                let site = Site {
                    predicate: expr,
                    other: None,
                };
                self.operand(inner, site)
            }
            Expr::Between(between) => {
                let site = Site {
                    predicate: expr,
                    other: Some(&between.low),
                };
                self.operand(&between.expr, site)?;
                check_bound(&between.low)?;
                check_bound(&between.high)
            }
            Expr::InList(in_list) => {
                let site = Site {
                    predicate: expr,
                    other: in_list.list.first(),
                };
                self.operand(&in_list.expr, site)?;
                in_list.list.iter().try_for_each(check_bound)
            }
            Expr::Literal(..) | Expr::Column(_) => {
                let site = Site {
                    predicate: expr,
                    other: None,
                };
                self.operand(expr, site)
            }
            other => Err(not_permitted(other)),
        }
    }

    /// Checks one side of a comparison: a permitted column, possibly negated or widened,
    /// or a constant.
    fn operand(&self, expr: &Expr, site: Site<'_>) -> Result<(), QueryRejection> {
        match expr {
            Expr::Column(column) => self.rules.check_filter(&column.name),
            Expr::Negative(inner) if inner.any_column_refs() => self.operand(inner, site),
            Expr::Cast(Cast { expr: inner, field })
            | Expr::TryCast(TryCast { expr: inner, field })
                if inner.any_column_refs() =>
            {
                self.operand(inner, site)?;
                self.column_cast(inner, field.data_type(), site)
            }
            Expr::Literal(..) | Expr::Negative(_) | Expr::Cast(_) | Expr::TryCast(_) => {
                check_constant(expr, site.predicate)
            }
            other => Err(not_permitted(other)),
        }
    }

    /// Rejects a cast of `inner`, which reads a column, unless it widens the type.
    fn column_cast(
        &self,
        inner: &Expr,
        target: &DataType,
        site: Site<'_>,
    ) -> Result<(), QueryRejection> {
        let source =
            inner
                .get_type(self.schema)
                .map_err(|error| QueryRejection::PlanningFailed {
                    message: error.to_string(),
                })?;
        if is_widening_cast(&source, target) {
            return Ok(());
        }
        let mut names: Vec<&str> = inner
            .column_refs()
            .into_iter()
            .map(|c| c.name.as_str())
            .collect();
        names.sort_unstable();
        let column = names.first().copied().unwrap_or("the column");
        let column_type = self.rules.column(column).ok().map(|c| c.column_type);
        let reason = match column_type {
            Some(ColumnType::Text) if is_string(&source) => format!(
                "{column} is text, and this converts each of its values to {target}; a value \
                 that does not convert would stop the query with an error that quotes it. \
                 Compare {column} with a quoted text literal, such as {column} = {}",
                text_suggestion(site.other)
            ),
            Some(ColumnType::Integer) => format!(
                "WHERE may convert {column} only to a wider numeric type such as BIGINT or \
                 DOUBLE, because another conversion can fail on a stored value and the error \
                 would quote it. Compare {column} with an integer in the 64-bit range or a \
                 number such as 2.5"
            ),
            _ => format!(
                "WHERE may convert {column} only to a wider numeric type such as DOUBLE, \
                 because another conversion can fail on a stored value and the error would \
                 quote it. Compare {column} with a value of its own type"
            ),
        };
        Err(QueryRejection::ConstructNotPermitted {
            construct: format!("WHERE ... {}", site.predicate),
            reason,
        })
    }
}

/// Returns whether WHERE may cast a column from `from` to `to`: to the same type, a wider
/// integer, Float64 from any integer or float, or another string encoding.
///
/// None of these fails on any value; integers above 2^53 round when cast to Float64.
/// Other casts are rejected even where they cannot fail, such as integer to text,
/// because a cast of their result could.
pub(crate) fn is_widening_cast(from: &DataType, to: &DataType) -> bool {
    use DataType::{
        Float16, Float32, Float64, Int8, Int16, Int32, Int64, UInt8, UInt16, UInt32, UInt64,
    };
    if from == to {
        return true;
    }
    match (from, to) {
        (Int8, Int16 | Int32 | Int64)
        | (Int16, Int32 | Int64)
        | (Int32, Int64)
        | (UInt8, UInt16 | UInt32 | UInt64 | Int16 | Int32 | Int64)
        | (UInt16, UInt32 | UInt64 | Int32 | Int64)
        | (UInt32, UInt64 | Int64)
        | (Float16 | Float32, Float64) => true,
        (from, Float64) if from.is_integer() => true,
        (from, to) => is_string(from) && is_string(to),
    }
}

fn is_string(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    )
}

/// Returns a quoted text literal for the rejection of a text column compared with
/// `other`: the other side's constant in quotes when it has one.
fn text_suggestion(other: Option<&Expr>) -> String {
    let value = other
        .and_then(|expr| constant_value(expr).ok())
        .filter(|value| !value.is_null())
        .map(|value| value.to_string());
    match value {
        Some(value) => format!("'{}'", excerpt(&value.replace('\'', "''"))),
        None => "'a'".to_owned(),
    }
}

/// Checks a BETWEEN bound or IN list item, which must be a constant.
fn check_bound(expr: &Expr) -> Result<(), QueryRejection> {
    if !matches!(
        expr,
        Expr::Literal(..) | Expr::Negative(_) | Expr::Cast(_) | Expr::TryCast(_)
    ) || expr.any_column_refs()
    {
        return Err(QueryRejection::ConstructNotPermitted {
            construct: format!("WHERE ... {expr}"),
            reason: "BETWEEN bounds and IN lists must be constants".into(),
        });
    }
    check_constant(expr, expr)
}

/// Evaluates a constant operand as constant folding will, rejecting one that fails.
fn check_constant(expr: &Expr, predicate: &Expr) -> Result<(), QueryRejection> {
    match constant_value(expr) {
        Ok(_) => Ok(()),
        Err(ConstantError::NotConstant) => Err(not_permitted(expr)),
        Err(ConstantError::Failed(message)) => Err(QueryRejection::ConstructNotPermitted {
            construct: format!("WHERE ... {predicate}"),
            reason: format!(
                "a constant in it cannot be evaluated ({}); write a constant of the \
                 compared column's type",
                excerpt(&message)
            ),
        }),
    }
}

enum ConstantError {
    /// The expression is not a literal, possibly negated or cast.
    NotConstant,
    /// Evaluating it failed with this message.
    Failed(String),
}

/// Evaluates a literal, possibly negated or cast, with the checked arithmetic and cast
/// options that DataFusion's constant folding and execution use.
fn constant_value(expr: &Expr) -> Result<ScalarValue, ConstantError> {
    let failed =
        |error: datafusion::error::DataFusionError| ConstantError::Failed(error.to_string());
    match expr {
        Expr::Literal(value, _) => Ok(value.clone()),
        Expr::Negative(inner) => constant_value(inner)?.arithmetic_negate().map_err(failed),
        Expr::Cast(cast) => constant_value(&cast.expr)?
            .cast_to(cast.field.data_type())
            .map_err(failed),
        Expr::TryCast(cast) => {
            let options = CastOptions {
                safe: true,
                ..CastOptions::default()
            };
            constant_value(&cast.expr)?
                .cast_to_with_options(cast.field.data_type(), &options)
                .map_err(failed)
        }
        _ => Err(ConstantError::NotConstant),
    }
}

fn is_comparison(op: Operator) -> bool {
    matches!(
        op,
        Operator::Eq
            | Operator::NotEq
            | Operator::Lt
            | Operator::LtEq
            | Operator::Gt
            | Operator::GtEq
            | Operator::IsDistinctFrom
            | Operator::IsNotDistinctFrom
    )
}

fn not_permitted(expr: &Expr) -> QueryRejection {
    let reason = match expr {
        Expr::ScalarSubquery(_) | Expr::InSubquery(_) | Expr::Exists(_) => {
            "subqueries are not supported".to_owned()
        }
        _ => "WHERE accepts comparisons, AND, OR, NOT, IN lists, BETWEEN and IS [NOT] NULL \
              of permitted columns against constants"
            .to_owned(),
    };
    QueryRejection::ConstructNotPermitted {
        construct: format!("WHERE ... {expr}"),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widening_casts_are_permitted() {
        for (from, to) in [
            (DataType::Int64, DataType::Int64),
            (DataType::Int32, DataType::Int64),
            (DataType::Int64, DataType::Float64),
            (DataType::Float32, DataType::Float64),
            (DataType::Utf8, DataType::Utf8View),
        ] {
            assert!(is_widening_cast(&from, &to), "{from} to {to}");
        }
    }

    #[test]
    fn other_casts_are_rejected() {
        for (from, to) in [
            (DataType::Int64, DataType::Int32),
            (DataType::Int64, DataType::UInt64),
            (DataType::Float64, DataType::Int64),
            (DataType::Float64, DataType::Float32),
            (DataType::Utf8, DataType::Int64),
            (DataType::Utf8, DataType::Date32),
            (DataType::Int64, DataType::Utf8),
            (DataType::Int64, DataType::Decimal128(20, 0)),
        ] {
            assert!(!is_widening_cast(&from, &to), "{from} to {to}");
        }
    }
}
