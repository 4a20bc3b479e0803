//! End-to-end execution: bounding, exact sums, suppression and noisy release.

mod common;

use std::fmt::Write;
use std::path::Path;

use carrel_model::{ColumnRole, ColumnType, DatasetDescription, UsagePolicy};
use carrel_query::{
    CheckedQuery, ExactCell, ExactResult, ExactSum, QueryError, QueryRejection, RegisteredTable,
    Release, Value, check_query, execute, execute_without_noise_insecure, register_dataset,
};

use common::{bounded, column, description, policy, regions_csv};

fn register(
    dir: &Path,
    name: &str,
    csv: &str,
    description: &DatasetDescription,
) -> RegisteredTable {
    let source = dir.join(format!("{name}.csv"));
    std::fs::write(&source, csv).unwrap();
    let parquet = dir.join(format!("{name}.parquet"));
    register_dataset(&source, description, &parquet).unwrap();
    RegisteredTable::new(description.clone(), parquet)
}

async fn checked(sql: &str, table: &RegisteredTable, policy: &UsagePolicy) -> CheckedQuery {
    match check_query(sql, table, policy).await {
        Ok(checked) => checked,
        Err(rejection) => panic!("{sql}: {rejection}"),
    }
}

fn released_keys(release: &Release) -> Vec<Value> {
    release.rows.iter().map(|row| row[0].clone()).collect()
}

#[tokio::test]
async fn only_large_region_is_released() {
    let dir = tempfile::tempdir().unwrap();
    let table = register(dir.path(), "t", &regions_csv(), &description());
    let query = checked(
        "SELECT region, COUNT(*) FROM t GROUP BY region",
        &table,
        &policy(),
    )
    .await;
    for _ in 0..20 {
        let release = execute(&query, 1.0).await.unwrap();
        assert_eq!(released_keys(&release), vec![Value::Text("north".into())]);
        assert_eq!(release.epsilon, 1.0);
        assert_eq!(release.delta, 1e-9);
        assert_eq!(release.release_threshold, 30);
    }

    let exact = execute_without_noise_insecure(&query).await.unwrap();
    let persons: Vec<u64> = exact.groups.iter().map(|g| g.persons).collect();
    // Sorted by key: east, north, south.
    assert_eq!(persons, vec![2, 60, 1]);
}

#[tokio::test]
async fn filter_on_one_person_releases_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let table = register(dir.path(), "t", &regions_csv(), &description());
    for sql in [
        "SELECT COUNT(*) FROM t WHERE region = 'south'",
        "SELECT COUNT(*), SUM(spend) FROM t WHERE region = 'east'",
        "SELECT COUNT(*) FROM t WHERE region = 'nowhere'",
    ] {
        let query = checked(sql, &table, &policy()).await;
        for _ in 0..20 {
            let release = execute(&query, 1.0).await.unwrap();
            assert!(release.rows.is_empty(), "{sql} released {:?}", release.rows);
            assert_eq!(
                query.cost(1.0),
                (release.epsilon, release.delta),
                "still charged"
            );
        }
    }
    let query = checked(
        "SELECT COUNT(*) FROM t WHERE region = 'north'",
        &table,
        &policy(),
    )
    .await;
    assert_eq!(execute(&query, 1.0).await.unwrap().rows.len(), 1);

    let query = checked(
        "SELECT COUNT(*) FROM t WHERE region = 'nowhere'",
        &table,
        &policy(),
    )
    .await;
    let exact = execute_without_noise_insecure(&query).await.unwrap();
    assert_eq!(
        exact.groups.len(),
        1,
        "a query without GROUP BY has one group"
    );
    assert_eq!(exact.groups[0].persons, 0);
}

fn sum_description(lower: f64, upper: f64, column_type: ColumnType) -> DatasetDescription {
    let mut description = description();
    description.columns = vec![
        column("id", ColumnType::Integer, ColumnRole::Identifier),
        column("region", ColumnType::Text, ColumnRole::QuasiIdentifier),
        column("age", ColumnType::Integer, ColumnRole::QuasiIdentifier),
        bounded(
            column("spend", column_type, ColumnRole::Sensitive),
            lower,
            upper,
        ),
    ];
    description
}

fn first_cell(exact: &ExactResult, index: usize) -> &ExactCell {
    &exact.groups[0].cells[index]
}

