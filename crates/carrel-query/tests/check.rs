//! Query checking from the plan alone.

mod common;

use carrel_model::UsagePolicy;
use carrel_query::{Clause, QueryPlanner, QueryRejection, RegisteredTable, check_query};

use common::{description, policy};

/// A table whose file does not exist: checking must not read it.
fn table() -> RegisteredTable {
    RegisteredTable::new(description(), "/nonexistent/carrel/t.parquet")
}

/// Policy that also permits age in GROUP BY and WHERE, id and age in aggregates.
fn wide_policy() -> UsagePolicy {
    let mut policy = policy();
    policy.columns.group_by.push("age".into());
    policy.columns.filter.push("age".into());
    policy
        .columns
        .aggregate
        .extend(["id".into(), "age".into(), "region".into()]);
    policy
}

async fn reject(sql: &str, policy: &UsagePolicy) -> QueryRejection {
    match check_query(sql, &table(), policy).await {
        Ok(checked) => panic!("{sql} was accepted: {checked:?}"),
        Err(rejection) => rejection,
    }
}

fn assert_construct(rejection: &QueryRejection, expected: &str) {
    match rejection {
        QueryRejection::ConstructNotPermitted { construct, reason } => {
            assert!(
                construct.contains(expected),
                "construct {construct:?} lacks {expected:?}"
            );
            assert!(!reason.is_empty());
        }
        other => panic!("expected {expected} to be rejected as a construct, got {other:?}"),
    }
}

fn assert_column(rejection: &QueryRejection, expected: &str, expected_clause: Clause) {
    match rejection {
        QueryRejection::ColumnNotPermitted {
            column,
            clause,
            reason,
        } => {
            assert_eq!(column, expected);
            assert_eq!(*clause, expected_clause);
            assert!(!reason.is_empty());
        }
        other => panic!("expected column {expected} to be rejected, got {other:?}"),
    }
}

#[tokio::test]
async fn select_distinct_is_rejected_as_row_level() {
    let rejection = reject("SELECT DISTINCT region FROM t", &policy()).await;
    let QueryRejection::RowLevel { columns, reason } = &rejection else {
        panic!("{rejection:?}");
    };
    assert_eq!(columns, "region");
    assert!(reason.contains("would release row values"), "{reason}");
    assert!(
        rejection.to_string().contains("COUNT(*)"),
        "the message says what to write"
    );
}

#[tokio::test]
async fn group_by_unlisted_column_is_rejected() {
    let rejection = reject("SELECT age, COUNT(*) FROM t GROUP BY age", &policy()).await;
    assert_column(&rejection, "age", Clause::GroupBy);
    assert!(rejection.to_string().contains("[region]"), "{rejection}");
}

#[tokio::test]
async fn where_on_unlisted_column_is_rejected() {
    let rejection = reject("SELECT COUNT(*) FROM t WHERE id = 4", &policy()).await;
    assert_column(&rejection, "id", Clause::Where);
    let rejection = reject(
        "SELECT COUNT(*) FROM t WHERE region = 'a' OR id IN (1, 2)",
        &policy(),
    )
    .await;
    assert_column(&rejection, "id", Clause::Where);
}

#[tokio::test]
async fn row_level_select_is_rejected() {
    let rejection = reject("SELECT id FROM t", &policy()).await;
    assert!(
        matches!(&rejection, QueryRejection::RowLevel { columns, .. } if columns == "id"),
        "{rejection:?}"
    );
    let rejection = reject("SELECT region FROM t GROUP BY region", &policy()).await;
    assert!(
        matches!(rejection, QueryRejection::RowLevel { .. }),
        "{rejection:?}"
    );
}

#[tokio::test]
async fn unknown_column_and_table_are_named() {
    let rejection = reject("SELECT COUNT(nope) FROM t", &policy()).await;
    assert!(
        matches!(&rejection, QueryRejection::UnknownColumn { column, .. } if column == "nope"),
        "{rejection:?}"
    );
    let rejection = reject("SELECT COUNT(*) FROM u", &policy()).await;
    assert!(
        matches!(
            &rejection,
            QueryRejection::UnknownTable { table, expected } if table == "u" && expected == "t"
        ),
        "{rejection:?}"
    );
}

