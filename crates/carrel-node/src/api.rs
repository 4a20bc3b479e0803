//! HTTP routes of a node. Every route but the public ones is wrapped so that the
//! request is verified (signer, signature, time, nonce) and the response signed.
//!
//! | route | caller |
//! | --- | --- |
//! | `GET /.well-known/dspace-version`, `GET /health` | anyone |
//! | `POST /participants` (exchange) | a participant registering its own key |
//! | `GET /participants/{name}`, `POST /listings`, `GET /catalog`, `POST /agreements/countersign` (exchange) | participants |
//! | `POST /negotiations/request`, `GET /negotiations/{pid}`, `POST /negotiations/{pid}/agreement/verification`, `POST /negotiations/{pid}/termination`, `POST /queries` (provider) | consumers |
//! | `POST /callback/negotiations/{pid}/agreement`, `POST /callback/negotiations/{pid}/events` (consumer) | providers |
//! | `POST /jobs/psi`, `POST /jobs/{id}/psi/...` (provider) | consumers, see [`crate::psi`] |
//! | `POST /jobs/secagg`, `POST /jobs/{id}/secagg/...` (provider) | consumers, see [`crate::secagg`] |
//! | `POST /jobs/join`, `POST /jobs/{id}/join/...` (provider) | consumers, see [`crate::join`] |
//! | `POST /jobs/vertical`, `POST /jobs/{id}/vertical/...`, `POST /jobs/predict` (host); `POST /jobs/dealer`, `POST /jobs/{id}/dealer/...` (exchange) | the guest and the host, see [`crate::training::vertical`] and [`crate::training::dealer`] |
//! | `POST /jobs/{id}/train/...` (provider) | the coordinator of a horizontal training, see [`crate::training::horizontal`] |
//! | `POST /jobs/{id}/abort` | a party to the job |
//! | `POST /agreements/{id}/revocation` | a party to the agreement |
//! | `GET /audit/checkpoint`, `GET /audit/consistency`, `GET /audit/inclusion`, `GET /audit/entries` | participants; an entry only to its parties, see [`crate::audit`] |
//! | `POST /witness/add-checkpoint`, `GET /witness/logs` | a log's node, see [`crate::witnessing`] |
//! | `/admin/...` | the node's own key, used by the `carrel` command |

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use carrel_net::{SignedRoutes, VerifiedSigner};
use serde_json::{Value, json};

use crate::agreements::{self, SignedRevocation};
use crate::consumer::{self, StartNegotiation};
use crate::error::{NodeError, NodeResult};
use crate::jobs;
use crate::join::{self, Blob, Open, StartJoin};
use crate::negotiation::{AgreementMessage, ContractRequest};
use crate::node::Node;
use crate::nonces::SqliteNonces;
use crate::provider::{self, PublishProduct, RegisterDataset};
use crate::psi::{self, Elements, Finish, Hello, StartPsi};
use crate::query::{self, QueryRequest};
use crate::secagg::{self, FinishRound, Join, MaskRequest, StartSecAgg};
use crate::training::{dealer, horizontal, vertical};
use crate::{exchange, registration};

type Shared = State<Arc<Node>>;
type Reply = NodeResult<Json<Value>>;

