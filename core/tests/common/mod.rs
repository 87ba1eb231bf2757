//! Test helpers: a minimal line format, demo data, and engines wired for tests.
#![allow(clippy::unwrap_used, dead_code, missing_docs)]

use arrow::array::{Float64Array, Int64Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions as DisplayOptions};
use jsonwebtoken::{EncodingKey, Header};

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use trialport_core::access::Role;
use trialport_core::auth::NewApiKey;
use trialport_core::document::{Block, Document};
use trialport_core::engine::{Engine, EngineBuilder};
use trialport_core::error::Result;
use trialport_core::format::{
    Capability, EncodeSummary, Encoder, Format, FormatInfo, FormatOptions, FormatRegistry,
    OptionInfo, Output,
};
use trialport_core::jwt::{Algorithm, JwtKey, JwtOptions, JwtVerifier};
use trialport_core::meta::DatasetMeta;
use trialport_core::source::{BatchStream, DataSource, DatasetInfo, MemorySource};

/// A tiny text format: a header line of column names, then one line per row, cells joined by `sep`.
/// Documents render as one line per block kind. Enough to test the engine without the formats crate.
pub struct LinesFormat;

impl Format for LinesFormat {
    fn info(&self) -> FormatInfo {
        FormatInfo {
            id: "lines",
            name: "Lines (test)",
            extension: "txt",
            media_type: "text/plain",
            capabilities: vec![
                Capability::Data,
                Capability::Report,
                Capability::Dashboard,
                Capability::Streaming,
            ],
            options: vec![OptionInfo::new("sep", "|", "cell separator")],
        }
    }

    fn encoder<'a>(
        &self,
        schema: &SchemaRef,
        _meta: &DatasetMeta,
        options: &FormatOptions,
        out: Output<'a>,
    ) -> Result<Box<dyn Encoder + 'a>> {
        self.check_options(options)?;
        let sep = options.string("sep", "|");
        let names: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
        writeln!(out, "{}", names.join(&sep))?;
        Ok(Box::new(LinesEncoder { out, sep, rows: 0 }))
    }

    fn render(&self, doc: &Document, _options: &FormatOptions, out: Output<'_>) -> Result<()> {
        writeln!(out, "title={}", doc.title)?;
        for b in &doc.blocks {
            match b {
                Block::Text { body, .. } => writeln!(out, "text={body}")?,
                Block::Table {
                    rows, total_rows, ..
                } => writeln!(out, "table={}/{}", rows.num_rows(), total_rows)?,
                Block::Tiles(k) => {
                    for kpi in k {
                        writeln!(out, "kpi={}={:?}", kpi.label, kpi.value)?;
                    }
                }
                Block::Chart(c) => writeln!(out, "chart={}={:?}", c.title, c.points)?,
            }
        }
        Ok(())
    }
}

struct LinesEncoder<'a> {
    out: Output<'a>,
    sep: String,
    rows: u64,
}

impl Encoder for LinesEncoder<'_> {
    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        let opts = DisplayOptions::default();
        let fmts: Vec<ArrayFormatter> = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &opts))
            .collect::<std::result::Result<_, _>>()?;
        for r in 0..batch.num_rows() {
            let cells: Vec<String> = fmts.iter().map(|f| f.value(r).to_string()).collect();
            writeln!(self.out, "{}", cells.join(&self.sep))?;
        }
        self.rows += batch.num_rows() as u64;
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<EncodeSummary> {
        self.out.flush()?;
        Ok(EncodeSummary::rows(self.rows))
    }
}

pub fn registry() -> FormatRegistry {
    let mut r = FormatRegistry::new();
    r.register(Arc::new(LinesFormat)).unwrap();
    r
}

pub fn dm_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("USUBJID", DataType::Utf8, false),
        Field::new("SEX", DataType::Utf8, true),
        Field::new("AGE", DataType::Int64, true),
        Field::new("WEIGHT", DataType::Float64, true),
    ]))
}

/// DM with `n` subjects: sex alternates F/M, ages 20.., weights 50.5..
pub fn dm_batch(n: usize) -> RecordBatch {
    RecordBatch::try_new(
        dm_schema(),
        vec![
            Arc::new(StringArray::from(
                (0..n).map(|i| format!("S1-{i:03}")).collect::<Vec<_>>(),
            )),
            Arc::new(StringArray::from(
                (0..n)
                    .map(|i| if i % 2 == 0 { "F" } else { "M" })
                    .collect::<Vec<_>>(),
            )),
            Arc::new(Int64Array::from(
                (0..n).map(|i| 20 + i as i64).collect::<Vec<_>>(),
            )),
            Arc::new(Float64Array::from(
                (0..n).map(|i| 50.5 + i as f64).collect::<Vec<_>>(),
            )),
        ],
    )
    .unwrap()
}

