//! DCAT-style catalog entries with ODRL-style offers.

use carrel_model::Product;
use serde_json::{Value, json};

/// Builds the catalog document around `entries`.
pub fn catalog(exchange: &str, entries: Vec<Value>) -> Value {
    json!({
        "@context": {
            "dcat": "http://www.w3.org/ns/dcat#",
            "dct": "http://purl.org/dc/terms/",
            "odrl": "http://www.w3.org/ns/odrl/2/",
            "carrel": "https://carrel.dev/ns#"
        },
        "@type": "dcat:Catalog",
        "dct:publisher": exchange,
        "dcat:dataset": entries,
    })
}

/// Builds one catalog entry: the dataset's description (never its rows), its offer
/// as an ODRL policy, and the provider's endpoint.
pub fn dataset_entry(product: &Product, endpoint: &str) -> Value {
    let policy = &product.policy;
    json!({
        "@id": product.id,
        "@type": "dcat:Dataset",
        "dct:title": product.title,
        "dct:description": product.dataset.description,
        "dct:publisher": product.provider,
        "carrel:classification": product.dataset.classification,
        "carrel:rights": product.dataset.rights,
        "odrl:hasPolicy": [{
            "@id": product.offer_id,
            "@type": "odrl:Offer",
            "odrl:assigner": product.provider,
            "odrl:target": product.id,
            "odrl:permission": [{
                "odrl:action": "carrel:aggregateQuery",
                "odrl:constraint": [
                    { "odrl:leftOperand": "odrl:purpose", "odrl:operator": "odrl:isAnyOf",
                      "odrl:rightOperand": policy.purposes },
                    { "odrl:leftOperand": "odrl:dateTime", "odrl:operator": "odrl:gteq",
                      "odrl:rightOperand": rfc3339(policy.valid_from) },
                    { "odrl:leftOperand": "odrl:dateTime", "odrl:operator": "odrl:lt",
                      "odrl:rightOperand": rfc3339(policy.valid_until) },
                    { "odrl:leftOperand": "odrl:count", "odrl:operator": "odrl:lteq",
                      "odrl:rightOperand": policy.max_queries },
                    { "odrl:leftOperand": "odrl:spatial", "odrl:operator": "odrl:isAnyOf",
                      "odrl:rightOperand": policy.usage_regions }
                ]
            }]
        }],
        "dcat:distribution": [{
            "@type": "dcat:Distribution",
            "dcat:accessService": { "dcat:endpointURL": endpoint }
        }],
        "carrel:product": product,
    })
}

/// Formats an instant as RFC 3339 (ISO 8601), as ODRL date operands are written.
fn rfc3339(instant: time::OffsetDateTime) -> String {
    instant
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| instant.to_string())
}