#[tokio::test]
async fn integer_sum_is_exact_in_i128() {
    let dir = tempfile::tempdir().unwrap();
    let top = 1i64 << 62;
    let description = sum_description(0.0, top as f64, ColumnType::Integer);
    let csv = format!("id,region,age,spend\n1,a,1,{top}\n2,a,1,{top}\n3,a,1,{top}\n");
    let table = register(dir.path(), "t", &csv, &description);
    let query = checked("SELECT SUM(spend) FROM t", &table, &policy()).await;
    let exact = execute_without_noise_insecure(&query).await.unwrap();
    assert_eq!(
        first_cell(&exact, 0),
        &ExactCell::Sum(ExactSum::Integer(3 * (1i128 << 62)))
    );
    let json = serde_json::to_string(&exact).unwrap();
    assert!(json.contains("13835058055282163712"), "{json}");

    let release = execute(&query, 1.0).await.unwrap();
    assert!(
        release.rows.is_empty(),
        "three persons are below the minimum of ten"
    );
}

#[tokio::test]
async fn float_sum_is_order_independent() {
    let dir = tempfile::tempdir().unwrap();
    let description = sum_description(0.0, 1e16, ColumnType::Float);
    let rows = ["9007199254740992", "1.0", "1.0", "1.0", "1.0"];
    let mut sums = Vec::new();
    for (name, order) in [
        ("forward", rows.to_vec()),
        ("backward", rows.iter().rev().copied().collect()),
    ] {
        let mut csv = String::from("id,region,age,spend\n");
        for (id, value) in order.iter().enumerate() {
            let _ = writeln!(csv, "{id},a,1,{value}");
        }
        let table = register(dir.path(), name, &csv, &description);
        let query = checked("SELECT SUM(spend), AVG(spend) FROM t", &table, &policy()).await;
        let exact = execute_without_noise_insecure(&query).await.unwrap();
        sums.push(first_cell(&exact, 0).clone());
    }
    assert_eq!(sums[0], sums[1]);
    let ExactCell::Sum(sum) = &sums[0] else {
        panic!("{:?}", sums[0])
    };
    assert_eq!(sum.to_f64(), 9007199254740996.0);
    assert_eq!(sum.to_string(), "9007199254740996");
}

#[tokio::test]
async fn bounding_keeps_k_rows_per_person_and_clamps() {
    let dir = tempfile::tempdir().unwrap();
    // Person 1 has four rows; person 2 has values outside the bounds [0, 1000].
    let csv = "id,region,age,spend\n\
               1,north,30,10\n1,north,30,20\n1,north,30,30\n1,north,30,40\n\
               2,north,30,5000\n3,north,30,-7\n";
    let table = register(dir.path(), "t", csv, &description());
    let query = checked(
        "SELECT region, COUNT(*), COUNT(spend), SUM(spend) FROM t GROUP BY region",
        &table,
        &policy(),
    )
    .await;
    let exact = execute_without_noise_insecure(&query).await.unwrap();
    let group = &exact.groups[0];
    assert_eq!(group.persons, 3);
    assert_eq!(group.rows, 3, "person 1 contributes one row");
    assert_eq!(group.cells[1], ExactCell::Count(3));
    let ExactCell::Sum(sum) = &group.cells[3] else {
        panic!("{:?}", group.cells[3])
    };
    let person_one = sum.to_f64() - 1000.0;
    assert!(
        [10.0, 20.0, 30.0, 40.0].contains(&person_one),
        "5000 -> 1000 and -7 -> 0"
    );

    let mut policy = policy();
    policy.max_rows_per_unit = 2;
    let query = checked("SELECT COUNT(*) FROM t", &table, &policy).await;
    let exact = execute_without_noise_insecure(&query).await.unwrap();
    assert_eq!(
        first_cell(&exact, 0),
        &ExactCell::Count(4),
        "2 + 1 + 1 rows"
    );
}