/// Study S1 with DM (10 rows) and AE (4 rows); study S2 with DM (3 rows).
pub fn source() -> Arc<MemorySource> {
    let s = MemorySource::new();
    s.add("S1", "DM", dm_schema(), vec![dm_batch(6), dm_batch(4)])
        .unwrap();
    let ae = Arc::new(Schema::new(vec![
        Field::new("USUBJID", DataType::Utf8, false),
        Field::new("AESEV", DataType::Utf8, true),
    ]));
    let b = RecordBatch::try_new(
        ae.clone(),
        vec![
            Arc::new(StringArray::from(vec![
                "S1-000", "S1-000", "S1-001", "S1-003",
            ])),
            Arc::new(StringArray::from(vec![
                Some("MILD"),
                Some("SEVERE"),
                Some("MILD"),
                None,
            ])),
        ],
    )
    .unwrap();
    s.add("S1", "AE", ae, vec![b]).unwrap();
    s.add("S2", "DM", dm_schema(), vec![dm_batch(3)]).unwrap();
    Arc::new(s)
}

/// A source whose one dataset (study SLOW, dataset BIG) yields `batches` batches, sleeping between them.
pub struct SlowSource {
    pub batches: usize,
    pub pause: Duration,
}

impl DataSource for SlowSource {
    fn studies(&self) -> Result<Vec<String>> {
        Ok(vec!["SLOW".into()])
    }

    fn datasets(&self, study: &str) -> Result<Vec<DatasetInfo>> {
        if study != "SLOW" {
            return Err(trialport_core::source::unknown_study(study));
        }
        Ok(vec![DatasetInfo {
            name: "BIG".into(),
            label: None,
        }])
    }

    fn scan(&self, study: &str, dataset: &str) -> Result<BatchStream> {
        if study != "SLOW" || dataset != "BIG" {
            return Err(trialport_core::source::unknown_dataset(study, dataset));
        }
        let pause = self.pause;
        let schema = dm_schema();
        Ok(BatchStream::new(
            schema,
            (0..self.batches).map(move |_| {
                std::thread::sleep(pause);
                Ok(dm_batch(100))
            }),
        ))
    }
}

/// An engine on the test source with `workers` workers; returns it with an admin credential of org `acme`.
pub fn engine(workers: usize) -> (Engine, String) {
    Cred::ApiKey.engine(workers)
}

/// A credential for a new key with `roles` on `studies`, created by `admin`.
pub fn key(engine: &Engine, admin: &str, roles: &[Role], studies: &[&str]) -> String {
    let (text, _) = engine
        .session(admin)
        .create_api_key(NewApiKey {
            name: "test key".into(),
            org: Some("acme".into()),
            roles: roles.to_vec(),
            studies: studies.iter().map(|s| s.to_string()).collect(),
            expires_at: None,
        })
        .unwrap();
    format!("ApiKey {text}")
}

/// The kind of credential a test runs with. Both kinds act for the same principals: the JWT kind mints, for
/// each key the API-key kind would create, a token with that key's org, roles, studies and printed name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cred {
    /// `ApiKey tp_...`: keys created through the engine.
    ApiKey,
    /// `Bearer <jwt>`: tokens minted with `jsonwebtoken` (an independent library), the admin's HS256 and the
    /// others' EdDSA, verified by the engine's [`JwtVerifier`] with both keys configured.
    Jwt,
}

/// The HS256 secret of [`Cred::Jwt`] engines (key id `hs`).
pub const JWT_SECRET: &[u8; 40] = b"common-jwt-test-secret-of-forty-bytes-xx";

/// The issuer and audience of [`Cred::Jwt`] tokens, both checked by the verifier.
pub const JWT_ISSUER: &str = "https://idp.example";
pub const JWT_AUDIENCE: &str = "trialport";

/// The subject of the admin token of [`Cred::Jwt`].
pub const JWT_ADMIN_SUB: &str = "idp-initial-admin";

// A test-only Ed25519 key pair (key id `ed`), generated with `openssl genpkey -algorithm ed25519` for these tests.
const ED_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIJtoDU67p3IpL6wAChOnKOJOjH1Jt0O/R2LB4VSbhaNz
-----END PRIVATE KEY-----
";
const ED_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAvahphEVlci3I40eC1XSYztQh/HTsdJURqICMERZN/2g=
-----END PUBLIC KEY-----
";

/// Distinct subjects for the tokens standing for distinct keys.
static NEXT_SUBJECT: AtomicUsize = AtomicUsize::new(1);

