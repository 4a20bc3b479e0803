use carrel_mpc::secagg::SecAggError;
use chacha20::ChaCha20Rng;
use chacha20::rand_core::{Rng, SeedableRng};

use super::coordinator::next_model;
use super::encoding::training_len;
use super::runner::LocalRun;
use super::*;
use crate::logistic::{Model, gradient, l2_per_row, objective, sigmoid};
use crate::pooled::{NewtonOptions, train};

const FEATURES: usize = 4;

/// Returns `rows` rows drawn from a logistic model with fixed weights, from `seed`.
fn synthetic(rows: usize, seed: u8) -> PartyData {
    let mut rng = ChaCha20Rng::from_seed([seed; 32]);
    let truth = [1.5, -2.0, 0.5, 0.0];
    let mut values = Vec::with_capacity(rows * FEATURES);
    let mut labels = Vec::with_capacity(rows);
    for _ in 0..rows {
        let row: Vec<f64> = (0..FEATURES).map(|_| 4.0 * unit(&mut rng) - 2.0).collect();
        let logit: f64 = row.iter().zip(truth).map(|(x, w)| x * w).sum::<f64>() - 0.3;
        labels.push(if unit(&mut rng) < sigmoid(logit) {
            1.0
        } else {
            0.0
        });
        values.extend(row);
    }
    PartyData::new(FEATURES, values, labels).unwrap()
}