/// Builds the node's router.
pub fn router(node: Arc<Node>) -> NodeResult<Router> {
    let mut signed = Router::new()
        .route("/agreements/{id}/revocation", post(revocation))
        .route("/admin/status", get(status))
        .route("/admin/audit/fetch", post(admin_audit_fetch))
        .route("/admin/keys/{name}", get(admin_key))
        .route("/admin/agreements/{id}", get(show_agreement))
        .route("/admin/agreements/{id}/revoke", post(revoke))
        .route("/admin/jobs", get(list_jobs))
        .route("/admin/jobs/{id}", get(show_job))
        .route("/jobs/{id}/abort", post(abort_job))
        .route("/audit/checkpoint", get(audit_checkpoint))
        .route("/audit/consistency", get(audit_consistency))
        .route("/audit/inclusion", get(audit_inclusion))
        .route("/audit/entries", get(audit_entries))
        .route("/witness/add-checkpoint", post(witness_add_checkpoint))
        .route("/witness/logs", get(witness_log));
    if node.is_exchange() {
        signed = signed
            .route("/participants/{name}", get(participant))
            .route("/listings", post(listing))
            .route("/catalog", get(catalog))
            .route("/agreements/countersign", post(countersign));
    } else {
        signed = signed
            .route("/negotiations/request", post(contract_request))
            .route("/negotiations/{pid}", get(negotiation_state))
            .route(
                "/negotiations/{pid}/agreement/verification",
                post(verification),
            )
            .route("/negotiations/{pid}/termination", post(termination))
            .route("/queries", post(run_query))
            .route("/jobs/psi", post(psi_hello))
            .route(
                "/jobs/{id}/psi/consumer-elements",
                post(psi_consumer_elements),
            )
            .route(
                "/jobs/{id}/psi/provider-elements",
                post(psi_provider_elements),
            )
            .route(
                "/jobs/{id}/psi/provider-doubled",
                post(psi_provider_doubled),
            )
            .route(
                "/jobs/{id}/psi/consumer-doubled",
                post(psi_consumer_doubled),
            )
            .route("/jobs/{id}/psi/finish", post(psi_finish))
            .route("/jobs/join", post(join_open))
            .route("/jobs/{id}/join/message2", post(join_message2))
            .route("/jobs/{id}/join/release", post(join_release))
            .route("/jobs/{id}/join/finish", post(join_finish))
            .route("/jobs/secagg", post(secagg_join))
            .route("/jobs/{id}/secagg/mask", post(secagg_mask))
            .route("/jobs/{id}/secagg/finish", post(secagg_finish))
            .route(
                "/callback/negotiations/{pid}/agreement",
                post(agreement_callback),
            )
            .route("/callback/negotiations/{pid}/events", post(event_callback))
            .route("/admin/datasets", post(register_dataset))
            .route("/admin/products", post(publish))
            .route("/admin/catalog", get(admin_catalog))
            .route("/admin/negotiations", post(start_negotiation))
            .route("/admin/negotiations/{id}", get(show_negotiation))
            .route("/admin/queries", post(forward_query))
            .route("/admin/jobs/psi", post(start_psi))
            .route("/admin/jobs/secagg", post(start_secagg))
            .route("/admin/jobs/join", post(start_join))
            .route("/admin/jobs/train", post(start_training))
            .route("/admin/jobs/predict", post(start_prediction))
            .route("/admin/models", get(list_models))
            .route("/admin/models/{id}", get(show_model));
    }
    // Vertical federated training: the host's steps on a participant, the dealer on the exchange.
    signed = if node.is_exchange() {
        signed
            .route("/jobs/dealer", post(dealer_open))
            .route("/jobs/{id}/dealer/seed", post(dealer_seed))
            .route("/jobs/{id}/dealer/corrections", post(dealer_corrections))
            .route("/jobs/{id}/dealer/close", post(dealer_close))
    } else {
        signed
            .route("/jobs/vertical", post(vertical_hello))
            .route(
                "/jobs/{id}/vertical/guest-elements",
                post(vertical_guest_elements),
            )
            .route(
                "/jobs/{id}/vertical/host-elements",
                post(vertical_host_elements),
            )
            .route(
                "/jobs/{id}/vertical/host-doubled",
                post(vertical_host_doubled),
            )
            .route("/jobs/{id}/vertical/align", post(vertical_align))
            .route("/jobs/{id}/vertical/exchange", post(vertical_exchange))
            .route("/jobs/{id}/vertical/reply", post(vertical_reply))
            .route("/jobs/{id}/vertical/predict", post(vertical_predict))
            .route("/jobs/{id}/vertical/finish", post(vertical_finish))
            .route("/jobs/{id}/vertical/resume", post(vertical_resume))
            .route("/jobs/predict", post(vertical_prediction))
    };
    // Horizontal federated training: the provider's steps.
    if !node.is_exchange() {
        signed = signed
            .route("/jobs/{id}/train/join", post(horizontal_join))
            .route("/jobs/{id}/train/round", post(horizontal_round))
            .route("/jobs/{id}/train/mask", post(horizontal_mask))
            .route("/jobs/{id}/train/finish", post(horizontal_finish));
    }
    let nonces = Arc::new(SqliteNonces::open(&node.dir.database())?);
    let identity = node.identity.node().clone();
    // The signed layer reads bodies up to its own limit; the JSON extractors inside
    // take the same limit instead of axum's default of 2 MiB.
    let signed = signed.layer(axum::extract::DefaultBodyLimit::max(
        carrel_net::server::DEFAULT_BODY_LIMIT,
    ));
    let wrapped = SignedRoutes::new(identity, node.key_directory(), nonces)
        .wrap(signed.with_state(node.clone()))
        .layer(axum::middleware::from_fn_with_state(
            node.clone(),
            registration::learn_signer,
        ));
    let public = Router::new()
        .route("/.well-known/dspace-version", get(version))
        .route("/health", get(|| async { Json(json!({ "status": "ok" })) }));
    let public = if node.is_exchange() {
        public.route("/participants", post(registration::register))
    } else {
        public
    };
    Ok(public.with_state(node).merge(wrapped))
}

