use std::sync::OnceLock;

use curve25519_dalek::ristretto::RistrettoPoint;
use openssl::bn::{BigNum, BigNumContext};
use proptest::prelude::*;

use super::input::to_fixed;
use super::noise::NoisePlan;
use super::packing::{pack, unpack};
use super::paillier::{
    CIPHERTEXT_BYTES, CiphertextFault, MODULUS_BYTES, PaillierError, PaillierSecretKey,
    RandomizerPool,
};
use super::random::OsRandom;
use super::*;
use crate::group::{POINT_LEN, PointError};

type Ids = Vec<(Vec<u8>, usize)>;
type Rows = Vec<(Vec<u8>, f64)>;

fn params(noise: NoiseMode) -> PjcParams {
    PjcParams {
        session_id: b"test-session".to_vec(),
        epsilon: 9.0,
        delta: 1e-6,
        max_rows_per_id: 3,
        lower: -10.0,
        upper: 100.0,
        min_group_size: 3,
        max_set_size: 1000,
        noise,
    }
}

/// Returns a copy of one key shared by all tests, since generating a 2048-bit key per
/// test would only add time.
fn shared_key() -> PaillierSecretKey {
    static KEY: OnceLock<PaillierSecretKey> = OnceLock::new();
    KEY.get_or_init(|| PaillierSecretKey::generate().unwrap())
        .try_clone()
        .unwrap()
}

fn value_party(params: &PjcParams, rows: &[(Vec<u8>, f64)]) -> Result<ValueParty, PjcError> {
    let key = shared_key();
    let pool = RandomizerPool::generate(&key, 4)?;
    ValueParty::with_key(params, key, pool, rows)
}

fn id(text: &str) -> Vec<u8> {
    text.as_bytes().to_vec()
}

fn ids(entries: &[(&str, usize)]) -> Ids {
    entries.iter().map(|(u, g)| (id(u), *g)).collect()
}

fn rows(entries: &[(&str, f64)]) -> Rows {
    entries.iter().map(|(w, v)| (id(w), *v)).collect()
}

/// Everything one run shows, with every message passed through its encoding.
struct Run {
    output: PjcOutput,
    duplicates_dropped: usize,
    rows_dropped: usize,
    match_counts: Vec<usize>,
}

fn run(params: &PjcParams, ids: &Ids, group_count: usize, rows: &Rows) -> Result<Run, PjcError> {
    let (id_party, message1) = IdParty::start(params, ids, group_count)?;
    let duplicates_dropped = id_party.duplicates_dropped();
    let message1 = Message1::from_bytes(&message1.to_bytes(), params.max_set_size)?;

    let value_party = value_party(params, rows)?;
    let rows_dropped = value_party.rows_dropped();
    let (value_party, message2) = value_party.respond(&message1)?;
    let message2 = Message2::from_bytes(&message2.to_bytes(), id_party.max_message2_entries())?;

    let (id_party, message3) = id_party.mask(&message2)?;
    let match_counts = id_party.match_counts().to_vec();
    let message3 = Message3::from_bytes(&message3.to_bytes(), value_party.public_key())?;
    let message4 = value_party.release(&message3)?;
    let message4 = Message4::from_bytes(&message4.to_bytes(), id_party.public_key())?;

    Ok(Run {
        output: id_party.finish(&message4)?,
        duplicates_dropped,
        rows_dropped,
        match_counts,
    })
}

/// Checks a no-noise output against the plain result: equal counts, and sums within the
/// fixed-point error of `2^-17` per row (plus float rounding of the plain sum).
fn assert_equals_plain(output: &PjcOutput, plain: &[PlainGroup]) {
    assert_eq!(output.groups.len(), plain.len(), "group count");
    for (group, (released, exact)) in output.groups.iter().zip(plain).enumerate() {
        let released = released.expect("no group is suppressed without noise");
        assert_eq!(
            released.persons, exact.persons as i64,
            "persons of group {group}"
        );
        assert_eq!(released.rows, exact.rows as i64, "rows of group {group}");
        let tolerance = exact.rows as f64 * 2f64.powi(-17) + 1e-9 * exact.sum.abs();
        assert!(
            (released.sum - exact.sum).abs() <= tolerance,
            "sum of group {group}: {} vs plain {}",
            released.sum,
            exact.sum
        );
    }
    let total: u64 = plain.iter().map(|g| g.persons).sum();
    assert_eq!(output.total_persons, total as i64, "total persons");
}

fn assert_all_zero(output: &PjcOutput) {
    for (group, released) in output.groups.iter().enumerate() {
        let released = released.expect("no group is suppressed without noise");
        assert_eq!(released.persons, 0, "persons of group {group}");
        assert_eq!(released.rows, 0, "rows of group {group}");
        assert_eq!(released.sum, 0.0, "sum of group {group}");
    }
    assert_eq!(output.total_persons, 0);
}

