//! Trains horizontal federated logistic regression on the three-lender credit-default data
//! and compares the test AUC with pooled training.
//!
//! The three training files `default_credit_homo_{guest,host_1,host_2}.csv` are the three
//! providers, and `default_credit_homo_test.csv` is held out. The reference, from
//! `data/fate/NOTICE.md`, is scikit-learn's `LogisticRegression(C=1.0)` trained on the three
//! files pooled, with test AUC 0.7297. The program also trains the pooled model by Newton's
//! method here and prints both.
//!
//! ```text
//! cargo run --release -p carrel-learn --example horizontal_credit -- [OPTIONS]
//!   --rounds N --epochs N --batch N --lr X --decay X --seed N
//!                                                     override the default settings
//!   --patience N                                      early-stopping patience; 0 disables it
//!   --dp                                              train with DP-SGD at default settings
//!   --data DIR                                        defaults to data/fate of this repository
//! ```
//!
//! The program exits with an error when the AUC is more than 0.005 from the reference
//! without DP.

use std::error::Error;
use std::path::{Path, PathBuf};
use std::time::Instant;

use carrel_learn::data::{LoadOptions, read_csv};
use carrel_learn::horizontal::{DpConfig, EarlyStopping, PartyData, TrainingConfig, run_local};
use carrel_learn::metrics::auc;
use carrel_learn::pooled::{NewtonOptions, train};

/// Test AUC of scikit-learn's `LogisticRegression(C=1.0)` on the pooled training files.
const REFERENCE_AUC: f64 = 0.7297;

/// Largest accepted distance from the reference without DP.
const TOLERANCE: f64 = 0.005;

const PROVIDERS: [&str; 3] = ["guest", "host_1", "host_2"];

fn main() -> Result<(), Box<dyn Error>> {
    let (dir, config) = parse_args()?;
    let parties: Vec<PartyData> = PROVIDERS
        .iter()
        .map(|name| load(&dir.join(format!("default_credit_homo_{name}.csv"))))
        .collect::<Result<_, _>>()?;
    let test = load(&dir.join("default_credit_homo_test.csv"))?;
    let features = test.features();

    let started = Instant::now();
    let outcome = run_local(&parties, &config)?;
    let elapsed = started.elapsed();
    let federated_auc = auc(&outcome.model.logits(test.rows()), test.labels())?;

    let pooled_rows: Vec<f64> = parties.iter().flat_map(|p| p.rows().to_vec()).collect();
    let pooled_labels: Vec<f64> = parties.iter().flat_map(|p| p.labels().to_vec()).collect();
    let pooled = train(
        &pooled_rows,
        &pooled_labels,
        features,
        &NewtonOptions::default(),
    )?;
    let pooled_auc = auc(&pooled.model.logits(test.rows()), test.labels())?;

    println!(
        "providers: {} rows in total, {features} features",
        outcome.total_rows
    );
    println!("settings: {}", serde_json::to_string(&config)?);
    println!("round  training objective");
    for (round, loss) in outcome.losses.iter().enumerate() {
        println!("{:>5}  {loss:.6}", round + 1);
    }
    println!(
        "rounds run: {}, stopped early: {}, time: {:.2} s",
        outcome.rounds,
        outcome.stopped_early,
        elapsed.as_secs_f64()
    );
    println!("pooled Newton objective: {:.6}", pooled.objective);
    println!("test AUC federated: {federated_auc:.4}");
    println!("test AUC pooled Newton: {pooled_auc:.4}");
    println!("test AUC scikit-learn: {REFERENCE_AUC:.4}");
    if let Some(dp) = &config.dp {
        println!(
            "privacy loss: rho {:.4}, epsilon {:.3} at delta {:e} (noise multiplier {})",
            outcome.privacy.rho,
            outcome.privacy.epsilon,
            outcome.privacy.delta,
            dp.noise_multiplier
        );
        return Ok(());
    }

    let distance = (federated_auc - REFERENCE_AUC).abs();
    if distance > TOLERANCE {
        return Err(format!(
            "the federated AUC {federated_auc:.4} is {distance:.4} from the reference \
             {REFERENCE_AUC}, more than {TOLERANCE}"
        )
        .into());
    }
    Ok(())
}

/// Reads one file with label `y` and features `x0` to `x22` as a provider's rows.
fn load(path: &Path) -> Result<PartyData, Box<dyn Error>> {
    let options = LoadOptions::new("id").with_label("y");
    let table = read_csv(path, &options)?.table;
    let labels = table.require_labels()?.to_vec();
    Ok(PartyData::new(table.features(), table.rows, labels)?)
}

fn parse_args() -> Result<(PathBuf, TrainingConfig), Box<dyn Error>> {
    let mut dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/fate");
    let mut config = TrainingConfig::default();
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "--dp" {
            config.dp = Some(DpConfig::default());
            continue;
        }
        let value = args
            .next()
            .ok_or_else(|| format!("option {flag} needs a value"))?;
        match flag.as_str() {
            "--rounds" => config.rounds = value.parse()?,
            "--epochs" => config.local_epochs = value.parse()?,
            "--batch" => config.batch_size = value.parse()?,
            "--lr" => config.learning_rate = value.parse()?,
            "--decay" => config.learning_rate_decay = value.parse()?,
            "--seed" => config.seed = value.parse()?,
            "--patience" => {
                let patience: u32 = value.parse()?;
                config.early_stopping = (patience > 0).then(|| EarlyStopping {
                    patience,
                    ..EarlyStopping::default()
                });
            }
            "--data" => dir = PathBuf::from(value),
            _ => return Err(format!("unknown option {flag}; see the file's documentation").into()),
        }
    }
    Ok((dir, config))
}
