//! Attacks on private set intersection between real node processes: a consumer that
//! breaks the protocol, another participant that meddles in someone else's job, and bad
//! identifier files.
//!
//! The tests that play the consumer sign requests with the consumer node's own key and
//! drive the provider's `/jobs/...` steps themselves, so they can deviate at any step.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use carrel_mpc::group::{POINT_LEN, SecretScalar, encode_points, hash_to_group};
use carrel_mpc::ids::{CaseRule, IdCollector, IdRule};
use carrel_mpc::psi::{HASH_DOMAIN, PsiParty, Reveal};
use carrel_mpc::transcript::Transcript;
use carrel_net::{NodeIdentity, Peer, PeerClient, PeerError};
use common::{Cluster, carrel, ok};
use serde_json::{Value, json};

/// Label of the protocol in transcripts, as both nodes write it.
const PROTOCOL: &str = "carrel-psi-v1";

/// Largest batch the provider accepts, in elements.
const MAX_BATCH: u64 = 1 << 16;

fn customers_description(name: &str) -> Value {
    json!({
        "name": name,
        "title": "Customers",
        "columns": [
            { "name": "id", "type": "text", "role": "identifier" },
            { "name": "spend", "type": "float", "role": "sensitive", "bounds": { "lower": 0, "upper": 1000 } }
        ],
        "privacy_unit": "id",
        "classification": { "level": "general", "personal_information": true,
                            "sensitive_personal_information": false, "region": "US" },
        "rights": { "holder": "provider", "processors": ["provider"], "operators": ["provider"] }
    })
}

/// Returns a usage policy that permits private set intersection under the given terms.
fn psi_policy(
    consumer_learns: Reveal,
    provider_learns: Reveal,
    max_set: u64,
    runs: u64,
    id_case: CaseRule,
) -> Value {
    let now = time::OffsetDateTime::now_utc();
    let format = &time::format_description::well_known::Rfc3339;
    json!({
        "action": "private_set_intersection",
        "purposes": ["marketing"],
        "valid_from": (now - time::Duration::minutes(1)).format(format).unwrap(),
        "valid_until": (now + time::Duration::hours(1)).format(format).unwrap(),
        "max_queries": runs,
        "budget": { "epsilon": 1.0, "delta": 1e-6 },
        "query_epsilon": 0.1,
        "query_delta": 1e-9,
        "min_group_size": 10,
        "max_rows_per_unit": 1,
        "columns": {},
        "price_per_query": { "amount_minor": 500, "currency": "USD" },
        "usage_regions": ["US"],
        "psi": { "consumer_learns": consumer_learns, "provider_learns": provider_learns,
                 "id_column": "id", "id_case": id_case, "max_set_size": max_set }
    })
}

/// Returns a CSV of the provider's customers. Each id is written as given, so a caller
/// may pass quoted fields.
fn customers_csv(ids: &[&str]) -> String {
    let mut csv = String::from("id,spend\n");
    for (i, id) in ids.iter().enumerate() {
        csv.push_str(&format!("{id},{}.5\n", i * 10));
    }
    csv
}

/// Publishes `provider_ids` and negotiates an agreement with the given terms.
fn psi_agreement(
    cluster: &Cluster,
    name: &str,
    provider_ids: &[&str],
    (consumer_learns, provider_learns): (Reveal, Reveal),
    max_set: u64,
    runs: u64,
) -> String {
    cluster.agreement(
        &customers_csv(provider_ids),
        &customers_description(name),
        &psi_policy(
            consumer_learns,
            provider_learns,
            max_set,
            runs,
            CaseRule::Keep,
        ),
        "marketing",
    )
}

fn run_psi(cluster: &Cluster, agreement: &str, ids_file: &str, extra: &[&str]) -> (bool, Value) {
    let consumer = cluster.consumer.arg();
    let mut args = vec![
        "psi",
        "--node",
        consumer.as_str(),
        "--agreement",
        agreement,
        "--ids",
        ids_file,
    ];
    args.extend_from_slice(extra);
    carrel(&args)
}

fn error_message(output: &Value) -> String {
    output["error"]["message"]
        .as_str()
        .map_or_else(|| output.to_string(), str::to_owned)
}

fn job_on(node: &common::NodeProcess, job: &str) -> Value {
    ok(&["job", "status", "--node", &node.arg(), job])
}

