//! Column permissions: where the usage policy and each column's role let it appear.

use carrel_model::{ColumnRole, ColumnSpec, ColumnType, DatasetDescription, UsagePolicy};

use crate::{Clause, QueryRejection};

/// The description and policy that a query is checked against.
pub(crate) struct Rules<'a> {
    pub description: &'a DatasetDescription,
    pub policy: &'a UsagePolicy,
}

impl Rules<'_> {
    /// Returns the declared column `name`.
    pub(crate) fn column(&self, name: &str) -> Result<&ColumnSpec, QueryRejection> {
        self.description
            .column(name)
            .ok_or_else(|| QueryRejection::UnknownColumn {
                column: name.to_owned(),
                table: self.description.name.clone(),
                available: self.available_columns(),
            })
    }

    pub(crate) fn available_columns(&self) -> String {
        let names: Vec<&str> = self
            .description
            .columns
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        names.join(", ")
    }

    /// Checks that `name` may appear in WHERE.
    pub(crate) fn check_filter(&self, name: &str) -> Result<(), QueryRejection> {
        self.column(name)?;
        if self.policy.columns.filter.iter().any(|c| c == name) {
            return Ok(());
        }
        Err(not_listed(
            name,
            Clause::Where,
            &self.policy.columns.filter,
            "filter",
        ))
    }

    /// Checks that `name` may appear in GROUP BY.
    pub(crate) fn check_group_by(&self, name: &str) -> Result<(), QueryRejection> {
        let column = self.column(name)?;
        if column.role == ColumnRole::Identifier {
            return Err(QueryRejection::ColumnNotPermitted {
                column: name.to_owned(),
                clause: Clause::GroupBy,
                reason: "it is an identifier, and grouping by it would give one group per \
                         person; group by a coarser column"
                    .into(),
            });
        }
        if self.policy.columns.group_by.iter().any(|c| c == name) {
            return Ok(());
        }
        Err(not_listed(
            name,
            Clause::GroupBy,
            &self.policy.columns.group_by,
            "group_by",
        ))
    }

    /// Checks that `name` may be aggregated by `clause` and returns its declaration.
    ///
    /// Identifiers may only be counted; SUM and AVG need a numeric column with bounds.
    pub(crate) fn check_aggregate(
        &self,
        name: &str,
        clause: Clause,
    ) -> Result<&ColumnSpec, QueryRejection> {
        let column = self.column(name)?;
        let reject = |reason: String| QueryRejection::ColumnNotPermitted {
            column: name.to_owned(),
            clause,
            reason,
        };
        if !self.policy.columns.aggregate.iter().any(|c| c == name) {
            return Err(not_listed(
                name,
                clause,
                &self.policy.columns.aggregate,
                "aggregate",
            ));
        }
        if clause == Clause::Count {
            return Ok(column);
        }
        if column.role == ColumnRole::Identifier {
            return Err(reject(
                "it is an identifier, which may only be counted; use COUNT".into(),
            ));
        }
        if column.column_type == ColumnType::Text {
            return Err(reject(format!(
                "it is text; {clause} needs a numeric column"
            )));
        }
        if column.bounds.is_none() {
            return Err(reject(format!(
                "it has no declared bounds, so one person's effect on {clause} is unbounded; \
                 the provider must declare bounds for it"
            )));
        }
        Ok(column)
    }
}

fn not_listed(name: &str, clause: Clause, permitted: &[String], list: &str) -> QueryRejection {
    let reason = if permitted.is_empty() {
        format!("the usage policy lists no {list} columns, so {clause} cannot be used")
    } else {
        format!(
            "the usage policy permits only [{}] in {clause}; use one of those",
            permitted.join(", ")
        )
    };
    QueryRejection::ColumnNotPermitted {
        column: name.to_owned(),
        clause,
        reason,
    }
}
