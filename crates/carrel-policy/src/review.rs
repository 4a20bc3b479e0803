//! Automatic review of a listing: completeness and lawfulness.
//!
//! Region rule: a usage region is inside the data's region when it equals it or
//! extends it with a `-` suffix (`US-CA` is inside `US`). Important data may be used
//! only inside its region, because taking it abroad needs a security assessment that
//! the exchange cannot grant; core data is never listed.

use carrel_model::{Action, ColumnRole, ColumnType, DataLevel, Product, TrainingKind};
use time::OffsetDateTime;

/// One reason a listing is rejected, with what to change.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ReviewReason {
    /// Stable code, such as `missing_privacy_unit`.
    pub code: &'static str,
    /// Description of the problem and its fix.
    pub message: String,
}

fn reason(code: &'static str, message: String) -> ReviewReason {
    ReviewReason { code, message }
}

/// Reviews a product listing and returns every reason to reject it.
///
/// # Errors
///
/// Returns all reasons found, in a stable order, when the listing is incomplete or
/// unlawful.
pub fn review_listing(product: &Product, now: OffsetDateTime) -> Result<(), Vec<ReviewReason>> {
    let mut reasons = Vec::new();
    completeness(product, now, &mut reasons);
    budget(product, &mut reasons);
    columns(product, &mut reasons);
    joint_terms(product, &mut reasons);
    lawfulness(product, &mut reasons);
    if reasons.is_empty() {
        Ok(())
    } else {
        Err(reasons)
    }
}

fn completeness(product: &Product, now: OffsetDateTime, reasons: &mut Vec<ReviewReason>) {
    let policy = &product.policy;
    if product.title.trim().is_empty() {
        reasons.push(reason(
            "missing_title",
            "the product has no title: give one".into(),
        ));
    }
    if let Err(error) = product.dataset.validate() {
        reasons.push(reason("invalid_dataset", error.to_string()));
    }
    if policy.purposes.iter().all(|p| p.trim().is_empty()) {
        reasons.push(reason(
            "missing_purposes",
            "the offer allows no purpose: list the purposes a consumer may declare".into(),
        ));
    }
    if policy.valid_until <= policy.valid_from {
        reasons.push(reason(
            "empty_validity",
            format!(
                "validity window {} to {} is empty: valid_until must be after valid_from",
                policy.valid_from, policy.valid_until
            ),
        ));
    } else if policy.valid_until <= now {
        reasons.push(reason(
            "validity_ended",
            format!(
                "the offer expired at {}: set a later valid_until",
                policy.valid_until
            ),
        ));
    }
    if policy.max_queries == 0 {
        reasons.push(reason(
            "zero_queries",
            "max_queries is 0: allow at least one".into(),
        ));
    }
    if policy.max_rows_per_unit == 0 {
        reasons.push(reason(
            "zero_rows_per_unit",
            "max_rows_per_unit is 0: allow at least one row per person".into(),
        ));
    }
    if policy.min_group_size < 2 {
        reasons.push(reason(
            "min_group_too_small",
            format!(
                "min_group_size {} would release single persons: set it to 2 or more",
                policy.min_group_size
            ),
        ));
    }
    let currency = &policy.price_per_query.currency;
    if currency.len() != 3 || !currency.chars().all(|c| c.is_ascii_uppercase()) {
        reasons.push(reason(
            "invalid_currency",
            format!("currency {currency:?} is not an ISO 4217 code such as \"USD\""),
        ));
    }
    if policy.usage_regions.is_empty() {
        reasons.push(reason(
            "missing_usage_regions",
            "the offer names no usage region: list where results may be used".into(),
        ));
    }
}

fn budget(product: &Product, reasons: &mut Vec<ReviewReason>) {
    let policy = &product.policy;
    let budget = policy.budget;
    let positive = |v: f64| v.is_finite() && v > 0.0;
    if !positive(budget.epsilon) {
        reasons.push(reason(
            "invalid_budget",
            format!(
                "budget epsilon {} must be a finite number above 0",
                budget.epsilon
            ),
        ));
    }
    if !(budget.delta.is_finite() && (0.0..1.0).contains(&budget.delta)) {
        reasons.push(reason(
            "invalid_budget",
            format!(
                "budget delta {} must be at least 0 and below 1",
                budget.delta
            ),
        ));
    }
    if !positive(policy.query_epsilon) || policy.query_epsilon > budget.epsilon {
        reasons.push(reason(
            "invalid_query_epsilon",
            format!(
                "query_epsilon {} must be above 0 and at most the budget's epsilon {}",
                policy.query_epsilon, budget.epsilon
            ),
        ));
    }
    if !positive(policy.query_delta) || policy.query_delta > budget.delta {
        reasons.push(reason(
            "invalid_query_delta",
            format!(
                "query_delta {} must be above 0 (it pays for suppressing small groups) and \
                 at most the budget's delta {}",
                policy.query_delta, budget.delta
            ),
        ));
    }
}

