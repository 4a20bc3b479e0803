use proptest::prelude::*;

use super::*;

fn config(parties: usize, vector_len: usize, modulus_bits: u32) -> RoundConfig {
    RoundConfig {
        session_id: "round-1".to_owned(),
        parties,
        vector_len,
        modulus_bits,
        max_contribution: 1_000,
        noise_margin: 0,
    }
}

fn integer_round(parties: usize, vector_len: usize, modulus_bits: u32) -> Round {
    Round::new(config(parties, vector_len, modulus_bits)).unwrap()
}

/// Returns a round of 3 parties and 2 coordinates in the ring of integers modulo 256.
fn eight_bit_round() -> Round {
    let mut config = config(3, 2, 8);
    config.max_contribution = 10;
    Round::new(config).unwrap()
}

/// Runs the key exchange and masking for every party and returns the masked vectors.
fn mask_all(round: &Round, encoded: &[Vec<u64>]) -> Vec<Vec<u64>> {
    let parties: Vec<MaskingParty> = (0..round.parties())
        .map(|index| MaskingParty::new(round, index).unwrap())
        .collect();
    let keys: Vec<[u8; PUBLIC_KEY_LEN]> = parties.iter().map(MaskingParty::public_key).collect();
    parties
        .into_iter()
        .zip(encoded)
        .map(|(party, input)| party.mask(input, &keys).unwrap())
        .collect()
}

/// Masks every party's vector and aggregates them all.
fn aggregate(round: &Round, encoded: &[Vec<u64>]) -> Vec<i128> {
    let mut aggregator = Aggregator::new(round);
    for (index, masked) in mask_all(round, encoded).into_iter().enumerate() {
        aggregator.add(index, masked).unwrap();
    }
    aggregator.finish().unwrap()
}

/// Returns the round with the smallest modulus that passes the bound check.
fn smallest_round(mut config: RoundConfig) -> Round {
    for bits in Modulus::MIN_BITS..=Modulus::MAX_BITS {
        config.modulus_bits = bits;
        if let Ok(round) = Round::new(config.clone()) {
            return round;
        }
    }
    panic!("no modulus of 8 to 64 bits passes the bound check for {config:?}");
}

fn twelve_provider_config(modulus_bits: u32) -> (FixedPoint, RoundConfig) {
    let encoding = FixedPoint::new(1.0, 1 << 13).unwrap();
    let config = RoundConfig {
        session_id: "twelve".to_owned(),
        parties: 12,
        vector_len: 3,
        modulus_bits,
        max_contribution: encoding.max_contribution(60_000),
        noise_margin: 0,
    };
    (encoding, config)
}

#[test]
fn twelve_providers_rejected_at_32_bits() {
    let (_, config) = twelve_provider_config(32);
    let error = Round::new(config).unwrap_err();
    assert_eq!(
        error,
        SecAggError::ModulusTooSmall {
            max_total: 5_897_520_000,
            max_total_bits: 33,
            noise_margin: 0,
            modulus_bits: 32,
            half_modulus: 2_147_483_648,
            required_bits: 34,
        }
    );
    assert_eq!(
        error.to_string(),
        "the total can reach 5,897,520,000 (33 bits) with a noise margin of 0, but a 32-bit \
         modulus represents only totals below 2,147,483,648; use a modulus of at least 34 bits"
    );
}

#[test]
fn twelve_providers_fit_the_suggested_34_bits() {
    let (_, config) = twelve_provider_config(34);
    assert!(Round::new(config).is_ok());
}

#[test]
fn twelve_providers_decode_at_64_bits() {
    let (encoding, config) = twelve_provider_config(64);
    let round = Round::new(config).unwrap();
    let values = [1.0, -1.0, 0.25];
    let encoded: Vec<Vec<u64>> = (0..12)
        .map(|_| encoding.encode(&values, 60_000, &round).unwrap())
        .collect();

    let totals = aggregate(&round, &encoded);
    let means = encoding.decode_mean(&totals, 12 * 60_000).unwrap();

    for (mean, expected) in means.iter().zip(values) {
        assert!(
            (mean - expected).abs() <= 1e-3,
            "mean {mean}, expected {expected}"
        );
        assert!((mean - expected).abs() <= encoding.max_mean_error());
    }
}

