//! Checks the GROUP BY and aggregate expressions of the query's one Aggregate node.

use datafusion::logical_expr::Expr;
use datafusion::logical_expr::expr::AggregateFunction as AggregateCall;

use super::rules::Rules;
use super::spec::{AggregateFunction, AggregateSpec, Primitive, QuerySpec, ValueColumn};
use crate::{Clause, QueryRejection};

/// Checks one GROUP BY expression and records its column.
pub(crate) fn check_group(
    expr: &Expr,
    rules: &Rules<'_>,
    spec: &mut QuerySpec,
) -> Result<(), QueryRejection> {
    match expr {
        Expr::Column(column) => {
            rules.check_group_by(&column.name)?;
            spec.group_columns.push(column.name.clone());
            Ok(())
        }
        Expr::GroupingSet(_) => Err(QueryRejection::ConstructNotPermitted {
            construct: "GROUPING SETS, ROLLUP or CUBE".into(),
            reason: "they release overlapping groups; run one query per grouping".into(),
        }),
        other => Err(QueryRejection::ConstructNotPermitted {
            construct: format!("GROUP BY {other}"),
            reason: "group by bare columns only".into(),
        }),
    }
}

/// Checks one aggregate expression and records how it is computed.
pub(crate) fn check_aggregate(
    expr: &Expr,
    rules: &Rules<'_>,
    spec: &mut QuerySpec,
) -> Result<(), QueryRejection> {
    let call = match strip_alias(expr) {
        Expr::AggregateFunction(call) => call,
        other => {
            return Err(QueryRejection::ConstructNotPermitted {
                construct: other.to_string(),
                reason: "only COUNT, SUM and AVG may be computed".into(),
            });
        }
    };
    check_modifiers(call)?;

    let name = call.func.name().to_ascii_lowercase();
    let function = match name.as_str() {
        "count" => AggregateFunction::Count,
        "sum" => AggregateFunction::Sum,
        "avg" | "mean" => AggregateFunction::Avg,
        "min" | "max" | "first_value" | "last_value" | "median" | "nth_value" => {
            return Err(QueryRejection::ConstructNotPermitted {
                construct: format!("{}()", name.to_uppercase()),
                reason: "it returns one row's value; use COUNT, SUM or AVG".into(),
            });
        }
        _ => {
            return Err(QueryRejection::ConstructNotPermitted {
                construct: format!("{}()", name.to_uppercase()),
                reason: "only COUNT, SUM and AVG are supported".into(),
            });
        }
    };

    let aggregate = match (function, call.params.args.as_slice()) {
        (AggregateFunction::Count, [Expr::Literal(value, _)]) if !value.is_null() => {
            AggregateSpec {
                function,
                column: None,
                primitives: vec![spec.primitive(Primitive::CountRows)],
            }
        }
        (_, [Expr::Column(column)]) => column_aggregate(function, &column.name, rules, spec)?,
        (_, args) => {
            let written: Vec<String> = args.iter().map(ToString::to_string).collect();
            return Err(QueryRejection::ConstructNotPermitted {
                construct: format!("{}({})", name.to_uppercase(), written.join(", ")),
                reason: "aggregates take one bare column (or * for COUNT); compute \
                         expressions from the released values instead"
                    .into(),
            });
        }
    };
    spec.aggregates.push(aggregate);
    Ok(())
}

fn check_modifiers(call: &AggregateCall) -> Result<(), QueryRejection> {
    let name = call.func.name().to_uppercase();
    if call.params.distinct {
        return Err(QueryRejection::ConstructNotPermitted {
            construct: format!("{name}(DISTINCT ...)"),
            reason: "DISTINCT aggregates are not supported; use COUNT(*) or COUNT(column)".into(),
        });
    }
    if call.params.filter.is_some() {
        return Err(QueryRejection::ConstructNotPermitted {
            construct: format!("{name}(...) FILTER (WHERE ...)"),
            reason: "move the condition into the query's WHERE clause".into(),
        });
    }
    if !call.params.order_by.is_empty() {
        return Err(QueryRejection::ConstructNotPermitted {
            construct: format!("{name}(... ORDER BY ...)"),
            reason: "ordered aggregates are not supported".into(),
        });
    }
    Ok(())
}

fn column_aggregate(
    function: AggregateFunction,
    name: &str,
    rules: &Rules<'_>,
    spec: &mut QuerySpec,
) -> Result<AggregateSpec, QueryRejection> {
    let clause = match function {
        AggregateFunction::Count => Clause::Count,
        AggregateFunction::Sum => Clause::Sum,
        AggregateFunction::Avg => Clause::Avg,
    };
    let column = rules.check_aggregate(name, clause)?;
    let index = spec.value_column(ValueColumn {
        name: column.name.clone(),
        column_type: column.column_type,
        bounds: column.bounds,
    });
    let primitives = match function {
        AggregateFunction::Count => vec![spec.primitive(Primitive::CountValues(index))],
        AggregateFunction::Sum => vec![spec.primitive(Primitive::Sum(index))],
        AggregateFunction::Avg => vec![
            spec.primitive(Primitive::Sum(index)),
            spec.primitive(Primitive::CountValues(index)),
        ],
    };
    Ok(AggregateSpec {
        function,
        column: Some(name.to_owned()),
        primitives,
    })
}

/// Removes any number of `AS name` wrappers.
pub(crate) fn strip_alias(expr: &Expr) -> &Expr {
    match expr {
        Expr::Alias(alias) => strip_alias(&alias.expr),
        other => other,
    }
}
