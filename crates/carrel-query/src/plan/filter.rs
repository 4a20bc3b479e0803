//! Checks a WHERE predicate: comparisons, AND/OR/NOT, IN lists, BETWEEN and IS [NOT] NULL
//! over permitted columns and literals. Each accepted predicate depends on one row only,
//! so filtering keeps the neighbouring relation: removing a person's rows changes only
//! which of that person's rows pass.

use datafusion::logical_expr::{Expr, Operator};

use super::rules::Rules;
use crate::QueryRejection;

/// Checks the predicate of a Filter below the Aggregate.
pub(crate) fn check_predicate(expr: &Expr, rules: &Rules<'_>) -> Result<(), QueryRejection> {
    match expr {
        Expr::BinaryExpr(binary) if matches!(binary.op, Operator::And | Operator::Or) => {
            check_predicate(&binary.left, rules)?;
            check_predicate(&binary.right, rules)
        }
        Expr::BinaryExpr(binary) if is_comparison(binary.op) => {
            check_operand(&binary.left, rules)?;
            check_operand(&binary.right, rules)
        }
        Expr::Not(inner)
        | Expr::IsTrue(inner)
        | Expr::IsFalse(inner)
        | Expr::IsNotTrue(inner)
        | Expr::IsNotFalse(inner)
        | Expr::IsUnknown(inner)
        | Expr::IsNotUnknown(inner) => check_predicate(inner, rules),
        Expr::IsNull(inner) | Expr::IsNotNull(inner) => check_operand(inner, rules),
        Expr::Between(between) => {
            check_operand(&between.expr, rules)?;
            check_literal(&between.low)?;
            check_literal(&between.high)
        }
        Expr::InList(in_list) => {
            check_operand(&in_list.expr, rules)?;
            in_list.list.iter().try_for_each(check_literal)
        }
        Expr::Literal(..) | Expr::Column(_) => check_operand(expr, rules),
        other => Err(not_permitted(other)),
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

/// Checks one side of a comparison: a permitted column or a literal, possibly cast or
/// negated.
fn check_operand(expr: &Expr, rules: &Rules<'_>) -> Result<(), QueryRejection> {
    match expr {
        Expr::Column(column) => rules.check_filter(&column.name),
        Expr::Literal(..) => Ok(()),
        Expr::Negative(inner) => check_operand(inner, rules),
        Expr::Cast(cast) => check_operand(&cast.expr, rules),
        Expr::TryCast(cast) => check_operand(&cast.expr, rules),
        other => Err(not_permitted(other)),
    }
}

/// Checks a BETWEEN bound or IN list item, which must be a constant.
fn check_literal(expr: &Expr) -> Result<(), QueryRejection> {
    match expr {
        Expr::Literal(..) => Ok(()),
        Expr::Negative(inner) => check_literal(inner),
        Expr::Cast(cast) => check_literal(&cast.expr),
        Expr::TryCast(cast) => check_literal(&cast.expr),
        other => Err(QueryRejection::ConstructNotPermitted {
            construct: format!("WHERE ... {other}"),
            reason: "BETWEEN bounds and IN lists must be constants".into(),
        }),
    }
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