fn jobs_on(node: &common::NodeProcess) -> Vec<Value> {
    ok(&["job", "status", "--node", &node.arg()])
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Audit events of `kind` in the node's log, oldest first.
fn audit_events(dir: &Path, kind: &str) -> Vec<Value> {
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

fn failure_reasons(dir: &Path, job: &str) -> Vec<String> {
    audit_events(dir, "job.failed")
        .iter()
        .filter(|e| e["detail"]["job"] == job)
        .map(|e| {
            e["detail"]["reason"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

fn runs_used(cluster: &Cluster, agreement: &str) -> i64 {
    let conn = rusqlite::Connection::open(cluster.provider.dir.join("node.db")).unwrap();
    conn.query_row(
        "SELECT queries_used FROM agreements WHERE id = ?1",
        [agreement],
        |r| r.get(0),
    )
    .unwrap()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A provider's rejection of a signed request.
#[derive(Debug)]
struct Rejection {
    status: u16,
    code: String,
    message: String,
}

/// Sends signed requests to the provider under one participant's key.
struct Caller {
    runtime: tokio::runtime::Runtime,
    client: PeerClient,
    provider: Peer,
}

impl Caller {
    fn new(identity: Arc<NodeIdentity>, cluster: &Cluster) -> Self {
        let provider =
            NodeIdentity::load("provider", cluster.provider.dir.join("identity.key")).unwrap();
        let provider = Peer::new(
            "provider",
            &cluster.provider.endpoint(),
            provider.public_key(),
        )
        .unwrap();
        Self {
            runtime: tokio::runtime::Runtime::new().unwrap(),
            client: PeerClient::new(identity),
            provider,
        }
    }

    /// Returns a caller that signs as the cluster's consumer node.
    fn consumer(cluster: &Cluster) -> Self {
        let identity =
            NodeIdentity::load("consumer", cluster.consumer.dir.join("identity.key")).unwrap();
        Self::new(Arc::new(identity), cluster)
    }

    fn post(&self, path: &str, body: &Value) -> Result<Value, Rejection> {
        let outcome = self
            .runtime
            .block_on(self.client.post_json(&self.provider, path, body));
        match outcome {
            Ok(response) => Ok(response.body),
            Err(PeerError::Rejected {
                status,
                code,
                message,
                ..
            }) => Err(Rejection {
                status: status.as_u16(),
                code,
                message,
            }),
            Err(other) => panic!("request to {path} failed in transport: {other}"),
        }
    }
}

/// Registers a new participant with the exchange under a fresh key.
fn register_participant(cluster: &Cluster, name: &str) -> Arc<NodeIdentity> {
    let identity = Arc::new(NodeIdentity::generate(name).unwrap());
    let exchange =
        NodeIdentity::load("exchange", cluster.exchange.dir.join("identity.key")).unwrap();
    let exchange = Peer::new(
        "exchange",
        &cluster.exchange.endpoint(),
        exchange.public_key(),
    )
    .unwrap();
    let entry = json!({ "name": name, "role": "consumer",
                        "public_key": identity.public_key().to_string(),
                        "endpoint": "https://127.0.0.1:9" });
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime
        .block_on(PeerClient::new(identity.clone()).post_json(&exchange, "/participants", &entry))
        .expect("the exchange registers a new participant");
    identity
}

/// Percent-encodes the characters of a job id that would end a path segment.
fn path_segment(job: &str) -> String {
    job.replace('%', "%25").replace('/', "%2F")
}

fn expect_rejected(outcome: Result<Value, Rejection>, status: u16, code: &str) -> String {
    match outcome {
        Err(rejection) => {
            assert_eq!(rejection.status, status, "{rejection:?}");
            assert_eq!(rejection.code, code, "{rejection:?}");
            rejection.message
        }
        Ok(value) => panic!("expected a {status} {code} rejection, got {value}"),
    }
}

/// The consumer's side of one run, driven step by step from the test.
struct ManualRun<'a> {
    caller: &'a Caller,
    job: String,
    batch: usize,
    consumer_learns: Reveal,
    provider_learns: Reveal,
    party: PsiParty,
    transcript: Transcript,
    provider_size: usize,
}

impl<'a> ManualRun<'a> {
    /// Sends the handshake for `ids` under the default identifier rule.
    fn hello(
        caller: &'a Caller,
        agreement: &str,
        job: &str,
        ids: &[&str],
        batch: usize,
        (consumer_learns, provider_learns): (Reveal, Reveal),
    ) -> Result<Self, Rejection> {
        let rule = IdRule::default();
        let mut collector = IdCollector::default();
        for id in ids {
            collector.add(&rule, id).unwrap();
        }
        let (list, _) = collector.finish();
        let hello = json!({ "job": job, "agreement": agreement, "rule": rule.statement(),
                            "consumer_size": list.len(), "batch": batch });
        let reply = caller.post("/jobs/psi", &hello)?;
        let provider_size = reply["provider_size"].as_u64().unwrap() as usize;
        let transcript_hello = json!({ "job": job, "agreement": agreement,
            "rule": rule.statement(), "consumer_size": list.len(),
            "provider_size": provider_size, "batch": batch,
            "consumer_learns": consumer_learns, "provider_learns": provider_learns });
        let mut transcript = Transcript::new(PROTOCOL, job);
        transcript.append(b"hello", transcript_hello.to_string().as_bytes());
        let party = PsiParty::new(list, consumer_learns, provider_learns, provider_size);
        Ok(Self {
            caller,
            job: job.to_owned(),
            batch,
            consumer_learns,
            provider_learns,
            party,
            transcript,
            provider_size,
        })
    }

    fn path(&self, step: &str) -> String {
        format!("/jobs/{}/psi/{step}", path_segment(&self.job))
    }

    /// Posts a batch of raw element bytes to a step, without touching the transcript.
    fn step(&self, step: &str, start: u64, points: &[u8]) -> Result<Value, Rejection> {
        self.caller.post(
            &self.path(step),
            &json!({ "start": start, "points": STANDARD.encode(points) }),
        )
    }

    fn points_of(reply: &Value) -> Vec<u8> {
        STANDARD
            .decode(reply["points"].as_str().unwrap_or_default())
            .unwrap()
    }

    /// Sends every own element in batches, as an honest consumer does in step 1.
    fn send_own(&mut self) -> Result<(), Rejection> {
        for start in (0..self.party.len()).step_by(self.batch) {
            let points = self.party.blind_own(start, self.batch);
            let reply = self.step("consumer-elements", start as u64, &points)?;
            let answer = Self::points_of(&reply);
            self.transcript.append(b"consumer-elements", &points);
            self.transcript
                .append(b"consumer-elements-doubled", &answer);
            if !answer.is_empty() {
                self.party.take_own_doubled(&answer).unwrap();
            }
        }
        Ok(())
    }

    /// Pulls the provider's elements and returns them blinded again, as an honest consumer
    /// does in steps 2 and 3.
    fn answer_provider(&mut self) -> Result<(), Rejection> {
        let mut start = 0;
        while start < self.provider_size {
            let reply = self.step("provider-elements", start as u64, &[])?;
            let points = Self::points_of(&reply);
            assert!(
                !points.is_empty(),
                "the provider sent no elements at {start}"
            );
            self.transcript.append(b"provider-elements", &points);
            let doubled = self.party.answer_peer(start, &points).unwrap();
            if !doubled.is_empty() {
                self.step("provider-doubled", start as u64, &doubled)?;
                self.transcript.append(b"provider-doubled", &doubled);
            }
            start += points.len() / POINT_LEN;
        }
        if self.provider_learns == Reveal::Size {
            for chunk in self.party.shuffled_for_peer(self.batch).unwrap() {
                self.step("provider-doubled", 0, &chunk)?;
                self.transcript.append(b"provider-doubled", &chunk);
            }
        }
        Ok(())
    }

    /// Fetches every chunk of the consumer's shuffled doubly blinded elements (step 4).
    fn fetch_shuffled(&mut self) -> Result<Vec<Vec<u8>>, Rejection> {
        let mut chunks = Vec::new();
        let mut index = 0;
        loop {
            let reply = self.step("consumer-doubled", index, &[])?;
            let total = reply["chunks"].as_u64().unwrap_or(0);
            if total == 0 {
                return Ok(chunks);
            }
            let points = Self::points_of(&reply);
            self.transcript
                .append(b"consumer-doubled-shuffled", &points);
            chunks.push(points);
            index += 1;
            if index >= total {
                return Ok(chunks);
            }
        }
    }

    fn transcript_hex(&self) -> String {
        hex(&self.transcript.hash())
    }

    fn finish_with(&self, transcript_sha256: &str) -> Result<Value, Rejection> {
        self.caller.post(
            &self.path("finish"),
            &json!({ "transcript_sha256": transcript_sha256 }),
        )
    }

    /// Runs every remaining step honestly and finishes with the true transcript hash.
    fn complete(&mut self) -> Result<Value, Rejection> {
        self.send_own()?;
        self.answer_provider()?;
        if self.consumer_learns == Reveal::Size {
            for chunk in self.fetch_shuffled()? {
                self.party.take_own_doubled(&chunk).unwrap();
            }
        }
        self.finish_with(&self.transcript_hex())
    }
}

const BOTH_LEARN: (Reveal, Reveal) = (Reveal::Intersection, Reveal::Intersection);

/// Numbers the job ids of this test process, so no two runs share one.
static NEXT_JOB: AtomicU64 = AtomicU64::new(1);

fn new_job_id() -> String {
    let n = NEXT_JOB.fetch_add(1, Ordering::Relaxed);
    format!("attack-{}-{n}", std::process::id())
}

// Another participant meddling in someone else's job.

#[test]
fn other_participant_cannot_touch_a_job() {
    let cluster = Cluster::start();
    let agreement = psi_agreement(&cluster, "customers", &["a", "b"], BOTH_LEARN, 100, 5);
    let consumer = Caller::consumer(&cluster);
    let job = new_job_id();
    let mut run = ManualRun::hello(&consumer, &agreement, &job, &["a", "z"], 16, BOTH_LEARN)
        .expect("the consumer's handshake is accepted");

    let mallory = Caller::new(register_participant(&cluster, "mallory"), &cluster);
    let element = encode_points(&[hash_to_group(HASH_DOMAIN, b"a")]);
    for step in [
        "consumer-elements",
        "provider-elements",
        "provider-doubled",
        "consumer-doubled",
    ] {
        let body = json!({ "start": 0, "points": STANDARD.encode(&element) });
        let outcome = mallory.post(&format!("/jobs/{job}/psi/{step}"), &body);
        let message = expect_rejected(outcome, 403, "forbidden");
        assert!(message.contains("mallory"), "{step}: {message}");
    }
    let finish = mallory.post(
        &format!("/jobs/{job}/psi/finish"),
        &json!({ "transcript_sha256": "00" }),
    );
    expect_rejected(finish, 403, "forbidden");
    let abort = mallory.post(
        &format!("/jobs/{job}/abort"),
        &json!({ "reason": "mine now" }),
    );
    expect_rejected(abort, 403, "forbidden");

    let stolen = json!({ "job": new_job_id(), "agreement": agreement,
                         "rule": IdRule::default().statement(), "consumer_size": 1, "batch": 16 });
    let message = expect_rejected(mallory.post("/jobs/psi", &stolen), 403, "forbidden");
    assert!(message.contains("mallory"), "{message}");
    assert_eq!(runs_used(&cluster, &agreement), 1);

    assert_eq!(job_on(&cluster.provider, &job)["state"], "running");
    run.complete()
        .expect("the consumer's own run still completes");
    let provider_job = job_on(&cluster.provider, &job);
    assert_eq!(provider_job["state"], "succeeded", "{provider_job}");
    assert_eq!(provider_job["result"]["size"], 1);
}

// The handshake.

#[test]
fn invalid_handshakes_change_nothing() {
    let cluster = Cluster::start();
    let agreement = psi_agreement(&cluster, "customers", &["a", "b"], BOTH_LEARN, 3, 5);
    let consumer = Caller::consumer(&cluster);
    let rule = IdRule::default().statement();
    let hello = |rule: &str, size: u64, batch: Value| {
        json!({ "job": new_job_id(), "agreement": agreement, "rule": rule,
                "consumer_size": size, "batch": batch })
    };

    for batch in [json!(0), json!(MAX_BATCH + 1), json!(u64::MAX)] {
        let outcome = consumer.post("/jobs/psi", &hello(&rule, 1, batch.clone()));
        let message = expect_rejected(outcome, 400, "bad_request");
        assert!(message.contains(&batch.to_string()), "{message}");
        assert!(message.contains("give 1 to 65536"), "{message}");
    }

    let outcome = consumer.post("/jobs/psi", &hello(&rule, 4, json!(16)));
    let message = expect_rejected(outcome, 400, "bad_request");
    assert!(message.contains("4 identifiers"), "{message}");
    assert!(message.contains("limit of 3"), "{message}");

    let lower = IdRule {
        case: CaseRule::Lower,
    }
    .statement();
    for other in [lower.as_str(), "carrel-ids/2 anything"] {
        let outcome = consumer.post("/jobs/psi", &hello(other, 1, json!(16)));
        let message = expect_rejected(outcome, 400, "bad_request");
        assert!(message.contains(other), "{message}");
        assert!(message.contains(&rule), "{message}");
        assert!(message.contains("no blinded element was sent"), "{message}");
    }

    assert!(jobs_on(&cluster.provider).is_empty());
    assert_eq!(runs_used(&cluster, &agreement), 0);
    assert_eq!(audit_events(&cluster.provider.dir, "psi.rejected").len(), 6);
}

#[test]
fn second_hello_with_same_job_conflicts() {
    let cluster = Cluster::start();
    let agreement = psi_agreement(&cluster, "customers", &["a", "b"], BOTH_LEARN, 100, 5);
    let consumer = Caller::consumer(&cluster);
    let job = new_job_id();
    let mut first = ManualRun::hello(&consumer, &agreement, &job, &["a"], 16, BOTH_LEARN)
        .expect("the first handshake is accepted");

    let again = ManualRun::hello(&consumer, &agreement, &job, &["b", "c"], 16, BOTH_LEARN);
    let message = expect_rejected(again.map(|_| Value::Null), 409, "conflict");
    assert!(message.contains(&job), "{message}");
    assert_eq!(runs_used(&cluster, &agreement), 1);

    first.complete().expect("the first run is unharmed");
    assert_eq!(job_on(&cluster.provider, &job)["result"]["size"], 1);
}

#[test]
fn concurrent_hellos_respect_run_limit() {
    let cluster = Cluster::start();
    let agreement = psi_agreement(&cluster, "customers", &["a"], BOTH_LEARN, 100, 2);
    let identity =
        NodeIdentity::load("consumer", cluster.consumer.dir.join("identity.key")).unwrap();
    let caller = Caller::new(Arc::new(identity), &cluster);
    let rule = IdRule::default().statement();
    let outcomes: Vec<bool> = caller.runtime.block_on(async {
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let client = caller.client.clone();
                let provider = caller.provider.clone();
                let hello = json!({ "job": new_job_id(), "agreement": agreement,
                                    "rule": rule, "consumer_size": 1, "batch": 16 });
                tokio::spawn(async move { client.post_json(&provider, "/jobs/psi", &hello).await })
            })
            .collect();
        let mut outcomes = Vec::new();
        for task in tasks {
            outcomes.push(task.await.unwrap().is_ok());
        }
        outcomes
    });
    assert_eq!(outcomes.iter().filter(|accepted| **accepted).count(), 2);
    assert_eq!(runs_used(&cluster, &agreement), 2);
    assert_eq!(jobs_on(&cluster.provider).len(), 2);
}

#[test]
fn revoked_agreement_rejects_hello() {
    let cluster = Cluster::start();
    let agreement = psi_agreement(&cluster, "customers", &["a"], BOTH_LEARN, 100, 5);
    ok(&["revoke", "--node", &cluster.provider.arg(), &agreement]);
    let consumer = Caller::consumer(&cluster);
    let outcome = ManualRun::hello(&consumer, &agreement, &new_job_id(), &["a"], 16, BOTH_LEARN);
    let message = expect_rejected(outcome.map(|_| Value::Null), 403, "forbidden");
    assert!(message.contains("revoked"), "{message}");
    assert!(jobs_on(&cluster.provider).is_empty());
}

#[test]
fn revocation_stops_a_running_run() {
    let cluster = Cluster::start();
    let agreement = psi_agreement(&cluster, "customers", &["a", "b"], BOTH_LEARN, 100, 5);
    let consumer = Caller::consumer(&cluster);
    let job = new_job_id();
    let mut run = ManualRun::hello(&consumer, &agreement, &job, &["a", "z"], 16, BOTH_LEARN)
        .expect("the handshake is accepted");
    ok(&["revoke", "--node", &cluster.provider.arg(), &agreement]);

    let outcome = run.complete();
    assert!(
        outcome.is_err(),
        "the provider finished a run under a revoked agreement: {outcome:?}"
    );
    let provider_job = job_on(&cluster.provider, &job);
    assert_eq!(provider_job["state"], "failed", "{provider_job}");
    assert!(audit_events(&cluster.provider.dir, "psi.completed").is_empty());
}

// Steps out of order, repeated or malformed.

#[test]
fn more_elements_than_announced_end_job() {
    let cluster = Cluster::start();
    let agreement = psi_agreement(&cluster, "customers", &["a", "b"], BOTH_LEARN, 100, 5);
    let consumer = Caller::consumer(&cluster);
    let job = new_job_id();
    let run = ManualRun::hello(&consumer, &agreement, &job, &["a", "z"], 16, BOTH_LEARN)
        .expect("the handshake is accepted");

    let mut points = run.party.blind_own(0, 2);
    let extra = SecretScalar::random().blind(&hash_to_group(HASH_DOMAIN, b"b"));
    points.extend(encode_points(&[extra]));
    let message = expect_rejected(
        run.step("consumer-elements", 0, &points),
        400,
        "bad_request",
    );
    assert!(message.contains("announced only 2"), "{message}");

    let provider_job = job_on(&cluster.provider, &job);
    assert_eq!(provider_job["state"], "failed", "{provider_job}");
    let reasons = failure_reasons(&cluster.provider.dir, &job);
    assert_eq!(reasons.len(), 1);
    assert!(reasons[0].contains("announced only 2"), "{reasons:?}");

    let later = run.step("provider-elements", 0, &[]);
    expect_rejected(later, 404, "not_found");
}

#[test]
fn too_many_doubled_elements_end_job() {
    let cluster = Cluster::start();
    let agreement = psi_agreement(&cluster, "customers", &["a", "b"], BOTH_LEARN, 100, 5);
    let consumer = Caller::consumer(&cluster);
    let job = new_job_id();
    let mut run = ManualRun::hello(&consumer, &agreement, &job, &["a", "z"], 16, BOTH_LEARN)
        .expect("the handshake is accepted");
    run.send_own().unwrap();

    let reply = run.step("provider-elements", 0, &[]).unwrap();
    let mut doubled = run
        .party
        .answer_peer(0, &ManualRun::points_of(&reply))
        .unwrap();
    let repeated = doubled[..POINT_LEN].to_vec();
    doubled.extend(repeated);
    let message = expect_rejected(
        run.step("provider-doubled", 0, &doubled),
        400,
        "bad_request",
    );
    assert!(message.contains("announced only 2"), "{message}");
    assert_eq!(job_on(&cluster.provider, &job)["state"], "failed");
    assert_eq!(failure_reasons(&cluster.provider.dir, &job).len(), 1);
}

#[test]
fn invalid_elements_end_job() {
    let cluster = Cluster::start();
    let agreement = psi_agreement(&cluster, "customers", &["a", "b"], BOTH_LEARN, 100, 10);
    let consumer = Caller::consumer(&cluster);
    let valid = SecretScalar::random().blind(&hash_to_group(HASH_DOMAIN, b"a"));
    let mut identity_second = encode_points(&[valid]);
    identity_second.extend([0u8; POINT_LEN]);
    let cases: [(&str, Vec<u8>, &str); 3] = [
        ("identity", identity_second, "element 1 is the identity"),
        (
            "invalid",
            vec![0xff; POINT_LEN],
            "element 0 is not a canonical",
        ),
        ("ragged", vec![1u8; POINT_LEN + 1], "33 bytes"),
    ];
    for (name, points, expected) in cases {
        let job = new_job_id();
        let run = ManualRun::hello(&consumer, &agreement, &job, &["a", "z"], 16, BOTH_LEARN)
            .expect("the handshake is accepted");
        let message = expect_rejected(
            run.step("consumer-elements", 0, &points),
            400,
            "bad_request",
        );
        assert!(message.contains(expected), "{name}: {message}");
        let provider_job = job_on(&cluster.provider, &job);
        assert_eq!(provider_job["state"], "failed", "{name}: {provider_job}");
        let reasons = failure_reasons(&cluster.provider.dir, &job);
        assert!(
            reasons.iter().any(|r| r.contains(expected)),
            "{name}: {reasons:?}"
        );
    }
}

#[test]
fn invalid_base64_ends_job() {
    let cluster = Cluster::start();
    let agreement = psi_agreement(&cluster, "customers", &["a", "b"], BOTH_LEARN, 100, 5);
    let consumer = Caller::consumer(&cluster);
    let job = new_job_id();
    let run = ManualRun::hello(&consumer, &agreement, &job, &["a", "z"], 16, BOTH_LEARN)
        .expect("the handshake is accepted");

    let path = run.path("consumer-elements");
    let outcome = consumer.post(&path, &json!({ "start": 0, "points": "not base64!" }));
    let message = expect_rejected(outcome, 400, "bad_request");
    assert!(message.contains("base64"), "{message}");

    let provider_job = job_on(&cluster.provider, &job);
    assert_eq!(
        provider_job["state"], "failed",
        "the provider kept the run after a malformed batch: {provider_job}"
    );
    assert_eq!(failure_reasons(&cluster.provider.dir, &job).len(), 1);
}

#[test]
fn out_of_order_batch_ends_job() {
    let cluster = Cluster::start();
    let agreement = psi_agreement(&cluster, "customers", &["a", "b"], BOTH_LEARN, 100, 5);
    let consumer = Caller::consumer(&cluster);
    let job = new_job_id();
    let run = ManualRun::hello(&consumer, &agreement, &job, &["a", "z"], 1, BOTH_LEARN)
        .expect("the handshake is accepted");

    let second = run.party.blind_own(1, 1);
    let message = expect_rejected(
        run.step("consumer-elements", 1, &second),
        400,
        "bad_request",
    );
    assert!(message.contains("element 0 was due"), "{message}");
    assert_eq!(job_on(&cluster.provider, &job)["state"], "failed");
}

#[test]
fn replayed_batch_ends_job() {
    let cluster = Cluster::start();
    let agreement = psi_agreement(&cluster, "customers", &["a", "b"], BOTH_LEARN, 100, 5);
    let consumer = Caller::consumer(&cluster);
    let job = new_job_id();
    let run = ManualRun::hello(&consumer, &agreement, &job, &["a", "z"], 1, BOTH_LEARN)
        .expect("the handshake is accepted");

    let first = run.party.blind_own(0, 1);
    run.step("consumer-elements", 0, &first)
        .expect("the first batch is answered");
    let message = expect_rejected(run.step("consumer-elements", 0, &first), 400, "bad_request");
    assert!(message.contains("element 1 was due"), "{message}");
    assert_eq!(job_on(&cluster.provider, &job)["state"], "failed");
}

#[test]
fn repeated_provider_pull_ends_job() {
    let cluster = Cluster::start();
    let agreement = psi_agreement(&cluster, "customers", &["a", "b", "c"], BOTH_LEARN, 100, 5);
    let consumer = Caller::consumer(&cluster);
    let job = new_job_id();
    let run = ManualRun::hello(&consumer, &agreement, &job, &["a"], 2, BOTH_LEARN)
        .expect("the handshake is accepted");

    let first = run.step("provider-elements", 0, &[]).unwrap();
    assert_eq!(ManualRun::points_of(&first).len(), 2 * POINT_LEN);
    let message = expect_rejected(run.step("provider-elements", 0, &[]), 400, "bad_request");
    assert!(message.contains("2 is next of 3"), "{message}");
    assert_eq!(job_on(&cluster.provider, &job)["state"], "failed");
}

#[test]
fn shuffled_elements_refused_to_intersection_consumer() {
    let cluster = Cluster::start();
    let agreement = psi_agreement(&cluster, "customers", &["a", "b"], BOTH_LEARN, 100, 5);
    let consumer = Caller::consumer(&cluster);
    let job = new_job_id();
    let mut run = ManualRun::hello(&consumer, &agreement, &job, &["a", "z"], 16, BOTH_LEARN)
        .expect("the handshake is accepted");
    run.send_own().unwrap();

    let outcome = run.step("consumer-doubled", 0, &[]);
    let message = expect_rejected(outcome, 403, "forbidden");
    assert!(message.contains("learns the size"), "{message}");
    assert_eq!(job_on(&cluster.provider, &job)["state"], "failed");
}

#[test]
fn early_finish_fails_job() {
    let cluster = Cluster::start();
    let agreement = psi_agreement(&cluster, "customers", &["a", "b"], BOTH_LEARN, 100, 5);
    let consumer = Caller::consumer(&cluster);
    let job = new_job_id();
    let run = ManualRun::hello(&consumer, &agreement, &job, &["a", "z"], 16, BOTH_LEARN)
        .expect("the handshake is accepted");

    let message = expect_rejected(run.finish_with(&run.transcript_hex()), 409, "job_failed");
    assert!(message.contains("received 0 of 2"), "{message}");
    assert_eq!(job_on(&cluster.provider, &job)["state"], "failed");
    assert!(audit_events(&cluster.provider.dir, "psi.completed").is_empty());
}

#[test]
fn transcript_mismatch_fails_job() {
    let cluster = Cluster::start();
    let agreement = psi_agreement(&cluster, "customers", &["a", "b"], BOTH_LEARN, 100, 5);
    let consumer = Caller::consumer(&cluster);
    let job = new_job_id();
    let mut run = ManualRun::hello(&consumer, &agreement, &job, &["a", "z"], 16, BOTH_LEARN)
        .expect("the handshake is accepted");
    run.send_own().unwrap();
    run.answer_provider().unwrap();

    let wrong = "0".repeat(64);
    let message = expect_rejected(run.finish_with(&wrong), 409, "job_failed");
    assert!(message.contains("transcripts differ"), "{message}");
    assert!(message.contains(&wrong), "{message}");

    assert_eq!(job_on(&cluster.provider, &job)["state"], "failed");
    let reasons = failure_reasons(&cluster.provider.dir, &job);
    assert!(reasons[0].contains("transcripts differ"), "{reasons:?}");
    assert!(audit_events(&cluster.provider.dir, "psi.completed").is_empty());
    let results = cluster
        .provider
        .dir
        .join("results")
        .join(format!("{job}.csv"));
    assert!(!results.exists());

    let retry = run.finish_with(&run.transcript_hex());
    expect_rejected(retry, 404, "not_found");
}

#[test]
fn steps_after_finish_are_rejected() {
    let cluster = Cluster::start();
    let agreement = psi_agreement(&cluster, "customers", &["a", "b"], BOTH_LEARN, 100, 5);
    let consumer = Caller::consumer(&cluster);
    let job = new_job_id();
    let mut run = ManualRun::hello(&consumer, &agreement, &job, &["a", "z"], 16, BOTH_LEARN)
        .expect("the handshake is accepted");
    let finished = run.complete().expect("the run completes");
    assert_eq!(finished["transcript_sha256"], run.transcript_hex());

    let late = run.party.blind_own(0, 1);
    expect_rejected(run.step("consumer-elements", 2, &late), 404, "not_found");
    expect_rejected(run.step("provider-elements", 2, &[]), 404, "not_found");
    expect_rejected(run.finish_with(&run.transcript_hex()), 404, "not_found");

    let provider_job = job_on(&cluster.provider, &job);
    assert_eq!(provider_job["state"], "succeeded");
    assert_eq!(provider_job["transcript_sha256"], run.transcript_hex());
    assert_eq!(
        audit_events(&cluster.provider.dir, "psi.completed").len(),
        1
    );
}

#[test]
fn abort_after_success_reports_true_state() {
    let cluster = Cluster::start();
    let agreement = psi_agreement(&cluster, "customers", &["a", "b"], BOTH_LEARN, 100, 5);
    let consumer = Caller::consumer(&cluster);
    let job = new_job_id();
    let mut run = ManualRun::hello(&consumer, &agreement, &job, &["a", "z"], 16, BOTH_LEARN)
        .expect("the handshake is accepted");
    run.complete().expect("the run completes");

    let reply = consumer
        .post(
            &format!("/jobs/{job}/abort"),
            &json!({ "reason": "too late" }),
        )
        .expect("a party may send an abort");
    let provider_job = job_on(&cluster.provider, &job);
    assert_eq!(provider_job["state"], "succeeded");
    assert_eq!(
        reply["state"], provider_job["state"],
        "the abort reply misstates the job's state"
    );
    assert!(failure_reasons(&cluster.provider.dir, &job).is_empty());
}

#[test]
fn consumer_abort_ends_provider_job() {
    let cluster = Cluster::start();
    let agreement = psi_agreement(&cluster, "customers", &["a", "b"], BOTH_LEARN, 100, 5);
    let consumer = Caller::consumer(&cluster);
    let job = new_job_id();
    let mut run = ManualRun::hello(&consumer, &agreement, &job, &["a", "z"], 16, BOTH_LEARN)
        .expect("the handshake is accepted");
    run.send_own().unwrap();

    consumer
        .post(
            &format!("/jobs/{job}/abort"),
            &json!({ "reason": "operator stopped it" }),
        )
        .expect("the consumer may abort its job");
    assert_eq!(job_on(&cluster.provider, &job)["state"], "failed");
    let reasons = failure_reasons(&cluster.provider.dir, &job);
    assert_eq!(reasons.len(), 1);
    assert!(reasons[0].contains("operator stopped it"), "{reasons:?}");
    expect_rejected(run.step("provider-elements", 0, &[]), 404, "not_found");
}

// What a side may learn.

/// A consumer entitled to the intersection size only blinds each identifier with its
/// own scalar. It then raises every blinded provider element by each scalar and looks
/// the results up among its shuffled doubly blinded elements: a hit names the
/// identifier, so the consumer learns the members and not only their number.
#[test]
fn job_id_stays_inside_results_folder() {
    let cluster = Cluster::start();
    let agreement = psi_agreement(&cluster, "customers", &["a", "b"], BOTH_LEARN, 100, 5);
    let consumer = Caller::consumer(&cluster);
    let escaped = cluster.root.path().join("escaped.csv");
    // The provider's results folder is <root>/provider/results.
    let job = "../../escaped";
    let hello = ManualRun::hello(&consumer, &agreement, job, &["a", "z"], 16, BOTH_LEARN);
    // Either outcome is safe: the provider rejects the id, or keeps its file in the folder.
    let finished = hello.and_then(|mut run| run.complete());
    assert!(
        !escaped.exists(),
        "the provider wrote {} outside its results folder (run: {finished:?})",
        escaped.display()
    );
}

// Failures after one side has recorded its result.

#[test]
fn consumer_result_failure_ends_both_jobs() {
    let cluster = Cluster::start();
    let agreement = psi_agreement(&cluster, "customers", &["a", "b"], BOTH_LEARN, 100, 5);
    // A file where the consumer's results folder belongs makes its last write fail.
    std::fs::write(cluster.consumer.dir.join("results"), "in the way").unwrap();
    let ids = cluster.write("mine.csv", "id\na\nz\n");
    let (success, output) = run_psi(&cluster, &agreement, &ids, &[]);
    assert!(!success, "{output}");

    let consumer_jobs = jobs_on(&cluster.consumer);
    assert_eq!(consumer_jobs.len(), 1);
    let job = consumer_jobs[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(consumer_jobs[0]["state"], "failed");
    let provider_job = job_on(&cluster.provider, &job);
    assert_eq!(
        provider_job["state"], "failed",
        "the consumer's job failed but the provider's succeeded: {provider_job}"
    );
    assert!(audit_events(&cluster.provider.dir, "psi.completed").is_empty());
}

#[test]
fn provider_result_failure_ends_both_jobs() {
    let cluster = Cluster::start();
    let agreement = psi_agreement(&cluster, "customers", &["a", "b"], BOTH_LEARN, 100, 5);
    std::fs::write(cluster.provider.dir.join("results"), "in the way").unwrap();
    let ids = cluster.write("mine.csv", "id\na\nz\n");
    let (success, output) = run_psi(&cluster, &agreement, &ids, &[]);
    assert!(!success, "{output}");
    assert!(error_message(&output).contains("results"), "{output}");

    let consumer_jobs = jobs_on(&cluster.consumer);
    let job = consumer_jobs[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(consumer_jobs[0]["state"], "failed");
    let provider_job = job_on(&cluster.provider, &job);
    assert_eq!(provider_job["state"], "failed", "{provider_job}");
    let reasons = failure_reasons(&cluster.provider.dir, &job);
    assert_eq!(reasons.len(), 1);
    assert!(reasons[0].contains("results"), "{reasons:?}");
    assert!(audit_events(&cluster.consumer.dir, "psi.completed").is_empty());
}

/// Polls a job on `node` until it leaves the running state or `seconds` pass.
/// Returns the last `count` lines of `text`, newest first.
fn last_lines(text: &str, count: usize) -> String {
    text.lines()
        .rev()
        .take(count)
        .collect::<Vec<_>>()
        .join("\n")
}

fn settled_job(node: &common::NodeProcess, job: &str, seconds: u64) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
    loop {
        let view = job_on(node, job);
        if view["state"] != "running" || std::time::Instant::now() > deadline {
            return view;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

#[test]
fn consumer_restart_ends_running_job() {
    let mut cluster = Cluster::start();
    let agreement = psi_agreement(&cluster, "customers", &["u1", "u2"], BOTH_LEARN, 5_000, 5);
    let mut csv = String::from("id\n");
    for i in 0..3_000 {
        csv.push_str(&format!("u{i}\n"));
    }
    let ids = cluster.write("mine.csv", &csv);

    // One element per message makes the run take thousands of round trips.
    let identity =
        NodeIdentity::load("consumer", cluster.consumer.dir.join("identity.key")).unwrap();
    let own = NodeIdentity::load("consumer", cluster.consumer.dir.join("identity.key")).unwrap();
    let node = Peer::new("consumer", &cluster.consumer.endpoint(), own.public_key()).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let started = runtime
        .block_on(PeerClient::new(Arc::new(identity)).post_json(
            &node,
            "/admin/jobs/psi",
            &json!({ "agreement": agreement, "ids": ids, "batch": 1 }),
        ))
        .expect("the consumer starts the run");
    let job = started.body["job"].as_str().unwrap().to_owned();
    std::thread::sleep(std::time::Duration::from_millis(700));
    let before = job_on(&cluster.consumer, &job);
    assert_eq!(
        before["state"], "running",
        "the run ended too soon: {before}"
    );

    cluster.consumer.restart();

    let consumer_job = settled_job(&cluster.consumer, &job, 30);
    assert_eq!(
        consumer_job["state"], "failed",
        "the consumer's job outlived the process that ran it: {consumer_job}"
    );
    let provider_job = settled_job(&cluster.provider, &job, 30);
    assert_eq!(
        provider_job["state"],
        "failed",
        "the provider's run stays open after the consumer restarted: {provider_job}\n\
         the consumer's job: {consumer_job}\nthe consumer's log, newest first:\n{}\n\
         the provider's log, newest first:\n{}",
        last_lines(&cluster.consumer.log(), 40),
        last_lines(&cluster.provider.log(), 40)
    );
}

// Batches at the documented limit.

#[test]
fn largest_batch_completes() {
    let cluster = Cluster::start();
    let terms = (Reveal::Size, Reveal::Nothing);
    let agreement = psi_agreement(&cluster, "customers", &["u7", "u49999"], terms, 60_000, 5);
    let mut csv = String::from("id\n");
    for i in 0..50_000 {
        csv.push_str(&format!("u{i}\n"));
    }
    let ids = cluster.write("mine.csv", &csv);
    let batch = MAX_BATCH.to_string();
    let (success, output) = run_psi(&cluster, &agreement, &ids, &["--batch", &batch]);
    assert!(success, "a run with --batch {batch} failed: {output}");
    assert_eq!(output["result"]["size"], 2);
}

// Identifier files.

/// Splits RFC 4180 text into records of fields.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut records = Vec::new();
    let mut record = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') if field.is_empty() => quoted = true,
            (false, ',') => record.push(std::mem::take(&mut field)),
            (false, '\n') => {
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
            }
            (false, c) => field.push(c),
        }
    }
    if !field.is_empty() || !record.is_empty() {
        record.push(field);
        records.push(record);
    }
    records
}

#[test]
fn identifiers_match_across_quoting_and_unicode() {
    let cluster = Cluster::start();
    let provider_ids = [
        "\"a,b\"",
        "\"say \"\"hi\"\"\"",
        "\"two\nlines\"",
        "Cafe\u{301}",
        "ÅSA",
        " padded ",
        "x\u{a0}",
        "other",
    ];
    let agreement = cluster.agreement(
        &customers_csv(&provider_ids),
        &customers_description("customers"),
        &psi_policy(Reveal::Size, Reveal::Nothing, 100, 5, CaseRule::Lower),
        "marketing",
    );
    let consumer_csv = "id,note\n\
                        \"a,b\",1\n\
                        \"say \"\"hi\"\"\",2\n\
                        \"two\nlines\",3\n\
                        Caf\u{e9},4\n\
                        \u{e5}sa,5\n\
                        padded,6\n\
                        X,7\n\
                        zzz,8\n";
    let ids = cluster.write("mine.csv", consumer_csv);
    let (success, output) = run_psi(&cluster, &agreement, &ids, &[]);
    assert!(success, "{output}");
    assert_eq!(output["result"]["size"], 7, "{output}");
}

/// Under `case=lower`, a capital letter with a combining mark and the precomposed small
/// letter are the same identifier, but lower-casing after normalising leaves the
/// decomposed form: "J" with a combining caron becomes "j" with the caron, not the
/// precomposed U+01F0.
#[test]
fn lower_case_rule_matches_equivalent_forms() {
    let cluster = Cluster::start();
    let agreement = cluster.agreement(
        &customers_csv(&["\u{1f0}", "\u{1e96}", "plain"]),
        &customers_description("customers"),
        &psi_policy(Reveal::Size, Reveal::Nothing, 100, 5, CaseRule::Lower),
        "marketing",
    );
    let ids = cluster.write("mine.csv", "id\nJ\u{30c}\nH\u{331}\nPLAIN\n");
    let (success, output) = run_psi(&cluster, &agreement, &ids, &[]);
    assert!(success, "{output}");
    assert_eq!(output["result"]["size"], 3, "{output}");
}

#[test]
fn members_file_is_valid_csv() {
    let cluster = Cluster::start();
    let quoted = ["\"a,b\"", "\"say \"\"hi\"\"\"", "\"two\nlines\"", "plain"];
    let agreement = psi_agreement(&cluster, "customers", &quoted, BOTH_LEARN, 100, 5);
    let ids = cluster.write("mine.csv", &format!("id\n{}\n", quoted.join("\n")));
    let (success, output) = run_psi(&cluster, &agreement, &ids, &[]);
    assert!(success, "{output}");
    assert_eq!(output["result"]["size"], 4, "{output}");

    let expected: Vec<Vec<String>> = ["id", "a,b", "say \"hi\"", "two\nlines", "plain"]
        .iter()
        .map(|field| vec![(*field).to_owned()])
        .collect();
    let job = output["id"].as_str().unwrap();
    let provider_result = job_on(&cluster.provider, job)["result"].clone();
    for (side, result) in [
        ("consumer", &output["result"]),
        ("provider", &provider_result),
    ] {
        let file = result["members_file"].as_str().unwrap();
        let members = std::fs::read_to_string(file).unwrap();
        assert_eq!(
            parse_csv(&members),
            expected,
            "{side} members file:\n{members}"
        );
    }
}

#[test]
fn directory_as_ids_file_rejected_before_job() {
    let cluster = Cluster::start();
    let agreement = psi_agreement(&cluster, "customers", &["a"], BOTH_LEARN, 100, 5);
    let folder = cluster.root.path().join("ids-folder");
    std::fs::create_dir(&folder).unwrap();
    let folder = folder.to_string_lossy().into_owned();

    let (success, output) = run_psi(&cluster, &agreement, &folder, &[]);
    assert!(!success, "{output}");
    let message = error_message(&output);
    assert!(
        jobs_on(&cluster.consumer).is_empty(),
        "a folder given as the identifier file started a job: {message}"
    );
    assert!(message.contains(&folder), "{message}");
    assert!(message.contains("directory"), "{message}");
    assert!(!message.contains("line 0"), "{message}");
    assert!(jobs_on(&cluster.provider).is_empty());
}

#[test]
fn missing_ids_file_rejected_before_job() {
    let cluster = Cluster::start();
    let agreement = psi_agreement(&cluster, "customers", &["a"], BOTH_LEARN, 100, 5);
    let missing = cluster.root.path().join("absent.csv");
    let missing = missing.to_string_lossy().into_owned();

    let (success, output) = run_psi(&cluster, &agreement, &missing, &[]);
    assert!(!success, "{output}");
    assert!(error_message(&output).contains(&missing), "{output}");

    // The node checks the file too, when a client skips the command's own check.
    let identity =
        NodeIdentity::load("consumer", cluster.consumer.dir.join("identity.key")).unwrap();
    let own = NodeIdentity::load("consumer", cluster.consumer.dir.join("identity.key")).unwrap();
    let node = Peer::new("consumer", &cluster.consumer.endpoint(), own.public_key()).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let outcome = runtime.block_on(PeerClient::new(Arc::new(identity)).post_json(
        &node,
        "/admin/jobs/psi",
        &json!({ "agreement": agreement, "ids": missing }),
    ));
    match outcome {
        Err(PeerError::Rejected {
            status, message, ..
        }) => {
            assert_eq!(status.as_u16(), 400);
            assert!(message.contains(&missing), "{message}");
            assert!(message.contains("give a readable CSV file"), "{message}");
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    assert!(jobs_on(&cluster.consumer).is_empty());
    assert_eq!(runs_used(&cluster, &agreement), 0);
}

#[test]
fn unreadable_ids_content_is_named() {
    let cluster = Cluster::start();
    let agreement = psi_agreement(&cluster, "customers", &["a"], BOTH_LEARN, 100, 5);

    let path = cluster.root.path().join("latin1.csv");
    std::fs::write(&path, b"id\nu1\ncaf\xe9\n").unwrap();
    let latin1 = path.to_string_lossy().into_owned();
    let (success, output) = run_psi(&cluster, &agreement, &latin1, &[]);
    assert!(!success, "{output}");
    let message = error_message(&output);
    assert!(message.contains(&latin1), "{message}");
    assert!(message.contains("line 3"), "{message}");
    assert!(message.to_lowercase().contains("utf-8"), "{message}");

    let ids = cluster.write("mine.csv", "id\na\n");
    let (success, output) = run_psi(&cluster, &agreement, &ids, &["--column", "email"]);
    assert!(!success, "{output}");
    let message = error_message(&output);
    assert!(message.contains("\"email\""), "{message}");
    assert!(message.contains("[\"id\"]"), "{message}");

    assert!(jobs_on(&cluster.provider).is_empty());
    assert_eq!(runs_used(&cluster, &agreement), 0);
}