// ---- End-to-end runs without noise ----

#[test]
fn insecure_run_equals_plain_result() {
    let params = params(NoiseMode::InsecureNone);
    let ids = ids(&[
        ("ann", 0),
        ("bob", 0),
        ("cy", 1),
        ("dee", 1),
        ("eve", 2),
        ("fay", 0),
    ]);
    let rows = rows(&[
        ("ann", 1.5),
        ("ann", 2.25),
        ("bob", -3.0),
        ("cy", 10.0),
        ("dee", 0.5),
        ("dee", 0.5),
        ("gus", 40.0),
        ("hal", 7.0),
    ]);
    let run = run(&params, &ids, 3, &rows).unwrap();
    let plain = plain_result(&params, &ids, 3, &rows);

    assert_equals_plain(&run.output, &plain);
    // Multiples of 2^-16 are exact in fixed point, so these sums match exactly.
    let sums: Vec<f64> = run.output.groups.iter().map(|g| g.unwrap().sum).collect();
    assert_eq!(sums, vec![0.75, 11.0, 0.0]);
    assert_eq!(run.output.threshold, None);
    let shift = NoisePlan::new(&params).unwrap().shift as usize;
    assert_eq!(run.match_counts, vec![2 + shift, 2 + shift, shift]);
}

#[test]
fn fractional_sums_stay_within_fixed_point_error() {
    let params = params(NoiseMode::InsecureNone);
    let ids = ids(&[("a", 0), ("b", 0), ("c", 0)]);
    let rows = rows(&[
        ("a", 0.1),
        ("a", 1.0 / 3.0),
        ("b", 12.345_678),
        ("c", -0.000_01),
    ]);
    let run = run(&params, &ids, 1, &rows).unwrap();
    assert_equals_plain(&run.output, &plain_result(&params, &ids, 1, &rows));
}

#[test]
fn empty_id_set_gives_zero_groups() {
    let params = params(NoiseMode::InsecureNone);
    let rows = rows(&[("a", 1.0), ("b", 2.0)]);
    let run = run(&params, &Vec::new(), 2, &rows).unwrap();
    assert_all_zero(&run.output);
}

#[test]
fn empty_value_set_gives_zero_groups() {
    let params = params(NoiseMode::InsecureNone);
    let ids = ids(&[("a", 0), ("b", 1)]);
    let run = run(&params, &ids, 2, &Vec::new()).unwrap();
    assert_all_zero(&run.output);
}

#[test]
fn disjoint_sets_give_zero_groups() {
    let params = params(NoiseMode::InsecureNone);
    let ids = ids(&[("a", 0), ("b", 0), ("c", 1)]);
    let rows = rows(&[("x", 5.0), ("y", 6.0), ("z", -1.0)]);
    let run = run(&params, &ids, 2, &rows).unwrap();
    assert_all_zero(&run.output);
}

#[test]
fn duplicates_are_dropped_on_both_sides() {
    let params = params(NoiseMode::InsecureNone);
    // "a" appears again in group 1 and stays in group 0; "b" repeats in its own group.
    let ids = ids(&[("a", 0), ("b", 1), ("a", 1), ("b", 1)]);
    // max_rows_per_id is 3: the fourth and fifth rows of "a" are dropped.
    let rows = rows(&[
        ("a", 1.0),
        ("a", 2.0),
        ("b", 5.0),
        ("a", 3.0),
        ("a", 50.0),
        ("a", 60.0),
    ]);
    let run = run(&params, &ids, 2, &rows).unwrap();

    assert_eq!(run.duplicates_dropped, 2);
    assert_eq!(run.rows_dropped, 2);
    let groups: Vec<GroupRelease> = run.output.groups.iter().map(|g| g.unwrap()).collect();
    assert_eq!(groups[0].persons, 1);
    assert_eq!(groups[0].rows, 3);
    assert_eq!(groups[0].sum, 6.0);
    assert_eq!(groups[1].persons, 1);
    assert_eq!(groups[1].rows, 1);
    assert_eq!(groups[1].sum, 5.0);
    assert_equals_plain(&run.output, &plain_result(&params, &ids, 2, &rows));
}

#[test]
fn values_are_clamped_to_bounds() {
    let params = params(NoiseMode::InsecureNone);
    let ids = ids(&[("low", 0), ("high", 1), ("inf", 1)]);
    let rows = rows(&[("low", -1e9), ("high", 1e9), ("inf", f64::INFINITY)]);
    let run = run(&params, &ids, 2, &rows).unwrap();
    let groups: Vec<GroupRelease> = run.output.groups.iter().map(|g| g.unwrap()).collect();
    assert_eq!(groups[0].sum, -10.0);
    assert_eq!(groups[1].sum, 200.0);
    assert_equals_plain(&run.output, &plain_result(&params, &ids, 2, &rows));
}