#[tokio::test]
async fn syntax_error_gives_parser_message_and_fix() {
    let rejection = reject("SELEC COUNT(*) FROM t", &policy()).await;
    let QueryRejection::InvalidSql { message, help } = &rejection else {
        panic!("{rejection:?}");
    };
    assert!(message.contains("SELEC"), "{message}");
    assert!(help.contains("SELECT"), "{help}");
}

#[tokio::test]
async fn identifier_may_only_be_counted() {
    let mut policy = wide_policy();
    policy.columns.group_by.push("id".into());
    let rejection = reject("SELECT id, COUNT(*) FROM t GROUP BY id", &policy).await;
    assert_column(&rejection, "id", Clause::GroupBy);
    let rejection = reject("SELECT SUM(id) FROM t", &policy).await;
    assert_column(&rejection, "id", Clause::Sum);
    let rejection = reject("SELECT AVG(id) FROM t", &policy).await;
    assert_column(&rejection, "id", Clause::Avg);
    check_query("SELECT COUNT(id) FROM t", &table(), &policy)
        .await
        .unwrap();
}

#[tokio::test]
async fn aggregates_need_permitted_bounded_numeric_columns() {
    let rejection = reject("SELECT SUM(age) FROM t", &policy()).await;
    assert_column(&rejection, "age", Clause::Sum);
    // DataFusion's planner refuses SUM over text before the plan is walked.
    let rejection = reject("SELECT SUM(region) FROM t", &wide_policy()).await;
    assert_construct(&rejection, "sum(Utf8)");

    let mut unbounded = description();
    unbounded.columns[3].bounds = None;
    let table = RegisteredTable::new(unbounded, "/nonexistent/t.parquet");
    let rejection = check_query("SELECT AVG(spend) FROM t", &table, &policy())
        .await
        .unwrap_err();
    assert_column(&rejection, "spend", Clause::Avg);
}

#[tokio::test]
async fn unsupported_constructs_are_rejected_with_reasons() {
    let policy = wide_policy();
    let cases = [
        (
            "SELECT region, COUNT(*) FROM t GROUP BY region HAVING COUNT(*) > 3",
            "HAVING",
        ),
        (
            "SELECT region, COUNT(*) FROM t GROUP BY region LIMIT 3",
            "LIMIT",
        ),
        (
            "SELECT region, COUNT(*) FROM t GROUP BY region ORDER BY 2 LIMIT 3",
            "LIMIT",
        ),
        ("SELECT COUNT(DISTINCT spend) FROM t", "DISTINCT"),
        (
            "SELECT COUNT(spend) FILTER (WHERE spend > 3) FROM t",
            "FILTER",
        ),
        ("SELECT MAX(spend) FROM t", "MAX"),
        ("SELECT COUNT(*) FROM t a JOIN t b ON a.id = b.id", "JOIN"),
        ("SELECT COUNT(*) FROM (SELECT * FROM t) s", "subqueries"),
        (
            "WITH x AS (SELECT * FROM t) SELECT COUNT(*) FROM x",
            "subqueries",
        ),
        ("SELECT COUNT(*) + 1 FROM t", "count(*) + Int64(1)"),
        ("SELECT SUM(spend * 2) FROM t", "SUM(t.spend * Int64(2))"),
        (
            "SELECT region, COUNT(*) FROM t GROUP BY ROLLUP(region)",
            "ROLLUP",
        ),
        ("SELECT COUNT(*) FROM t WHERE region LIKE 'n%'", "LIKE"),
        ("SELECT COUNT(*) FROM t WHERE abs(age) > 3", "abs"),
        (
            "SELECT COUNT(*) FROM t WHERE age IN (SELECT age FROM t)",
            "WHERE",
        ),
        ("SELECT COUNT(*) OVER () FROM t", "window"),
        ("SELECT COUNT(*)", "FROM"),
        ("CREATE TABLE x AS SELECT COUNT(*) FROM t", "CREATE TABLE"),
        ("EXPLAIN SELECT COUNT(*) FROM t", "EXPLAIN"),
        ("SET datafusion.execution.batch_size = 1", "SET"),
        ("COPY t TO '/tmp/x.csv'", "COPY"),
    ];
    for (sql, construct) in cases {
        let rejection = reject(sql, &policy).await;
        match &rejection {
            QueryRejection::ConstructNotPermitted { .. } => assert_construct(&rejection, construct),
            other => {
                panic!("{sql}: expected a construct rejection naming {construct}, got {other:?}")
            }
        }
    }
}