async fn version() -> Json<Value> {
    Json(json!({ "protocolVersions": [{ "version": "2025-1", "path": "/", "binding": "HTTPS" }] }))
}

fn admin(node: &Node, signer: &VerifiedSigner) -> NodeResult<()> {
    if signer.name() == node.identity.name() {
        return Ok(());
    }
    Err(NodeError::Forbidden(format!(
        "{:?} may not use the admin API of {:?}",
        signer.name(),
        node.identity.name()
    )))
}

async fn admin_audit_fetch(
    State(node): Shared,
    signer: VerifiedSigner,
    Json(request): Json<crate::audit::Fetch>,
) -> Reply {
    admin(&node, &signer)?;
    crate::audit::fetch(&node, &request).await.map(Json)
}

async fn admin_key(State(node): Shared, signer: VerifiedSigner, Path(name): Path<String>) -> Reply {
    admin(&node, &signer)?;
    crate::audit::key_of(&node, &name).await.map(Json)
}

async fn audit_checkpoint(State(node): Shared, _signer: VerifiedSigner) -> Reply {
    crate::audit::checkpoint(&node).map(Json)
}

async fn audit_consistency(
    State(node): Shared,
    _signer: VerifiedSigner,
    Query(query): Query<crate::audit::ConsistencyQuery>,
) -> Reply {
    crate::audit::consistency(&node, &query).map(Json)
}

async fn audit_inclusion(
    State(node): Shared,
    signer: VerifiedSigner,
    Query(query): Query<crate::audit::InclusionQuery>,
) -> Reply {
    crate::audit::inclusion(&node, signer.name(), &query).map(Json)
}

async fn audit_entries(
    State(node): Shared,
    signer: VerifiedSigner,
    Query(query): Query<crate::audit::EntriesQuery>,
) -> Reply {
    crate::audit::entries(&node, signer.name(), &query).map(Json)
}

async fn witness_add_checkpoint(
    State(node): Shared,
    signer: VerifiedSigner,
    Json(body): Json<crate::witnessing::AddCheckpoint>,
) -> Reply {
    crate::witnessing::add_checkpoint(&node, signer.name(), body)
        .await
        .map(Json)
}

async fn witness_log(
    State(node): Shared,
    signer: VerifiedSigner,
    Query(query): Query<crate::witnessing::LogQuery>,
) -> Reply {
    crate::witnessing::stored_head(&node, signer.name(), &query).map(Json)
}

async fn status(State(node): Shared, signer: VerifiedSigner) -> Reply {
    admin(&node, &signer)?;
    let (size, checkpoint) = node.store.read(|c| {
        let latest = carrel_ledger::AuditLog::latest_checkpoint(c)?;
        Ok((
            carrel_ledger::AuditLog::tree_size(c)?,
            latest.map(|c| c.note),
        ))
    })?;
    Ok(Json(
        json!({ "name": node.identity.name(), "role": node.config.role,
                    "endpoint": node.endpoint(), "audit_tree_size": size,
                    "witness_alarms": crate::witnessing::alarm_count(&node)?,
                    "checkpoint": checkpoint }),
    ))
}

async fn participant(State(node): Shared, _: VerifiedSigner, Path(name): Path<String>) -> Reply {
    let found = node.store.read(|c| exchange::load_participant(c, &name))?;
    let found = found.ok_or(NodeError::NotFound {
        what: "participant",
        id: name,
    })?;
    Ok(Json(json!(found)))
}

