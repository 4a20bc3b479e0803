//! Identifiers as both sides of a join see them: one canonical rule, read from CSV files.
//!
//! Two parties match an identifier only if both turn it into the same bytes. The rule
//! ([`IdRule`]) is fixed by the agreement and each side states it in the handshake as a
//! single line ([`IdRule::statement`]); a mismatch stops the run before any blinded value
//! is sent. Version 1 of the rule, applied to each field:
//!
//! 1. the file's UTF-8 byte-order mark, if any, is dropped; lines may end in LF or CRLF;
//! 2. leading and trailing Unicode white space is trimmed (`char::is_whitespace`, which
//!    covers ASCII space, tab, CR, no-break space and the other `White_Space` characters);
//! 3. a field that is empty after trimming is skipped and counted as blank;
//! 4. the text is put in Unicode Normalization Form C;
//! 5. with `case=lower`, it is mapped to lower case by Unicode's default lowercase
//!    mapping (`str::to_lowercase`) and put in NFC again; with `case=keep`, case is
//!    significant.
//!
//! Repeated identifiers are kept once and counted, so a join never forms a cross product.
//! Equality is decided on the first 128 bits of the SHA-256 of the canonical bytes; two
//! different identifiers collide with probability about n²/2¹²⁹, about 10⁻²⁵ for ten
//! million identifiers.

use std::collections::HashSet;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::io::Read;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use unicode_normalization::UnicodeNormalization;

pub use carrel_model::IdCase as CaseRule;

/// The canonical identifier rule both parties of a run apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct IdRule {
    /// Letter case treatment.
    #[serde(default)]
    pub case: CaseRule,
}

/// Why identifiers could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdError {
    /// The CSV file could not be parsed.
    #[error("line {line}: {message}")]
    Csv {
        /// Line of the file, starting at 1.
        line: u64,
        /// What the parser reported.
        message: String,
    },
    /// The requested column is not in the header.
    #[error("no column {column:?} in the header; the header has {header:?}")]
    MissingColumn {
        /// Requested column.
        column: String,
        /// Columns found in the header.
        header: Vec<String>,
    },
    /// The file has no header line.
    #[error("the file is empty: an identifier file starts with a header line")]
    NoHeader,
    /// More distinct identifiers than allowed.
    #[error("more than {limit} distinct identifiers; the agreement allows at most {limit}")]
    TooMany {
        /// The allowed number.
        limit: u64,
    },
    /// A rule statement that this version does not know.
    #[error("unknown identifier rule {0:?}; this node applies {known:?}", known = IdRule::default().statement())]
    UnknownRule(String),
}

impl IdRule {
    /// The one-line statement of the rule exchanged in a handshake.
    pub fn statement(&self) -> String {
        let case = match self.case {
            CaseRule::Keep => "keep",
            CaseRule::Lower => "lower",
        };
        format!("carrel-ids/1 trim=unicode-white-space skip=blank form=NFC case={case}")
    }

    /// Parses a statement made by [`IdRule::statement`].
    ///
    /// # Errors
    ///
    /// [`IdError::UnknownRule`] for any other text.
    pub fn from_statement(statement: &str) -> Result<Self, IdError> {
        [CaseRule::Keep, CaseRule::Lower]
            .into_iter()
            .map(|case| IdRule { case })
            .find(|rule| rule.statement() == statement)
            .ok_or_else(|| IdError::UnknownRule(statement.to_owned()))
    }

    /// The canonical form of one field, or `None` when it is blank.
    pub fn canonical(&self, field: &str) -> Option<String> {
        let trimmed = field.trim_start_matches('\u{feff}').trim();
        if trimmed.is_empty() {
            return None;
        }
        let normal: String = trimmed.nfc().collect();
        Some(match self.case {
            CaseRule::Keep => normal,
            // Lower-casing can leave text outside NFC, so normalise again.
            CaseRule::Lower => normal.to_lowercase().nfc().collect(),
        })
    }
}

impl fmt::Display for IdRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.statement())
    }
}

/// Distinct canonical identifiers, stored end to end in one buffer.
#[derive(Debug, Clone, Default)]
pub struct IdList {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl IdList {
    /// Number of identifiers.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The identifier at `index`.
    ///
    /// # Panics
    ///
    /// Panics if `index` is out of range.
    pub fn get(&self, index: usize) -> &[u8] {
        let start = if index == 0 { 0 } else { self.ends[index - 1] };
        &self.bytes[start..self.ends[index]]
    }

