use super::*;

fn read(text: &str) -> (Vec<String>, IdReport) {
    let (list, report) = read_ids(text.as_bytes(), None, &IdRule::default(), 1_000).unwrap();
    (
        (0..list.len()).map(|i| list.text(i).to_owned()).collect(),
        report,
    )
}

#[test]
fn crlf_trailing_space_and_blank_lines_follow_the_rule() {
    let (ids, report) = read("id\r\n1001\r\n1002 \r\n\r\n");
    assert_eq!(ids, ["1001", "1002"]);
    assert_eq!(report.distinct, 2);
}

#[test]
fn byte_order_mark_is_dropped() {
    let (ids, _) = read("\u{feff}id\n1001\n1002\n");
    assert_eq!(ids, ["1001", "1002"]);
    let (list, _) = read_ids(
        "\u{feff}id\n7\n".as_bytes(),
        Some("id"),
        &IdRule::default(),
        10,
    )
    .unwrap();
    assert_eq!(list.text(0), "7");
}

#[test]
fn header_only_file_gives_no_ids() {
    let (ids, report) = read("id\n");
    assert!(ids.is_empty());
    assert_eq!(report, IdReport::default());
}

#[test]
fn empty_file_is_refused() {
    let err = read_ids("".as_bytes(), None, &IdRule::default(), 10).unwrap_err();
    assert!(matches!(err, IdError::NoHeader), "{err}");
}

#[test]
fn duplicates_are_kept_once_and_counted() {
    let (ids, report) = read("id\nu1\nu1\nu2\nu3\n");
    assert_eq!(ids, ["u1", "u2", "u3"]);
    assert_eq!(report.duplicates, 1);
    assert_eq!(report.rows, 4);
}

#[test]
fn normal_form_c_joins_composed_and_decomposed_letters() {
    let (ids, report) = read("id\ncaf\u{e9}\ncafe\u{301}\n");
    assert_eq!(ids, ["caf\u{e9}"]);
    assert_eq!(report.duplicates, 1);
}

#[test]
fn case_rule_decides_whether_case_matters() {
    let lower = IdRule {
        case: CaseRule::Lower,
    };
    assert_eq!(lower.canonical(" ABC\t"), Some("abc".to_owned()));
    assert_eq!(IdRule::default().canonical("ABC"), Some("ABC".to_owned()));
    assert_ne!(lower.statement(), IdRule::default().statement());
}

#[test]
fn statements_round_trip_and_unknown_ones_are_refused() {
    for rule in [
        IdRule::default(),
        IdRule {
            case: CaseRule::Lower,
        },
    ] {
        assert_eq!(IdRule::from_statement(&rule.statement()).unwrap(), rule);
    }
    assert!(matches!(
        IdRule::from_statement("nfkc"),
        Err(IdError::UnknownRule(_))
    ));
}

#[test]
fn named_column_is_read_and_a_missing_one_is_named() {
    let text = "name,id\nx,5\ny,6\n";
    let (list, _) = read_ids(text.as_bytes(), Some("id"), &IdRule::default(), 10).unwrap();
    assert_eq!(list.text(1), "6");
    let err = read_ids(text.as_bytes(), Some("key"), &IdRule::default(), 10).unwrap_err();
    assert!(err.to_string().contains("\"key\""), "{err}");
}

#[test]
fn limit_counts_distinct_identifiers() {
    let text = "id\na\na\nb\nc\n";
    assert!(read_ids(text.as_bytes(), None, &IdRule::default(), 3).is_ok());
    let err = read_ids(text.as_bytes(), None, &IdRule::default(), 2).unwrap_err();
    assert!(matches!(err, IdError::TooMany { limit: 2 }));
}