async fn listing(
    State(node): Shared,
    signer: VerifiedSigner,
    Json(product): Json<carrel_model::Product>,
) -> Reply {
    exchange::review(&node, signer.name(), product).map(Json)
}

async fn catalog(State(node): Shared, _: VerifiedSigner) -> Reply {
    exchange::catalog(&node).map(Json)
}

async fn countersign(
    State(node): Shared,
    signer: VerifiedSigner,
    Json(signed): Json<carrel_model::SignedAgreement>,
) -> Reply {
    exchange::countersign(&node, signer.name(), signed).map(|s| Json(json!(s)))
}

async fn contract_request(
    State(node): Shared,
    signer: VerifiedSigner,
    Json(request): Json<ContractRequest>,
) -> Reply {
    provider::contract_request(&node, signer.name(), request)
        .await
        .map(Json)
}

async fn negotiation_state(
    State(node): Shared,
    signer: VerifiedSigner,
    Path(pid): Path<String>,
) -> Reply {
    provider::negotiation_state(&node, signer.name(), &pid).map(Json)
}

async fn verification(
    State(node): Shared,
    signer: VerifiedSigner,
    Path(pid): Path<String>,
    Json(message): Json<AgreementMessage>,
) -> Reply {
    provider::verification(&node, signer.name(), &pid, message)
        .await
        .map(Json)
}

async fn termination(
    State(node): Shared,
    signer: VerifiedSigner,
    Path(pid): Path<String>,
    Json(body): Json<Value>,
) -> Reply {
    let reason = body["reason"]
        .as_str()
        .unwrap_or("terminated by the consumer")
        .to_owned();
    provider::termination(&node, signer.name(), &pid, reason).map(Json)
}

async fn run_query(
    State(node): Shared,
    signer: VerifiedSigner,
    Json(request): Json<QueryRequest>,
) -> Reply {
    query::run(&node, signer.name(), request).await.map(Json)
}

async fn agreement_callback(
    State(node): Shared,
    signer: VerifiedSigner,
    Path(pid): Path<String>,
    Json(message): Json<AgreementMessage>,
) -> Reply {
    consumer::agreement(&node, signer.name(), &pid, message)
        .await
        .map(Json)
}

async fn event_callback(
    State(node): Shared,
    signer: VerifiedSigner,
    Path(pid): Path<String>,
    Json(message): Json<AgreementMessage>,
) -> Reply {
    consumer::event(&node, signer.name(), &pid, message)
        .await
        .map(Json)
}

async fn revocation(
    State(node): Shared,
    signer: VerifiedSigner,
    Path(id): Path<String>,
    Json(signed): Json<SignedRevocation>,
) -> Reply {
    if signed.revocation.agreement_id != id {
        return Err(NodeError::BadRequest(format!(
            "the revocation names agreement {}, not {id}",
            signed.revocation.agreement_id
        )));
    }
    agreements::apply_revocation(&node, signer.name(), &signed).map(|r| Json(json!(r)))
}

async fn register_dataset(
    State(node): Shared,
    signer: VerifiedSigner,
    Json(request): Json<RegisterDataset>,
) -> Reply {
    admin(&node, &signer)?;
    provider::register_dataset(&node, request).await.map(Json)
}

async fn publish(
    State(node): Shared,
    signer: VerifiedSigner,
    Json(request): Json<PublishProduct>,
) -> Reply {
    admin(&node, &signer)?;
    provider::publish(&node, request).await.map(Json)
}

async fn admin_catalog(State(node): Shared, signer: VerifiedSigner) -> Reply {
    admin(&node, &signer)?;
    node.get(node.exchange_name()?, "/catalog").await.map(Json)
}

async fn start_negotiation(
    State(node): Shared,
    signer: VerifiedSigner,
    Json(request): Json<StartNegotiation>,
) -> Reply {
    admin(&node, &signer)?;
    consumer::start(&node, request).await.map(Json)
}

async fn show_negotiation(
    State(node): Shared,
    signer: VerifiedSigner,
    Path(id): Path<String>,
) -> Reply {
    admin(&node, &signer)?;
    consumer::show(&node, &id).map(|n| Json(json!(n)))
}

