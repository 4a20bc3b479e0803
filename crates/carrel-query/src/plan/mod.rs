//! Query checking from the logical plan alone: DataFusion parses and plans the SQL
//! against the table's declared schema, and the plan is accepted only if every released
//! value is an aggregate that the noise layer can bound.
//!
//! # Guarantee
//!
//! An accepted query keeps the rows that pass a row-wise WHERE predicate over permitted
//! columns. It groups them by permitted non-identifier columns and computes COUNT, SUM or
//! AVG of permitted columns per group.
//! Each such aggregate changes by a bounded amount when one person's rows (at most
//! `max_rows_per_unit` of them, values clamped to declared bounds) are added or removed,
//! which is what the noise layer needs. Checking reads no data: the table is registered
//! with the schema from its description, and only planning runs.
//!
//! Before parsing, the SQL text's length and nesting are bounded (see `limits`), because
//! parsing and planning recurse and a deep enough query would overflow the stack.

mod aggregate;
mod filter;
mod limits;
mod rules;
pub(crate) mod spec;
mod walk;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use carrel_model::{DatasetDescription, UsagePolicy};
use datafusion::common::SchemaError;
use datafusion::config::Dialect;
use datafusion::error::DataFusionError;
use datafusion::execution::SessionState;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::Statement;
use datafusion::sql::sqlparser::ast::Statement as SqlStatement;

use crate::{QueryRejection, RegisteredTable};
use rules::Rules;
use spec::{Primitive, QuerySpec};

pub use spec::AggregateFunction;

/// How to write an accepted query, appended to syntax errors.
const QUERY_FORM: &str = "write one statement of the form SELECT [group columns,] COUNT(*) | \
                          COUNT(column) | SUM(column) | AVG(column) FROM table [WHERE ...] \
                          [GROUP BY columns] [ORDER BY outputs]";

/// Checks queries against one registered table and its usage policy.
///
/// Creating a planner reads nothing from the table's file.
pub struct QueryPlanner {
    table: RegisteredTable,
    policy: UsagePolicy,
    privacy: PrivacySettings,
    ctx: SessionContext,
}

impl fmt::Debug for QueryPlanner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueryPlanner")
            .field("table", &self.table.description.name)
            .field("privacy", &self.privacy)
            .finish_non_exhaustive()
    }
}

impl QueryPlanner {
    /// Prepares to check queries on `table` under `policy`.
    ///
    /// # Errors
    ///
    /// [`QueryRejection::InvalidTable`] if the description is inconsistent or declares
    /// no privacy unit; [`QueryRejection::InvalidPolicy`] if `max_rows_per_unit` is 0 or
    /// `query_delta` is not in (0, 1).
    pub fn new(table: RegisteredTable, policy: UsagePolicy) -> Result<Self, QueryRejection> {
        let privacy = PrivacySettings::new(&table.description, &policy)?;
        let ctx = table.session()?;
        Ok(QueryPlanner {
            table,
            policy,
            privacy,
            ctx,
        })
    }

    /// Parses, plans and checks `sql`.
    ///
    /// SQL text longer than 16 KiB, or nested more than 64 levels deep, is rejected
    /// before it is parsed. A rejection quotes at most 120 characters of the query per
    /// field.
    ///
    /// # Errors
    ///
    /// A [`QueryRejection`] naming the offending column or construct and the reason.
    pub async fn check(&self, sql: &str) -> Result<CheckedQuery, QueryRejection> {
        let rules = Rules {
            description: &self.table.description,
            policy: &self.policy,
        };
        let checked = self
            .check_plan(sql, &rules)
            .await
            .map_err(QueryRejection::with_short_quotes);
        let (spec, input) = checked.inspect_err(|rejection| {
            tracing::debug!(
                table = %self.table.description.name,
                %rejection,
                "query rejected"
            );
        })?;
        tracing::debug!(
            table = %self.table.description.name,
            measurements = measurement_count(&spec, &self.privacy),
            "query accepted"
        );
        Ok(CheckedQuery {
            sql: sql.to_owned(),
            spec: Arc::new(spec),
            privacy: self.privacy.clone(),
            parquet: self.table.parquet.clone(),
            input,
            ctx: self.ctx.clone(),
        })
    }

