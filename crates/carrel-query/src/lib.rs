//! Differentially private aggregate SQL over registered datasets.
//!
//! A provider registers a CSV or Parquet file under a [`DatasetDescription`], and a
//! consumer sends SQL. The provider's node checks the query from its plan alone and runs
//! it on the provider's data. Only noisy aggregates of groups large enough to hide a person
//! leave the node.
//!
//! ```text
//!  CSV / Parquet ──register_dataset──> Parquet file + RegistrationReport
//!                                          │
//!  SQL ──QueryPlanner::check──> CheckedQuery   (DataFusion plan; no data read)
//!                                 │  cost(ε) -> (ε, δ): the node charges the budget
//!                                 ▼
//!                   execute(checked, ε) ──> Release
//!                     scan + WHERE (DataFusion)
//!                     bound to k rows per person, clamp to bounds
//!                     exact per-group totals (i128, exact float sums)
//!                     OpenDP noise, suppress groups below τ
//! ```
//!
//! # Guarantee
//!
//! The privacy unit is the description's `privacy_unit` column. Neighbouring tables
//! differ by all rows of one person. [`execute`] at `ε` satisfies (ε, δ)-differential
//! privacy with `δ` the policy's `query_delta`: for neighbours `D, D'` and every set `S`
//! of releases, `P[M(D) ∈ S] <= e^ε P[M(D') ∈ S] + δ`. The noise module's NOTES.md gives
//! the construction and the proof sketch.
//!
//! # How a node uses it
//!
//! 1. [`register_dataset`] once per dataset; keep the report's `sha256`.
//! 2. Per request: [`QueryPlanner::check`] (or [`check_query`]); a [`QueryRejection`]
//!    costs nothing.
//! 3. [`CheckedQuery::check_epsilon`], then charge [`CheckedQuery::cost`] against the
//!    agreement's budget.
//! 4. [`execute`]; keep the charge even if the release has no rows.
//!
//! [`DatasetDescription`]: carrel_model::DatasetDescription

mod column;
mod error;
mod exec;
mod ingest;
mod noise;
mod plan;
mod release;
mod table;
#[cfg(test)]
mod test_support;
mod value;

pub use column::{scan_id_numbers, scan_id_values, scan_text_column};
pub use error::{Clause, QueryError, QueryRejection};
pub use exec::{
    ExactCell, ExactFloat, ExactGroup, ExactResult, ExactSum, execute,
    execute_without_noise_insecure,
};
pub use ingest::{RegistrationReport, register_dataset};
pub use plan::{AggregateFunction, CheckedQuery, QueryPlanner, check_query};
pub use release::{AggregateNoise, Release};
pub use table::RegisteredTable;
pub use value::Value;