async fn show_agreement(
    State(node): Shared,
    signer: VerifiedSigner,
    Path(id): Path<String>,
) -> Reply {
    admin(&node, &signer)?;
    let record = node.store.read(|c| agreements::load(c, &id))?;
    let checks = agreements::verify(&node, &record.signed).await?;
    Ok(Json(json!({ "agreement": record, "verification": checks })))
}

async fn revoke(
    State(node): Shared,
    signer: VerifiedSigner,
    Path(id): Path<String>,
    Json(body): Json<Value>,
) -> Reply {
    admin(&node, &signer)?;
    let reason = body["reason"].as_str().unwrap_or("revoked").to_owned();
    agreements::revoke(&node, &id, reason)
        .await
        .map(|r| Json(json!(r)))
}

async fn forward_query(
    State(node): Shared,
    signer: VerifiedSigner,
    Json(request): Json<QueryRequest>,
) -> Reply {
    admin(&node, &signer)?;
    query::forward(&node, request).await.map(Json)
}

async fn list_jobs(State(node): Shared, signer: VerifiedSigner) -> Reply {
    admin(&node, &signer)?;
    Ok(Json(json!(jobs::list(&node.store)?)))
}

async fn show_job(State(node): Shared, signer: VerifiedSigner, Path(id): Path<String>) -> Reply {
    admin(&node, &signer)?;
    Ok(Json(json!(jobs::show(&node.store, &id)?)))
}

async fn abort_job(
    State(node): Shared,
    signer: VerifiedSigner,
    Path(id): Path<String>,
    Json(body): Json<Value>,
) -> Reply {
    let reason = body["reason"].as_str().unwrap_or("no reason given");
    match jobs::show(&node.store, &id)?.kind.as_str() {
        "secagg" => return secagg::abort(&node, signer.name(), &id, reason).map(Json),
        "join" => return join::abort(&node, signer.name(), &id, reason).map(Json),
        vertical::KIND => return vertical::abort(&node, signer.name(), &id, reason).map(Json),
        horizontal::KIND => return horizontal::abort(&node, signer.name(), &id, reason).map(Json),
        _ => {}
    }
    psi::abort(&node, signer.name(), &id, reason).map(Json)
}

async fn start_psi(
    State(node): Shared,
    signer: VerifiedSigner,
    Json(request): Json<StartPsi>,
) -> Reply {
    admin(&node, &signer)?;
    psi::start(node.clone(), request).map(Json)
}

async fn psi_hello(State(node): Shared, signer: VerifiedSigner, Json(hello): Json<Hello>) -> Reply {
    psi::hello(&node, signer.name(), hello).await.map(Json)
}

async fn psi_consumer_elements(
    State(node): Shared,
    signer: VerifiedSigner,
    Path(id): Path<String>,
    Json(batch): Json<Elements>,
) -> Reply {
    psi::consumer_elements(&node, signer.name(), &id, batch)
        .await
        .map(Json)
}

async fn psi_provider_elements(
    State(node): Shared,
    signer: VerifiedSigner,
    Path(id): Path<String>,
    Json(request): Json<Elements>,
) -> Reply {
    psi::provider_elements(&node, signer.name(), &id, request)
        .await
        .map(Json)
}

async fn psi_provider_doubled(
    State(node): Shared,
    signer: VerifiedSigner,
    Path(id): Path<String>,
    Json(batch): Json<Elements>,
) -> Reply {
    psi::provider_doubled(&node, signer.name(), &id, batch)
        .await
        .map(Json)
}

async fn psi_consumer_doubled(
    State(node): Shared,
    signer: VerifiedSigner,
    Path(id): Path<String>,
    Json(request): Json<Elements>,
) -> Reply {
    psi::consumer_doubled(&node, signer.name(), &id, request)
        .await
        .map(Json)
}

async fn psi_finish(
    State(node): Shared,
    signer: VerifiedSigner,
    Path(id): Path<String>,
    Json(finish): Json<Finish>,
) -> Reply {
    psi::finish(&node, signer.name(), &id, finish)
        .await
        .map(Json)
}

async fn start_training(
    State(node): Shared,
    signer: VerifiedSigner,
    Json(request): Json<crate::training::StartTraining>,
) -> Reply {
    admin(&node, &signer)?;
    crate::training::start(node.clone(), request).map(Json)
}