    /// Returns what an accepted query computes and the type-coerced plan below its
    /// Aggregate, which execution runs.
    async fn check_plan(
        &self,
        sql: &str,
        rules: &Rules<'_>,
    ) -> Result<(QuerySpec, LogicalPlan), QueryRejection> {
        // Before anything recurses over the query's syntax tree.
        limits::check_size(sql)?;
        let state = self.ctx.state();
        let plan = plan(&state, sql, rules).await?;
        let spec = walk::analyze(&plan, rules)?;
        // DataFusion's analyzer adds the casts that type coercion needs, such as one that
        // turns each value of a text column into a number for `region > 5`. The same
        // rules run again before execution and leave a coerced plan unchanged.
        let analysed = state
            .analyzer()
            .execute_and_check(plan, state.config_options(), |_, _| {})
            .map_err(|e| planning_rejection(&e, rules))?;
        let input = walk::checked_input(&analysed, rules)?;
        Ok((spec, input))
    }
}

/// Parses and plans `sql`, rejecting anything but a query over the registered table.
async fn plan(
    state: &SessionState,
    sql: &str,
    rules: &Rules<'_>,
) -> Result<LogicalPlan, QueryRejection> {
    let statement = state
        .sql_to_statement(sql, &Dialect::Generic)
        .map_err(|e| planning_rejection(&e, rules))?;
    if !matches!(&statement, Statement::Statement(s) if matches!(**s, SqlStatement::Query(_))) {
        return Err(QueryRejection::ConstructNotPermitted {
            construct: statement_keyword(&statement),
            reason: "only SELECT queries are accepted".into(),
        });
    }
    let references = state
        .resolve_table_references(&statement)
        .map_err(|e| planning_rejection(&e, rules))?;
    let expected = &rules.description.name;
    if let Some(other) = references.iter().find(|r| r.table() != expected) {
        return Err(QueryRejection::UnknownTable {
            table: other.to_string(),
            expected: expected.clone(),
        });
    }
    state
        .statement_to_plan(statement)
        .await
        .map_err(|e| planning_rejection(&e, rules))
}

/// Returns the leading keywords of a statement, for a rejection message.
fn statement_keyword(statement: &Statement) -> String {
    let text = statement.to_string();
    let words: Vec<&str> = text.split_whitespace().take(2).collect();
    words.join(" ")
}

/// Checks `sql` against `table` and `policy`; see [`QueryPlanner::check`].
///
/// # Errors
///
/// As [`QueryPlanner::new`] and [`QueryPlanner::check`].
pub async fn check_query(
    sql: &str,
    table: &RegisteredTable,
    policy: &UsagePolicy,
) -> Result<CheckedQuery, QueryRejection> {
    QueryPlanner::new(table.clone(), policy.clone())?
        .check(sql)
        .await
}

/// A query accepted by the checker, ready to run with [`execute`](crate::execute).
#[derive(Clone)]
pub struct CheckedQuery {
    pub(crate) sql: String,
    pub(crate) spec: Arc<QuerySpec>,
    pub(crate) privacy: PrivacySettings,
    /// The registered table's file.
    pub(crate) parquet: PathBuf,
    /// The accepted plan below the Aggregate: the scan and the WHERE filter.
    pub(crate) input: LogicalPlan,
    pub(crate) ctx: SessionContext,
}

impl fmt::Debug for CheckedQuery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CheckedQuery")
            .field("sql", &self.sql)
            .field("spec", &self.spec)
            .field("privacy", &self.privacy)
            .finish_non_exhaustive()
    }
}

impl CheckedQuery {
    /// Returns the SQL text as submitted.
    pub fn sql(&self) -> &str {
        &self.sql
    }

    /// Names of the released columns, in SELECT order.
    pub fn output_columns(&self) -> Vec<&str> {
        self.spec.outputs.iter().map(|o| o.name.as_str()).collect()
    }

    /// Number of noisy measurements that share the query's epsilon.
    ///
    /// Each distinct COUNT or SUM is one, and AVG needs a sum and a count. Deciding which
    /// groups are large enough is one more, unless `max_rows_per_unit` is 1 and the query
    /// has COUNT(*), because its noisy value then serves as the group size.
    pub fn measurement_count(&self) -> usize {
        measurement_count(&self.spec, &self.privacy)
    }