/// The verifier of [`Cred::Jwt`] engines: HS256 (`hs`) and EdDSA (`ed`), issuer and audience checked.
pub fn jwt_verifier() -> JwtVerifier {
    JwtVerifier::new(
        vec![
            JwtKey::hmac(JWT_SECRET, Algorithm::Hs256, Some("hs")).unwrap(),
            JwtKey::from_pem(ED_PUBLIC.as_bytes(), Algorithm::EdDsa, Some("ed")).unwrap(),
        ],
        JwtOptions {
            issuers: vec![JWT_ISSUER.into()],
            audiences: vec![JWT_AUDIENCE.into()],
            ..JwtOptions::default()
        },
    )
    .unwrap()
}

/// `Bearer <jwt>` for a principal; valid for 400 days from now (longer than any clock a test advances).
pub fn mint(
    alg: jsonwebtoken::Algorithm,
    sub: &str,
    name: &str,
    roles: &[Role],
    studies: &[&str],
) -> String {
    let now = chrono::Utc::now().timestamp();
    let claims = serde_json::json!({
        "sub": sub, "name": name, "org": "acme", "roles": roles, "studies": studies,
        "iss": JWT_ISSUER, "aud": [JWT_AUDIENCE], "iat": now, "exp": now + 400 * 86_400,
    });
    let (kid, key) = match alg {
        jsonwebtoken::Algorithm::HS256 => ("hs", EncodingKey::from_secret(JWT_SECRET)),
        jsonwebtoken::Algorithm::EdDSA => (
            "ed",
            EncodingKey::from_ed_pem(ED_PRIVATE.as_bytes()).unwrap(),
        ),
        other => panic!("no test key for {other:?}"),
    };
    let mut header = Header::new(alg);
    header.kid = Some(kid.into());
    format!(
        "Bearer {}",
        jsonwebtoken::encode(&header, &claims, &key).unwrap()
    )
}

impl Cred {
    /// Both kinds.
    pub const ALL: [Cred; 2] = [Cred::ApiKey, Cred::Jwt];

    /// What an engine needs for this kind: nothing for API keys; the JWT verifier for tokens.
    pub fn setup(self, builder: EngineBuilder) -> EngineBuilder {
        match self {
            Cred::ApiKey => builder,
            Cred::Jwt => builder.jwt(jwt_verifier()),
        }
    }

    /// The admin credential of org `acme` (roles `admin`, studies `*`, printed name `initial admin`). Both
    /// kinds initialize the organization with [`Engine::create_initial_admin_key`], as `trialport init` does,
    /// so the engine's state and audit trail are the same; the JWT kind then acts with an HS256 token.
    pub fn admin(self, engine: &Engine) -> String {
        let key = engine.create_initial_admin_key("acme").unwrap();
        match self {
            Cred::ApiKey => format!("ApiKey {key}"),
            Cred::Jwt => mint(
                jsonwebtoken::Algorithm::HS256,
                JWT_ADMIN_SUB,
                "initial admin",
                &[Role::Admin],
                &["*"],
            ),
        }
    }

    /// An engine on the test source with `workers` workers, and its admin credential (see [`Cred::admin`]).
    pub fn engine(self, workers: usize) -> (Engine, String) {
        let e = self
            .setup(
                Engine::builder()
                    .formats(registry())
                    .source(source())
                    .workers(workers),
            )
            .build()
            .unwrap();
        let admin = self.admin(&e);
        (e, admin)
    }

    /// A credential with `roles` on `studies` of org `acme`, printed name `test key`: a new API key created by
    /// `admin` (see [`key`]), or an EdDSA token with a subject of its own.
    pub fn key(self, engine: &Engine, admin: &str, roles: &[Role], studies: &[&str]) -> String {
        match self {
            Cred::ApiKey => key(engine, admin, roles, studies),
            Cred::Jwt => {
                let n = NEXT_SUBJECT.fetch_add(1, Ordering::Relaxed);
                mint(
                    jsonwebtoken::Algorithm::EdDSA,
                    &format!("idp-user-{n}"),
                    "test key",
                    roles,
                    studies,
                )
            }
        }
    }
}

/// The subject the engine records for a credential of either kind: `apikey:<key id>` for `ApiKey tp_<id>_...`
/// (the key format of `trialport_core::auth`), the token's `sub` for a bearer token.
pub fn subject_of(credential: &str) -> String {
    if let Some(key) = credential.strip_prefix("ApiKey ") {
        let id = key.split('_').nth(1).unwrap();
        return format!("apikey:{id}");
    }
    let token = credential.strip_prefix("Bearer ").unwrap();
    let claims: serde_json::Value = jsonwebtoken::dangerous::insecure_decode_claims(token).unwrap();
    claims["sub"].as_str().unwrap().to_string()
}

/// The secret part of a credential of either kind (what must never reach an audit trail or an error).
pub fn secret_of(credential: &str) -> &str {
    credential
        .strip_prefix("ApiKey ")
        .or_else(|| credential.strip_prefix("Bearer "))
        .unwrap()
}
