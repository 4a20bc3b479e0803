//! Registration of CSV and Parquet sources.

mod common;

use std::path::{Path, PathBuf};

use carrel_model::{ColumnRole, ColumnType, DatasetDescription};
use carrel_query::{QueryError, RegistrationReport, register_dataset};
use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{Float64Type, Int64Type};
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use sha2::{Digest, Sha256};

use common::{bounded, column, description};

fn register_bytes(
    dir: &Path,
    bytes: &[u8],
    description: &DatasetDescription,
) -> (Result<RegistrationReport, QueryError>, PathBuf) {
    let source = dir.join("source.csv");
    std::fs::write(&source, bytes).unwrap();
    let dest = dir.join("table.parquet");
    (register_dataset(&source, description, &dest), dest)
}

fn read_parquet(path: &Path) -> RecordBatch {
    let file = std::fs::File::open(path).unwrap();
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap();
    let batches: Vec<RecordBatch> = reader.map(Result::unwrap).collect();
    datafusion::arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap()
}

#[test]
fn csv_crlf_bom_blank_quoted_read() {
    let dir = tempfile::tempdir().unwrap();
    let csv = "\u{feff}id,region,age,spend\r\n\
               1,\"north, upper\",30,12.5\r\n\
               \r\n\
               2,south,41,\"1,5\"\r\n";
    // "1,5" is not a number; fix it and check the quoted comma in a text column.
    let (result, _) = register_bytes(dir.path(), csv.as_bytes(), &description());
    let error = result.unwrap_err();
    assert!(
        matches!(&error, QueryError::InvalidValue { row: 2, column, value, .. }
            if column == "spend" && value == "1,5"),
        "{error}"
    );

    let csv = csv.replace("\"1,5\"", "7.25");
    let (result, dest) = register_bytes(dir.path(), csv.as_bytes(), &description());
    let report = result.unwrap();
    assert_eq!(report.rows_read, 2);
    assert_eq!(report.rows_kept, 2);
    assert!(report.excluded_rows.is_empty());

    let batch = read_parquet(&dest);
    let schema = batch.schema();
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(
        names,
        ["id", "region", "age", "spend"],
        "the BOM is not part of the name"
    );
    let region = batch.column(1).as_string::<i32>();
    assert_eq!(region.value(0), "north, upper");
    assert_eq!(region.value(1), "south");
    let spend = batch.column(3).as_primitive::<Float64Type>();
    assert_eq!(spend.value(1), 7.25);
}

#[test]
fn wrong_field_count_is_rejected_with_row_number() {
    let dir = tempfile::tempdir().unwrap();
    let csv = "id,region,age,spend\n1,north,30,1.0\n\n2,south,40\n3,east,50,2.0\n";
    let (result, dest) = register_bytes(dir.path(), csv.as_bytes(), &description());
    let error = result.unwrap_err();
    assert!(
        matches!(
            error,
            QueryError::FieldCount {
                row: 2,
                line: 4,
                expected: 4,
                found: 3
            }
        ),
        "{error}"
    );
    assert!(error.to_string().contains("row 2 (line 4)"), "{error}");
    assert!(!dest.exists(), "nothing is written on error");
    assert!(!dir.path().join("table.parquet.partial").exists());
}

#[test]
fn failed_registration_keeps_previous_file() {
    let dir = tempfile::tempdir().unwrap();
    let (first, dest) = register_bytes(
        dir.path(),
        b"id,region,age,spend\n1,north,30,1.0\n",
        &description(),
    );
    let before = std::fs::read(&dest).unwrap();
    let (second, _) = register_bytes(
        dir.path(),
        b"id,region,age,spend\n1,north\n",
        &description(),
    );
    assert!(first.is_ok());
    assert!(second.is_err());
    assert_eq!(std::fs::read(&dest).unwrap(), before);
}

#[test]
fn header_must_match_declared_columns() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, &str); 3] = [
        ("id,region,age,spend,extra\n", "extra"),
        ("id,region,age\n", "spend"),
        ("id,region,age,spend,age\n", "age"),
    ];
    for (header, named) in cases {
        let (result, _) = register_bytes(dir.path(), header.as_bytes(), &description());
        let error = result.unwrap_err();
        let matched = match &error {
            QueryError::UndeclaredColumn { column }
            | QueryError::MissingColumn { column }
            | QueryError::DuplicateColumn { column } => column == named,
            _ => false,
        };
        assert!(matched, "header {header:?}: {error}");
    }
}

#[test]
fn header_columns_may_come_in_any_order() {
    let dir = tempfile::tempdir().unwrap();
    let csv = "spend,age,region,id\n2.5,33,north,9\n";
    let (result, dest) = register_bytes(dir.path(), csv.as_bytes(), &description());
    result.unwrap();
    let batch = read_parquet(&dest);
    assert_eq!(batch.column(0).as_primitive::<Int64Type>().value(0), 9);
    assert_eq!(batch.column(3).as_primitive::<Float64Type>().value(0), 2.5);
}