#[test]
fn clip_zero_and_negative_rejected() {
    for clip in [0.0, -1.0, -0.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let error = FixedPoint::new(clip, 16).unwrap_err();
        assert!(
            matches!(error, SecAggError::InvalidClip { .. }),
            "clip {clip}: {error}"
        );
    }
    assert_eq!(
        FixedPoint::new(0.0, 16).unwrap_err().to_string(),
        "clipping bound 0 is invalid; expected a finite number greater than 0"
    );
    assert!(
        FixedPoint::new(-1.0, 16)
            .unwrap_err()
            .to_string()
            .contains("clipping bound -1 ")
    );
}

#[test]
fn levels_below_two_rejected() {
    for levels in [0, 1] {
        assert_eq!(
            FixedPoint::new(1.0, levels),
            Err(SecAggError::InvalidLevels { levels })
        );
    }
    assert!(
        FixedPoint::new(1.0, 1)
            .unwrap_err()
            .to_string()
            .contains("with 1 levels")
    );
    assert!(FixedPoint::new(1.0, 2).is_ok());
}

#[test]
fn fewer_than_three_parties_rejected() {
    for parties in 0..MIN_PARTIES {
        let error = Round::new(config(parties, 4, 32)).unwrap_err();
        assert_eq!(error, SecAggError::TooFewParties { parties });
        assert!(
            error.to_string().contains("subtract its own input"),
            "{error}"
        );
    }
    assert!(Round::new(config(MIN_PARTIES, 4, 32)).is_ok());
}

#[test]
fn modulus_bits_outside_8_to_64_rejected() {
    for bits in [0, 7, 65, 128] {
        assert_eq!(
            Round::new(config(3, 1, bits)),
            Err(SecAggError::InvalidModulusBits { bits })
        );
    }
}

#[test]
fn bound_check_rejects_total_of_half_modulus() {
    let mut config = config(3, 1, 8);
    config.max_contribution = 42;
    config.noise_margin = 1;
    let round = Round::new(config.clone()).unwrap();
    assert_eq!(round.max_total(), 127);

    config.noise_margin = 2;
    let error = Round::new(config).unwrap_err();
    assert!(
        matches!(
            error,
            SecAggError::ModulusTooSmall {
                max_total: 128,
                required_bits: 9,
                ..
            }
        ),
        "{error}"
    );
}

#[test]
fn bound_check_rejects_totals_beyond_64_bits() {
    let mut config = config(3, 1, 64);
    config.max_contribution = 1 << 62;
    let error = Round::new(config).unwrap_err();
    assert!(
        matches!(
            error,
            SecAggError::TotalTooLarge {
                max_total_bits: 64,
                ..
            }
        ),
        "{error}"
    );
}

#[test]
fn dropout_aborts_and_releases_nothing() {
    let round = integer_round(4, 2, 32);
    let encoded = vec![vec![1, 2]; 4];
    let masked = mask_all(&round, &encoded);

    let mut aggregator = Aggregator::new(&round);
    aggregator.add(0, masked[0].clone()).unwrap();
    aggregator.add(2, masked[2].clone()).unwrap();
    assert_eq!(aggregator.missing(), vec![1, 3]);

    let error = aggregator.finish().unwrap_err();
    assert_eq!(
        error,
        SecAggError::MissingParties {
            missing: vec![1, 3]
        }
    );
    assert!(error.to_string().contains("[1, 3]"), "{error}");
}

#[test]
fn non_contributory_peer_key_rejected() {
    let round = integer_round(3, 2, 32);
    // The all-zero key and the point with u = 1 both have small order, so X25519 with any
    // secret gives an all-zero shared secret.
    let mut low_order_one = [0u8; PUBLIC_KEY_LEN];
    low_order_one[0] = 1;
    for bad_key in [[0u8; PUBLIC_KEY_LEN], low_order_one] {
        let parties: Vec<MaskingParty> = (0..3)
            .map(|index| MaskingParty::new(&round, index).unwrap())
            .collect();
        let mut keys: Vec<[u8; PUBLIC_KEY_LEN]> =
            parties.iter().map(MaskingParty::public_key).collect();
        keys[2] = bad_key;

        let first = parties.into_iter().next().unwrap();
        let error = first.mask(&[1, 2], &keys).unwrap_err();
        assert_eq!(error, SecAggError::NonContributoryKey { party: 2 });
        assert!(error.to_string().contains("party 2"), "{error}");
    }
}

