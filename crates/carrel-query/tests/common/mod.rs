//! Fixtures shared by the integration tests and the crate's unit tests: a dataset
//! description, a usage policy and CSV text. They use only the model types, so the
//! unit tests can include this file too.

#![allow(dead_code)]

use std::fmt::Write;

use carrel_model::{
    Action, Bounds, Classification, ColumnRole, ColumnRules, ColumnSpec, ColumnType, DataLevel,
    DatasetDescription, Price, PrivacyBudget, Rights, UsagePolicy,
};
use time::OffsetDateTime;

pub fn column(name: &str, column_type: ColumnType, role: ColumnRole) -> ColumnSpec {
    ColumnSpec {
        name: name.to_owned(),
        column_type,
        role,
        bounds: None,
    }
}

pub fn bounded(mut spec: ColumnSpec, lower: f64, upper: f64) -> ColumnSpec {
    spec.bounds = Some(Bounds { lower, upper });
    spec
}

/// Table `t` (id, region, age, spend), privacy unit `id`.
pub fn description() -> DatasetDescription {
    DatasetDescription {
        name: "t".into(),
        title: "Test table".into(),
        description: String::new(),
        columns: vec![
            column("id", ColumnType::Integer, ColumnRole::Identifier),
            column("region", ColumnType::Text, ColumnRole::QuasiIdentifier),
            bounded(
                column("age", ColumnType::Integer, ColumnRole::QuasiIdentifier),
                0.0,
                120.0,
            ),
            bounded(
                column("spend", ColumnType::Float, ColumnRole::Sensitive),
                0.0,
                1000.0,
            ),
        ],
        privacy_unit: Some("id".into()),
        classification: Classification {
            level: DataLevel::General,
            personal_information: true,
            sensitive_personal_information: false,
            region: "US-CA".into(),
        },
        rights: Rights {
            holder: "provider".into(),
            processors: vec!["consumer".into()],
            operators: vec![],
        },
    }
}

/// Group by and filter on region, aggregate spend; minimum group 10, k = 1, δ = 1e-9.
pub fn policy() -> UsagePolicy {
    UsagePolicy {
        action: Action::AggregateQuery,
        purposes: vec!["research".into()],
        valid_from: OffsetDateTime::UNIX_EPOCH,
        valid_until: OffsetDateTime::UNIX_EPOCH + time::Duration::days(365 * 100),
        max_queries: 1000,
        budget: PrivacyBudget {
            epsilon: 100.0,
            delta: 1e-6,
        },
        query_epsilon: 1.0,
        query_delta: 1e-9,
        min_group_size: 10,
        max_rows_per_unit: 1,
        columns: ColumnRules {
            group_by: vec!["region".into()],
            aggregate: vec!["spend".into()],
            filter: vec!["region".into()],
        },
        price_per_query: Price {
            amount_minor: 100,
            currency: "USD".into(),
        },
        usage_regions: vec!["US-CA".into()],
        psi: None,
        secure_aggregation: None,
        join: None,
        training: None,
    }
}

/// Returns CSV text with one row per id: 60 in north, 1 in south, 2 in east.
pub fn regions_csv() -> String {
    let mut csv = String::from("id,region,age,spend\n");
    let mut id = 0;
    for (region, count) in [("north", 60), ("south", 1), ("east", 2)] {
        for _ in 0..count {
            id += 1;
            // Writing to a String cannot fail.
            let _ = writeln!(csv, "{id},{region},{},{}.5", 20 + id % 50, id * 3);
        }
    }
    csv
}
