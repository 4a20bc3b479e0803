//! A cluster of real `carrel serve` processes for integration tests: an exchange, a
//! provider and a consumer on free loopback ports in a temporary folder.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long a node may take to write its endpoint file.
const START_DEADLINE: Duration = Duration::from_secs(30);

/// Path of the `carrel` binary built for these tests.
pub fn carrel_exe() -> &'static str {
    env!("CARGO_BIN_EXE_carrel")
}

/// Runs `carrel --json ARGS...` and returns its exit success and parsed output.
pub fn carrel(args: &[&str]) -> (bool, Value) {
    let output = Command::new(carrel_exe())
        .arg("--json")
        .args(args)
        .output()
        .expect("carrel runs");
    (output.status.success(), parse(&output))
}

fn parse(output: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(&stdout).unwrap_or_else(|_| {
        Value::String(format!(
            "{stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        ))
    })
}

/// Runs a command that must succeed and returns its JSON output.
pub fn ok(args: &[&str]) -> Value {
    let (success, value) = carrel(args);
    assert!(success, "carrel {args:?} failed: {value}");
    value
}

/// Runs a command that must fail and returns its error message.
pub fn fails(args: &[&str]) -> String {
    let (success, value) = carrel(args);
    assert!(!success, "carrel {args:?} succeeded but must fail: {value}");
    value["error"]["message"]
        .as_str()
        .map_or_else(|| value.to_string(), str::to_owned)
}

/// One running node.
pub struct NodeProcess {
    pub name: String,
    pub dir: PathBuf,
    child: Option<Child>,
}

impl NodeProcess {
    /// Starts `carrel serve` on an initialised folder and waits for its endpoint.
    pub fn start(name: &str, dir: &Path) -> Self {
        let _ = std::fs::remove_file(dir.join("endpoint"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("node.log"))
            .unwrap();
        let child = Command::new(carrel_exe())
            .arg("serve")
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("carrel serve starts");
        let mut node = Self {
            name: name.into(),
            dir: dir.to_owned(),
            child: Some(child),
        };
        node.wait_ready();
        node
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + START_DEADLINE;
        while !self.dir.join("endpoint").exists() {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("node {} exited with {status}: {}", self.name, self.log());
            }
            assert!(
                Instant::now() < deadline,
                "node {} did not start: {}",
                self.name,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Returns the node's log text.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("node.log")).unwrap_or_default()
    }

    /// Returns the node's endpoint URL.
    pub fn endpoint(&self) -> String {
        std::fs::read_to_string(self.dir.join("endpoint"))
            .unwrap()
            .trim()
            .to_owned()
    }

    /// Stops the node with SIGTERM and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let status = child.wait().unwrap();
            assert!(
                status.success(),
                "node {} did not stop cleanly: {status}",
                self.name
            );
        }
    }

    /// Stops and starts the node again on the same folder.
    pub fn restart(&mut self) {
        self.stop();
        *self = Self::start(&self.name.clone(), &self.dir.clone());
    }

    /// Returns the folder as a string argument.
    pub fn arg(&self) -> String {
        self.dir.to_string_lossy().into_owned()
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// An exchange, a provider and a consumer.
pub struct Cluster {
    pub root: tempfile::TempDir,
    pub exchange_key: String,
    pub exchange: NodeProcess,
    pub provider: NodeProcess,
    pub consumer: NodeProcess,
}

impl Cluster {
    /// Initialises and starts the three nodes.
    pub fn start() -> Self {
        let root = tempfile::tempdir().unwrap();
        let dir = |name: &str| root.path().join(name);
        let init = ok(&[
            "init",
            dir("exchange").to_str().unwrap(),
            "--name",
            "exchange",
            "--role",
            "exchange",
        ]);
        let key = init["public_key"].as_str().unwrap().to_owned();
        let exchange = NodeProcess::start("exchange", &dir("exchange"));
        let url = exchange.endpoint();
        for (name, role) in [("provider", "provider"), ("consumer", "consumer")] {
            ok(&[
                "init",
                dir(name).to_str().unwrap(),
                "--name",
                name,
                "--role",
                role,
                "--exchange",
                &url,
                "--exchange-key",
                &key,
            ]);
        }
        let provider = NodeProcess::start("provider", &dir("provider"));
        let consumer = NodeProcess::start("consumer", &dir("consumer"));
        Self {
            root,
            exchange_key: key,
            exchange,
            provider,
            consumer,
        }
    }

    /// Initialises and starts another provider pinned to the cluster's exchange.
    pub fn add_provider(&self, name: &str) -> NodeProcess {
        let dir = self.root.path().join(name);
        ok(&[
            "init",
            dir.to_str().unwrap(),
            "--name",
            name,
            "--role",
            "provider",
            "--exchange",
            &self.exchange.endpoint(),
            "--exchange-key",
            &self.exchange_key,
        ]);
        NodeProcess::start(name, &dir)
    }

    /// Writes a file under the cluster's folder and returns its path.
    pub fn write(&self, name: &str, contents: &str) -> String {
        let path = self.root.path().join(name);
        std::fs::write(&path, contents).unwrap();
        path.to_string_lossy().into_owned()
    }

    /// Registers `csv` with `description` on the provider, publishes it with
    /// `policy`, negotiates with `purpose`, and returns the agreement id.
    pub fn agreement(
        &self,
        csv: &str,
        description: &Value,
        policy: &Value,
        purpose: &str,
    ) -> String {
        let name = description["name"].as_str().unwrap();
        let file = self.write(&format!("{name}.csv"), csv);
        let description_file = self.write(
            &format!("{name}.description.json"),
            &description.to_string(),
        );
        let policy_file = self.write(&format!("{name}.policy.json"), &policy.to_string());
        let provider = self.provider.arg();
        ok(&[
            "register",
            "--node",
            &provider,
            &file,
            "--description",
            &description_file,
        ]);
        let listed = ok(&[
            "publish",
            "--node",
            &provider,
            "--dataset",
            name,
            "--title",
            name,
            "--policy",
            &policy_file,
        ]);
        let offer = listed["odrl:hasPolicy"][0]["@id"]
            .as_str()
            .unwrap()
            .to_owned();
        let signed = ok(&[
            "negotiate",
            "--node",
            &self.consumer.arg(),
            "--offer",
            &offer,
            "--purpose",
            purpose,
        ]);
        signed["agreement"]["@id"].as_str().unwrap().to_owned()
    }

    /// Publishes the regions table under a policy with a budget of 10 and returns the
    /// consumer's agreement for research on it.
    pub fn regions_agreement(&self) -> String {
        self.agreement(
            &regions_csv(),
            &regions_description(),
            &regions_policy(10.0, 3600),
            "research",
        )
    }

    /// Runs a query as the consumer.
    pub fn query(&self, agreement: &str, sql: &str, epsilon: Option<f64>) -> (bool, Value) {
        let consumer = self.consumer.arg();
        let mut args = vec![
            "query",
            "--node",
            consumer.as_str(),
            "--agreement",
            agreement,
        ];
        let epsilon_text = epsilon.map(|e| e.to_string());
        if let Some(e) = &epsilon_text {
            args.extend(["--epsilon", e.as_str()]);
        }
        args.push(sql);
        carrel(&args)
    }
}

/// Returns the description of the table (id, region, age, spend).
pub fn regions_description() -> Value {
    serde_json::json!({
        "name": "regions",
        "title": "Spend by region",
        "columns": [
            { "name": "id", "type": "integer", "role": "identifier" },
            { "name": "region", "type": "text", "role": "quasi_identifier" },
            { "name": "age", "type": "integer", "role": "quasi_identifier", "bounds": { "lower": 0, "upper": 120 } },
            { "name": "spend", "type": "float", "role": "sensitive", "bounds": { "lower": 0, "upper": 1000 } }
        ],
        "privacy_unit": "id",
        "classification": { "level": "general", "personal_information": true,
                            "sensitive_personal_information": false, "region": "US" },
        "rights": { "holder": "provider", "processors": ["provider"], "operators": ["provider"] }
    })
}

/// Returns a CSV of the table: north 60 persons, south 1, east 2, one row each.
pub fn regions_csv() -> String {
    let mut csv = String::from("id,region,age,spend\n");
    let regions = std::iter::repeat_n("north", 60)
        .chain(["south"])
        .chain(["east", "east"]);
    for (i, region) in regions.enumerate() {
        csv.push_str(&format!(
            "{},{region},{},{}.5\n",
            i + 1,
            20 + i % 50,
            (i * 7) % 900
        ));
    }
    csv
}

/// Returns a usage policy for the regions table, valid for `valid_secs` from now.
pub fn regions_policy(budget_epsilon: f64, valid_secs: i64) -> Value {
    let now = time::OffsetDateTime::now_utc();
    let format = &time::format_description::well_known::Rfc3339;
    serde_json::json!({
        "action": "aggregate_query",
        "purposes": ["research"],
        "valid_from": (now - time::Duration::minutes(1)).format(format).unwrap(),
        "valid_until": (now + time::Duration::seconds(valid_secs)).format(format).unwrap(),
        "max_queries": 100,
        "budget": { "epsilon": budget_epsilon, "delta": 1e-6 },
        "query_epsilon": 0.2,
        "query_delta": 1e-9,
        "min_group_size": 10,
        "max_rows_per_unit": 1,
        "columns": { "group_by": ["region"], "aggregate": ["spend"], "filter": ["region"] },
        "price_per_query": { "amount_minor": 100, "currency": "USD" },
        "usage_regions": ["US"]
    })
}

// Helpers of the vertical training tests.

impl Cluster {
    /// Initialises and starts an exchange, a provider named `provider` and a consumer
    /// named `consumer`.
    pub fn start_with_names(provider: &str, consumer: &str) -> Self {
        let root = tempfile::tempdir().unwrap();
        let dir = |name: &str| root.path().join(name);
        let init = ok(&[
            "init",
            dir("exchange").to_str().unwrap(),
            "--name",
            "exchange",
            "--role",
            "exchange",
        ]);
        let key = init["public_key"].as_str().unwrap().to_owned();
        let exchange = NodeProcess::start("exchange", &dir("exchange"));
        let url = exchange.endpoint();
        for (name, role) in [(provider, "provider"), (consumer, "consumer")] {
            ok(&[
                "init",
                dir(name).to_str().unwrap(),
                "--name",
                name,
                "--role",
                role,
                "--exchange",
                &url,
                "--exchange-key",
                &key,
            ]);
        }
        let provider = NodeProcess::start(provider, &dir(provider));
        let consumer = NodeProcess::start(consumer, &dir(consumer));
        Self {
            root,
            exchange_key: key,
            exchange,
            provider,
            consumer,
        }
    }
}

/// Returns the audit events of `kind` in the log of the node in `dir`, oldest first.
pub fn audit_log_events(dir: &Path, kind: &str) -> Vec<Value> {
    let conn = rusqlite::Connection::open(dir.join("node.db")).unwrap();
    let mut statement = conn
        .prepare("SELECT entry FROM audit_entries ORDER BY idx")
        .unwrap();
    statement
        .query_map([], |r| r.get::<_, Vec<u8>>(0))
        .unwrap()
        .map(|entry| serde_json::from_slice::<Value>(&entry.unwrap()).unwrap())
        .filter(|event| event["kind"] == kind)
        .collect()
}

// Helpers of the horizontal training tests.

impl NodeProcess {
    /// Kills the node with SIGKILL, as a crash would, and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-KILL", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }

    /// Starts the node again on its folder after [`NodeProcess::kill`].
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "node {} is still running", self.name);
        *self = Self::start(&self.name.clone(), &self.dir.clone());
    }
}

/// Returns the state of job `id` in the database of the node in `dir`, which may be stopped.
pub fn stored_job_state(dir: &Path, id: &str) -> Option<String> {
    let conn = rusqlite::Connection::open(dir.join("node.db")).unwrap();
    conn.query_row("SELECT state FROM jobs WHERE id = ?1", [id], |r| r.get(0))
        .ok()
}

/// How long a training may take to reach a phase or to end, also after a restart.
pub const JOB_DEADLINE: Duration = Duration::from_secs(180);

/// Waits until a running job on `node` is in a phase that starts with `prefix` and has
/// done `done` steps or more, and returns its id.
pub fn wait_for_phase(node: &NodeProcess, prefix: &str, done: u64) -> String {
    let deadline = Instant::now() + JOB_DEADLINE;
    loop {
        let jobs = ok(&["job", "status", "--node", &node.arg()]);
        let running = jobs.as_array().unwrap().iter().find(|job| {
            let in_phase = job["phase"]
                .as_str()
                .is_some_and(|phase| phase.starts_with(prefix));
            job["state"] == "running" && in_phase && job["done"].as_u64() >= Some(done)
        });
        if let Some(job) = running {
            return job["id"].as_str().unwrap().to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "no job reached {prefix}{done} on {}",
            node.name
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until job `id` ends on `node` and returns it.
pub fn wait_for_end(node: &NodeProcess, id: &str) -> Value {
    let deadline = Instant::now() + JOB_DEADLINE;
    loop {
        let job = ok(&["job", "status", "--node", &node.arg(), id]);
        if job["state"] != "running" {
            return job;
        }
        assert!(Instant::now() < deadline, "job {id} still running: {job}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