#[test]
fn mask_rejects_wrong_key_list() {
    let round = integer_round(3, 1, 32);
    let parties: Vec<MaskingParty> = (0..3)
        .map(|index| MaskingParty::new(&round, index).unwrap())
        .collect();
    let keys: Vec<[u8; PUBLIC_KEY_LEN]> = parties.iter().map(MaskingParty::public_key).collect();
    let mut parties = parties.into_iter();

    let error = parties.next().unwrap().mask(&[5], &keys[..2]).unwrap_err();
    assert_eq!(
        error,
        SecAggError::PublicKeyCountMismatch {
            expected: 3,
            found: 2
        }
    );

    let swapped = vec![keys[0], keys[2], keys[1]];
    let error = parties.next().unwrap().mask(&[5], &swapped).unwrap_err();
    assert_eq!(error, SecAggError::OwnKeyMismatch { index: 1 });
}

#[test]
fn mask_rejects_malformed_encoded_vector() {
    let round = eight_bit_round();
    let party = MaskingParty::new(&round, 0).unwrap();
    let keys = [party.public_key(); 3];
    let error = party.mask(&[1], &keys).unwrap_err();
    assert_eq!(
        error,
        SecAggError::InputLengthMismatch {
            expected: 2,
            found: 1
        }
    );

    let party = MaskingParty::new(&round, 0).unwrap();
    let keys = [party.public_key(); 3];
    let error = party.mask(&[1, 256], &keys).unwrap_err();
    assert_eq!(
        error,
        SecAggError::EncodedValueOutOfRange {
            coordinate: 1,
            modulus_bits: 8
        }
    );
}

#[test]
fn party_index_out_of_range_rejected() {
    let round = integer_round(3, 1, 32);
    assert!(matches!(
        MaskingParty::new(&round, 3),
        Err(SecAggError::PartyOutOfRange {
            index: 3,
            parties: 3
        })
    ));
}

#[test]
fn masks_cancel_in_the_sum() {
    let round = integer_round(5, 6, 64);
    let encoded: Vec<Vec<u64>> = (0..5u64)
        .map(|party| (0..6u64).map(|k| party * 100 + k).collect())
        .collect();
    let masked = mask_all(&round, &encoded);
    let modulus = round.modulus();

    for coordinate in 0..6 {
        let plain = encoded
            .iter()
            .fold(0, |sum, vector| modulus.add(sum, vector[coordinate]));
        let masked_sum = masked
            .iter()
            .fold(0, |sum, vector| modulus.add(sum, vector[coordinate]));
        assert_eq!(masked_sum, plain, "coordinate {coordinate}");
    }
}

#[test]
fn masked_vectors_differ_from_inputs() {
    let round = integer_round(4, 8, 64);
    let encoded = vec![vec![7u64; 8]; 4];
    let masked = mask_all(&round, &encoded);
    for (index, (masked, input)) in masked.iter().zip(&encoded).enumerate() {
        // Each coordinate equals its input with probability 2^-64, so a match means no mask.
        for (coordinate, (value, plain)) in masked.iter().zip(input).enumerate() {
            assert_ne!(value, plain, "party {index}, coordinate {coordinate}");
        }
    }
}

#[test]
fn aggregator_rejects_malformed_vectors() {
    let round = eight_bit_round();
    let mut aggregator = Aggregator::new(&round);

    assert_eq!(
        aggregator.add(3, vec![0, 0]),
        Err(SecAggError::PartyOutOfRange {
            index: 3,
            parties: 3
        })
    );
    assert_eq!(
        aggregator.add(0, vec![0]),
        Err(SecAggError::MaskedLengthMismatch {
            index: 0,
            expected: 2,
            found: 1
        })
    );
    assert_eq!(
        aggregator.add(0, vec![0, 256]),
        Err(SecAggError::MaskedValueOutOfRange {
            index: 0,
            coordinate: 1,
            modulus_bits: 8
        })
    );
    aggregator.add(0, vec![0, 255]).unwrap();
    assert_eq!(
        aggregator.add(0, vec![0, 0]),
        Err(SecAggError::DuplicateParty { index: 0 })
    );
    assert_eq!(aggregator.missing(), vec![1, 2]);
}

