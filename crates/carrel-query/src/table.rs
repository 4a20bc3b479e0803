//! A registered table: the provider's description and the Parquet file written at
//! registration, and the DataFusion session that plans and runs queries over it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use carrel_model::{ColumnType, DatasetDescription};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::prelude::SessionContext;

use crate::QueryRejection;

/// A dataset registered on this node: its description and its Parquet file.
#[derive(Debug, Clone, PartialEq)]
pub struct RegisteredTable {
    /// The provider's description; `description.name` is the table name in SQL.
    pub description: DatasetDescription,
    /// The Parquet file written by [`register_dataset`](crate::register_dataset).
    pub parquet: PathBuf,
}

impl RegisteredTable {
    /// Pairs a description with the Parquet file registered for it.
    pub fn new(description: DatasetDescription, parquet: impl Into<PathBuf>) -> Self {
        RegisteredTable {
            description,
            parquet: parquet.into(),
        }
    }

    /// Builds a session with this table registered under its description name.
    ///
    /// The schema comes from the description, so this reads nothing from the file.
    pub(crate) fn session(&self) -> Result<SessionContext, QueryRejection> {
        let invalid = |reason: String| QueryRejection::InvalidTable { reason };
        let url = table_url(&self.parquet).map_err(invalid)?;
        let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
            // An empty extension matches any file name, so a file not ending in .parquet
            // is still read rather than silently listed as empty.
            .with_file_extension("");
        let config = ListingTableConfig::new(url)
            .with_listing_options(options)
            .with_schema(arrow_schema(&self.description));
        let table = ListingTable::try_new(config).map_err(|e| invalid(e.to_string()))?;

        let ctx = SessionContext::new();
        ctx.register_table(self.description.name.as_str(), Arc::new(table))
            .map_err(|e| invalid(e.to_string()))?;
        Ok(ctx)
    }
}

fn table_url(path: &Path) -> Result<ListingTableUrl, String> {
    let absolute =
        std::path::absolute(path).map_err(|e| format!("cannot resolve {}: {e}", path.display()))?;
    let text = absolute
        .to_str()
        .ok_or_else(|| format!("path {} is not UTF-8: rename the file", absolute.display()))?;
    ListingTableUrl::parse(text).map_err(|e| format!("invalid path {text}: {e}"))
}

/// Returns the Arrow type that stores a declared column type.
pub(crate) fn arrow_type(column_type: ColumnType) -> DataType {
    match column_type {
        ColumnType::Integer => DataType::Int64,
        ColumnType::Float => DataType::Float64,
        ColumnType::Text => DataType::Utf8,
    }
}

/// Returns the Arrow schema of a registered table: every column nullable, in declared
/// order.
pub(crate) fn arrow_schema(description: &DatasetDescription) -> SchemaRef {
    let fields: Vec<Field> = description
        .columns
        .iter()
        .map(|c| Field::new(&c.name, arrow_type(c.column_type), true))
        .collect();
    Arc::new(Schema::new(fields))
}
