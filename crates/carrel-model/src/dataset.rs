//! Datasets as a provider describes them: columns, roles, bounds, privacy unit,
//! classification and the separated rights.

use serde::{Deserialize, Serialize};

use crate::ModelError;

/// The value type of a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ColumnType {
    /// 64-bit signed integers.
    Integer,
    /// 64-bit floats; non-finite values are stored as missing.
    Float,
    /// UTF-8 text.
    Text,
}

/// Kind of information a column carries about a person, which decides how it may be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ColumnRole {
    /// Names a person or record directly (an id, a name).
    Identifier,
    /// Identifies a person in combination with others (age, postcode).
    QuasiIdentifier,
    /// A sensitive attribute (income, diagnosis).
    Sensitive,
    /// Any other attribute.
    Attribute,
}

/// Declared lower and upper bounds of a numeric column, both inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Bounds {
    /// Smallest value a row may contribute.
    pub lower: f64,
    /// Largest value a row may contribute.
    pub upper: f64,
}

/// One column of a dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnSpec {
    /// Column name as it appears in the file header and in SQL.
    pub name: String,
    /// Value type.
    #[serde(rename = "type")]
    pub column_type: ColumnType,
    /// Role of the column.
    pub role: ColumnRole,
    /// Declared bounds, required for numeric columns that may be aggregated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bounds: Option<Bounds>,
}

impl ColumnSpec {
    /// Builds a column; `bounds` are `(lower, upper)`, both inclusive.
    pub fn new(
        name: &str,
        column_type: ColumnType,
        role: ColumnRole,
        bounds: Option<(f64, f64)>,
    ) -> Self {
        Self {
            name: name.to_owned(),
            column_type,
            role,
            bounds: bounds.map(|(lower, upper)| Bounds { lower, upper }),
        }
    }
}

/// Data grade under a national classification scheme; the strictest applicable grade wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataLevel {
    /// General data.
    General,
    /// Important data: may not leave its region without a security assessment.
    Important,
    /// Core data: may not be offered at all.
    Core,
}

/// Classification of a dataset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Classification {
    /// Data grade.
    pub level: DataLevel,
    /// Whether rows describe identifiable natural persons.
    pub personal_information: bool,
    /// Whether rows hold sensitive personal information (health, finance, biometrics).
    pub sensitive_personal_information: bool,
    /// Region where the data is held, such as `CN` or `US-CA`.
    pub region: String,
}

/// The separated rights over a dataset, which assert no ownership.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rights {
    /// Participant that has the data (holding right).
    pub holder: String,
    /// Participants that may process it under a contract (processing right).
    pub processors: Vec<String>,
    /// Participants that may operate products derived from it (operating right).
    pub operators: Vec<String>,
}

/// A provider's description of a dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetDescription {
    /// Table name used in SQL, lower case letters, digits and underscores.
    pub name: String,
    /// Human-readable title.
    pub title: String,
    /// Free text shown in the catalog.
    #[serde(default)]
    pub description: String,
    /// Columns in file order.
    pub columns: Vec<ColumnSpec>,
    /// Column whose value names the person a row belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privacy_unit: Option<String>,
    /// Classification.
    pub classification: Classification,
    /// Separated rights.
    pub rights: Rights,
}

impl DatasetDescription {
    /// Returns the column named `name`.
    pub fn column(&self, name: &str) -> Option<&ColumnSpec> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// Checks that the description is internally consistent.
    ///
    /// # Errors
    ///
    /// Returns every problem found, each naming the column or field and the fix.
    pub fn validate(&self) -> Result<(), ModelError> {
        let mut problems = Vec::new();
        if !is_sql_name(&self.name) {
            problems.push(format!(
                "dataset name {:?} is invalid: use lower case letters, digits and '_', \
                 starting with a letter",
                self.name
            ));
        }
        if self.columns.is_empty() {
            problems.push("the dataset declares no columns: list every column".into());
        }
        for (i, column) in self.columns.iter().enumerate() {
            if !is_sql_name(&column.name) {
                problems.push(format!(
                    "column name {:?} is invalid: use lower case letters, digits and '_'",
                    column.name
                ));
            }
            if self.columns[..i].iter().any(|c| c.name == column.name) {
                problems.push(format!("column {:?} is declared twice", column.name));
            }
            problems.extend(bounds_problem(column));
        }
        if let Some(unit) = &self.privacy_unit
            && self.column(unit).is_none()
        {
            problems.push(format!(
                "privacy unit column {unit:?} is not among the declared columns"
            ));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ModelError::InvalidDescription(problems))
        }
    }
}

fn bounds_problem(column: &ColumnSpec) -> Option<String> {
    let bounds = column.bounds?;
    let name = &column.name;
    if column.column_type == ColumnType::Text {
        return Some(format!(
            "column {name:?} is text and cannot have bounds: remove them"
        ));
    }
    if !bounds.lower.is_finite() || !bounds.upper.is_finite() || bounds.lower > bounds.upper {
        return Some(format!(
            "bounds of column {name:?} are [{}, {}]: give finite bounds with lower <= upper",
            bounds.lower, bounds.upper
        ));
    }
    // 2^63 itself does not fit an i64, so the bound is strict.
    let integral = |v: f64| v.fract() == 0.0 && v.abs() < 2f64.powi(63);
    if column.column_type == ColumnType::Integer
        && !(integral(bounds.lower) && integral(bounds.upper))
    {
        return Some(format!(
            "bounds of integer column {name:?} are [{}, {}]: give whole numbers within 64 bits",
            bounds.lower, bounds.upper
        ));
    }
    None
}

/// Returns whether `name` is a plain lower-case SQL identifier.
pub fn is_sql_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some('a'..='z'))
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_'))
        && name.len() <= 127
}

/// A dataset registered on a provider's node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dataset {
    /// Identifier assigned at registration.
    pub id: String,
    /// The provider's description.
    pub description: DatasetDescription,
    /// SHA-256 of the stored table file, hex.
    pub content_sha256: String,
    /// Rows kept after registration.
    pub rows: u64,
}
