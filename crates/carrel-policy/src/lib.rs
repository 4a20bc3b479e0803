//! Rules that Carrel enforces, as pure functions over model values:
//!
//! ```text
//! Product ──review_listing──> listed | every reason it is not
//! (state, sender, message) ──negotiation::transition──> next state | error
//! Agreement + now + use count ──check_use──> allowed | why not
//! ```
//!
//! The provider's node calls these on every request; the exchange calls
//! [`review_listing`] before it lists a product. Nothing here does I/O.

mod review;
mod usage;

pub mod negotiation;

pub use review::{MAX_TRAINING_ROUNDS, MODEL_OPERATOR_CONSUMER, ReviewReason, review_listing};
pub use usage::{UseError, check_purpose, check_use, check_validity};