#[test]
fn fresh_key_run_equals_plain_result() {
    let params = params(NoiseMode::InsecureNone);
    let ids = ids(&[("a", 0), ("b", 0)]);
    let rows = rows(&[("a", 4.0), ("b", -2.0), ("c", 9.0)]);
    let (id_party, message1) = IdParty::start(&params, &ids, 1).unwrap();
    let value_party = ValueParty::new(&params, &rows).unwrap();
    assert_eq!(value_party.id_count(), 3);
    let (value_party, message2) = value_party.respond(&message1).unwrap();
    let (id_party, message3) = id_party.mask(&message2).unwrap();
    let message4 = value_party.release(&message3).unwrap();
    let output = id_party.finish(&message4).unwrap();
    assert_equals_plain(&output, &plain_result(&params, &ids, 1, &rows));
}

// ---- Noise and threshold ----

#[test]
fn small_group_is_suppressed_with_noise() {
    let params = params(NoiseMode::DiscreteLaplace);
    let mut id_list: Ids = (0..40)
        .map(|i| (format!("big{i}").into_bytes(), 0))
        .collect();
    id_list.push((id("lonely"), 1));
    let mut row_list: Rows = (0..40)
        .map(|i| (format!("big{i}").into_bytes(), 2.0))
        .collect();
    row_list.push((id("lonely"), 7.0));

    let run = run(&params, &id_list, 2, &row_list).unwrap();
    let threshold = run.output.threshold.expect("noise is on");
    let plan = NoisePlan::new(&params).unwrap();
    assert_eq!(threshold, plan.threshold);

    // The person noise is clamp(Z, -s, s), so 40 persons stay far above the threshold
    // and 1 person stays far below it.
    assert!(
        threshold + plan.shift as i64 <= 40,
        "threshold {threshold} is too high for 40"
    );
    assert!(
        1 + (plan.shift as i64) < threshold,
        "a single person could pass {threshold}"
    );
    assert_eq!(
        run.output.groups[1], None,
        "the group of one person is released"
    );

    let big = run.output.groups[0].expect("the group of 40 persons should be released");
    assert!(
        (big.persons - 40).abs() <= plan.shift as i64,
        "persons {}",
        big.persons
    );
    // Rows noise has scale 1 here and sum noise scale 2^16 × 100 units: a deviation of 60
    // scales has probability below e^-60.
    assert!((big.rows - 40).abs() <= 60, "rows {}", big.rows);
    assert!((big.sum - 80.0).abs() <= 60.0 * 100.0, "sum {}", big.sum);
}

#[test]
fn privacy_loss_reports_the_job_budget() {
    let key = shared_key();
    let pool = RandomizerPool::generate(&key, 0).unwrap();
    let noisy = params(NoiseMode::DiscreteLaplace);
    let party = ValueParty::with_key(&noisy, key, pool, &rows(&[("a", 1.0)])).unwrap();
    assert_eq!(
        party.privacy_loss(),
        PrivacyLoss {
            epsilon: 9.0,
            delta: 1e-6
        }
    );

    let insecure = params(NoiseMode::InsecureNone);
    let party = value_party(&insecure, &rows(&[("a", 1.0)])).unwrap();
    assert_eq!(party.privacy_loss().epsilon, f64::INFINITY);
}

#[test]
fn noise_plan_keeps_truncation_below_delta() {
    for (epsilon, delta) in [(9.0, 1e-6), (1.0, 1e-9), (0.3, 1e-5), (3.0, 0.5)] {
        let params = PjcParams {
            epsilon,
            delta,
            ..params(NoiseMode::DiscreteLaplace)
        };
        let plan = NoisePlan::new(&params).unwrap();
        let alpha = (-1.0 / plan.persons_scale).exp();
        // P[Z <= -s] + P[Z >= s] for discrete Laplace: 2 α^s / (1 + α).
        let truncation = 2.0 * alpha.powf(plan.shift as f64) / (1.0 + alpha);
        assert!(truncation <= delta, "ε={epsilon} δ={delta}: {truncation}");
        assert!(
            plan.persons_scale >= 3.0 / epsilon,
            "persons scale {}",
            plan.persons_scale
        );
        assert!(
            plan.rows_scale >= 3.0 * 3.0 / epsilon,
            "rows scale {}",
            plan.rows_scale
        );
        let row_bound = 100.0 * 65536.0;
        assert!(
            plan.sum_scale >= 3.0 * 3.0 * row_bound / epsilon,
            "sum scale {}",
            plan.sum_scale
        );
    }
}

