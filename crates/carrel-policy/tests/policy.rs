//! Listing review and agreement use checks on small products.

use carrel_model::{
    Action, Agreement, Classification, ColumnRole, ColumnRules, ColumnSpec, ColumnType, DataLevel,
    DatasetDescription, Price, PrivacyBudget, Product, Rights, UsagePolicy,
};
use carrel_policy::{UseError, check_purpose, check_use, review_listing};
use time::{Duration, OffsetDateTime, macros::datetime};

const NOW: OffsetDateTime = datetime!(2026-06-01 12:00 UTC);

fn product() -> Product {
    let dataset = DatasetDescription {
        name: "people".into(),
        title: "People".into(),
        description: String::new(),
        columns: vec![
            ColumnSpec::new("id", ColumnType::Integer, ColumnRole::Identifier, None),
            ColumnSpec::new(
                "region",
                ColumnType::Text,
                ColumnRole::QuasiIdentifier,
                None,
            ),
            ColumnSpec::new(
                "spend",
                ColumnType::Float,
                ColumnRole::Sensitive,
                Some((0.0, 1000.0)),
            ),
        ],
        privacy_unit: Some("id".into()),
        classification: Classification {
            level: DataLevel::General,
            personal_information: true,
            sensitive_personal_information: false,
            region: "US".into(),
        },
        rights: Rights {
            holder: "stats-office".into(),
            processors: vec!["stats-office".into()],
            operators: vec!["stats-office".into()],
        },
    };
    let policy = UsagePolicy {
        action: Action::AggregateQuery,
        purposes: vec!["research".into()],
        valid_from: NOW - Duration::days(1),
        valid_until: NOW + Duration::days(30),
        max_queries: 3,
        budget: PrivacyBudget {
            epsilon: 1.0,
            delta: 1e-6,
        },
        query_epsilon: 0.2,
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
    };
    Product {
        id: "p1".into(),
        offer_id: "o1".into(),
        provider: "stats-office".into(),
        dataset_id: "d1".into(),
        dataset_sha256: "00".into(),
        title: "People by region".into(),
        dataset,
        policy,
    }
}

fn codes(product: &Product) -> Vec<&'static str> {
    match review_listing(product, NOW) {
        Ok(()) => Vec::new(),
        Err(reasons) => reasons.into_iter().map(|r| r.code).collect(),
    }
}

#[test]
fn complete_listing_passes_review() {
    assert_eq!(codes(&product()), Vec::<&str>::new());
}

#[test]
fn personal_data_without_privacy_unit_is_rejected() {
    let mut p = product();
    p.dataset.privacy_unit = None;
    assert_eq!(codes(&p), ["missing_privacy_unit"]);
}

#[test]
fn important_data_abroad_is_rejected() {
    let mut p = product();
    p.dataset.classification.level = DataLevel::Important;
    p.policy.usage_regions = vec!["US-CA".into(), "CN".into()];
    assert_eq!(codes(&p), ["important_data_abroad"]);
}

#[test]
fn review_lists_every_reason() {
    let mut p = product();
    p.title = " ".into();
    p.policy.purposes.clear();
    p.policy.budget.epsilon = f64::NAN;
    p.policy.columns.group_by.push("id".into());
    p.policy.columns.filter.push("nowhere".into());
    p.dataset.privacy_unit = None;
    let found = codes(&p);
    for code in [
        "missing_title",
        "missing_purposes",
        "invalid_budget",
        "identifier_exposed",
        "unknown_column",
        "missing_privacy_unit",
    ] {
        assert!(found.contains(&code), "{code} missing from {found:?}");
    }
}

#[test]
fn core_data_is_never_listed() {
    let mut p = product();
    p.dataset.classification.level = DataLevel::Core;
    assert_eq!(codes(&p), ["core_data"]);
}

fn agreement() -> Agreement {
    let p = product();
    Agreement {
        id: "a1".into(),
        timestamp: NOW,
        assigner: p.provider.clone(),
        assignee: "institute".into(),
        target: p.id.clone(),
        offer_id: p.offer_id.clone(),
        purpose: "research".into(),
        policy: p.policy,
    }
}

#[test]
fn use_follows_validity_boundaries() {
    let a = agreement();
    let from = a.policy.valid_from;
    let until = a.policy.valid_until;
    let at = |t| check_use(&a, "institute", false, 0, t);
    assert!(at(from).is_ok());
    assert!(matches!(
        at(from - Duration::seconds(1)),
        Err(UseError::NotYetValid { .. })
    ));
    assert!(at(until - Duration::seconds(1)).is_ok());
    assert!(matches!(at(until), Err(UseError::Expired { .. })));
    assert!(matches!(
        at(until + Duration::seconds(1)),
        Err(UseError::Expired { .. })
    ));
}

#[test]
fn use_rejects_revoked_other_consumer_and_exhausted() {
    let a = agreement();
    assert!(matches!(
        check_use(&a, "institute", true, 0, NOW),
        Err(UseError::Revoked { .. })
    ));
    assert!(matches!(
        check_use(&a, "intruder", false, 0, NOW),
        Err(UseError::NotAssignee { .. })
    ));
    assert!(matches!(
        check_use(&a, "institute", false, 3, NOW),
        Err(UseError::QueryLimitReached { .. })
    ));
    assert!(check_use(&a, "institute", false, 2, NOW).is_ok());
}

#[test]
fn purpose_must_match_exactly() {
    let p = product();
    assert!(check_purpose(&p.policy, "research").is_ok());
    assert!(matches!(
        check_purpose(&p.policy, "marketing"),
        Err(UseError::PurposeNotAllowed { .. })
    ));
}