#[test]
fn integer_totals_may_be_negative() {
    let round = integer_round(3, 3, 16);
    let encoding = IntegerEncoding::new(1_000);
    let inputs = [[-1_000, 5, 0], [-1_000, -6, 0], [-1_000, 0, 0]];
    let encoded: Vec<Vec<u64>> = inputs
        .iter()
        .map(|values| encoding.encode(values, &round).unwrap())
        .collect();
    assert_eq!(aggregate(&round, &encoded), vec![-3_000, -1, 0]);
}

#[test]
fn integer_outside_bound_rejected_naming_coordinate() {
    let round = integer_round(3, 3, 32);
    let encoding = IntegerEncoding::new(10);
    let error = encoding.encode(&[10, -10, -11], &round).unwrap_err();
    assert_eq!(
        error,
        SecAggError::ValueOutOfRange {
            coordinate: 2,
            max_abs: 10
        }
    );
    assert!(error.to_string().contains("coordinate 2"), "{error}");
}

#[test]
fn integer_above_round_contribution_rejected() {
    let round = integer_round(3, 1, 32);
    let error = IntegerEncoding::new(5_000)
        .encode(&[1_001], &round)
        .unwrap_err();
    assert_eq!(
        error,
        SecAggError::ContributionTooLarge {
            coordinate: 0,
            max_contribution: 1_000
        }
    );
}

#[test]
fn nan_input_rejected_naming_coordinate() {
    let round = integer_round(3, 3, 32);
    let encoding = FixedPoint::new(1.0, 11).unwrap();
    let error = encoding
        .encode(&[0.5, f64::NAN, 0.0], 1, &round)
        .unwrap_err();
    assert_eq!(error, SecAggError::NanValue { coordinate: 1 });
    assert!(error.to_string().contains("coordinate 1"), "{error}");
}

#[test]
fn weight_above_declared_maximum_rejected() {
    let encoding = FixedPoint::new(1.0, 11).unwrap();
    let mut config = config(3, 1, 32);
    config.max_contribution = encoding.max_contribution(100);
    let round = Round::new(config).unwrap();
    assert!(encoding.encode(&[1.0], 100, &round).is_ok());
    assert_eq!(
        encoding.encode(&[1.0], 101, &round),
        Err(SecAggError::ContributionTooLarge {
            coordinate: 0,
            max_contribution: 1_000
        })
    );
}

#[test]
fn input_of_wrong_length_rejected() {
    let round = integer_round(3, 2, 32);
    let encoding = FixedPoint::new(1.0, 11).unwrap();
    assert_eq!(
        encoding.encode(&[0.0], 1, &round),
        Err(SecAggError::InputLengthMismatch {
            expected: 2,
            found: 1
        })
    );
    assert_eq!(
        IntegerEncoding::new(1).encode(&[0, 0, 0], &round),
        Err(SecAggError::InputLengthMismatch {
            expected: 2,
            found: 3
        })
    );
}

#[test]
fn rounding_rule_rounds_ties_to_even_and_clamps() {
    // clip 2 with 5 levels gives step 1 and levels for -2, -1, 0, 1, 2.
    let round = integer_round(3, 8, 32);
    let encoding = FixedPoint::new(2.0, 5).unwrap();
    assert_eq!(encoding.step(), 1.0);
    let values = [
        -1.5,
        -0.5,
        0.5,
        1.5,
        0.49,
        f64::INFINITY,
        f64::NEG_INFINITY,
        -7.0,
    ];
    let encoded = encoding.encode(&values, 1, &round).unwrap();
    assert_eq!(encoded, vec![0, 2, 2, 4, 2, 4, 0, 0]);

    let weighted = encoding.encode(&values, 3, &round).unwrap();
    assert_eq!(weighted, vec![0, 6, 6, 12, 6, 12, 0, 0]);
}

#[test]
fn decode_inverts_levels() {
    let encoding = FixedPoint::new(2.0, 5).unwrap();
    assert_eq!(
        encoding.decode_mean(&[0, 2, 4, 6], 2).unwrap(),
        vec![-2.0, -1.0, 0.0, 1.0]
    );
    assert_eq!(
        encoding.decode_sum(&[0, 2, 4, 6], 2),
        vec![-4.0, -2.0, 0.0, 2.0]
    );
    assert_eq!(
        encoding.decode_mean(&[1], 0),
        Err(SecAggError::ZeroTotalWeight)
    );
}