#[test]
fn threshold_matches_formula() {
    // ε = 9 gives a share of 3 and a persons scale of 1/3 (raised by an ulp or so):
    // (3 - 1) + ceil(ln(1e6) / 3) = 2 + 5.
    let plan = NoisePlan::new(&params(NoiseMode::DiscreteLaplace)).unwrap();
    assert_eq!(plan.threshold, 7);
    // s = ceil(ln(2e6) / 3) = 5.
    assert_eq!(plan.shift, 5);
    // A minimum below 2 still hides a single person.
    let params = PjcParams {
        min_group_size: 0,
        ..params(NoiseMode::DiscreteLaplace)
    };
    assert_eq!(NoisePlan::new(&params).unwrap().threshold, 6);
}

#[test]
fn fake_counts_are_within_padding() {
    let plan = NoisePlan::new(&PjcParams {
        epsilon: 0.5,
        ..params(NoiseMode::DiscreteLaplace)
    })
    .unwrap();
    let counts = plan.fake_counts(200).unwrap();
    assert!(counts.iter().all(|&c| c <= plan.padding()), "{counts:?}");
    let mean = counts.iter().sum::<usize>() as f64 / counts.len() as f64;
    let shift = plan.shift as f64;
    assert!(
        (mean - shift).abs() < shift / 4.0,
        "mean {mean}, shift {shift}"
    );
}

#[test]
fn invalid_parameters_are_rejected() {
    let base = params(NoiseMode::DiscreteLaplace);
    let cases: Vec<(&str, PjcParams)> = vec![
        (
            "session_id",
            PjcParams {
                session_id: Vec::new(),
                ..base.clone()
            },
        ),
        (
            "epsilon",
            PjcParams {
                epsilon: 0.0,
                ..base.clone()
            },
        ),
        (
            "epsilon",
            PjcParams {
                epsilon: f64::NAN,
                ..base.clone()
            },
        ),
        (
            "delta",
            PjcParams {
                delta: 0.0,
                ..base.clone()
            },
        ),
        (
            "delta",
            PjcParams {
                delta: 1.0,
                ..base.clone()
            },
        ),
        (
            "max_rows_per_id",
            PjcParams {
                max_rows_per_id: 0,
                ..base.clone()
            },
        ),
        (
            "lower",
            PjcParams {
                lower: 5.0,
                upper: 1.0,
                ..base.clone()
            },
        ),
        (
            "lower",
            PjcParams {
                upper: 1e13,
                ..base.clone()
            },
        ),
        (
            "lower",
            PjcParams {
                lower: f64::NEG_INFINITY,
                ..base.clone()
            },
        ),
        (
            "epsilon",
            PjcParams {
                epsilon: 1e-6,
                ..base.clone()
            },
        ),
    ];
    for (expected, params) in cases {
        match NoisePlan::new(&params) {
            Err(PjcError::InvalidParameter { name, .. }) => assert_eq!(name, expected),
            other => panic!("{expected}: expected a parameter error, got {other:?}"),
        }
    }
}

#[test]
fn invalid_local_inputs_are_rejected() {
    let params = params(NoiseMode::InsecureNone);
    let nan = value_party(&params, &rows(&[("a", 1.0), ("b", f64::NAN)]));
    assert!(
        matches!(nan, Err(PjcError::InvalidInput { row: 1, .. })),
        "{nan:?}"
    );

    let out_of_range = IdParty::start(&params, &ids(&[("a", 0), ("b", 2)]), 2);
    assert!(matches!(
        out_of_range,
        Err(PjcError::InvalidInput { row: 1, .. })
    ));

    for group_count in [0, MAX_GROUPS + 1] {
        let result = IdParty::start(&params, &ids(&[]), group_count);
        assert!(matches!(
            result,
            Err(PjcError::InvalidParameter {
                name: "group_count",
                ..
            })
        ));
    }

    let small = PjcParams {
        max_set_size: 2,
        ..params.clone()
    };
    let large = IdParty::start(&small, &ids(&[("a", 0), ("b", 0), ("c", 0)]), 1);
    assert!(matches!(
        large,
        Err(PjcError::SetTooLarge { found: 3, limit: 2 })
    ));
}

// ---- Tampered messages ----

fn started(group_count: usize) -> (IdParty, Message1) {
    let ids = ids(&[("a", 0), ("b", 0), ("c", group_count - 1)]);
    IdParty::start(&params(NoiseMode::InsecureNone), &ids, group_count).unwrap()
}

fn responded() -> (IdParty, ValuePartyResponded, Message2) {
    let params = params(NoiseMode::InsecureNone);
    let (id_party, message1) = started(2);
    let value_party = value_party(&params, &rows(&[("a", 1.0), ("z", 2.0)])).unwrap();
    let (value_party, message2) = value_party.respond(&message1).unwrap();
    (id_party, value_party, message2)
}