#[tokio::test]
async fn accepted_query_lists_outputs_and_cost() {
    let planner = QueryPlanner::new(table(), wide_policy()).unwrap();
    let checked = planner
        .check(
            "SELECT region AS r, COUNT(*) AS n, SUM(spend) s, AVG(spend) \
             FROM t AS x \
             WHERE (region = 'north' OR region IN ('a', 'b')) AND NOT age BETWEEN 1 AND 5 \
               AND age IS NOT NULL AND age > -3 \
             GROUP BY region ORDER BY n DESC, 1",
        )
        .await
        .unwrap();
    assert_eq!(checked.output_columns(), ["r", "n", "s", "avg(x.spend)"]);
    // COUNT(*), SUM(spend), COUNT(spend); with k = 1, COUNT(*) is the thresholded count.
    assert_eq!(checked.measurement_count(), 3);
    assert_eq!(checked.cost(0.7), (0.7, 1e-9));
    checked.check_epsilon(0.7).unwrap();
}

#[tokio::test]
async fn order_by_hidden_aggregate_is_accepted_and_charged() {
    let checked = check_query(
        "SELECT region FROM t GROUP BY region ORDER BY SUM(spend) DESC",
        &table(),
        &policy(),
    )
    .await
    .unwrap();
    assert_eq!(checked.output_columns(), ["region"]);
    // SUM(spend) and the distinct-person count.
    assert_eq!(checked.measurement_count(), 2);
}

#[tokio::test]
async fn invalid_policy_and_table_are_rejected() {
    let mut zero_rows = policy();
    zero_rows.max_rows_per_unit = 0;
    let rejection = QueryPlanner::new(table(), zero_rows).unwrap_err();
    assert!(matches!(rejection, QueryRejection::InvalidPolicy { .. }));

    let mut bad_delta = policy();
    bad_delta.query_delta = 0.0;
    let rejection = QueryPlanner::new(table(), bad_delta).unwrap_err();
    assert!(matches!(rejection, QueryRejection::InvalidPolicy { .. }));

    let mut no_unit = description();
    no_unit.privacy_unit = None;
    let rejection =
        QueryPlanner::new(RegisteredTable::new(no_unit, "/x.parquet"), policy()).unwrap_err();
    assert!(matches!(rejection, QueryRejection::InvalidTable { .. }));
}

/// Asserts that `sql` is rejected from the plan as a construct whose reason contains
/// `reason_part`.
async fn assert_rejected_with_reason(sql: &str, reason_part: &str) {
    let rejection = reject(sql, &wide_policy()).await;
    let QueryRejection::ConstructNotPermitted { construct, reason } = &rejection else {
        panic!("{sql}: expected a construct rejection, got {rejection:?}");
    };
    assert!(
        construct.starts_with("WHERE"),
        "{sql}: construct {construct}"
    );
    assert!(
        reason.contains(reason_part),
        "{sql}: reason {reason:?} lacks {reason_part:?}"
    );
}

