//! Federated logistic regression that reaches the accuracy of training on pooled data.
//!
//! ```text
//!   logistic   the model, a numerically stable loss and its gradient, L2 as scikit-learn's C
//!   pooled     Newton's method on pooled rows: the reference every federated model is held to
//!   data       feature tables read from CSV under declared bounds
//!   metrics    AUC, KS and accuracy on held-out rows; ROC points
//!   plot       loss and ROC curves as SVG
//!   horizontal federated averaging over secure aggregation, optional DP-SGD
//!   vertical   two feature holders and a dealer of correlated randomness: additive secret
//!              sharing in Z(2^128), secure sigmoid by comparisons, shares of the model
//! ```
//!
//! Like `carrel-mpc`, every protocol here is plain state over messages with no network code;
//! the node carries the messages between parties under an agreement.

pub mod data;
pub mod horizontal;
pub mod logistic;
pub mod metrics;
pub mod plot;
pub mod pooled;
pub mod vertical;