#[test]
fn unparsable_value_names_row_column_and_value() {
    let dir = tempfile::tempdir().unwrap();
    let csv = "id,region,age,spend\n1,north,30,1.0\n2,north,thirty,1.0\n";
    let (result, _) = register_bytes(dir.path(), csv.as_bytes(), &description());
    let error = result.unwrap_err();
    assert!(
        matches!(
            &error,
            QueryError::InvalidValue { row: 2, column, value, expected: ColumnType::Integer }
                if column == "age" && value == "thirty"
        ),
        "{error}"
    );
    let message = error.to_string();
    assert!(message.contains("row 2"), "{message}");
    assert!(message.contains("\"age\""), "{message}");
    assert!(message.contains("thirty"), "{message}");
}

#[test]
fn non_finite_floats_stored_as_missing() {
    let dir = tempfile::tempdir().unwrap();
    let csv = "id,region,age,spend\n1,north,30,NaN\n2,north,30,inf\n3,north,30,-inf\n\
               4,north,30,5.5\n5,north,30,-Infinity\n";
    let (result, dest) = register_bytes(dir.path(), csv.as_bytes(), &description());
    let report = result.unwrap();
    assert_eq!(report.rows_kept, 5);
    assert_eq!(
        report.non_finite_cells.get("spend"),
        Some(&vec![1, 2, 3, 5])
    );
    let batch = read_parquet(&dest);
    let spend = batch.column(3).as_primitive::<Float64Type>();
    assert_eq!(spend.null_count(), 4);
    assert_eq!(spend.value(3), 5.5);
}

#[test]
fn rows_without_privacy_unit_are_excluded() {
    let dir = tempfile::tempdir().unwrap();
    let csv = "id,region,age,spend\n1,north,30,1.0\n,north,31,2.0\n3,,,\n  ,south,3,3\n";
    let (result, dest) = register_bytes(dir.path(), csv.as_bytes(), &description());
    let report = result.unwrap();
    assert_eq!(report.rows_read, 4);
    assert_eq!(report.rows_kept, 2);
    assert_eq!(report.excluded_rows, vec![2, 4]);
    let batch = read_parquet(&dest);
    assert_eq!(batch.num_rows(), 2);
    // Row 3 keeps its id; its empty cells are missing.
    assert!(batch.column(1).is_null(1));
    assert!(batch.column(2).is_null(1));
    assert!(batch.column(3).is_null(1));
}

#[test]
fn report_hash_is_sha256_of_written_file() {
    let dir = tempfile::tempdir().unwrap();
    let (result, dest) = register_bytes(
        dir.path(),
        b"id,region,age,spend\n1,north,30,1.0\n",
        &description(),
    );
    let report = result.unwrap();
    let expected = hex::encode(Sha256::digest(std::fs::read(&dest).unwrap()));
    assert_eq!(report.sha256, expected);
    assert_eq!(report.sha256.len(), 64);
}

#[test]
fn parquet_source_is_registered() {
    let dir = tempfile::tempdir().unwrap();
    let csv = "id,region,age,spend\n1,north,30,1.5\n2,,40,\n,east,1,1\n";
    let (result, first) = register_bytes(dir.path(), csv.as_bytes(), &description());
    result.unwrap();

    let second = dir.path().join("again.parquet");
    let report = register_dataset(&first, &description(), &second).unwrap();
    assert_eq!(report.rows_read, 2);
    assert_eq!(report.rows_kept, 2);
    assert_eq!(read_parquet(&first), read_parquet(&second));
}

#[test]
fn parquet_source_with_wrong_type_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let (result, first) = register_bytes(
        dir.path(),
        b"id,region,age,spend\n1,north,30,1.5\n",
        &description(),
    );
    result.unwrap();
    // Declare region as an integer, but the file contains text.
    let mut wrong = description();
    wrong.columns[1] = column("region", ColumnType::Integer, ColumnRole::QuasiIdentifier);
    let error = register_dataset(&first, &wrong, &dir.path().join("x.parquet")).unwrap_err();
    assert!(matches!(&error, QueryError::ColumnTypeMismatch { column, .. } if column == "region"));
}

#[test]
fn unsupported_extension_and_invalid_description_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("data.txt");
    std::fs::write(&source, "id\n").unwrap();
    let dest = dir.path().join("t.parquet");
    let error = register_dataset(&source, &description(), &dest).unwrap_err();
    assert!(matches!(error, QueryError::UnsupportedSource { .. }));

    let mut invalid = description();
    invalid.columns.push(bounded(
        column("bad", ColumnType::Text, ColumnRole::Attribute),
        0.0,
        1.0,
    ));
    let error = register_dataset(&source, &invalid, &dest).unwrap_err();
    assert!(matches!(error, QueryError::InvalidDescription(_)));
}

#[test]
fn field_count_line_skips_blank_lines() {
    let dir = tempfile::tempdir().unwrap();
    let csv = "id,region,age,spend\r\n\r\n\r\n1,\"two\r\nlines\",30,1.0\r\n\r\n2,east\r\n";
    let (result, _) = register_bytes(dir.path(), csv.as_bytes(), &description());
    let error = result.unwrap_err();
    assert!(
        matches!(
            error,
            QueryError::FieldCount {
                row: 2,
                line: 7,
                ..
            }
        ),
        "{error}"
    );
}