/// Offset of value entry `entry` in an encoded message 2.
fn value_entry_offset(message: &Message2, entry: usize) -> usize {
    let groups: usize = message.groups.iter().map(|g| 4 + POINT_LEN * g.len()).sum();
    2 + MODULUS_BYTES + 1 + groups + 4 + entry * (POINT_LEN + CIPHERTEXT_BYTES)
}

#[test]
fn message1_with_identity_point_is_rejected() {
    let (_, message1) = started(1);
    let mut bytes = message1.to_bytes();
    // Header (2), group count (1), count (4), then the first point.
    let second = 7 + POINT_LEN;
    bytes[second..second + POINT_LEN].fill(0);
    let error = Message1::from_bytes(&bytes, 100).unwrap_err();
    match error {
        PjcError::InvalidPoint { position, source } => {
            assert_eq!(
                position,
                Position {
                    message: 1,
                    part: Part::Group(0),
                    index: 1
                }
            );
            assert_eq!(source, PointError::Identity { index: 1 });
        }
        other => panic!("expected an invalid point, got {other:?}"),
    }
}

#[test]
fn message1_with_non_canonical_point_is_rejected() {
    let (_, message1) = started(1);
    let mut bytes = message1.to_bytes();
    let base = bytes.len() - POINT_LEN;
    bytes[base..].fill(0xff);
    let error = Message1::from_bytes(&bytes, 100).unwrap_err();
    assert!(error.is_peer_fault());
    match error {
        PjcError::InvalidPoint { position, .. } => {
            assert_eq!(position.part, Part::FakeMatchBase);
        }
        other => panic!("expected an invalid point, got {other:?}"),
    }
}

#[test]
fn message1_wrong_group_count_is_rejected() {
    let (_, message1) = started(1);
    let mut bytes = message1.to_bytes();
    for found in [0u8, 17] {
        bytes[2] = found;
        match Message1::from_bytes(&bytes, 100).unwrap_err() {
            PjcError::InvalidGroupCount {
                message,
                found: reported,
            } => {
                assert_eq!(message, 1);
                assert_eq!(reported, usize::from(found));
            }
            other => panic!("expected an invalid group count, got {other:?}"),
        }
    }
}

#[test]
fn message1_over_the_set_limit_is_rejected() {
    let (_, message1) = started(1);
    let error = Message1::from_bytes(&message1.to_bytes(), 2).unwrap_err();
    assert!(
        matches!(
            error,
            PjcError::TooManyEntries {
                message: 1,
                found: 3,
                limit: 2,
                ..
            }
        ),
        "{error:?}"
    );
}

#[test]
fn message1_repeated_point_is_rejected() {
    let (_, message1) = started(1);
    let mut bytes = message1.to_bytes();
    let first = bytes[7..7 + POINT_LEN].to_vec();
    bytes[7 + POINT_LEN..7 + 2 * POINT_LEN].copy_from_slice(&first);
    let error = Message1::from_bytes(&bytes, 100).unwrap_err();
    assert!(
        matches!(error, PjcError::DuplicateElement { position } if position.index == 1),
        "{error:?}"
    );
}

#[test]
fn truncated_and_extended_messages_are_rejected() {
    let (_, message1) = started(1);
    let bytes = message1.to_bytes();
    let short = Message1::from_bytes(&bytes[..bytes.len() - 1], 100).unwrap_err();
    assert!(
        matches!(short, PjcError::MalformedMessage { message: 1, .. }),
        "{short:?}"
    );

    let mut long = bytes.clone();
    long.push(0);
    let long = Message1::from_bytes(&long, 100).unwrap_err();
    assert!(
        matches!(long, PjcError::MalformedMessage { message: 1, .. }),
        "{long:?}"
    );

    let mut wrong_header = bytes;
    wrong_header[1] = 2;
    let header = Message1::from_bytes(&wrong_header, 100).unwrap_err();
    assert!(
        matches!(header, PjcError::MalformedMessage { message: 1, .. }),
        "{header:?}"
    );
}

#[test]
fn message2_ciphertext_out_of_range_is_rejected() {
    let (id_party, _, message2) = responded();
    let limit = id_party.max_message2_entries();
    let offset = value_entry_offset(&message2, 1) + POINT_LEN;
    for fill in [0xffu8, 0x00] {
        let mut bytes = message2.to_bytes();
        bytes[offset..offset + CIPHERTEXT_BYTES].fill(fill);
        let error = Message2::from_bytes(&bytes, limit).unwrap_err();
        match error {
            PjcError::InvalidCiphertext { position, fault } => {
                assert_eq!(
                    position,
                    Position {
                        message: 2,
                        part: Part::ValueCiphertext,
                        index: 1
                    }
                );
                assert_eq!(fault, CiphertextFault::OutOfRange);
            }
            other => panic!("expected an invalid ciphertext, got {other:?}"),
        }
    }
}