#[tokio::test]
async fn failing_column_cast_is_rejected() {
    let cases = [
        // A cast chain that fails on every age value, quoting it.
        (
            "SELECT COUNT(*) FROM t WHERE region = 'south' \
             AND CAST(CAST(age AS VARCHAR) AS DATE) IS NULL",
            "only to a wider numeric type",
        ),
        // Fails on the first region value that is not a number.
        (
            "SELECT COUNT(*) FROM t WHERE region = 'north' OR CAST(region AS INT) = 1",
            "with a quoted text literal, such as region = '1'",
        ),
        // DataFusion's type coercion adds CAST(region AS Int64) after planning.
        (
            "SELECT COUNT(*) FROM t WHERE region > 5",
            "with a quoted text literal, such as region = '5'",
        ),
        (
            "SELECT COUNT(*) FROM t WHERE region IN (1, 2)",
            "such as region = '1'",
        ),
        (
            "SELECT COUNT(*) FROM t WHERE CAST(age AS INTERVAL) IS NULL",
            "only to a wider numeric type",
        ),
        (
            "SELECT COUNT(*) FROM t WHERE CAST(age AS SMALLINT) = 3",
            "only to a wider numeric type",
        ),
        (
            "SELECT COUNT(*) FROM t WHERE TRY_CAST(region AS INT) = 3",
            "quoted text literal",
        ),
        // Coerced to Decimal128(20, 0), which is not a widening this check accepts.
        (
            "SELECT COUNT(*) FROM t WHERE age = 9223372036854775808",
            "integer in the 64-bit range",
        ),
    ];
    for (sql, reason_part) in cases {
        assert_rejected_with_reason(sql, reason_part).await;
    }
}

#[tokio::test]
async fn unconvertible_constant_is_rejected() {
    for sql in [
        "SELECT COUNT(*) FROM t WHERE age = 'abc'",
        "SELECT COUNT(*) FROM t WHERE age IN ('a', 'b')",
        "SELECT COUNT(*) FROM t WHERE age BETWEEN 'a' AND 3",
        "SELECT COUNT(*) FROM t WHERE region = 'a' AND age = CAST('x' AS INT)",
    ] {
        assert_rejected_with_reason(sql, "cannot be evaluated").await;
    }
}

#[tokio::test]
async fn widened_column_filters_are_accepted() {
    for sql in [
        "SELECT COUNT(*) FROM t WHERE age >= 90",
        "SELECT COUNT(*) FROM t WHERE region IN ('a', 'b')",
        "SELECT COUNT(*) FROM t WHERE age BETWEEN 20 AND 30",
        "SELECT COUNT(*) FROM t WHERE CAST(age AS BIGINT) > 3",
        "SELECT COUNT(*) FROM t WHERE CAST(age AS DOUBLE) > 3",
        "SELECT COUNT(*) FROM t WHERE age > 2.5",
        "SELECT COUNT(*) FROM t WHERE age IN (1, 2.5)",
        "SELECT COUNT(*) FROM t WHERE age = '30'",
        "SELECT COUNT(*) FROM t WHERE age > -3 AND NOT age = -(-4)",
        "SELECT COUNT(*) FROM t WHERE region = CAST('a' AS VARCHAR)",
        "SELECT COUNT(*) FROM t WHERE region IS NOT NULL AND age IS NULL",
    ] {
        if let Err(rejection) = check_query(sql, &table(), &wide_policy()).await {
            panic!("{sql} was rejected: {rejection}");
        }
    }
}

#[tokio::test]
async fn sql_text_over_16_kib_is_rejected() {
    let terms = vec!["age = 1"; 10_000].join(" OR ");
    let sql = format!("SELECT COUNT(*) FROM t WHERE {terms}");
    let rejection = reject(&sql, &wide_policy()).await;
    let QueryRejection::TooLarge { reason } = &rejection else {
        panic!("expected TooLarge, got {rejection:?}");
    };
    assert!(reason.contains("16 KiB"), "{reason}");
}

