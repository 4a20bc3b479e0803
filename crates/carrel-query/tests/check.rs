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