    /// Returns the privacy loss `(epsilon, delta)` that running this query at `epsilon`
    /// spends.
    ///
    /// The node charges this before running the query and keeps the charge even when
    /// every group is suppressed. Delta is the policy's `query_delta`, spent on group
    /// suppression. Check `epsilon` with [`check_epsilon`](Self::check_epsilon) first.
    pub fn cost(&self, epsilon: f64) -> (f64, f64) {
        (epsilon, self.privacy.delta)
    }

    /// Checks that the query can run at `epsilon`, building its noise measurements
    /// without reading data.
    ///
    /// # Errors
    ///
    /// [`QueryRejection::InvalidEpsilon`] if `epsilon` is not finite and positive, or so
    /// large or small that a noise scale cannot be represented.
    pub fn check_epsilon(&self, epsilon: f64) -> Result<(), QueryRejection> {
        crate::noise::NoisePlan::new(self, epsilon).map(|_| ())
    }
}

fn measurement_count(spec: &QuerySpec, privacy: &PrivacySettings) -> usize {
    spec.primitives.len() + usize::from(separate_threshold(spec, privacy))
}

/// Returns whether group suppression needs its own noisy count of distinct persons.
pub(crate) fn separate_threshold(spec: &QuerySpec, privacy: &PrivacySettings) -> bool {
    !(privacy.max_rows_per_unit == 1 && spec.primitives.contains(&Primitive::CountRows))
}

/// The parts of the description and policy that execution and noise need.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PrivacySettings {
    pub unit_column: String,
    pub max_rows_per_unit: u32,
    pub min_group_size: u64,
    pub delta: f64,
}

impl PrivacySettings {
    fn new(description: &DatasetDescription, policy: &UsagePolicy) -> Result<Self, QueryRejection> {
        description
            .validate()
            .map_err(|e| QueryRejection::InvalidTable {
                reason: e.to_string(),
            })?;
        let unit_column =
            description
                .privacy_unit
                .clone()
                .ok_or_else(|| QueryRejection::InvalidTable {
                    reason: format!(
                        "dataset {:?} declares no privacy unit, so a person's contribution cannot \
                     be bounded; declare the column that names the person",
                        description.name
                    ),
                })?;
        if policy.max_rows_per_unit == 0 {
            return Err(QueryRejection::InvalidPolicy {
                reason: "max_rows_per_unit is 0, so every row would be dropped; set it to 1 or \
                         more"
                    .into(),
            });
        }
        let delta = policy.query_delta;
        if !(delta > 0.0 && delta < 1.0) {
            return Err(QueryRejection::InvalidPolicy {
                reason: format!("query_delta is {delta}; set it between 0 and 1, such as 1e-9"),
            });
        }
        Ok(PrivacySettings {
            unit_column,
            max_rows_per_unit: policy.max_rows_per_unit,
            min_group_size: policy.min_group_size,
            delta,
        })
    }
}

/// Turns a DataFusion parsing or planning error into a rejection.
fn planning_rejection(error: &DataFusionError, rules: &Rules<'_>) -> QueryRejection {
    match error {
        DataFusionError::Diagnostic(_, inner) | DataFusionError::Context(_, inner) => {
            planning_rejection(inner, rules)
        }
        DataFusionError::SQL(parser_error, _) => QueryRejection::InvalidSql {
            message: parser_error.to_string(),
            help: QUERY_FORM.to_owned(),
        },
        DataFusionError::SchemaError(schema_error, _) => match schema_error.as_ref() {
            SchemaError::FieldNotFound { field, .. } => QueryRejection::UnknownColumn {
                column: field.name.clone(),
                table: rules.description.name.clone(),
                available: rules.available_columns(),
            },
            other => QueryRejection::PlanningFailed {
                message: other.to_string(),
            },
        },
        other => {
            let message = other.to_string();
            match unmatched_signature(&message) {
                Some(signature) => QueryRejection::ConstructNotPermitted {
                    construct: signature,
                    reason: "the function does not accept these argument types; SUM and AVG \
                             take numeric columns"
                        .into(),
                },
                None => QueryRejection::PlanningFailed { message },
            }
        }
    }
}

/// Extracts `sum(Utf8)` from DataFusion's message for a call whose argument types match no
/// signature, which otherwise reads like an internal DataFusion error.
fn unmatched_signature(message: &str) -> Option<String> {
    const MARKER: &str = "No function matches the given name and argument types '";
    let start = message.find(MARKER)? + MARKER.len();
    let length = message[start..].find('\'')?;
    Some(message[start..start + length].to_owned())
}