async fn start_prediction(
    State(node): Shared,
    signer: VerifiedSigner,
    Json(request): Json<crate::training::predict::StartPrediction>,
) -> Reply {
    admin(&node, &signer)?;
    crate::training::predict::start(node.clone(), request)
        .await
        .map(Json)
}

async fn list_models(State(node): Shared, signer: VerifiedSigner) -> Reply {
    admin(&node, &signer)?;
    let models = node.store.read(crate::models::list)?;
    Ok(Json(json!({ "models": models })))
}

async fn show_model(State(node): Shared, signer: VerifiedSigner, Path(id): Path<String>) -> Reply {
    admin(&node, &signer)?;
    let model = node.store.read(|c| crate::models::load(c, &id))?;
    Ok(Json(json!(model)))
}

async fn start_secagg(
    State(node): Shared,
    signer: VerifiedSigner,
    Json(request): Json<StartSecAgg>,
) -> Reply {
    admin(&node, &signer)?;
    secagg::start(node.clone(), request).map(Json)
}

async fn secagg_join(State(node): Shared, signer: VerifiedSigner, Json(join): Json<Join>) -> Reply {
    secagg::join(&node, signer.name(), join).await.map(Json)
}

async fn secagg_mask(
    State(node): Shared,
    signer: VerifiedSigner,
    Path(id): Path<String>,
    Json(request): Json<MaskRequest>,
) -> Reply {
    secagg::mask(&node, signer.name(), &id, request)
        .await
        .map(Json)
}

async fn secagg_finish(
    State(node): Shared,
    signer: VerifiedSigner,
    Path(id): Path<String>,
    Json(finish): Json<FinishRound>,
) -> Reply {
    secagg::finish(&node, signer.name(), &id, finish)
        .await
        .map(Json)
}

async fn start_join(
    State(node): Shared,
    signer: VerifiedSigner,
    Json(request): Json<StartJoin>,
) -> Reply {
    admin(&node, &signer)?;
    join::start(node.clone(), request).map(Json)
}

async fn join_open(State(node): Shared, signer: VerifiedSigner, Json(open): Json<Open>) -> Reply {
    join::open(node.clone(), signer.name(), open)
        .await
        .map(Json)
}

async fn join_message2(
    State(node): Shared,
    signer: VerifiedSigner,
    Path(id): Path<String>,
    Json(request): Json<Blob>,
) -> Reply {
    join::message2(&node, signer.name(), &id, request).map(Json)
}

async fn join_release(
    State(node): Shared,
    signer: VerifiedSigner,
    Path(id): Path<String>,
    Json(request): Json<Blob>,
) -> Reply {
    join::release(&node, signer.name(), &id, request)
        .await
        .map(Json)
}

async fn join_finish(
    State(node): Shared,
    signer: VerifiedSigner,
    Path(id): Path<String>,
    Json(finish): Json<join::Finish>,
) -> Reply {
    join::finish(&node, signer.name(), &id, finish).map(Json)
}

// Vertical federated training: handlers of the host's steps and of the exchange's dealer.

async fn vertical_hello(
    State(node): Shared,
    signer: VerifiedSigner,
    Json(hello): Json<vertical::Hello>,
) -> Reply {
    vertical::hello(node.clone(), signer.name(), hello)
        .await
        .map(Json)
}

async fn vertical_guest_elements(
    State(node): Shared,
    signer: VerifiedSigner,
    Path(id): Path<String>,
    Json(batch): Json<Elements>,
) -> Reply {
    vertical::guest_elements(node.clone(), signer.name(), &id, batch)
        .await
        .map(Json)
}

async fn vertical_host_elements(
    State(node): Shared,
    signer: VerifiedSigner,
    Path(id): Path<String>,
    Json(request): Json<Elements>,
) -> Reply {
    vertical::host_elements(node.clone(), signer.name(), &id, request)
        .await
        .map(Json)
}

async fn vertical_host_doubled(
    State(node): Shared,
    signer: VerifiedSigner,
    Path(id): Path<String>,
    Json(batch): Json<Elements>,
) -> Reply {
    vertical::host_doubled(node.clone(), signer.name(), &id, batch)
        .await
        .map(Json)
}

