//! Printing results for people, or as JSON with `--json`.

use std::path::Path;

use carrel_node::NodeConfig;
use serde_json::{Value, json};

/// Result printer: text for people, or JSON.
pub struct Output {
    json: bool,
}

impl Output {
    /// Prints JSON when `json` is set, text otherwise.
    pub fn new(json: bool) -> Self {
        Self { json }
    }

    /// Returns whether output is JSON.
    pub fn is_json(&self) -> bool {
        self.json
    }

    fn print_json(&self, value: &Value) {
        // A `Value` always serialises.
        println!(
            "{}",
            serde_json::to_string_pretty(value).expect("JSON value serialises")
        );
    }

    /// Prints a step of long work, on standard error so JSON output stays clean.
    pub fn progress(&self, line: &str) {
        eprintln!("  … {line}");
    }

    /// Prints an error: a JSON object on standard output with `--json`, and always a
    /// line on standard error.
    pub fn error(&self, error: &anyhow::Error) {
        if self.json {
            self.print_json(&json!({ "error": { "message": format!("{error:#}") } }));
        }
        eprintln!("error: {error:#}");
    }

    /// Prints the result of `init`.
    pub fn init(&self, dir: &Path, config: &NodeConfig, public_key: &str) {
        if self.json {
            self.print_json(
                &json!({ "dir": dir, "name": config.name, "role": config.role,
                                     "public_key": public_key, "origin": config.origin }),
            );
            return;
        }
        println!(
            "created node {} ({:?}) in {}",
            config.name,
            config.role,
            dir.display()
        );
        println!("public key: {public_key}");
        println!("audit log origin: {}", config.origin);
    }

    /// Prints any JSON result under a title.
    pub fn value(&self, title: &str, value: &Value) {
        if self.json {
            self.print_json(value);
            return;
        }
        println!("{title}:");
        println!(
            "{}",
            serde_json::to_string_pretty(value).expect("JSON value serialises")
        );
    }

    /// Prints jobs as one line each: id, kind, role, state, phase and peers.
    pub fn jobs(&self, jobs: &Value) {
        if self.json {
            self.print_json(jobs);
            return;
        }
        let list = jobs.as_array().map(Vec::as_slice).unwrap_or_default();
        if list.is_empty() {
            println!("no jobs");
        }
        for job in list {
            let peers: Vec<String> = job["peers"]
                .as_array()
                .map(|p| p.iter().map(cell).collect())
                .unwrap_or_default();
            println!(
                "{}  {:<6} {:<9} {:<10} {:<28} with {}",
                cell(&job["id"]),
                cell(&job["kind"]),
                cell(&job["role"]),
                cell(&job["state"]),
                cell(&job["phase"]),
                peers.join(", ")
            );
        }
    }

    /// Prints the catalog as one line per offer.
    pub fn catalog(&self, catalog: &Value) {
        if self.json {
            self.print_json(catalog);
            return;
        }
        let entries = catalog["dcat:dataset"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        println!(
            "{} product(s) listed by {}",
            entries.len(),
            catalog["dct:publisher"].as_str().unwrap_or("?")
        );
        for entry in entries {
            let product = &entry["carrel:product"];
            // Prices are in minor units (cents for USD).
            let minor = product["policy"]["price_per_query"]["amount_minor"]
                .as_u64()
                .unwrap_or(0);
            println!(
                "  offer {}  {}  by {}  purposes {}  price {}.{:02} {} per query",
                product["offer_id"].as_str().unwrap_or("?"),
                product["title"].as_str().unwrap_or("?"),
                product["provider"].as_str().unwrap_or("?"),
                product["policy"]["purposes"],
                minor / 100,
                minor % 100,
                product["policy"]["price_per_query"]["currency"]
                    .as_str()
                    .unwrap_or("?"),
            );
        }
    }

    /// Prints a query release as a table with each value's 95% interval.
    pub fn release(&self, response: &Value) {
        if self.json {
            self.print_json(response);
            return;
        }
        print!("{}", format_release(response));
    }
}

/// Formats a release as text: the table, then the privacy spent and left.
pub fn format_release(response: &Value) -> String {
    let release = &response["release"];
    let mut text = String::new();
    let columns: Vec<String> = release["columns"]
        .as_array()
        .map(|c| {
            c.iter()
                .map(|v| v.as_str().unwrap_or("?").to_owned())
                .collect()
        })
        .unwrap_or_default();
    text.push_str(&format!("  {}\n", columns.join(" | ")));
    let rows = release["rows"].as_array().cloned().unwrap_or_default();
    if rows.is_empty() {
        text.push_str("  (no group reached the minimum size; nothing released)\n");
    }
    for row in rows {
        let cells: Vec<String> = row
            .as_array()
            .map(|r| r.iter().map(cell).collect())
            .unwrap_or_default();
        text.push_str(&format!("  {}\n", cells.join(" | ")));
    }
    let budget = &response["budget"];
    text.push_str(&format!(
        "  spent epsilon {} delta {:e}; left epsilon {:.3} delta {:e}; {} queries left\n",
        response["epsilon_spent"],
        response["delta_spent"].as_f64().unwrap_or(0.0),
        budget["epsilon_left"].as_f64().unwrap_or(0.0),
        budget["delta_left"].as_f64().unwrap_or(0.0),
        budget["queries_left"],
    ));
    text
}

/// Formats one result cell: integers as they are, other numbers to one decimal.
pub fn cell(value: &Value) -> String {
    match value {
        Value::Number(n) if n.is_i64() || n.is_u64() => n.to_string(),
        Value::Number(n) => n
            .as_f64()
            .map_or_else(|| n.to_string(), |f| format!("{f:.1}")),
        Value::String(s) => s.clone(),
        Value::Null => "null".into(),
        other => other.to_string(),
    }
}