#[test]
fn message2_ciphertext_sharing_a_factor_is_rejected() {
    let (id_party, _, message2) = responded();
    let mut bytes = message2.to_bytes();
    // n itself is in range (0 < n < n^2) but shares the factor n with the modulus.
    let n = message2
        .public_key
        .modulus()
        .to_vec_padded(CIPHERTEXT_BYTES as i32)
        .unwrap();
    let offset = value_entry_offset(&message2, 2) + POINT_LEN;
    bytes[offset..offset + CIPHERTEXT_BYTES].copy_from_slice(&n);
    let error = Message2::from_bytes(&bytes, id_party.max_message2_entries()).unwrap_err();
    match error {
        PjcError::InvalidCiphertext { position, fault } => {
            assert_eq!(position.index, 2);
            assert_eq!(fault, CiphertextFault::NotCoprime);
        }
        other => panic!("expected an invalid ciphertext, got {other:?}"),
    }
}

#[test]
fn message2_identity_and_non_canonical_points_are_rejected() {
    let (id_party, _, message2) = responded();
    let limit = id_party.max_message2_entries();
    let offset = value_entry_offset(&message2, 3);
    for (fill, identity) in [(0x00u8, true), (0xff, false)] {
        let mut bytes = message2.to_bytes();
        bytes[offset..offset + POINT_LEN].fill(fill);
        match Message2::from_bytes(&bytes, limit).unwrap_err() {
            PjcError::InvalidPoint { position, source } => {
                assert_eq!(
                    position,
                    Position {
                        message: 2,
                        part: Part::ValuePoint,
                        index: 3
                    }
                );
                assert_eq!(matches!(source, PointError::Identity { .. }), identity);
            }
            other => panic!("expected an invalid point, got {other:?}"),
        }
    }
}

#[test]
fn message2_wrong_group_count_is_rejected() {
    let (id_party, _, message2) = responded();
    // Drop the second group and re-encode: the layout is valid but the count is not.
    let public_key = message2.public_key.try_clone().unwrap();
    let mut groups = message2.groups;
    groups.truncate(1);
    let fewer = Message2 {
        public_key,
        groups,
        values: message2.values,
    };
    let decoded = Message2::from_bytes(&fewer.to_bytes(), id_party.max_message2_entries());
    let error = id_party.mask(&decoded.unwrap()).unwrap_err();
    assert!(
        matches!(
            error,
            PjcError::GroupCountMismatch {
                message: 2,
                expected: 2,
                found: 1
            }
        ),
        "{error:?}"
    );
}

#[test]
fn message2_short_group_list_is_rejected() {
    let (id_party, _, mut message2) = responded();
    message2.groups[1].pop();
    let error = id_party.mask(&message2).unwrap_err();
    assert!(
        matches!(error, PjcError::WrongListLength { group: 1, .. }),
        "{error:?}"
    );
}

#[test]
fn message2_invalid_public_key_is_rejected() {
    let (id_party, _, message2) = responded();
    let mut bytes = message2.to_bytes();
    bytes[2] = 0; // The modulus loses its top bits.
    let error = Message2::from_bytes(&bytes, id_party.max_message2_entries()).unwrap_err();
    assert!(
        matches!(error, PjcError::InvalidPublicKey { .. }),
        "{error:?}"
    );
}

#[test]
fn message3_invalid_ciphertext_and_count_are_rejected() {
    let (id_party, value_party, message2) = responded();
    let (_, message3) = id_party.mask(&message2).unwrap();
    let key = value_party.public_key();

    let mut bytes = message3.to_bytes();
    bytes[3 + CIPHERTEXT_BYTES..].fill(0xff);
    let error = Message3::from_bytes(&bytes, key).unwrap_err();
    assert!(
        matches!(
            error,
            PjcError::InvalidCiphertext {
                position: Position {
                    message: 3,
                    index: 1,
                    ..
                },
                ..
            }
        ),
        "{error:?}"
    );

    let one = Message3 {
        ciphertexts: vec![message3.ciphertexts[0].try_clone().unwrap()],
    };
    let error = value_party.release(&one).unwrap_err();
    assert!(
        matches!(
            error,
            PjcError::GroupCountMismatch {
                message: 3,
                expected: 2,
                found: 1
            }
        ),
        "{error:?}"
    );
}

#[test]
fn message4_plaintext_out_of_range_is_rejected() {
    let (id_party, value_party, message2) = responded();
    let (id_party, message3) = id_party.mask(&message2).unwrap();
    let message4 = value_party.release(&message3).unwrap();
    let mut bytes = message4.to_bytes();
    bytes[3..3 + MODULUS_BYTES].fill(0xff);
    let error = Message4::from_bytes(&bytes, id_party.public_key()).unwrap_err();
    assert!(
        matches!(
            error,
            PjcError::InvalidPlaintext {
                position: Position {
                    message: 4,
                    index: 0,
                    ..
                }
            }
        ),
        "{error:?}"
    );
}