async fn vertical_align(
    State(node): Shared,
    signer: VerifiedSigner,
    Path(id): Path<String>,
    Json(align): Json<vertical::Align>,
) -> Reply {
    vertical::align(node.clone(), signer.name(), &id, align)
        .await
        .map(Json)
}

async fn vertical_exchange(
    State(node): Shared,
    signer: VerifiedSigner,
    Path(id): Path<String>,
    Json(part): Json<vertical::ExchangePart>,
) -> Reply {
    vertical::exchange(node.clone(), signer.name(), &id, part)
        .await
        .map(Json)
}

async fn vertical_reply(
    State(node): Shared,
    signer: VerifiedSigner,
    Path(id): Path<String>,
    Json(request): Json<vertical::ReplyRequest>,
) -> Reply {
    vertical::reply(node.clone(), signer.name(), &id, request)
        .await
        .map(Json)
}

async fn vertical_predict(
    State(node): Shared,
    signer: VerifiedSigner,
    Path(id): Path<String>,
    Json(request): Json<vertical::Predict>,
) -> Reply {
    vertical::predict(node.clone(), signer.name(), &id, request)
        .await
        .map(Json)
}

async fn vertical_resume(
    State(node): Shared,
    signer: VerifiedSigner,
    Path(id): Path<String>,
    Json(request): Json<vertical::Resume>,
) -> Reply {
    vertical::resume(node.clone(), signer.name(), &id, request)
        .await
        .map(Json)
}

async fn vertical_finish(
    State(node): Shared,
    signer: VerifiedSigner,
    Path(id): Path<String>,
    Json(finish): Json<vertical::Finish>,
) -> Reply {
    vertical::finish(node.clone(), signer.name(), &id, finish)
        .await
        .map(Json)
}

async fn vertical_prediction(
    State(node): Shared,
    signer: VerifiedSigner,
    Json(request): Json<vertical::PredictionRequest>,
) -> Reply {
    vertical::serve_prediction(node.clone(), signer.name(), request)
        .await
        .map(Json)
}

async fn dealer_open(
    State(node): Shared,
    signer: VerifiedSigner,
    Json(request): Json<dealer::OpenDealer>,
) -> Reply {
    dealer::open(node.clone(), signer.name(), request)
        .await
        .map(Json)
}

async fn dealer_seed(
    State(node): Shared,
    signer: VerifiedSigner,
    Path(id): Path<String>,
    Json(request): Json<dealer::SeedRequest>,
) -> Reply {
    dealer::seed(&node, signer.name(), &id, request).map(Json)
}

async fn dealer_corrections(
    State(node): Shared,
    signer: VerifiedSigner,
    Path(id): Path<String>,
    Json(request): Json<dealer::CorrectionsRequest>,
) -> Reply {
    dealer::corrections(&node, signer.name(), &id, request)
        .await
        .map(Json)
}

async fn dealer_close(
    State(node): Shared,
    signer: VerifiedSigner,
    Path(id): Path<String>,
) -> Reply {
    dealer::close(&node, signer.name(), &id).map(Json)
}

// Horizontal federated training: handlers of the provider's steps.

async fn horizontal_join(
    State(node): Shared,
    signer: VerifiedSigner,
    Path(id): Path<String>,
    Json(request): Json<horizontal::JoinTraining>,
) -> Reply {
    horizontal::join(node.clone(), signer.name(), &id, request)
        .await
        .map(Json)
}

async fn horizontal_round(
    State(node): Shared,
    signer: VerifiedSigner,
    Path(id): Path<String>,
    Json(request): Json<carrel_learn::horizontal::RoundRequest>,
) -> Reply {
    horizontal::round(node.clone(), signer.name(), &id, request)
        .await
        .map(Json)
}

async fn horizontal_mask(
    State(node): Shared,
    signer: VerifiedSigner,
    Path(id): Path<String>,
    Json(keys): Json<carrel_learn::horizontal::PublicKeys>,
) -> Reply {
    horizontal::mask(node.clone(), signer.name(), &id, keys)
        .await
        .map(Json)
}

async fn horizontal_finish(
    State(node): Shared,
    signer: VerifiedSigner,
    Path(id): Path<String>,
    Json(finish): Json<horizontal::FinishTraining>,
) -> Reply {
    horizontal::finish(node.clone(), signer.name(), &id, finish)
        .await
        .map(Json)
}