#[tokio::test]
async fn deep_expression_is_rejected_before_parsing() {
    let or_chain = vec!["age = 1"; 1_400].join(" OR ");
    let not_chain = format!("{}age = 1", "NOT ".repeat(40));
    let brackets = format!("{}age = 1{}", "(".repeat(40), ")".repeat(40));
    let subqueries = format!("age IN {}1{}", "(SELECT ".repeat(20), ")".repeat(20));
    for condition in [or_chain, not_chain, brackets, subqueries] {
        let sql = format!("SELECT COUNT(*) FROM t WHERE {condition}");
        assert!(sql.len() <= 16 * 1024, "{} bytes", sql.len());
        let rejection = reject(&sql, &wide_policy()).await;
        let QueryRejection::TooLarge { reason } = &rejection else {
            panic!("expected TooLarge, got {rejection:?}");
        };
        assert!(reason.contains("the limit is 64"), "{reason}");
    }
}

/// Builds a WHERE condition that nests `construct` `n` times.
fn nested_condition(construct: &str, n: usize) -> String {
    match construct {
        "or" => vec!["age = 1"; n].join(" OR "),
        "not" => format!("{}age = 1", "NOT ".repeat(n)),
        "brackets" => format!("{}age = 1{}", "(".repeat(n), ")".repeat(n)),
        "functions" => format!("{}age{} = 1", "abs(".repeat(n), ")".repeat(n)),
        "case" => format!(
            "{}1{} = 1",
            "CASE WHEN age = 1 THEN ".repeat(n),
            " END".repeat(n)
        ),
        "subqueries" => format!("age IN {}1{}", "(SELECT ".repeat(n), ")".repeat(n)),
        "is null" => format!("(age = 1){}", " IS NOT NULL".repeat(n)),
        "casts" => format!("age{} = 1", "::BIGINT".repeat(n)),
        "between" => format!("(age = 1){}", " BETWEEN TRUE AND TRUE".repeat(n)),
        other => panic!("unknown construct {other}"),
    }
}

/// Checks every nesting of each construct up to the first one over the depth limit, on
/// the test thread's default stack: none may overflow it.
#[tokio::test]
async fn nesting_at_depth_limit_fits_stack() {
    let constructs = [
        "or",
        "not",
        "brackets",
        "functions",
        "case",
        "subqueries",
        "is null",
        "casts",
        "between",
    ];
    for construct in constructs {
        let mut n = 1;
        loop {
            let sql = format!(
                "SELECT COUNT(*) FROM t WHERE {}",
                nested_condition(construct, n)
            );
            let result = check_query(&sql, &table(), &wide_policy()).await;
            if matches!(result, Err(QueryRejection::TooLarge { .. })) {
                break;
            }
            n += 1;
        }
        assert!(n > 5, "{construct}: only {} nestings accepted", n - 1);
    }
}

#[tokio::test]
async fn rejection_quotes_at_most_120_characters() {
    let long = "x".repeat(10_000);
    let cases = [
        format!("SELECT COUNT(*), '{long}' FROM t"),
        format!("SELECT '{long}' FROM t"),
        format!("SELECT COUNT(\"{long}\") FROM t"),
        format!("SELECT COUNT(*) FROM \"{long}\""),
        format!("SELECT COUNT(*) FROM t WHERE age = '{long}'"),
        format!("SELECT COUNT(*) FROM t WHERE region = 'a' '{long}'"),
    ];
    for sql in &cases {
        let rejection = reject(sql, &wide_policy()).await;
        let quoted = match &rejection {
            QueryRejection::ConstructNotPermitted { construct, .. } => construct,
            QueryRejection::RowLevel { columns, .. } => columns,
            QueryRejection::UnknownColumn { column, .. } => column,
            QueryRejection::UnknownTable { table, .. } => table,
            QueryRejection::InvalidSql { message, .. } => message,
            other => panic!("unexpected rejection {other:?}"),
        };
        assert_eq!(quoted.chars().count(), 120, "{quoted}");
        assert!(quoted.ends_with('…'), "{quoted}");
        let message = rejection.to_string();
        assert!(message.len() < 1_000, "{} bytes: {message}", message.len());
    }
}