#[test]
fn message4_unrelated_plaintext_is_implausible() {
    let (id_party, value_party, message2) = responded();
    let (id_party, message3) = id_party.mask(&message2).unwrap();
    let mut message4 = value_party.release(&message3).unwrap();
    // A value near n/2 unpacks to a row count far beyond i64.
    let mut half = BigNum::new().unwrap();
    half.rshift1(id_party.public_key().modulus()).unwrap();
    message4.plaintexts[1] = half;
    let error = id_party.finish(&message4).unwrap_err();
    assert!(
        matches!(error, PjcError::ImplausibleResult { group: 1 }),
        "{error:?}"
    );
}

// ---- Paillier ----

#[test]
fn paillier_decrypts_sums_and_constants() {
    let key = shared_key();
    let public = key.public_key();
    let mut ctx = BigNumContext::new().unwrap();
    let number = |v: u32| BigNum::from_u32(v).unwrap();

    let a = public.encrypt(&number(41), &mut ctx).unwrap();
    let mut pool = RandomizerPool::generate(&key, 1).unwrap();
    let b = key
        .encrypt_all(&[number(1000)], &mut pool)
        .unwrap()
        .pop()
        .unwrap();
    assert!(pool.is_empty());

    let sum = public.add(&a, &b, &mut ctx).unwrap();
    assert_eq!(key.decrypt(&sum, &mut ctx).unwrap(), number(1041));
    let shifted = public.add_plaintext(&sum, &number(9), &mut ctx).unwrap();
    assert_eq!(key.decrypt(&shifted, &mut ctx).unwrap(), number(1050));
    let fresh = public.rerandomize(&shifted, &mut ctx).unwrap();
    assert_ne!(fresh.to_bytes(), shifted.to_bytes());
    assert_eq!(key.decrypt(&fresh, &mut ctx).unwrap(), number(1050));

    let all = public.add_all(&[&a, &b, &fresh]).unwrap();
    assert_eq!(
        key.decrypt(&all, &mut ctx).unwrap(),
        number(41 + 1000 + 1050)
    );
    let none = public.add_all(&[]).unwrap();
    assert_eq!(key.decrypt(&none, &mut ctx).unwrap(), number(0));
}

#[test]
fn paillier_plaintexts_wrap_modulo_n() {
    let key = shared_key();
    let mut ctx = BigNumContext::new().unwrap();
    let n = key.public_key().modulus().to_owned().unwrap();
    let mut n_minus_one = n.to_owned().unwrap();
    n_minus_one.sub_word(1).unwrap();
    let pool = &mut RandomizerPool::generate(&key, 0).unwrap();
    let c = key
        .encrypt_all(&[n_minus_one], pool)
        .unwrap()
        .pop()
        .unwrap();
    let two = key
        .public_key()
        .add_plaintext(&c, &BigNum::from_u32(2).unwrap(), &mut ctx);
    assert_eq!(
        key.decrypt(&two.unwrap(), &mut ctx).unwrap(),
        BigNum::from_u32(1).unwrap()
    );
}

#[test]
fn paillier_rejects_pool_of_another_key() {
    let key = shared_key();
    let other = PaillierSecretKey::generate().unwrap();
    let mut pool = RandomizerPool::generate(&other, 1).unwrap();
    let result = key.encrypt_all(&[BigNum::from_u32(1).unwrap()], &mut pool);
    assert!(matches!(result, Err(PaillierError::ForeignPool)));
}

#[test]
fn paillier_batch_check_names_the_bad_ciphertext() {
    let key = shared_key();
    let mut pool = RandomizerPool::generate(&key, 0).unwrap();
    let values: Vec<BigNum> = (0..5).map(|v| BigNum::from_u32(v).unwrap()).collect();
    let mut encoded: Vec<Vec<u8>> = key
        .encrypt_all(&values, &mut pool)
        .unwrap()
        .iter()
        .map(|c| c.to_bytes())
        .collect();
    let public = key.public_key();
    let refs = |encoded: &[Vec<u8>]| encoded.iter().map(|e| e.to_vec()).collect::<Vec<_>>();
    let check = |encoded: &[Vec<u8>]| {
        let owned = refs(encoded);
        let slices: Vec<&[u8]> = owned.iter().map(Vec::as_slice).collect();
        public.ciphertexts_from_bytes(&slices).map(|cts| cts.len())
    };
    assert_eq!(check(&encoded).unwrap(), 5);

    encoded[3] = public
        .modulus()
        .to_vec_padded(CIPHERTEXT_BYTES as i32)
        .unwrap();
    match check(&encoded) {
        Err(PaillierError::InvalidCiphertext { index, fault }) => {
            assert_eq!(index, 3);
            assert_eq!(fault, CiphertextFault::NotCoprime);
        }
        other => panic!("expected an invalid ciphertext, got {other:?}"),
    }
}