#[test]
fn modulus_centres_and_reduces() {
    let ring = Modulus::new(8).unwrap();
    assert_eq!(ring.half(), 128);
    assert_eq!(ring.centre(128), 128);
    assert_eq!(ring.centre(129), -127);
    assert_eq!(ring.centre(255), -1);
    assert_eq!(ring.reduce(-1), 255);
    assert_eq!(ring.reduce(256 + 3), 3);
    assert_eq!(ring.sub(1, 2), 255);
    assert!(!ring.contains(256));

    let wide = Modulus::new(64).unwrap();
    assert_eq!(wide.centre(u64::MAX), -1);
    assert_eq!(wide.centre(1 << 63), 1 << 63);
    assert_eq!(wide.add(u64::MAX, 2), 1);
    assert!(wide.contains(u64::MAX));
}

#[test]
fn noise_scale_must_be_finite_and_non_negative() {
    for scale in [-1.0, f64::NAN, f64::INFINITY] {
        assert!(matches!(
            LaplaceNoise::new(scale),
            Err(SecAggError::InvalidNoiseScale { .. })
        ));
    }
    assert!(LaplaceNoise::new(0.0).is_ok());
}

#[test]
fn noise_margin_is_the_documented_tail_bound() {
    // ceil(10 * 41 * ln 2) = ceil(284.18...) = 285.
    assert_eq!(LaplaceNoise::new(10.0).unwrap().margin(), 285);
    assert_eq!(LaplaceNoise::new(0.0).unwrap().margin(), 0);
    assert_eq!(LaplaceNoise::new(1.0).unwrap().margin(), 29);
}

#[test]
fn noise_margin_larger_than_declared_rejected() {
    let noise = LaplaceNoise::new(10.0).unwrap();
    let mut config = config(3, 2, 32);
    config.noise_margin = 284;
    let round = Round::new(config).unwrap();
    let mut encoded = vec![0, 0];
    assert_eq!(
        noise.add_to(&mut encoded, &round),
        Err(SecAggError::NoiseMarginTooSmall {
            declared: 284,
            required: 285
        })
    );
}

#[test]
fn privacy_loss_is_sensitivity_over_scale() {
    let noise = LaplaceNoise::new(4.0).unwrap();
    assert_eq!(noise.privacy_loss(2).unwrap(), 0.5);
    assert_eq!(noise.privacy_loss(0).unwrap(), 0.0);
}

#[test]
fn noise_added_once_stays_within_margin() {
    let noise = LaplaceNoise::new(50.0).unwrap();
    let encoding = IntegerEncoding::new(1_000);
    let mut config = config(4, 16, 24);
    config.noise_margin = noise.margin();
    let round = Round::new(config).unwrap();

    let inputs: Vec<Vec<i64>> = (0..4)
        .map(|party| (0..16).map(|k| party * 10 - k * 60).collect())
        .collect();
    let mut encoded: Vec<Vec<u64>> = inputs
        .iter()
        .map(|values| encoding.encode(values, &round).unwrap())
        .collect();
    noise.add_to(&mut encoded[1], &round).unwrap();

    let totals = aggregate(&round, &encoded);
    let margin = i128::from(noise.margin());
    let mut noised_coordinates = 0;
    for (coordinate, total) in totals.iter().enumerate() {
        let plain: i128 = inputs
            .iter()
            .map(|values| i128::from(values[coordinate]))
            .sum();
        assert!((total - plain).abs() <= margin, "coordinate {coordinate}");
        if *total != plain {
            noised_coordinates += 1;
        }
    }
    // With scale 50 a sample is 0 with probability below 1 %, so most coordinates change.
    assert!(
        noised_coordinates >= 8,
        "only {noised_coordinates} of 16 coordinates noised"
    );
}

#[test]
fn noise_spread_matches_the_scale() {
    let scale = 20.0;
    let noise = LaplaceNoise::new(scale).unwrap();
    let mut config = config(3, 4_000, 32);
    config.noise_margin = noise.margin();
    let round = Round::new(config).unwrap();
    let mut encoded = vec![0u64; 4_000];
    noise.add_to(&mut encoded, &round).unwrap();

    let modulus = round.modulus();
    let mean_abs = encoded
        .iter()
        .map(|&v| modulus.centre(v).abs() as f64)
        .sum::<f64>()
        / 4_000.0;
    // E|X| = 2p / (1 - p^2) with p = exp(-1 / scale); the standard error of the sample mean
    // is about 0.3, so 10 % is more than six standard errors.
    let p = (-1.0 / scale).exp();
    let expected = 2.0 * p / (1.0 - p * p);
    assert!(
        (mean_abs - expected).abs() <= 0.1 * expected,
        "mean |X| {mean_abs}, expected {expected}"
    );
}

