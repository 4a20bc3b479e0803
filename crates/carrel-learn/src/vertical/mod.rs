//! Vertical logistic regression. The guest has the labels and some features of each row,
//! the host has other features of the same rows, and neither sees the other's features,
//! labels, per-row logits, residuals or gradients.
//!
//! Every quantity of the training is additively secret-shared in Z(2^128) as fixed-point
//! numbers. The exchange acts as a dealer of correlated randomness: it hands out matrix and
//! element-wise multiplication triples, AND triples and random bits, derived from one seed
//! per party, and never sees data. The sigmoid is a piecewise-linear function with seven
//! breakpoints, evaluated by secure comparisons, so the model is bounded where a polynomial
//! approximation would diverge. `NOTES.md` gives the construction, the message flow and the
//! threat model.
//!
//! ```text
//!   dealer:  Dealer::new(plan, guest seed, host seed) ─► corrections(step) to the host
//!   guest:   Party::guest(plan, seed, features, labels) ┐ setup: masked features
//!   host:    Party::host(plan, seed, features)          ┘ train: 10 exchanges per step
//!            ─► Outcome: each party's own weights in the clear
//! ```

mod material;
mod party;
mod plan;
mod prg;
pub mod reference;
mod ring;

#[cfg(test)]
mod test;

use std::sync::Arc;
use std::sync::mpsc;

pub use material::{Dealer, StepMaterial};
pub use party::{Checkpoint, EpochReport, Outcome, Party};
pub use plan::{BREAKPOINTS, EarlyStopping, Piecewise, Plan};
pub use prg::{Seed, fresh_seed};
pub use ring::{FRAC_BITS, MAX_ABS, Role};

/// Failures of a vertical training.
#[derive(Debug, thiserror::Error)]
pub enum VerticalError {
    /// A field of the plan is out of range.
    #[error("the training plan's {field} is {value}; it must be {expected}")]
    InvalidPlan {
        /// Field name.
        field: &'static str,
        /// Value given.
        value: String,
        /// Accepted range.
        expected: &'static str,
    },
    /// A feature is not finite or too large for the fixed-point encoding.
    #[error(
        "a feature value cannot be shared: features must be finite and at most 2^20 in \
         absolute value; declare tighter bounds or standardise the column"
    )]
    ValueOutOfRange {
        /// Value given, kept for the party's own use and not in the message, which may reach
        /// the other party.
        value: f64,
    },
    /// An input has the wrong number of elements for the plan.
    #[error("{what} has {found} values where the plan implies {expected}")]
    ShapeMismatch {
        /// Input name.
        what: &'static str,
        /// Size the plan implies.
        expected: usize,
        /// Size given.
        found: usize,
    },
    /// A label other than 0 or 1.
    #[error("the label of aligned row {row} is not 0 or 1; labels must be 0 or 1")]
    BadLabel {
        /// Row index among the aligned rows.
        row: usize,
        /// Label given.
        value: f64,
    },
    /// A message is shorter than its fields.
    #[error("the {what} message has {found} bytes where at least {expected} are needed")]
    MessageLength {
        /// Message name.
        what: &'static str,
        /// Bytes needed.
        expected: usize,
        /// Bytes received.
        found: usize,
    },
    /// A message is longer than its fields.
    #[error("the {what} message has {extra} bytes beyond its fields")]
    TrailingBytes {
        /// Message name.
        what: &'static str,
        /// Extra bytes.
        extra: usize,
    },
    /// The peer or the dealer could not be reached, or ended the training.
    #[error("{0}")]
    Transport(String),
}