// ---- Packing and fixed point ----

#[test]
fn packing_round_trips_signed_parts() {
    let key = shared_key();
    let n = key.public_key().modulus();
    let mut ctx = BigNumContext::new().unwrap();
    let limit = (1i128 << 126) - 1;
    for (sum, rows) in [
        (0, 0),
        (5, 3),
        (-5, 3),
        (-7, -2),
        (limit, 1 << 60),
        (-limit, -(1 << 60)),
    ] {
        let packed = pack(sum, rows, n, &mut ctx).unwrap();
        assert_eq!(
            unpack(&packed, n, &mut ctx).unwrap(),
            Some((sum, rows)),
            "{sum} {rows}"
        );
    }
}

#[test]
fn packed_plaintexts_add_both_parts() {
    let key = shared_key();
    let n = key.public_key().modulus();
    let mut ctx = BigNumContext::new().unwrap();
    let mut total = BigNum::new().unwrap();
    for (sum, rows) in [(-300i128, 2i128), (100, 1), (-1, 4)] {
        let packed = pack(sum, rows, n, &mut ctx).unwrap();
        let mut next = BigNum::new().unwrap();
        next.mod_add(&total, &packed, n, &mut ctx).unwrap();
        total = next;
    }
    assert_eq!(unpack(&total, n, &mut ctx).unwrap(), Some((-201, 7)));
}

#[test]
fn fixed_point_rounds_ties_to_even() {
    let unit = 2f64.powi(-16);
    assert_eq!(to_fixed(1.0, -10.0, 10.0), 65536);
    assert_eq!(to_fixed(0.5 * unit, -10.0, 10.0), 0);
    assert_eq!(to_fixed(1.5 * unit, -10.0, 10.0), 2);
    assert_eq!(to_fixed(-1.5 * unit, -10.0, 10.0), -2);
    assert_eq!(to_fixed(99.0, -10.0, 10.0), 10 * 65536);
}

// ---- Shuffle ----

#[test]
fn shuffle_is_a_permutation() {
    let mut random = OsRandom::new();
    let mut items: Vec<u32> = (0..1000).collect();
    random.shuffle(&mut items);
    assert_ne!(
        items,
        (0..1000).collect::<Vec<_>>(),
        "1000 items kept their order"
    );
    items.sort_unstable();
    assert_eq!(items, (0..1000).collect::<Vec<_>>());
}

#[test]
fn uniform_draws_cover_the_range() {
    let mut random = OsRandom::new();
    let mut counts = [0usize; 3];
    for _ in 0..3000 {
        counts[random.below(3) as usize] += 1;
    }
    // Each count is Binomial(3000, 1/3): mean 1000, standard deviation about 26.
    assert!(
        counts.iter().all(|&c| (850..=1150).contains(&c)),
        "{counts:?}"
    );
    assert_eq!(random.below(1), 0);
}

#[test]
fn padding_points_are_distinct() {
    let a: RistrettoPoint = super::random::random_point();
    let b: RistrettoPoint = super::random::random_point();
    assert_ne!(a, b);
}

// ---- Properties ----

fn id_strategy() -> impl Strategy<Value = Vec<u8>> {
    (0u8..24).prop_map(|i| format!("id{i}").into_bytes())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn insecure_result_equals_plain_for_random_sets(
        group_count in 1usize..=3,
        raw_ids in prop::collection::vec((id_strategy(), 0usize..3), 0..14),
        raw_rows in prop::collection::vec((id_strategy(), -20i32..150), 0..18),
    ) {
        let params = params(NoiseMode::InsecureNone);
        let ids: Ids = raw_ids.into_iter().map(|(u, g)| (u, g % group_count)).collect();
        let rows: Rows = raw_rows.into_iter().map(|(w, v)| (w, f64::from(v) / 4.0)).collect();
        let run = run(&params, &ids, group_count, &rows).unwrap();
        assert_equals_plain(&run.output, &plain_result(&params, &ids, group_count, &rows));
    }

    #[test]
    fn insecure_result_is_zero_for_disjoint_sets(
        raw_ids in prop::collection::vec(0u8..30, 0..10),
        raw_rows in prop::collection::vec((0u8..30, -5i32..5), 0..10),
    ) {
        let params = params(NoiseMode::InsecureNone);
        let ids: Ids = raw_ids.into_iter().map(|i| (format!("left{i}").into_bytes(), 0)).collect();
        let rows: Rows = raw_rows
            .into_iter()
            .map(|(i, v)| (format!("right{i}").into_bytes(), f64::from(v)))
            .collect();
        let run = run(&params, &ids, 1, &rows).unwrap();
        assert_all_zero(&run.output);
    }
}