fn joint_terms(product: &Product, reasons: &mut Vec<ReviewReason>) {
    if product.policy.action == Action::FederatedTraining {
        training_terms(product, reasons);
        return;
    }
    if product.policy.action == Action::PrivateJoin {
        join_terms(product, reasons);
        return;
    }
    if product.policy.action == Action::SecureAggregation {
        match &product.policy.secure_aggregation {
            None => reasons.push(reason(
                "missing_secure_aggregation_terms",
                "the offer permits secure aggregation but has no secure_aggregation terms: \
                 give max_rows"
                    .into(),
            )),
            Some(terms) if terms.max_rows == 0 => reasons.push(reason(
                "zero_rows",
                "secure_aggregation.max_rows is 0: allow at least one row".into(),
            )),
            Some(_) => {}
        }
        return;
    }
    if product.policy.action != Action::PrivateSetIntersection {
        return;
    }
    let Some(terms) = &product.policy.psi else {
        reasons.push(reason(
            "missing_psi_terms",
            "the offer permits private set intersection but has no psi terms: give \
             consumer_learns, id_column and max_set_size"
                .into(),
        ));
        return;
    };
    match product.dataset.column(&terms.id_column) {
        None => reasons.push(reason(
            "unknown_column",
            format!(
                "psi.id_column is {:?}, which the dataset does not declare",
                terms.id_column
            ),
        )),
        Some(column) if column.role != ColumnRole::Identifier => reasons.push(reason(
            "not_an_identifier",
            format!(
                "psi.id_column {:?} has role {:?}: intersect on a column declared as an identifier",
                terms.id_column, column.role
            ),
        )),
        Some(_) => {}
    }
    if terms.max_set_size == 0 {
        reasons.push(reason(
            "zero_set_size",
            "psi.max_set_size is 0: allow at least one identifier per run".into(),
        ));
    }
}

/// Largest number of rounds or epochs an offer may allow per training.
pub const MAX_TRAINING_ROUNDS: u32 = 10_000;

fn training_terms(product: &Product, reasons: &mut Vec<ReviewReason>) {
    let Some(terms) = &product.policy.training else {
        reasons.push(reason(
            "missing_training_terms",
            "the offer permits federated training but has no training terms: give kind, \
             feature_columns, max_rounds, model_operator and max_prediction_rows"
                .into(),
        ));
        return;
    };
    let dataset = &product.dataset;
    if terms.feature_columns.is_empty() {
        reasons.push(reason(
            "no_features",
            "training.feature_columns is empty: name at least one numeric column".into(),
        ));
    }
    for name in &terms.feature_columns {
        match dataset.column(name) {
            Some(column) if column.column_type != ColumnType::Text && column.bounds.is_some() => {}
            Some(column) if column.column_type == ColumnType::Text => reasons.push(reason(
                "not_numeric",
                format!("training feature {name:?} is a text column: name numeric columns only"),
            )),
            Some(_) => reasons.push(reason(
                "missing_bounds",
                format!(
                    "training feature {name:?} has no declared bounds: declare them, so that \
                     values beyond them are clipped before training"
                ),
            )),
            None => reasons.push(reason(
                "unknown_column",
                format!("training feature {name:?} is not a column of the dataset"),
            )),
        }
    }
    match terms.kind {
        TrainingKind::Horizontal => match &terms.label_column {
            Some(label)
                if dataset
                    .column(label)
                    .is_some_and(|c| c.column_type != ColumnType::Text) => {}
            Some(label) => reasons.push(reason(
                "unknown_column",
                format!("training.label_column {label:?} is not a numeric column of the dataset"),
            )),
            None => reasons.push(reason(
                "missing_label",
                "a horizontal training needs training.label_column, the 0/1 label of each row"
                    .into(),
            )),
        },
        TrainingKind::Vertical => match &terms.id_column {
            Some(id)
                if dataset
                    .column(id)
                    .is_some_and(|c| c.role == ColumnRole::Identifier) => {}
            Some(id) => reasons.push(reason(
                "not_an_identifier",
                format!("training.id_column {id:?} is not an identifier column of the dataset"),
            )),
            None => reasons.push(reason(
                "missing_id_column",
                "a vertical training needs training.id_column to align rows on".into(),
            )),
        },
    }
    if terms.max_rounds == 0 || terms.max_rounds > MAX_TRAINING_ROUNDS {
        reasons.push(reason(
            "invalid_rounds",
            format!(
                "training.max_rounds is {}: allow from 1 to {MAX_TRAINING_ROUNDS}",
                terms.max_rounds
            ),
        ));
    }
    let operator = terms.model_operator.as_str();
    if operator != MODEL_OPERATOR_CONSUMER
        && !dataset.rights.operators.iter().any(|o| o == operator)
    {
        reasons.push(reason(
            "unknown_operator",
            format!(
                "training.model_operator is {operator:?}, which the dataset's rights do not list \
                 as an operator: name one of {:?} or \"{MODEL_OPERATOR_CONSUMER}\"",
                dataset.rights.operators
            ),
        ));
    }
    if terms.max_prediction_rows == 0 {
        reasons.push(reason(
            "zero_rows",
            "training.max_prediction_rows is 0: allow at least one row per prediction".into(),
        ));
    }
    if let Some(privacy) = terms.privacy {
        let positive = |v: f64| v.is_finite() && v > 0.0;
        if !(positive(privacy.min_noise_multiplier) && positive(privacy.max_clip_norm)) {
            reasons.push(reason(
                "invalid_privacy",
                format!(
                    "training.privacy needs min_noise_multiplier and max_clip_norm above 0, \
                     given {} and {}",
                    privacy.min_noise_multiplier, privacy.max_clip_norm
                ),
            ));
        }
        if terms.kind == TrainingKind::Vertical {
            reasons.push(reason(
                "invalid_privacy",
                "training.privacy applies to horizontal training only: the vertical protocol \
                 reveals no per-round update to add noise to"
                    .into(),
            ));
        }
    }
}