    /// The identifier at `index` as text; canonical identifiers are valid UTF-8.
    pub fn text(&self, index: usize) -> &str {
        std::str::from_utf8(self.get(index)).expect("identifiers are stored from strings")
    }

    /// Iterates over the identifiers in their stored order.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> + '_ {
        (0..self.len()).map(|i| self.get(i))
    }

    fn push(&mut self, id: &str) {
        self.bytes.extend_from_slice(id.as_bytes());
        self.ends.push(self.bytes.len());
    }
}

/// What reading an identifier column found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdReport {
    /// Data lines read, blank ones included.
    pub rows: u64,
    /// Fields that were empty after trimming.
    pub blank: u64,
    /// Repeats of an identifier already read, dropped.
    pub duplicates: u64,
    /// Distinct identifiers kept.
    pub distinct: u64,
}

/// Builds an [`IdList`] from canonical identifiers, keeping the first of each.
#[derive(Default)]
pub struct IdCollector {
    list: IdList,
    seen: HashSet<u128, BuildHasherDefault<PrefixHasher>>,
    report: IdReport,
    limit: Option<u64>,
}

impl IdCollector {
    /// A collector that refuses more than `limit` distinct identifiers.
    pub fn with_limit(limit: u64) -> Self {
        Self {
            limit: Some(limit),
            ..Self::default()
        }
    }

    /// Adds one raw field, canonicalised by `rule`; returns whether it was kept.
    ///
    /// # Errors
    ///
    /// [`IdError::TooMany`] past the limit.
    pub fn add(&mut self, rule: &IdRule, field: &str) -> Result<bool, IdError> {
        self.report.rows += 1;
        let Some(id) = rule.canonical(field) else {
            self.report.blank += 1;
            return Ok(false);
        };
        if !self.seen.insert(id_digest(id.as_bytes())) {
            self.report.duplicates += 1;
            return Ok(false);
        }
        if self
            .limit
            .is_some_and(|limit| self.report.distinct >= limit)
        {
            return Err(IdError::TooMany {
                limit: self.limit.unwrap_or_default(),
            });
        }
        self.report.distinct += 1;
        self.list.push(&id);
        Ok(true)
    }

    /// The identifiers kept and the counts.
    pub fn finish(self) -> (IdList, IdReport) {
        (self.list, self.report)
    }
}

/// Reads one column of a CSV file with a header line as canonical identifiers.
///
/// `column` names the column; `None` takes the first. At most `limit` distinct
/// identifiers are accepted.
///
/// # Errors
///
/// [`IdError`] naming the line, the missing column or the limit.
pub fn read_ids<R: Read>(
    reader: R,
    column: Option<&str>,
    rule: &IdRule,
    limit: u64,
) -> Result<(IdList, IdReport), IdError> {
    let mut csv = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(reader);
    let header: Vec<String> = csv
        .headers()
        .map_err(|e| csv_error(&e))?
        .iter()
        .map(|name| name.trim_start_matches('\u{feff}').trim().to_owned())
        .collect();
    if header.is_empty() {
        return Err(IdError::NoHeader);
    }
    let position = match column {
        None => 0,
        Some(name) => header
            .iter()
            .position(|h| h == name.trim())
            .ok_or_else(|| IdError::MissingColumn {
                column: name.to_owned(),
                header: header.clone(),
            })?,
    };

    let mut collector = IdCollector::with_limit(limit);
    let mut record = csv::StringRecord::new();
    while csv.read_record(&mut record).map_err(|e| csv_error(&e))? {
        collector.add(rule, record.get(position).unwrap_or(""))?;
    }
    Ok(collector.finish())
}

/// The 128-bit digest identifiers are compared by.
pub fn id_digest(id: &[u8]) -> u128 {
    let digest = Sha256::digest(id);
    u128::from_be_bytes(digest[..16].try_into().expect("SHA-256 has 32 bytes"))
}

fn csv_error(error: &csv::Error) -> IdError {
    let line = error.position().map_or(0, csv::Position::line);
    IdError::Csv {
        line,
        message: error.to_string(),
    }
}

/// A hasher for keys that are already uniform digests: it keeps their low 64 bits.
#[derive(Default)]
pub struct PrefixHasher(u64);

impl Hasher for PrefixHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 ^= u64::from_le_bytes(word);
        }
    }

    fn write_u128(&mut self, value: u128) {
        self.0 = value as u64;
    }
}

#[cfg(test)]
mod test;