/// Returns a uniform draw from [0, 1).
fn unit(rng: &mut ChaCha20Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

fn three_parties() -> Vec<PartyData> {
    vec![synthetic(150, 1), synthetic(90, 2), synthetic(120, 3)]
}

fn empty() -> PartyData {
    PartyData::new(FEATURES, Vec::new(), Vec::new()).unwrap()
}

fn config() -> TrainingConfig {
    TrainingConfig {
        rounds: 8,
        batch_size: 16,
        early_stopping: None,
        ..TrainingConfig::default()
    }
}

fn pooled(parties: &[PartyData]) -> (Vec<f64>, Vec<f64>) {
    let rows = parties.iter().flat_map(|p| p.rows().to_vec()).collect();
    let labels = parties.iter().flat_map(|p| p.labels().to_vec()).collect();
    (rows, labels)
}

fn bits(model: &Model) -> Vec<u64> {
    let mut bits: Vec<u64> = model.weights.iter().map(|w| w.to_bits()).collect();
    bits.push(model.intercept.to_bits());
    bits
}

// Settings.

#[test]
fn default_config_is_valid() {
    TrainingConfig::default().validate().unwrap();
    let with_dp = TrainingConfig {
        dp: Some(DpConfig::default()),
        ..TrainingConfig::default()
    };
    with_dp.validate().unwrap();
}

/// A change to a valid configuration.
type Edit = Box<dyn Fn(&mut TrainingConfig)>;

#[test]
fn config_rejects_each_invalid_field() {
    let cases: Vec<(&str, Edit)> = vec![
        ("rounds", Box::new(|c| c.rounds = 0)),
        ("rounds", Box::new(|c| c.rounds = MAX_ROUNDS + 1)),
        ("local_epochs", Box::new(|c| c.local_epochs = 0)),
        ("batch_size", Box::new(|c| c.batch_size = 0)),
        ("learning_rate", Box::new(|c| c.learning_rate = f64::NAN)),
        ("learning_rate", Box::new(|c| c.learning_rate = -0.1)),
        (
            "learning_rate_decay",
            Box::new(|c| c.learning_rate_decay = 1.5),
        ),
        (
            "learning_rate_decay",
            Box::new(|c| c.learning_rate_decay = 0.0),
        ),
        ("c", Box::new(|c| c.c = 0.0)),
        ("c", Box::new(|c| c.c = f64::INFINITY)),
        ("encoding.clip", Box::new(|c| c.encoding.clip = 0.0)),
        ("encoding.levels", Box::new(|c| c.encoding.levels = Some(1))),
        (
            "encoding.max_party_rows",
            Box::new(|c| c.encoding.max_party_rows = 0),
        ),
        (
            "early_stopping.patience",
            Box::new(|c| {
                c.early_stopping = Some(EarlyStopping {
                    patience: 0,
                    ..EarlyStopping::default()
                })
            }),
        ),
        (
            "early_stopping.min_relative_improvement",
            Box::new(|c| {
                c.early_stopping = Some(EarlyStopping {
                    min_relative_improvement: 1.0,
                    ..EarlyStopping::default()
                })
            }),
        ),
        (
            "dp.clip_norm",
            Box::new(|c| {
                c.dp = Some(DpConfig {
                    clip_norm: -1.0,
                    ..DpConfig::default()
                })
            }),
        ),
        (
            "dp.noise_multiplier",
            Box::new(|c| {
                c.dp = Some(DpConfig {
                    noise_multiplier: 0.0,
                    ..DpConfig::default()
                })
            }),
        ),
        (
            "dp.loss_clip",
            Box::new(|c| {
                c.dp = Some(DpConfig {
                    loss_clip: f64::NAN,
                    ..DpConfig::default()
                })
            }),
        ),
        (
            "dp.delta",
            Box::new(|c| {
                c.dp = Some(DpConfig {
                    delta: 0.0,
                    ..DpConfig::default()
                })
            }),
        ),
        (
            "dp.delta",
            Box::new(|c| {
                c.dp = Some(DpConfig {
                    delta: 1.0,
                    ..DpConfig::default()
                })
            }),
        ),
    ];
    for (expected_field, edit) in cases {
        let mut config = TrainingConfig::default();
        edit(&mut config);
        let error = config.validate().unwrap_err();
        let TrainingError::InvalidConfig { field, .. } = &error else {
            panic!("expected InvalidConfig for {expected_field}, found {error:?}");
        };
        assert_eq!(*field, expected_field);
        assert!(error.to_string().contains("set"), "no advice in: {error}");
    }
}

#[test]
fn config_message_names_the_value() {
    let config = TrainingConfig {
        learning_rate: -0.25,
        ..TrainingConfig::default()
    };
    let message = config.validate().unwrap_err().to_string();
    assert!(message.contains("learning_rate"), "{message}");
    assert!(message.contains("-0.25"), "{message}");
}

#[test]
fn config_fills_missing_fields_and_rejects_unknown_ones() {
    let config: TrainingConfig = serde_json::from_str(r#"{"rounds": 3, "seed": 9}"#).unwrap();
    assert_eq!(config.rounds, 3);
    assert_eq!(config.seed, 9);
    assert_eq!(config.c, 1.0);
    assert!(serde_json::from_str::<TrainingConfig>(r#"{"round": 3}"#).is_err());
}

#[test]
fn learning_rate_decays_per_round() {
    let config = TrainingConfig {
        learning_rate: 0.5,
        learning_rate_decay: 0.5,
        ..TrainingConfig::default()
    };
    assert_eq!(config.learning_rate_at(1), 0.5);
    assert_eq!(config.learning_rate_at(3), 0.125);
}

#[test]
fn default_levels_are_odd_and_fit_the_ring() {
    let encoding = EncodingConfig::default();
    for parties in [3, 4, 100, 128] {
        let levels = encoding.levels_for(parties).unwrap();
        assert_eq!(levels, u32::MAX, "parties {parties}");
    }
    let levels = encoding.levels_for(1000).unwrap();
    assert_eq!(levels % 2, 1);
    let max_total = 1000 * u128::from(encoding.max_party_rows) * u128::from(levels - 1);
    assert!(max_total < 1 << 63);
    let one_more = 1000 * u128::from(encoding.max_party_rows) * u128::from(levels + 1);
    assert!(one_more >= 1 << 63);
}

#[test]
fn levels_that_overflow_the_ring_are_rejected() {
    let encoding = EncodingConfig {
        levels: Some(u32::MAX),
        max_party_rows: 1 << 40,
        ..EncodingConfig::default()
    };
    let error = encoding.levels_for(3).unwrap_err();
    assert!(matches!(
        error,
        TrainingError::InvalidConfig {
            field: "encoding.levels",
            ..
        }
    ));

    let too_many_rows = EncodingConfig {
        max_party_rows: u64::MAX,
        ..EncodingConfig::default()
    };
    assert!(too_many_rows.levels_for(3).is_err());
}

#[test]
fn party_data_rejects_bad_rows() {
    let mismatch = PartyData::new(2, vec![1.0; 3], vec![0.0, 1.0]).unwrap_err();
    assert!(matches!(mismatch, TrainingError::InvalidPartyData { .. }));
    let nan = PartyData::new(1, vec![f64::NAN], vec![0.0]).unwrap_err();
    assert!(nan.to_string().contains("row 0 column 0"), "{nan}");
    let label = PartyData::new(1, vec![1.0], vec![0.5]).unwrap_err();
    assert!(label.to_string().contains("label of row 0"), "{label}");
    assert!(PartyData::new(0, Vec::new(), Vec::new()).is_err());
}

#[test]
fn run_needs_three_parties_with_equal_features() {
    let two = vec![synthetic(10, 1), synthetic(10, 2)];
    let error = run_local(&two, &config()).unwrap_err();
    assert_eq!(error, TrainingError::TooFewParties { parties: 2 });

    let mut parties = three_parties();
    parties[2] = PartyData::new(1, vec![0.0], vec![1.0]).unwrap();
    let error = run_local(&parties, &config()).unwrap_err();
    assert_eq!(
        error,
        TrainingError::FeatureCountMismatch {
            party: 2,
            expected: FEATURES,
            found: 1
        }
    );
}

// Training.

#[test]
fn federated_model_approaches_pooled_optimum() {
    let parties = three_parties();
    let config = TrainingConfig {
        rounds: 30,
        learning_rate: 0.5,
        learning_rate_decay: 1.0,
        ..config()
    };
    let outcome = run_local(&parties, &config).unwrap();
    let (rows, labels) = pooled(&parties);
    let reference = train(&rows, &labels, FEATURES, &NewtonOptions::default()).unwrap();
    let lambda = l2_per_row(1.0, labels.len());
    let found = objective(&outcome.model, &rows, &labels, lambda);

    assert_eq!(outcome.total_rows, 360);
    assert_eq!(outcome.rounds, 30);
    assert_eq!(outcome.losses.len(), 30);
    assert!(
        found - reference.objective < 2e-3,
        "{found} vs {}",
        reference.objective
    );
    for (w, expected) in outcome.model.weights.iter().zip(&reference.model.weights) {
        assert!((w - expected).abs() < 0.15, "weight {w} vs {expected}");
    }
}

#[test]
fn full_batch_round_is_a_pooled_gradient_step() {
    // With one full batch per provider, the row-weighted mean of the local steps is one
    // gradient step on the pooled objective.
    let parties = three_parties();
    let config = TrainingConfig {
        rounds: 1,
        batch_size: 1000,
        learning_rate: 0.5,
        ..config()
    };
    let outcome = run_local(&parties, &config).unwrap();
    let (rows, labels) = pooled(&parties);
    let lambda = l2_per_row(1.0, labels.len());
    let (grad, grad_b) = gradient(&Model::zeros(FEATURES), &rows, &labels, lambda);

    let tolerance = 1e-7;
    for (w, g) in outcome.model.weights.iter().zip(&grad) {
        assert!(
            (w + 0.5 * g).abs() < tolerance,
            "weight {w} vs {}",
            -0.5 * g
        );
    }
    assert!((outcome.model.intercept + 0.5 * grad_b).abs() < tolerance);
}

#[test]
fn round_loss_is_pooled_objective() {
    let parties = three_parties();
    let mut run = LocalRun::new("loss", &parties, &config()).unwrap();
    run.run_round().unwrap();
    let first = run.run_round().unwrap();
    assert!((first.loss.unwrap() - std::f64::consts::LN_2).abs() < 1e-7);

    let start = run.coordinator.model().clone();
    let second = run.run_round().unwrap();
    let (rows, labels) = pooled(&parties);
    let expected = objective(&start, &rows, &labels, l2_per_row(1.0, labels.len()));
    assert!((second.loss.unwrap() - expected).abs() < 1e-7);
}

#[test]
fn training_is_bitwise_reproducible_with_fresh_masks() {
    let parties = three_parties();
    let first = run_local(&parties, &config()).unwrap();
    let second = run_local(&parties, &config()).unwrap();
    assert_eq!(bits(&first.model), bits(&second.model));
    let loss_bits = |losses: &[f64]| losses.iter().map(|l| l.to_bits()).collect::<Vec<_>>();
    assert_eq!(loss_bits(&first.losses), loss_bits(&second.losses));
}

#[test]
fn different_seeds_give_different_models() {
    let parties = three_parties();
    let other = TrainingConfig {
        seed: 1,
        ..config()
    };
    let first = run_local(&parties, &config()).unwrap();
    let second = run_local(&parties, &other).unwrap();
    assert_ne!(bits(&first.model), bits(&second.model));
}

#[test]
fn empty_party_among_four_is_ignored() {
    let three = three_parties();
    let mut four = three.clone();
    four.push(empty());
    let expected = run_local(&three, &config()).unwrap();
    let found = run_local(&four, &config()).unwrap();
    assert_eq!(bits(&found.model), bits(&expected.model));
    assert_eq!(found.total_rows, expected.total_rows);
}

#[test]
fn all_empty_parties_fail_with_no_samples() {
    let parties = vec![empty(), empty(), empty()];
    let mut run = LocalRun::new("empty", &parties, &config()).unwrap();
    let error = run.run_round().unwrap_err();
    assert_eq!(error, TrainingError::NoSamples { round: 0 });
    assert!(
        error.to_string().contains("give at least one provider"),
        "{error}"
    );
    assert_eq!(run.coordinator.model(), &Model::zeros(FEATURES));
    assert_eq!(run.coordinator.state().total_rows(), None);

    let error = run_local(&parties, &config()).unwrap_err();
    assert_eq!(error, TrainingError::NoSamples { round: 0 });
}

#[test]
fn rows_gone_after_census_keep_the_model() {
    let mut run = LocalRun::new("gone", &three_parties(), &config()).unwrap();
    run.run_round().unwrap();
    run.run_round().unwrap();
    run.run_round().unwrap();
    let before = run.coordinator.model().clone();
    let history = run.coordinator.state().loss_history().len();

    let mut emptied = LocalRun::resume(run.coordinator, &[empty(), empty(), empty()]).unwrap();
    let error = emptied.run_round().unwrap_err();
    assert_eq!(error, TrainingError::NoSamples { round: 3 });
    assert_eq!(emptied.coordinator.model(), &before);
    assert_eq!(emptied.coordinator.state().loss_history().len(), history);

    let mut fewer =
        LocalRun::resume(emptied.coordinator, &[synthetic(5, 1), empty(), empty()]).unwrap();
    let error = fewer.run_round().unwrap_err();
    assert_eq!(
        error,
        TrainingError::RowCountChanged {
            round: 4,
            expected: 360,
            found: 5
        }
    );
    assert_eq!(fewer.coordinator.model(), &before);
}

#[test]
fn non_finite_model_is_not_applied() {
    let model = Model::zeros(2);
    let error = next_model(&model, &[f64::NAN, 0.0, 0.0], 4).unwrap_err();
    assert_eq!(error, TrainingError::NonFiniteModel { round: 4 });
    let huge = Model {
        weights: vec![f64::MAX, 0.0],
        intercept: 0.0,
    };
    assert!(next_model(&huge, &[f64::MAX, 0.0, 0.0], 4).is_err());
    assert!(next_model(&model, &[0.5, -0.5, 1.0], 4).is_ok());
}

#[test]
fn overflowing_party_rejects_its_update() {
    // Four rows with a feature of 1e308 and label 0 in one batch: at the zero model each
    // adds 0.5 · 1e308 to the gradient sum, which overflows to infinity.
    let mut parties = three_parties();
    let mut rows = parties[1].rows().to_vec();
    let mut labels = parties[1].labels().to_vec();
    for row in 0..4 {
        rows[row * FEATURES] = 1e308;
        labels[row] = 0.0;
    }
    parties[1] = PartyData::new(FEATURES, rows, labels).unwrap();
    let config = TrainingConfig {
        batch_size: 1000,
        ..config()
    };

    let error = run_local(&parties, &config).unwrap_err();
    assert_eq!(error, TrainingError::NonFiniteUpdate { party: 1, round: 1 });
    assert!(error.to_string().contains("party 1"), "{error}");
}

/// Returns the request of training round 1 from `model` under `config`.
fn train_request(config: &TrainingConfig, model: Model, total_rows: u64) -> RoundRequest {
    RoundRequest {
        session_id: "unit".to_owned(),
        round: 1,
        parties: 3,
        settings_digest: config.digest(),
        task: RoundTask::Train { model, total_rows },
    }
}

#[test]
fn party_with_logit_800_sends_a_finite_loss() {
    // One row with logit 800 and label 0 has loss 800, and one with label 1 has loss 0.
    let rows = vec![800.0, 0.0, 0.0, 0.0, 800.0, 0.0, 0.0, 0.0];
    let data = PartyData::new(FEATURES, rows, vec![0.0, 1.0]).unwrap();
    let model = Model {
        weights: vec![1.0, 0.0, 0.0, 0.0],
        intercept: 0.0,
    };

    // The mean loss of 400 is finite but beyond the default clip of 32.
    let provider = Provider::new(0, data.clone(), config()).unwrap();
    let request = train_request(&config(), model.clone(), 1000);
    let error = provider.respond(&request).unwrap_err();
    assert_eq!(
        error,
        TrainingError::LossOutOfRange {
            party: 0,
            round: 1,
            clip: 32.0
        }
    );

    let wide = TrainingConfig {
        encoding: EncodingConfig {
            clip: 1000.0,
            ..EncodingConfig::default()
        },
        ..config()
    };
    let request = train_request(&wide, model, 1000);
    let provider = Provider::new(0, data, wide).unwrap();
    provider.respond(&request).unwrap();
}

#[test]
fn update_beyond_clip_is_rejected_by_its_party() {
    let config = TrainingConfig {
        learning_rate: 5.0,
        encoding: EncodingConfig {
            clip: 1.0,
            ..EncodingConfig::default()
        },
        ..config()
    };
    let error = run_local(&three_parties(), &config).unwrap_err();
    let TrainingError::UpdateOutOfRange { round, clip, .. } = error else {
        panic!("expected UpdateOutOfRange, found {error:?}");
    };
    assert_eq!(round, 1);
    assert_eq!(clip, 1.0);
    assert!(error.to_string().contains("raise encoding.clip"), "{error}");
}

#[test]
fn early_stopping_ends_training() {
    let config = TrainingConfig {
        rounds: 50,
        early_stopping: Some(EarlyStopping {
            patience: 2,
            min_relative_improvement: 0.01,
        }),
        ..config()
    };
    let outcome = run_local(&three_parties(), &config).unwrap();
    assert!(outcome.stopped_early);
    assert!(outcome.rounds < 50, "ran {} rounds", outcome.rounds);
    assert_eq!(outcome.losses.len() as u32, outcome.rounds);
}

// Messages.

/// A message that the coordinator received in a tapped run.
enum Received {
    Key(PublicKeyMessage),
    Masked(MaskedUpdate),
}

#[test]
fn coordinator_never_receives_an_unmasked_vector() {
    let parties = three_parties();
    let config = TrainingConfig {
        rounds: 3,
        ..config()
    };
    let providers: Vec<Provider> = parties
        .iter()
        .enumerate()
        .map(|(index, data)| Provider::new(index, data.clone(), config.clone()).unwrap())
        .collect();
    let mut coordinator = Coordinator::new("tap", config, 3, FEATURES).unwrap();
    let mut received = Vec::new();
    let mut plain: Vec<Vec<u64>> = Vec::new();

    while !coordinator.is_finished() {
        let request = coordinator.start_round().unwrap();
        let updates: Vec<LocalUpdate> = providers
            .iter()
            .map(|provider| provider.respond(&request).unwrap())
            .collect();
        plain.extend(updates.iter().map(|update| update.encoded().to_vec()));
        for update in &updates {
            let message = update.public_key_message();
            received.push(Received::Key(message.clone()));
            coordinator.add_public_key(message).unwrap();
        }
        let keys = coordinator.public_keys().unwrap();
        for update in updates {
            let message = update.mask(&keys).unwrap();
            received.push(Received::Masked(message.clone()));
            coordinator.add_masked(message).unwrap();
        }
        coordinator.finish_round().unwrap();
    }

    assert_eq!(plain.len(), 12);
    let mut masked_count = 0;
    for message in &received {
        match message {
            // A key message has no field that could carry data: only the session, the
            // index and the fresh public key.
            Received::Key(key) => assert!(key.party < 3),
            Received::Masked(update) => {
                masked_count += 1;
                for encoded in plain.iter().filter(|e| e.len() == update.masked.len()) {
                    assert_ne!(&update.masked, encoded);
                    for (masked, value) in update.masked.iter().zip(encoded) {
                        // Centred distance in the 64-bit ring.
                        let distance = masked.wrapping_sub(*value) as i64;
                        assert!(
                            distance.unsigned_abs() > 1 << 32,
                            "a masked coordinate of party {} is close to an encoded one",
                            update.party
                        );
                    }
                }
            }
        }
    }
    assert_eq!(masked_count, 12);
}

#[test]
fn coordinator_rejects_out_of_order_messages() {
    let mut coordinator = Coordinator::new("order", config(), 3, FEATURES).unwrap();
    let key = PublicKeyMessage {
        session_id: "order/horizontal/0".to_owned(),
        party: 0,
        public_key: [9; 32],
    };
    assert_eq!(
        coordinator.add_public_key(key.clone()).unwrap_err(),
        TrainingError::NoOpenRound
    );

    let request = coordinator.start_round().unwrap();
    assert_eq!(request.session_id, key.session_id);
    assert_eq!(request.task, RoundTask::Census);
    assert_eq!(
        coordinator.start_round().unwrap_err(),
        TrainingError::RoundStillOpen { round: 0 }
    );

    let wrong = PublicKeyMessage {
        session_id: "other".to_owned(),
        ..key.clone()
    };
    assert!(matches!(
        coordinator.add_public_key(wrong).unwrap_err(),
        TrainingError::WrongSession { .. }
    ));
    let outside = PublicKeyMessage {
        party: 3,
        ..key.clone()
    };
    assert_eq!(
        coordinator.add_public_key(outside).unwrap_err(),
        TrainingError::PartyOutOfRange {
            party: 3,
            parties: 3
        }
    );
    coordinator.add_public_key(key.clone()).unwrap();
    assert_eq!(
        coordinator.add_public_key(key).unwrap_err(),
        TrainingError::DuplicateKey { party: 0 }
    );
    assert_eq!(
        coordinator.public_keys().unwrap_err(),
        TrainingError::MissingKeys {
            missing: vec![1, 2]
        }
    );
    assert_eq!(coordinator.abort_round(), Some(0));
    assert_eq!(coordinator.abort_round(), None);
}

#[test]
fn missing_provider_aborts_the_round() {
    let parties = three_parties();
    let mut run = LocalRun::new("dropout", &parties, &config()).unwrap();
    run.run_round().unwrap();
    run.run_round().unwrap();
    let before = run.coordinator.model().clone();

    let coordinator = &mut run.coordinator;
    let request = coordinator.start_round().unwrap();
    let updates: Vec<LocalUpdate> = run
        .providers
        .iter()
        .map(|provider| provider.respond(&request).unwrap())
        .collect();
    for update in &updates {
        coordinator
            .add_public_key(update.public_key_message())
            .unwrap();
    }
    let keys = coordinator.public_keys().unwrap();
    for update in updates.into_iter().take(2) {
        coordinator.add_masked(update.mask(&keys).unwrap()).unwrap();
    }
    let error = coordinator.finish_round().unwrap_err();
    assert_eq!(
        error,
        TrainingError::SecAgg(SecAggError::MissingParties { missing: vec![2] })
    );
    assert_eq!(coordinator.model(), &before);
    assert_eq!(coordinator.state().rounds_started(), 2);
    assert_eq!(coordinator.state().loss_history().len(), 1);
}

#[test]
fn provider_rejects_mismatched_requests() {
    let provider = Provider::new(1, synthetic(10, 1), config()).unwrap();
    let request = |parties, round, weights| RoundRequest {
        parties,
        round,
        ..train_request(&config(), Model::zeros(weights), 100)
    };
    let other_settings = RoundRequest {
        settings_digest: TrainingConfig::default().digest(),
        ..request(3, 1, FEATURES)
    };
    let cases = [
        request(1, 1, FEATURES),
        request(3, 0, FEATURES),
        request(3, 9, FEATURES),
        request(3, 1, FEATURES + 1),
        other_settings,
    ];
    for case in cases {
        let error = provider.respond(&case).unwrap_err();
        assert!(
            matches!(error, TrainingError::RequestMismatch { party: 1, .. }),
            "{error:?}"
        );
    }
    let too_many = Provider::new(
        0,
        synthetic(10, 1),
        TrainingConfig {
            encoding: EncodingConfig {
                max_party_rows: 9,
                ..EncodingConfig::default()
            },
            ..config()
        },
    );
    assert!(matches!(
        too_many.unwrap_err(),
        TrainingError::TooManyRows { rows: 10, .. }
    ));
}

#[test]
fn training_vector_has_update_loss_and_count() {
    let provider = Provider::new(0, synthetic(10, 1), config()).unwrap();
    let request = train_request(&config(), Model::zeros(FEATURES), 10);
    let update = provider.respond(&request).unwrap();
    assert_eq!(update.encoded().len(), training_len(FEATURES));
    let top_level = u64::from(u32::MAX - 1);
    assert_eq!(update.encoded()[FEATURES + 2], 10 * top_level);
}

// Resume.

#[test]
fn resumed_run_matches_uninterrupted_run() {
    let parties = three_parties();
    let config = TrainingConfig {
        rounds: 6,
        early_stopping: Some(EarlyStopping {
            patience: 3,
            min_relative_improvement: 1e-3,
        }),
        ..config()
    };
    let uninterrupted = run_local(&parties, &config).unwrap();

    let mut first = LocalRun::new("local", &parties, &config).unwrap();
    for _ in 0..4 {
        first.run_round().unwrap();
    }
    let saved = serde_json::to_string(first.coordinator.state()).unwrap();
    drop(first);

    let state: TrainingState = serde_json::from_str(&saved).unwrap();
    assert_eq!(state.rounds_started(), 3);
    let coordinator = Coordinator::resume(state).unwrap();
    let mut resumed = LocalRun::resume(coordinator, &parties).unwrap();
    resumed.run_to_end().unwrap();
    let outcome = resumed.outcome().unwrap();

    assert_eq!(bits(&outcome.model), bits(&uninterrupted.model));
    assert_eq!(outcome.losses, uninterrupted.losses);
    assert_eq!(outcome.rounds, uninterrupted.rounds);
    assert_eq!(outcome.stopped_early, uninterrupted.stopped_early);
}

#[test]
fn resume_rejects_inconsistent_state() {
    let run = LocalRun::new("state", &three_parties(), &config()).unwrap();
    let mut value = serde_json::to_value(run.coordinator.state()).unwrap();
    value["rounds_started"] = serde_json::json!(99);
    let state: TrainingState = serde_json::from_value(value).unwrap();
    let error = Coordinator::resume(state).unwrap_err();
    assert!(
        matches!(error, TrainingError::InvalidState { .. }),
        "{error:?}"
    );
}

// Differential privacy.

#[test]
fn privacy_loss_follows_the_zcdp_formula() {
    let dp = DpConfig {
        noise_multiplier: 2.0,
        delta: 1e-6,
        ..DpConfig::default()
    };
    let config = TrainingConfig {
        local_epochs: 3,
        dp: Some(dp.clone()),
        ..TrainingConfig::default()
    };
    let loss = privacy_loss(&config, 10).unwrap();
    // ρ_step = (2 · clip)² / (2 σ²) with σ = 2 · clip, and ρ_loss = 1 / (2 · 2²).
    let expected_rho = 10.0 * (3.0 * 0.5 + 0.125);
    assert!(loss.rho >= expected_rho, "{} < {expected_rho}", loss.rho);
    assert!(loss.rho < expected_rho * (1.0 + 1e-9), "{}", loss.rho);

    let classic = loss.rho + 2.0 * (loss.rho * (1.0 / dp.delta).ln()).sqrt();
    assert!(loss.epsilon <= classic, "{} > {classic}", loss.epsilon);
    assert!(loss.epsilon > loss.rho);
    assert_eq!(loss.delta, 1e-6);

    let fewer = privacy_loss(&config, 5).unwrap();
    assert!(fewer.epsilon < loss.epsilon);
}

#[test]
fn privacy_loss_without_dp_is_unbounded() {
    let loss = privacy_loss(&TrainingConfig::default(), 10).unwrap();
    assert_eq!(loss.epsilon, f64::INFINITY);
    assert_eq!(loss.rho, f64::INFINITY);
}

#[test]
fn dp_training_spends_what_privacy_loss_charged() {
    let parties = vec![synthetic(30, 1), synthetic(20, 2), synthetic(25, 3)];
    let config = TrainingConfig {
        rounds: 2,
        batch_size: 10,
        dp: Some(DpConfig::default()),
        ..config()
    };
    let first = run_local(&parties, &config).unwrap();
    let second = run_local(&parties, &config).unwrap();
    let charged = privacy_loss(&config, 2).unwrap();

    assert!(first.model.is_finite());
    assert_eq!(first.rounds, 2);
    assert_eq!(first.privacy, charged);
    // Fresh noise in each run.
    assert_ne!(bits(&first.model), bits(&second.model));
}

#[test]
fn gradient_noise_has_the_configured_deviation() {
    let dp = DpConfig {
        clip_norm: 0.5,
        noise_multiplier: 4.0,
        ..DpConfig::default()
    };
    let samples = super::privacy::gradient_noise(&dp)
        .unwrap()
        .invoke(&vec![0.0; 2000])
        .unwrap();
    let mean = samples.iter().sum::<f64>() / samples.len() as f64;
    let variance = samples.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / samples.len() as f64;
    // σ = 2; the sample deviation of 2000 draws is within 10 % with overwhelming probability.
    assert!(mean.abs() < 0.2, "mean {mean}");
    assert!(
        (variance.sqrt() - 2.0).abs() < 0.2,
        "deviation {}",
        variance.sqrt()
    );
}
