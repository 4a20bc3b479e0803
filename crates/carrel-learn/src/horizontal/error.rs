//! The error type of horizontal federated training.

use carrel_mpc::secagg::SecAggError;

/// Error of a configuration check, a provider's local step or a coordinator step.
///
/// Messages name parties, rounds, coordinates and configured bounds. They never contain a
/// feature value, a label, a model update or a masked vector.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum TrainingError {
    // Settings and inputs of this party.
    /// A training setting is out of range.
    #[error("invalid training setting {field}: it {reason}")]
    InvalidConfig {
        /// Name of the setting, with its section, such as `dp.delta`.
        field: &'static str,
        /// The value found and the accepted range.
        reason: String,
    },
    /// A run needs at least three providers, because secure aggregation does.
    #[error(
        "a training run needs at least 3 providers but has {parties}, because with 2 each \
         provider could subtract its own update from the mean and learn the other's"
    )]
    TooFewParties {
        /// Number of providers configured.
        parties: usize,
    },
    /// A provider's rows are malformed.
    #[error("invalid training rows: {reason}; fix the rows before training")]
    InvalidPartyData {
        /// Description of the problem, naming rows and columns by position only.
        reason: String,
    },
    /// A provider has another number of features than the run.
    #[error(
        "party {party} has {found} features but the run has {expected}; give every party \
         the same feature columns in the same order"
    )]
    FeatureCountMismatch {
        /// Index of the provider.
        party: usize,
        /// Feature count of the run.
        expected: usize,
        /// Feature count of the provider.
        found: usize,
    },
    /// A provider has more rows than the declared bound of the encoding.
    #[error(
        "party {party} has more rows than encoding.max_party_rows = {max}; raise \
         max_party_rows for every party"
    )]
    TooManyRows {
        /// Index of the provider.
        party: usize,
        /// Its number of rows, kept for the party's own use and not in the message, which
        /// reaches the coordinator.
        rows: usize,
        /// Declared bound.
        max: u64,
    },
    /// A provider's local update has a NaN or infinite coordinate, so it is not sent.
    #[error(
        "party {party} computed a non-finite model update in round {round}, so it sends \
         nothing; check that party's features for extreme values or lower learning_rate"
    )]
    NonFiniteUpdate {
        /// Index of the provider.
        party: usize,
        /// Round number.
        round: u32,
    },
    /// A provider's training loss is NaN or infinite, so it is not sent.
    #[error(
        "party {party} computed a non-finite training loss in round {round}, so it sends \
         nothing; check that party's features for extreme values"
    )]
    NonFiniteLoss {
        /// Index of the provider.
        party: usize,
        /// Round number.
        round: u32,
    },
    /// A coordinate of a provider's update is beyond the encoding's clip.
    #[error(
        "coordinate {coordinate} of party {party}'s update in round {round} is outside \
         ±{clip}; raise encoding.clip or lower learning_rate"
    )]
    UpdateOutOfRange {
        /// Index of the provider.
        party: usize,
        /// Round number.
        round: u32,
        /// Coordinate of the update: a weight, or the intercept after the weights.
        coordinate: usize,
        /// Clipping bound of the encoding.
        clip: f64,
    },
    /// A provider's mean training loss is beyond the encoding's clip.
    #[error(
        "party {party}'s mean training loss in round {round} is outside ±{clip}; the model \
         has diverged, so lower learning_rate, or raise encoding.clip"
    )]
    LossOutOfRange {
        /// Index of the provider.
        party: usize,
        /// Round number.
        round: u32,
        /// Clipping bound of the encoding.
        clip: f64,
    },
    /// OpenDP failed to sample noise or to compute a privacy loss.
    #[error("OpenDP failed to {action}: {reason}")]
    OpenDpFailed {
        /// Operation requested from OpenDP.
        action: &'static str,
        /// Error reported by OpenDP.
        reason: String,
    },

    // Outcomes of a round on the coordinator. The previous model is kept.
    /// Every provider reported zero rows.
    #[error(
        "every provider reported 0 training rows in round {round}, so there is no mean to \
         take; the model is unchanged, so give at least one provider training rows"
    )]
    NoSamples {
        /// Round number, 0 for the census.
        round: u32,
    },
    /// The total row count differs from the census.
    #[error(
        "round {round} counted {found} rows in total but the census counted {expected}; a \
         provider's rows changed during training, so start a new run"
    )]
    RowCountChanged {
        /// Round number.
        round: u32,
        /// Total of the census.
        expected: u64,
        /// Total of this round.
        found: u64,
    },
    /// The decoded model has a NaN or infinite coordinate.
    #[error(
        "the model decoded in round {round} is not finite, so it was not applied and the \
         previous model is kept"
    )]
    NonFiniteModel {
        /// Round number.
        round: u32,
    },
    /// The aggregated row count is not a whole number of rows, which no honest provider
    /// causes.
    #[error(
        "the aggregated row count of round {round} is not a multiple of the level count; a \
         provider sent a vector it did not encode, so abort the run"
    )]
    CorruptCount {
        /// Round number.
        round: u32,
    },

    // Order and origin of messages.
    /// A round was started while another is open.
    #[error("round {round} is still open; finish or abort it before starting another")]
    RoundStillOpen {
        /// Number of the open round.
        round: u32,
    },
    /// A message arrived while no round is open.
    #[error("no round is open; start a round before sending its messages")]
    NoOpenRound,
    /// A message belongs to another round.
    #[error("the message belongs to session {found:?} but the open round is {expected:?}")]
    WrongSession {
        /// Session of the open round.
        expected: String,
        /// Session named by the message.
        found: String,
    },
    /// A message names a party that is not in the run.
    #[error("party index {party} is out of range; the run has parties 0 to {}", .parties - 1)]
    PartyOutOfRange {
        /// Rejected index.
        party: usize,
        /// Number of providers.
        parties: usize,
    },
    /// A provider sent its public key twice.
    #[error("the public key of party {party} was already received; each party sends one")]
    DuplicateKey {
        /// Index of the provider.
        party: usize,
    },
    /// Public keys were requested before every provider sent one.
    #[error("public keys of parties {missing:?} have not arrived; wait for them or abort")]
    MissingKeys {
        /// Indices of the providers whose key is missing.
        missing: Vec<usize>,
    },
    /// A request does not match this provider's settings.
    #[error("the round request does not match party {party}'s settings: {reason}")]
    RequestMismatch {
        /// Index of the provider.
        party: usize,
        /// What differs.
        reason: String,
    },
    /// Every round of the configuration has been started, or training stopped early.
    #[error(
        "training is finished after {rounds} rounds; read the model, or start a new run \
         to train further"
    )]
    TrainingFinished {
        /// Rounds started.
        rounds: u32,
    },
    /// A saved coordinator state is inconsistent.
    #[error("the saved training state is invalid: {reason}; restore an intact copy")]
    InvalidState {
        /// Description of the inconsistency.
        reason: String,
    },
    /// Secure aggregation rejected a setting or a message.
    #[error("secure aggregation failed: {0}")]
    SecAgg(#[from] SecAggError),
}