#[tokio::test]
async fn released_values_stay_finite_with_non_finite_data() {
    let dir = tempfile::tempdir().unwrap();
    let mut csv = String::from("id,region,age,spend\n");
    for id in 1..=400 {
        let spend = match id % 4 {
            0 => "NaN".to_owned(),
            1 => "inf".to_owned(),
            2 => "-inf".to_owned(),
            _ => format!("{}.25", id),
        };
        let _ = writeln!(csv, "{id},north,30,{spend}");
    }
    let source = dir.path().join("t.csv");
    std::fs::write(&source, &csv).unwrap();
    let parquet = dir.path().join("t.parquet");
    let report = register_dataset(&source, &description(), &parquet).unwrap();
    assert_eq!(report.non_finite_cells["spend"].len(), 300);
    assert_eq!(report.non_finite_cells["spend"][..3], [1, 2, 4]);
    let table = RegisteredTable::new(description(), parquet);

    let query = checked(
        "SELECT region, COUNT(*), COUNT(spend), SUM(spend), AVG(spend) FROM t GROUP BY region",
        &table,
        &policy(),
    )
    .await;
    for _ in 0..20 {
        let release = execute(&query, 1.0).await.unwrap();
        assert_eq!(release.rows.len(), 1);
        for value in &release.rows[0][1..] {
            match value {
                Value::Integer(_) => {}
                Value::Float(v) => assert!(v.is_finite()),
                other => panic!("unexpected {other:?}"),
            }
        }
        let Value::Float(avg) = release.rows[0][4] else {
            panic!("AVG is a float")
        };
        assert!((0.0..=1000.0).contains(&avg));
        assert!(release.epsilon.is_finite());
        assert!(release.delta.is_finite());
        for accuracy in &release.aggregates {
            assert!(accuracy.noise_scale.is_finite());
            assert!(accuracy.noise_scale > 0.0);
            assert!(accuracy.ci95_half_width.is_none_or(f64::is_finite));
        }
    }
}

#[tokio::test]
async fn release_is_ordered_and_serializable() {
    let dir = tempfile::tempdir().unwrap();
    let mut csv = String::from("id,region,age,spend\n");
    let mut id = 0;
    for (region, persons) in [("a", 200), ("b", 400), ("c", 300)] {
        for _ in 0..persons {
            id += 1;
            let _ = writeln!(csv, "{id},{region},30,{}.5", id % 100);
        }
    }
    let table = register(dir.path(), "t", &csv, &description());
    let query = checked(
        "SELECT region, COUNT(*) AS n, SUM(spend) AS total FROM t GROUP BY region ORDER BY n DESC",
        &table,
        &policy(),
    )
    .await;
    let release = execute(&query, 1.0).await.unwrap();
    assert_eq!(release.columns, ["region", "n", "total"]);
    assert_eq!(
        released_keys(&release),
        ["b", "c", "a"].map(|r| Value::Text(r.into())).to_vec()
    );
    assert_eq!(release.measurements, 2);
    let count = &release.aggregates[0];
    assert_eq!(count.column, "n");
    assert_eq!(count.grid, 1.0);
    let total = &release.aggregates[1];
    for row in &release.rows {
        let Value::Float(sum) = row[2] else {
            panic!("{:?}", row[2])
        };
        assert_eq!(
            (sum / total.grid).fract(),
            0.0,
            "{sum} is on the grid {}",
            total.grid
        );
    }

    let json = serde_json::to_string(&release).unwrap();
    let back: Release = serde_json::from_str(&json).unwrap();
    assert_eq!(back.columns, release.columns);
    assert_eq!(back.rows.len(), 3);
}

#[tokio::test]
async fn execute_future_is_send() {
    fn assert_send<T: Send>(_: &T) {}
    let table = RegisteredTable::new(description(), "/nonexistent.parquet");
    let query = checked("SELECT COUNT(*) FROM t", &table, &policy()).await;
    let future = execute(&query, 1.0);
    assert_send(&future);
    let error = future.await.unwrap_err();
    assert!(
        matches!(error, QueryError::Io { .. }),
        "a missing file is an error: {error}"
    );
}

#[tokio::test]
async fn aliased_filtered_query_runs() {
    let dir = tempfile::tempdir().unwrap();
    let table = register(dir.path(), "t", &regions_csv(), &description());
    let mut policy = policy();
    policy.columns.aggregate.push("region".into());
    policy.columns.filter.push("spend".into());
    let query = checked(
        "SELECT x.region, COUNT(x.region) AS n FROM t AS x \
         WHERE x.region IN ('north', 'east') AND x.spend BETWEEN 10 AND 150 \
         GROUP BY x.region",
        &table,
        &policy,
    )
    .await;
    let exact = execute_without_noise_insecure(&query).await.unwrap();
    let cells: Vec<Vec<Value>> = exact
        .groups
        .iter()
        .map(|g| g.cells.iter().map(ExactCell::to_value).collect())
        .collect();
    // Spend is 3 × id + 0.5; ids 4 to 49 fall within [10, 150], all in north.
    assert_eq!(
        cells,
        vec![vec![Value::Text("north".into()), Value::Integer(46)]]
    );
}

/// Policy that also permits `age` in WHERE.
fn age_filter_policy() -> UsagePolicy {
    let mut policy = policy();
    policy.columns.filter.push("age".into());
    policy
}