/// The value of `training.model_operator` that names the agreement's consumer.
pub const MODEL_OPERATOR_CONSUMER: &str = "consumer";

fn join_terms(product: &Product, reasons: &mut Vec<ReviewReason>) {
    let Some(terms) = &product.policy.join else {
        reasons.push(reason(
            "missing_join_terms",
            "the offer permits private join-and-compute but has no join terms: give id_column, \
             value_column, value_lower, value_upper and max_set_size"
                .into(),
        ));
        return;
    };
    let dataset = &product.dataset;
    match dataset.column(&terms.id_column) {
        Some(column) if column.role == ColumnRole::Identifier => {}
        _ => reasons.push(reason(
            "not_an_identifier",
            format!(
                "join.id_column {:?} is not an identifier column of the dataset",
                terms.id_column
            ),
        )),
    }
    match dataset.column(&terms.value_column) {
        Some(column) if column.column_type != ColumnType::Text => {}
        _ => reasons.push(reason(
            "unknown_column",
            format!(
                "join.value_column {:?} is not a numeric column of the dataset",
                terms.value_column
            ),
        )),
    }
    let bounded = terms.value_lower.is_finite()
        && terms.value_upper.is_finite()
        && terms.value_lower <= terms.value_upper;
    if !bounded {
        reasons.push(reason(
            "invalid_bounds",
            format!(
                "join value bounds {} to {} are invalid: give finite bounds, lower first",
                terms.value_lower, terms.value_upper
            ),
        ));
    }
    if terms.max_set_size == 0 {
        reasons.push(reason(
            "zero_set_size",
            "join.max_set_size is 0: allow at least one identifier per run".into(),
        ));
    }
}

fn columns(product: &Product, reasons: &mut Vec<ReviewReason>) {
    let dataset = &product.dataset;
    let rules = &product.policy.columns;
    let uses = [
        ("group_by", &rules.group_by),
        ("filter", &rules.filter),
        ("aggregate", &rules.aggregate),
    ];
    for (place, names) in uses {
        for name in names {
            let Some(column) = dataset.column(name) else {
                reasons.push(reason(
                    "unknown_column",
                    format!("{place} lists column {name:?}, which the dataset does not declare"),
                ));
                continue;
            };
            if column.role == ColumnRole::Identifier && place != "aggregate" {
                reasons.push(reason(
                    "identifier_exposed",
                    format!(
                        "identifier column {name:?} may not appear in {place}: it names persons"
                    ),
                ));
            }
            let numeric = column.column_type != ColumnType::Text;
            if place == "aggregate" && numeric && column.bounds.is_none() {
                reasons.push(reason(
                    "missing_bounds",
                    format!("aggregated column {name:?} has no bounds: declare lower and upper"),
                ));
            }
        }
    }
}

fn lawfulness(product: &Product, reasons: &mut Vec<ReviewReason>) {
    let dataset = &product.dataset;
    let class = &dataset.classification;
    let personal = class.personal_information || class.sensitive_personal_information;
    if personal && dataset.privacy_unit.is_none() {
        reasons.push(reason(
            "missing_privacy_unit",
            "the dataset holds personal information but names no privacy_unit column: \
             name the column that identifies the person of each row"
                .into(),
        ));
    }
    if class.level == DataLevel::Core {
        reasons.push(reason(
            "core_data",
            "core data may not be offered on the exchange".into(),
        ));
    }
    if class.level == DataLevel::Important {
        for region in &product.policy.usage_regions {
            if !inside_region(region, &class.region) {
                reasons.push(reason(
                    "important_data_abroad",
                    format!(
                        "important data held in {:?} is offered for use in {region:?}: \
                         export needs a security assessment, so restrict usage_regions to {:?}",
                        class.region, class.region
                    ),
                ));
            }
        }
    }
    if dataset.rights.holder != product.provider {
        reasons.push(reason(
            "holder_mismatch",
            format!(
                "the provider {:?} is not the dataset's holder {:?}: only the holder may offer it",
                product.provider, dataset.rights.holder
            ),
        ));
    }
}

/// Returns whether `usage` lies inside `home` (`US-CA` inside `US`, `US` inside `US`).
pub(crate) fn inside_region(usage: &str, home: &str) -> bool {
    usage == home
        || usage
            .strip_prefix(home)
            .is_some_and(|rest| rest.starts_with('-'))
}