fn integer_inputs() -> impl Strategy<Value = (u32, u64, Vec<Vec<i64>>)> {
    (3usize..10, 0usize..20, 8u32..=64).prop_flat_map(|(parties, len, bits)| {
        let half = 1u128 << (bits - 1);
        let max_abs = ((half - 1) / parties as u128).min(i64::MAX as u128) as i64;
        let vector = prop::collection::vec(-max_abs..=max_abs, len);
        (
            Just(bits),
            Just(max_abs as u64),
            prop::collection::vec(vector, parties),
        )
    })
}

fn real_inputs() -> impl Strategy<Value = (FixedPoint, Vec<(u64, Vec<f64>)>)> {
    (3usize..10, 0usize..20, 0.1f64..100.0, 2u32..=65_536).prop_flat_map(
        |(parties, len, clip, levels)| {
            let value = prop_oneof![
                4 => -1.5 * clip..1.5 * clip,
                1 => Just(clip),
                1 => Just(-clip),
                1 => Just(0.0),
            ];
            let party = (1u64..=1_000, prop::collection::vec(value, len));
            let encoding = FixedPoint::new(clip, levels).unwrap();
            (Just(encoding), prop::collection::vec(party, parties))
        },
    )
}

proptest! {
    #[test]
    fn integer_total_equals_plain_total((bits, max_abs, inputs) in integer_inputs()) {
        let encoding = IntegerEncoding::new(max_abs);
        let round = Round::new(RoundConfig {
            session_id: "integers".to_owned(),
            parties: inputs.len(),
            vector_len: inputs[0].len(),
            modulus_bits: bits,
            max_contribution: encoding.max_contribution(),
            noise_margin: 0,
        })
        .unwrap();
        let encoded: Vec<Vec<u64>> =
            inputs.iter().map(|values| encoding.encode(values, &round).unwrap()).collect();

        let totals = aggregate(&round, &encoded);

        for (coordinate, total) in totals.iter().enumerate() {
            let plain: i128 = inputs.iter().map(|values| i128::from(values[coordinate])).sum();
            prop_assert_eq!(*total, plain, "coordinate {}", coordinate);
        }
        prop_assert_eq!(totals.len(), inputs[0].len());
    }

    #[test]
    fn real_mean_within_documented_bound((encoding, inputs) in real_inputs()) {
        let max_weight = inputs.iter().map(|(weight, _)| *weight).max().unwrap();
        let round = smallest_round(RoundConfig {
            session_id: "reals".to_owned(),
            parties: inputs.len(),
            vector_len: inputs[0].1.len(),
            modulus_bits: 0,
            max_contribution: encoding.max_contribution(max_weight),
            noise_margin: 0,
        });
        let encoded: Vec<Vec<u64>> = inputs
            .iter()
            .map(|(weight, values)| encoding.encode(values, *weight, &round).unwrap())
            .collect();
        let total_weight: u64 = inputs.iter().map(|(weight, _)| weight).sum();

        let totals = aggregate(&round, &encoded);
        let means = encoding.decode_mean(&totals, total_weight).unwrap();
        let sums = encoding.decode_sum(&totals, total_weight);

        let clip = encoding.clip();
        let float_slack = 1e-9 * clip;
        let sum_bound = total_weight as f64 * (encoding.max_mean_error() + float_slack);
        for coordinate in 0..totals.len() {
            let plain_sum: f64 = inputs
                .iter()
                .map(|(weight, values)| *weight as f64 * values[coordinate].clamp(-clip, clip))
                .sum();
            let plain_mean = plain_sum / total_weight as f64;
            let mean_error = (means[coordinate] - plain_mean).abs();
            prop_assert!(
                mean_error <= encoding.max_mean_error() + float_slack,
                "coordinate {}: mean error {} above step / 2 = {}",
                coordinate, mean_error, encoding.max_mean_error()
            );
            let sum_error = (sums[coordinate] - plain_sum).abs();
            prop_assert!(
                sum_error <= sum_bound,
                "coordinate {}: sum error {} above {}", coordinate, sum_error, sum_bound
            );
        }
    }
}
