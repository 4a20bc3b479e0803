//! Walks a DataFusion logical plan and accepts only this shape, top to bottom:
//!
//! ```text
//! [Sort | Projection]*     ORDER BY, SELECT list and aliases over the aggregate's outputs
//! Aggregate                exactly one: GROUP BY bare columns, COUNT / SUM / AVG
//! [Filter | SubqueryAlias]* WHERE over permitted columns, FROM t AS x
//! TableScan                the one registered table
//! ```
//!
//! [`analyze`] checks the plan as written, down to the Aggregate, which this crate
//! computes itself. [`checked_input`] checks the part below the Aggregate, which DataFusion
//! runs, in the plan after type coercion, so that the check covers every cast that will
//! run.

use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::logical_expr::{Aggregate, Expr, LogicalPlan, Projection, Sort};

use super::aggregate::{check_aggregate, check_group, strip_alias};
use super::filter::check_predicate;
use super::rules::Rules;
use super::spec::{OutputColumn, QuerySpec, SortKey, Source};
use crate::QueryRejection;
use crate::error::excerpt;

/// A node above the Aggregate.
enum Above<'a> {
    Projection(&'a Projection),
    Sort(&'a Sort),
}

/// Checks `plan` down to its Aggregate against the rules and returns what it computes.
pub(crate) fn analyze(plan: &LogicalPlan, rules: &Rules<'_>) -> Result<QuerySpec, QueryRejection> {
    if !is_query(plan) {
        return Err(unsupported(plan));
    }
    if let Some(rejection) = forbidden_node(plan) {
        return Err(rejection);
    }
    match count_aggregates(plan) {
        0 => return Err(row_level(plan)),
        1 => {}
        _ => {
            return Err(QueryRejection::ConstructNotPermitted {
                construct: "more than one aggregation".into(),
                reason: "subqueries are not supported; write a single SELECT with one GROUP BY"
                    .into(),
            });
        }
    }

    let (aggregate, above) = find_aggregate(plan)?;

    let mut spec = QuerySpec {
        group_columns: Vec::new(),
        value_columns: Vec::new(),
        primitives: Vec::new(),
        aggregates: Vec::new(),
        outputs: Vec::new(),
        sort: Vec::new(),
    };
    for expr in &aggregate.group_expr {
        check_group(expr, rules, &mut spec)?;
    }
    for expr in &aggregate.aggr_expr {
        check_aggregate(expr, rules, &mut spec)?;
    }
    if spec.aggregates.is_empty() {
        return Err(row_level(plan));
    }

    let mut sources: Vec<Source> = (0..spec.group_columns.len())
        .map(Source::Group)
        .chain((0..spec.aggregates.len()).map(Source::Aggregate))
        .collect();
    let mut sorts = Vec::new();
    for node in above.iter().rev() {
        match node {
            Above::Projection(projection) => {
                sources = projection
                    .expr
                    .iter()
                    .map(|expr| resolve(expr, &projection.input, &sources))
                    .collect::<Result<_, _>>()?;
            }
            Above::Sort(sort) => {
                let keys = sort
                    .expr
                    .iter()
                    .map(|key| {
                        Ok(SortKey {
                            source: resolve(&key.expr, &sort.input, &sources)?,
                            ascending: key.asc,
                            nulls_first: key.nulls_first,
                        })
                    })
                    .collect::<Result<Vec<_>, QueryRejection>>()?;
                sorts.push(keys);
            }
        }
    }
    // The outermost ORDER BY decides; inner ones only break its ties.
    spec.sort = sorts.into_iter().rev().flatten().collect();
    spec.outputs = plan
        .schema()
        .fields()
        .iter()
        .zip(sources)
        .map(|(field, source)| OutputColumn {
            name: field.name().clone(),
            source,
        })
        .collect();

    Ok(spec)
}

/// Checks the part of `analysed` below its Aggregate, the scan and WHERE filter that
/// DataFusion runs, and returns it.
///
/// `analysed` is a plan accepted by [`analyze`] after DataFusion's analyzer rules, which
/// add the casts that type coercion needs but keep the plan's shape.
pub(crate) fn checked_input(
    analysed: &LogicalPlan,
    rules: &Rules<'_>,
) -> Result<LogicalPlan, QueryRejection> {
    let (aggregate, _) = find_aggregate(analysed)?;
    check_input(&aggregate.input, rules)?;
    Ok(aggregate.input.as_ref().clone())
}

/// Descends from the top of `plan` through projections and sorts to the Aggregate, and
/// returns it with the nodes above it, outermost first.
fn find_aggregate(plan: &LogicalPlan) -> Result<(&Aggregate, Vec<Above<'_>>), QueryRejection> {
    let mut above = Vec::new();
    let mut node = plan;
    loop {
        match node {
            LogicalPlan::Aggregate(aggregate) => return Ok((aggregate, above)),
            LogicalPlan::Projection(projection) => {
                above.push(Above::Projection(projection));
                node = &projection.input;
            }
            LogicalPlan::Sort(sort) if sort.fetch.is_none() => {
                above.push(Above::Sort(sort));
                node = &sort.input;
            }
            other => return Err(above_aggregate(other)),
        }
    }
}

/// Returns whether `plan` is a query rather than DDL, DML, EXPLAIN or a session statement.
fn is_query(plan: &LogicalPlan) -> bool {
    !matches!(
        plan,
        LogicalPlan::Ddl(_)
            | LogicalPlan::Dml(_)
            | LogicalPlan::Statement(_)
            | LogicalPlan::Explain(_)
            | LogicalPlan::Analyze(_)
            | LogicalPlan::Copy(_)
            | LogicalPlan::DescribeTable(_)
            | LogicalPlan::Extension(_)
    )
}

fn count_aggregates(plan: &LogicalPlan) -> usize {
    let mut count = 0;
    // Subqueries inside expressions are visited too, so a nested aggregate is counted.
    let _ = plan.apply_with_subqueries(|node| {
        if matches!(node, LogicalPlan::Aggregate(_)) {
            count += 1;
        }
        Ok(TreeNodeRecursion::Continue)
    });
    count
}

/// Rejects constructs that are refused wherever they appear, so that a query using them
/// without an aggregate gets their reason rather than a generic row-level one.
fn forbidden_node(plan: &LogicalPlan) -> Option<QueryRejection> {
    let mut found = None;
    let _ = plan.apply_with_subqueries(|node| {
        if matches!(
            node,
            LogicalPlan::Window(_)
                | LogicalPlan::Join(_)
                | LogicalPlan::Union(_)
                | LogicalPlan::RecursiveQuery(_)
                | LogicalPlan::Unnest(_)
        ) {
            found = Some(below_aggregate(node));
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    });
    found
}

/// Resolves a column of `input`'s output to the aggregate output it carries.
fn resolve(expr: &Expr, input: &LogicalPlan, sources: &[Source]) -> Result<Source, QueryRejection> {
    let computed = || QueryRejection::ConstructNotPermitted {
        construct: expr.to_string(),
        reason: "the SELECT list and ORDER BY may only name group columns and aggregates; \
                 compute expressions from the released values instead"
            .into(),
    };
    let Expr::Column(column) = strip_alias(expr) else {
        return Err(computed());
    };
    let index = input
        .schema()
        .index_of_column(column)
        .map_err(|_| computed())?;
    sources.get(index).copied().ok_or_else(computed)
}

/// Checks the part of the plan below the Aggregate.
fn check_input(plan: &LogicalPlan, rules: &Rules<'_>) -> Result<(), QueryRejection> {
    match plan {
        LogicalPlan::Filter(filter) => {
            check_predicate(&filter.predicate, filter.input.schema(), rules)?;
            check_input(&filter.input, rules)
        }
        LogicalPlan::SubqueryAlias(alias) => check_input(&alias.input, rules),
        LogicalPlan::TableScan(scan) => {
            let expected = &rules.description.name;
            if scan.table_name.table() != expected {
                return Err(QueryRejection::UnknownTable {
                    table: scan.table_name.to_string(),
                    expected: expected.clone(),
                });
            }
            if !scan.filters.is_empty() || scan.fetch.is_some() {
                return Err(QueryRejection::PlanningFailed {
                    message: "the table scan carries pushed-down filters or a limit".into(),
                });
            }
            Ok(())
        }
        other => Err(below_aggregate(other)),
    }
}

fn row_level(plan: &LogicalPlan) -> QueryRejection {
    let names: Vec<String> = plan
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let columns = names.join(", ");
    let reason = if matches!(plan, LogicalPlan::Distinct(_)) {
        let quoted = excerpt(&columns);
        format!(
            "SELECT DISTINCT without an aggregate would release row values; write SELECT \
             {quoted}, COUNT(*) ... GROUP BY {quoted}, which releases only groups large \
             enough to hide a person"
        )
    } else {
        "only aggregates leave the node; add COUNT(*), SUM or AVG and GROUP BY permitted \
         columns"
            .to_owned()
    };
    QueryRejection::RowLevel { columns, reason }
}

fn above_aggregate(plan: &LogicalPlan) -> QueryRejection {
    let (construct, reason) = match plan {
        LogicalPlan::Filter(filter) => (
            format!("HAVING {}", filter.predicate),
            "HAVING compares exact aggregates, and which groups pass would reveal them; the \
             node already suppresses small groups, so filter the released rows instead",
        ),
        LogicalPlan::Limit(_) | LogicalPlan::Sort(_) => (
            "LIMIT".to_owned(),
            "LIMIT picks groups by their exact values; sort and cut the released rows instead",
        ),
        LogicalPlan::Distinct(_) => (
            "SELECT DISTINCT over aggregates".to_owned(),
            "group rows with GROUP BY instead",
        ),
        LogicalPlan::Window(_) => (
            "window functions".to_owned(),
            "they compute per-row values; use GROUP BY with COUNT, SUM or AVG",
        ),
        other => return unsupported(other),
    };
    QueryRejection::ConstructNotPermitted {
        construct,
        reason: reason.to_owned(),
    }
}

fn below_aggregate(plan: &LogicalPlan) -> QueryRejection {
    let (construct, reason) = match plan {
        LogicalPlan::Join(_) => ("JOIN", "queries read one table; joins are not supported"),
        LogicalPlan::Window(_) => (
            "window functions",
            "they compute per-row values; use GROUP BY with COUNT, SUM or AVG",
        ),
        LogicalPlan::Projection(_) | LogicalPlan::Subquery(_) => (
            "subqueries",
            "aggregate the table directly: SELECT ... FROM table WHERE ... GROUP BY ...",
        ),
        LogicalPlan::Limit(_) | LogicalPlan::Sort(_) => (
            "LIMIT or ORDER BY before aggregating",
            "they make the rows aggregated depend on other persons' rows",
        ),
        LogicalPlan::Distinct(_) => ("DISTINCT rows", "aggregate the table's rows directly"),
        LogicalPlan::Union(_) => ("UNION", "queries read one table once"),
        LogicalPlan::RecursiveQuery(_) => ("recursive queries", "aggregate the table directly"),
        LogicalPlan::Unnest(_) => ("UNNEST", "aggregate the table's rows directly"),
        LogicalPlan::EmptyRelation(_) | LogicalPlan::Values(_) => {
            ("a query without FROM", "aggregate the registered table")
        }
        other => return unsupported(other),
    };
    QueryRejection::ConstructNotPermitted {
        construct: construct.to_owned(),
        reason: reason.to_owned(),
    }
}

fn unsupported(plan: &LogicalPlan) -> QueryRejection {
    QueryRejection::ConstructNotPermitted {
        construct: plan.display().to_string(),
        reason: "only a single aggregate SELECT over the registered table is accepted".into(),
    }
}