/// The link between the two parties. Both call `exchange` with the same tags in the same
/// order, and each call sends this party's message and returns the peer's.
pub trait Channel {
    /// Sends `outgoing` and returns the peer's message of the same exchange.
    ///
    /// # Errors
    ///
    /// [`VerticalError::Transport`] when the peer is gone or ended the training.
    fn exchange(&mut self, tag: &'static str, outgoing: Vec<u8>) -> Result<Vec<u8>, VerticalError>;
}

/// The source of a party's correlated randomness for each step.
pub trait Correlation {
    /// Returns the material of global step `step`, which covers the rows `batch`.
    ///
    /// # Errors
    ///
    /// [`VerticalError::Transport`] when the dealer cannot be reached, and message errors
    /// for corrections of the wrong size.
    fn material(&mut self, step: u64, batch: &[usize]) -> Result<StepMaterial, VerticalError>;
}

/// The guest's material: all drawn from its own seed, with no message.
pub struct GuestCorrelation {
    plan: Plan,
    seed: Seed,
}

impl GuestCorrelation {
    /// Creates the guest's source from the plan and its seed.
    pub fn new(plan: Plan, seed: Seed) -> Self {
        Self { plan, seed }
    }
}

impl Correlation for GuestCorrelation {
    fn material(&mut self, step: u64, batch: &[usize]) -> Result<StepMaterial, VerticalError> {
        Ok(material::guest_material(
            &self.seed,
            step,
            &self.plan,
            batch.len(),
        ))
    }
}

/// The host's material: its own draws completed by the dealer's corrections, which
/// `fetch` obtains for a step number.
pub struct HostCorrelation<F> {
    plan: Plan,
    seed: Seed,
    fetch: F,
}

impl<F> HostCorrelation<F>
where
    F: FnMut(u64) -> Result<Vec<u8>, VerticalError>,
{
    /// Creates the host's source from the plan, its seed and the dealer link.
    pub fn new(plan: Plan, seed: Seed, fetch: F) -> Self {
        Self { plan, seed, fetch }
    }
}

impl<F> Correlation for HostCorrelation<F>
where
    F: FnMut(u64) -> Result<Vec<u8>, VerticalError>,
{
    fn material(&mut self, step: u64, batch: &[usize]) -> Result<StepMaterial, VerticalError> {
        let corrections = (self.fetch)(step)?;
        material::host_material(&self.seed, step, &self.plan, batch.len(), &corrections)
    }
}

impl Dealer {
    /// Returns the host's corrections for global step `step`, or an error for a step
    /// beyond the plan.
    ///
    /// # Errors
    ///
    /// [`VerticalError::InvalidPlan`] for a step number the plan does not have.
    pub fn corrections_for_step(&self, step: u64) -> Result<Vec<u8>, VerticalError> {
        let plan = self.plan();
        let per_epoch = plan.steps_per_epoch() as u64;
        let epoch = step / per_epoch;
        if epoch >= u64::from(plan.epochs) {
            return Err(VerticalError::InvalidPlan {
                field: "step",
                value: step.to_string(),
                expected: "a step of the planned epochs",
            });
        }
        let batches = self.epoch_batches(epoch as u32);
        Ok(self.corrections(step, &batches[(step % per_epoch) as usize]))
    }
}

/// One end of an in-process channel between two threads.
pub struct LocalChannel {
    outgoing: mpsc::Sender<Vec<u8>>,
    incoming: mpsc::Receiver<Vec<u8>>,
}

impl LocalChannel {
    /// Returns the two connected ends.
    pub fn pair() -> (Self, Self) {
        let (a_tx, a_rx) = mpsc::channel();
        let (b_tx, b_rx) = mpsc::channel();
        (
            Self {
                outgoing: a_tx,
                incoming: b_rx,
            },
            Self {
                outgoing: b_tx,
                incoming: a_rx,
            },
        )
    }
}

impl Channel for LocalChannel {
    fn exchange(&mut self, tag: &'static str, outgoing: Vec<u8>) -> Result<Vec<u8>, VerticalError> {
        self.outgoing.send(outgoing).map_err(|_| {
            VerticalError::Transport(format!("the peer left before the {tag} exchange"))
        })?;
        self.incoming.recv().map_err(|_| {
            VerticalError::Transport(format!("the peer left during the {tag} exchange"))
        })
    }
}

/// Runs a whole training in this process, the guest and the host on two threads and the
/// dealer called directly, with fresh seeds. For tests and benchmarks.
///
/// # Errors
///
/// Any party's error.
pub fn run_local(
    plan: &Plan,
    guest_features: &[f64],
    labels: &[f64],
    host_features: &[f64],
) -> Result<(Outcome, Outcome), VerticalError> {
    let guest_seed = fresh_seed();
    let host_seed = fresh_seed();
    let dealer = Arc::new(Dealer::new(plan.clone(), guest_seed, host_seed));
    let mut guest = Party::guest(plan.clone(), guest_seed, guest_features, labels)?;
    let mut host = Party::host(plan.clone(), host_seed, host_features)?;
    let (mut guest_link, mut host_link) = LocalChannel::pair();
    let host_plan = plan.clone();
    let host_thread = std::thread::spawn(move || {
        let mut correlation = HostCorrelation::new(host_plan, host_seed, |step| {
            dealer.corrections_for_step(step)
        });
        host.train(&mut host_link, &mut correlation, &mut |_, _| {})
    });
    let mut correlation = GuestCorrelation::new(plan.clone(), guest_seed);
    let guest_outcome = guest.train(&mut guest_link, &mut correlation, &mut |_, _| {});
    drop(guest_link);
    let host_outcome = host_thread
        .join()
        .map_err(|_| VerticalError::Transport("the host thread panicked".into()))?;
    Ok((guest_outcome?, host_outcome?))
}