async fn exact_count(sql: &str, table: &RegisteredTable) -> ExactCell {
    let query = checked(sql, table, &age_filter_policy()).await;
    let exact = execute_without_noise_insecure(&query).await.unwrap();
    first_cell(&exact, 0).clone()
}

#[tokio::test]
async fn widened_filter_matches_plain_filter() {
    let dir = tempfile::tempdir().unwrap();
    let table = register(dir.path(), "t", &regions_csv(), &description());
    let pairs = [
        ("CAST(age AS BIGINT) > 40", "age > 40"),
        ("CAST(age AS DOUBLE) <= 30", "age <= 30"),
        ("age > 40.5", "age >= 41"),
        ("age = '33'", "age = 33"),
        ("age BETWEEN 20 AND 30", "age >= 20 AND age <= 30"),
    ];
    for (widened, plain) in pairs {
        let expected = exact_count(&format!("SELECT COUNT(*) FROM t WHERE {plain}"), &table).await;
        let actual = exact_count(&format!("SELECT COUNT(*) FROM t WHERE {widened}"), &table).await;
        assert_eq!(actual, expected, "{widened} against {plain}");
        assert_ne!(expected, ExactCell::Count(0), "{plain} selects some rows");
    }
}

/// Runs the most deeply nested accepted filter of each kind on the test thread's default
/// stack, through planning, DataFusion's optimizer and execution.
#[tokio::test]
async fn filter_at_depth_limit_executes() {
    let dir = tempfile::tempdir().unwrap();
    let table = register(dir.path(), "t", &regions_csv(), &description());
    let policy = age_filter_policy();
    let conditions: [fn(usize) -> String; 5] = [
        |n| vec!["age = 1"; n].join(" OR "),
        |n| vec!["TRUE"; n].join(" OR "),
        |n| format!("{}age = 1", "NOT ".repeat(n)),
        |n| format!("{}age = 1{}", "(".repeat(n), ")".repeat(n)),
        |n| format!("age{} = 1", "::BIGINT".repeat(n)),
    ];
    for condition in conditions {
        let mut deepest = None;
        for n in 1.. {
            let sql = format!("SELECT COUNT(*) FROM t WHERE {}", condition(n));
            match check_query(&sql, &table, &policy).await {
                Ok(query) => deepest = Some((n, query)),
                Err(QueryRejection::TooLarge { .. }) => break,
                Err(rejection) => panic!("{sql}: {rejection}"),
            }
        }
        let (n, query) = deepest.expect("the shallowest nesting is accepted");
        assert!(n > 5, "only {n} nestings of {} accepted", query.sql());
        execute_without_noise_insecure(&query).await.unwrap();
    }
}

/// Writes a Parquet file whose `age` column contains text, which the table's declared
/// Int64 type cannot read.
fn write_text_age_parquet(path: &Path) {
    use std::sync::Arc;

    use datafusion::arrow::array::{ArrayRef, Float64Array, Int64Array, StringArray};
    use datafusion::arrow::record_batch::RecordBatch;
    use datafusion::parquet::arrow::ArrowWriter;

    let columns: Vec<(&str, ArrayRef)> = vec![
        ("id", Arc::new(Int64Array::from(vec![1, 2]))),
        (
            "region",
            Arc::new(StringArray::from(vec!["north", "north"])),
        ),
        (
            "age",
            Arc::new(StringArray::from(vec!["41", "secret-thirty"])),
        ),
        ("spend", Arc::new(Float64Array::from(vec![1.0, 2.0]))),
    ];
    let batch = RecordBatch::try_from_iter(columns).unwrap();
    let file = std::fs::File::create(path).unwrap();
    let mut writer = ArrowWriter::try_new(file, batch.schema(), None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
}

#[tokio::test]
async fn execution_error_withholds_row_values() {
    let dir = tempfile::tempdir().unwrap();
    let parquet = dir.path().join("t.parquet");
    write_text_age_parquet(&parquet);
    let table = RegisteredTable::new(description(), &parquet);
    let query = checked(
        "SELECT COUNT(*) FROM t WHERE age > 3",
        &table,
        &age_filter_policy(),
    )
    .await;

    let error = execute(&query, 1.0).await.unwrap_err();
    let QueryError::Execution { kind } = &error else {
        panic!("expected an execution error, got {error:?}");
    };
    assert!(!kind.is_empty());
    assert!(!kind.contains("secret"), "kind {kind}");
    let message = error.to_string();
    assert!(!message.contains("secret"), "message {message}");
    assert!(message.contains("withheld"), "message {message}");
    let debug = format!("{error:?}");
    assert!(!debug.contains("secret"), "debug {debug}");
}
