//! The committed `docs/openapi.json` is the document the code generates (regenerate it with
//! `TRIALPORT_BLESS=1 cargo test -p trialport-server --test openapi`), and the document is OpenAPI 3.1 with every
//! operation of the contract.

#![allow(clippy::unwrap_used)]

use serde_json::Value;
use std::path::PathBuf;

fn committed() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.json")
}

#[test]
fn the_committed_document_is_the_generated_one() {
    let generated = trialport_server::openapi::json();
    if std::env::var_os("TRIALPORT_BLESS").is_some() {
        std::fs::write(committed(), &generated).unwrap();
    }
    let on_disk = std::fs::read_to_string(committed()).unwrap();
    assert!(
        on_disk == generated,
        "docs/openapi.json is stale: run TRIALPORT_BLESS=1 cargo test -p trialport-server --test openapi"
    );
}

/// `docs/api.html`, the static reference page, is rendered from the same document.
#[test]
fn the_committed_reference_page_is_the_generated_one() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/api.html");
    let generated = trialport_server::openapi::html();
    if std::env::var_os("TRIALPORT_BLESS").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let on_disk = std::fs::read_to_string(&path).unwrap();
    assert!(
        on_disk == generated,
        "docs/api.html is stale: run TRIALPORT_BLESS=1 cargo test -p trialport-server --test openapi"
    );
    assert!(generated.contains("id=\"op-export_data\""));
    assert!(!generated.contains("<script"));
}

#[test]
fn the_document_has_every_operation_with_errors_security_and_links() {
    let doc = trialport_server::openapi::document();
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    let expected = [
        ("/api/v1/exports/data", "post", "202"),
        ("/api/v1/exports/dashboard", "post", "202"),
        ("/api/v1/exports/report", "post", "202"),
        ("/api/v1/exports/bulk", "post", "202"),
        ("/api/v1/exports/jobs", "get", "200"),
        ("/api/v1/exports/jobs/{job_id}", "get", "200"),
        ("/api/v1/exports/jobs/{job_id}/cancel", "post", "200"),
        ("/api/v1/exports/jobs/{job_id}/download", "get", "200"),
        ("/api/v1/exports/formats", "get", "200"),
    ];
    for (path, method, ok) in expected {
        let op = &paths[path][method];
        assert!(op.is_object(), "{method} {path} missing");
        let responses = op["responses"].as_object().unwrap();
        assert!(responses.contains_key(ok), "{path}");
        for status in ["401", "403", "429", "500"] {
            let r = &responses[status];
            assert_eq!(
                r["content"]["application/json"]["schema"]["$ref"],
                "#/components/schemas/ErrorResponse",
                "{path} {status}"
            );
        }
        assert!(op["security"].is_array(), "{path}");
    }
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    assert_eq!(schemes["apiKey"]["name"], "Authorization");
    let links = &paths["/api/v1/exports/data"]["post"]["responses"]["202"]["links"];
    assert_eq!(links["GetJob"]["operationId"], "get_job");
    assert_eq!(
        links["DownloadJob"]["parameters"]["job_id"],
        "$response.body#/id"
    );
    // Every request schema has an example.
    for name in [
        "ExportDataRequest",
        "BulkExportRequest",
        "ReportExportRequest",
        "DashboardExportRequest",
    ] {
        let s: &Value = &doc["components"]["schemas"][name];
        assert!(
            s["example"].is_object() || s["examples"].is_array(),
            "{name}"
        );
        assert_eq!(s["additionalProperties"], false, "{name}");
    }
}
