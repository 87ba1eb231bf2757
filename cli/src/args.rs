//! The command line as clap parses it: every command, argument and help text.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

const LONG_ABOUT: &str = "trialport: export clinical-trial data as analysis extracts, reports, dashboards and \
packages, with every export run as a job and recorded in a 21 CFR Part 11 audit trail.

`formats`, `convert` and `demo` need nothing else. Every other command works on a home directory (--home or \
TRIALPORT_HOME; create one with `init`) and needs a credential (--credential or TRIALPORT_CREDENTIAL: \
\"ApiKey tp_...\", a bare \"tp_...\" key, or \"Bearer <jwt>\").";

const AFTER_HELP: &str = "Jobs and workers: export jobs run on worker threads inside the trialport process that \
waits for them (`export ... --wait`, `jobs wait ID`, `demo`). A process that exits right after `export` without \
--wait leaves the job queued in the home's SQLite database; the next trialport process that waits on the home \
(for example `trialport jobs wait ID`) picks it up and runs it.

Output: --json prints JSON on stdout; without it, readable tables. Errors print the standard error JSON \
{\"error\": {\"code\": \"EXP00x\", ...}} on stderr. Exit status: 0 success, 1 error (or a failed job with \
--wait), 2 usage error, 3 --timeout passed before the job finished.";

/// `trialport`: the command line of the trialport export engine.
#[derive(Debug, Parser)]
#[command(
    name = "trialport",
    version,
    about = "Export clinical-trial data: extracts, reports, dashboards and packages, as audited jobs",
    long_about = LONG_ABOUT,
    after_help = AFTER_HELP,
    propagate_version = true
)]
pub struct Cli {
    /// Home directory (jobs, keys, audit trail, artifacts); created by `init`.
    #[arg(long, global = true, env = "TRIALPORT_HOME", value_name = "DIR")]
    pub home: Option<PathBuf>,

    /// Credential: "ApiKey tp_...", a bare "tp_..." key, or "Bearer <jwt>".
    #[arg(
        long,
        global = true,
        env = "TRIALPORT_CREDENTIAL",
        hide_env_values = true,
        value_name = "CRED"
    )]
    pub credential: Option<String>,

    /// Print JSON on stdout instead of tables.
    #[arg(long, global = true)]
    pub json: bool,

    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List the formats with their capabilities and options (no home or credential needed).
    Formats,
    /// Convert a data file from one format to another (no home or credential needed).
    Convert(ConvertArgs),
    /// Run a complete tour on a generated fictional study: exports, report, dashboard, package, download.
    Demo(DemoArgs),
    /// Create a home directory and its first admin API key (printed once).
    Init(InitArgs),
    /// Start an export job: data, report, dashboard or bulk package.
    #[command(subcommand, after_help = AFTER_HELP)]
    Export(ExportCommand),
    /// List, show, cancel or wait for jobs.
    #[command(subcommand, after_help = AFTER_HELP)]
    Jobs(JobsCommand),
    /// Download an artifact of a succeeded job (verified against its SHA-256).
    Download(DownloadArgs),
    /// Manage API keys; rotate the key that encrypts artifacts at rest.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Studies and organizations: list the studies bound to organizations, bind one, remove a binding (binding
    /// needs the operator role). A study of another organization answers as an unknown study.
    #[command(subcommand)]
    Studies(StudiesCommand),
    /// Read and verify the audit trail.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Expire now the jobs of your organization whose artifacts passed their retention time (needs the admin
    /// role): their files are deleted, their records, manifest.json and audit trail kept. Prints the summary as
    /// JSON: jobs_expired, artifacts_deleted, bytes_freed.
    Purge,
    /// Check a package (bulk zip or a job's artifact directory) against its manifest and its e-signatures, and
    /// say whether it is SIGNED, UNTRUSTED or UNSIGNED (no home needed).
    #[command(long_about = VERIFY_ABOUT)]
    Verify(VerifyArgs),
    /// E-signatures: set your signing password, reset a locked signer, print the engine's public key.
    #[command(subcommand)]
    Signing(SigningCommand),
    /// Run job workers until SIGTERM or SIGINT: they claim queued jobs of the home (exports started by any
    /// process) with a lease, and on the signal stop at the next batch and give their jobs back to the queue.
    Worker(WorkerArgs),
    /// Serve the Exports API over HTTP (and run job workers) until SIGTERM or SIGINT.
    Serve(ServeArgs),
}

/// `serve [--listen ADDR] [--tls-cert PEM --tls-key PEM] [--workers N] [--metrics-listen ADDR]`
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address of the API (IP:PORT; port 0 picks a free one, printed on stdout once listening).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// TLS certificate chain (PEM); with --tls-key, the API speaks TLS 1.2/1.3 only, HTTP/1.1 and HTTP/2.
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    pub tls_cert: Option<std::path::PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    pub tls_key: Option<std::path::PathBuf>,
    /// Allow plain HTTP on an address that is not loopback (behind a TLS-terminating proxy).
    #[arg(long)]
    pub insecure_listen: bool,
    /// Job worker threads (default: the home's `workers`, else 2).
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
    /// Address of the Prometheus metrics (GET /metrics), or `off` (default 127.0.0.1:9464).
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<String>,
    /// At shutdown, how long in-flight requests may take to finish (seconds).
    #[arg(long, value_name = "SECS", default_value_t = 30.0)]
    pub drain_seconds: f64,
}

/// `worker [--workers N]`
#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// Worker threads (default: the home's `workers` setting, else 2).
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
}

const VERIFY_ABOUT: &str = "Check a package (a bulk zip, or a job's artifact directory as `download --all` \
writes it) against its manifest.json and its e-signatures. No home is needed.

Files: every file the manifest lists must be there with its size and SHA-256, and nothing else may be: a file or \
folder the manifest does not list (manifest.json aside) is refused, and so is a symbolic link or a special file \
anywhere in a directory.

Signatures: each must belong to this manifest and verify. The result says which:
  SIGNED     every signature verified with the trusted key given by --public-key (integrity and origin);
  UNTRUSTED  signed, but verified only with the key each signature carries: it proves that nothing changed since \
signing, not who signed (anyone rewriting a package can sign it again with a key of their own);
  UNSIGNED   no e-signature.
A signature is required with --public-key (at least one, and every one made by that key) and for an eCTD package \
(its manifest asks for package \"ectd\" or lists m5/ files) even without it: an UNSIGNED package then fails \
with EXP003 signature_required (exit 1). Without --public-key, an eCTD package signed by the key it carries is \
UNTRUSTED, exit 0: give --public-key to check its origin.

With --json, stdout is {\"verified\", \"signature_status\", \"signature_required\", \"job_id\", \"files\", \
\"signatures\"}; a failure prints the standard error JSON on stderr.";

/// `verify PACKAGE`
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// A bulk zip package, or a job's artifact directory holding manifest.json.
    pub package: PathBuf,
    /// The engine's public signing key (PEM from `signing public-key`, or base64), obtained out of band: at least
    /// one signature is then required, and every signature must be made by this key. Without it, signatures are
    /// checked with the key each carries, which proves integrity but not origin (UNTRUSTED).
    #[arg(long, value_name = "FILE")]
    pub public_key: Option<PathBuf>,
}

/// `convert INPUT -o OUTPUT ...`
#[derive(Debug, Args)]
pub struct ConvertArgs {
    /// Input file (CSV, TSV, Parquet, Arrow IPC, NDJSON, JSON, ...), read by its extension.
    pub input: PathBuf,
    /// Output file; written atomically (nothing is left behind on failure).
    #[arg(short, long, value_name = "OUTPUT")]
    pub output: PathBuf,
    /// Output format id (default: from the output's extension).
    #[arg(long, value_name = "FORMAT")]
    pub to: Option<String>,
    /// Dataset name stored with the data (e.g. DM).
    #[arg(long, value_name = "NAME")]
    pub dataset: Option<String>,
    /// Dataset label stored with the data (e.g. Demographics).
    #[arg(long, value_name = "TEXT")]
    pub label: Option<String>,
    /// Metadata JSON document (Dataset-JSON `columns` shape plus `privacy`).
    #[arg(long, value_name = "META.json")]
    pub meta: Option<PathBuf>,
    /// Format option as name=value (repeatable); `trialport formats` lists them.
    #[arg(long = "option", value_name = "K=V")]
    pub options: Vec<String>,
    /// How the input is read, as name=value (repeatable), e.g. xpt_dates=number to keep SAS dates as numbers;
    /// `trialport formats` lists them under each format's read options.
    #[arg(long = "read-option", value_name = "K=V")]
    pub read_options: Vec<String>,
}

/// `demo [--out DIR]`
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Directory to create (must not exist or be empty; default ./trialport-demo).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

/// `init [--source DIR] [--org ORG] [--jwt-...]`
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Directory of study data served to exports: DIR/<study>/<DATASET>.<ext>.
    #[arg(long, value_name = "DIR")]
    pub source: Option<PathBuf>,
    /// Organization of the first admin key.
    #[arg(long, value_name = "ORG", default_value = "default")]
    pub org: String,
    /// Accept "Bearer <jwt>" credentials signed with HS256 by the secret in FILE (at least 32 bytes; one
    /// trailing line break is ignored). The file must be readable and writable by its owner only (chmod 600): a
    /// file its group or others may read or write is refused (EXP002 insecure_key_file), now and whenever the
    /// home opens. The home refers to the file; it does not copy the secret.
    #[arg(long, value_name = "FILE")]
    pub jwt_hs256_secret_file: Option<PathBuf>,
    /// Accept "Bearer <jwt>" credentials verified with the public key in FILE: PEM (SPKI or PKCS#1 RSA, with
    /// --jwt-alg), JWK or JWK Set (each key's own "alg", else --jwt-alg).
    #[arg(long, value_name = "FILE")]
    pub jwt_public_key_file: Option<PathBuf>,
    /// The one algorithm the public key verifies: RS256, PS256, ES256 or EdDSA.
    #[arg(long, value_name = "ALG", requires = "jwt_public_key_file")]
    pub jwt_alg: Option<String>,
    /// Accepted token issuer ("iss"); repeatable. Without it, "iss" is not checked.
    #[arg(long = "jwt-issuer", value_name = "ISS")]
    pub jwt_issuers: Vec<String>,
    /// Accepted token audience ("aud"); repeatable. Without it, tokens that name an audience are refused.
    #[arg(long = "jwt-audience", value_name = "AUD")]
    pub jwt_audiences: Vec<String>,
    /// Refuse tokens valid for longer than SECS: exp - iat, or exp - now for a token without iat (EXP003
    /// token_lifetime_too_long). Default: no limit. Stored as "max_lifetime_secs" in config.json's "jwt".
    #[arg(long, value_name = "SECS")]
    pub jwt_max_lifetime: Option<u64>,
    /// Artifacts of succeeded jobs expire this many days after the job finished (every kind of job without its
    /// own --retention). Default: never.
    #[arg(long, value_name = "DAYS")]
    pub retention_days: Option<u32>,
    /// Retention of one kind of job as KIND=DAYS, KIND one of data, report, dashboard, bulk (repeatable).
    #[arg(long = "retention", value_name = "KIND=DAYS")]
    pub retention: Vec<String>,
    /// Rate limit per credential as N/SECONDS: each credential's first N calls in a window of SECONDS pass, the
    /// rest get EXP006 (HTTP 429); one quota across every process of the home. Default: no limit.
    #[arg(long, value_name = "N/SECONDS")]
    pub rate_limit: Option<String>,
    /// Store artifacts unencrypted (encryption at rest is on by default). For homes on storage that the
    /// deployment already encrypts; recorded in config.json as "encryption": false and in `init`'s output.
    #[arg(long)]
    pub no_encryption: bool,
}

/// Waiting for a job after starting it.
#[derive(Debug, Args)]
pub struct WaitArgs {
    /// Run the job in this process (only this job) and wait until it finishes; exit 1 with its error if it fails.
    /// Without it the job stays queued until a `trialport worker` or `trialport serve` of the home, or
    /// `trialport jobs wait`, runs it.
    #[arg(long)]
    pub wait: bool,
    /// With --wait: give up after this many seconds (exit 3).
    #[arg(long, value_name = "SECS", requires = "wait")]
    pub timeout: Option<f64>,
}

/// `export data|report|dashboard|bulk`
#[derive(Debug, Subcommand)]
pub enum ExportCommand {
    /// Export datasets of a study, one file per dataset.
    Data(ExportDataArgs),
    /// Render a report from a spec file (ReportSpec or ReportRequest JSON).
    Report(DocumentArgs),
    /// Render a dashboard from a spec file (DashboardSpec or DashboardRequest JSON).
    Dashboard(DocumentArgs),
    /// Export several datasets as one zip package with a manifest.
    Bulk(ExportBulkArgs),
}

/// `export data ...`
#[derive(Debug, Args)]
pub struct ExportDataArgs {
    /// Study id.
    #[arg(long)]
    pub study: String,
    /// Datasets, comma-separated (e.g. DM,AE).
    #[arg(long, value_delimiter = ',', required = true, num_args = 1..)]
    pub datasets: Vec<String>,
    /// Format id (see `trialport formats`).
    #[arg(long)]
    pub format: String,
    /// Row filter COLUMN:OP:VALUE (repeatable; OP is eq, ne, lt, le, gt, ge, in, is_null, is_not_null; `in` takes
    /// a comma-separated list).
    #[arg(long = "filter", value_name = "COL:OP:VALUE")]
    pub filters: Vec<String>,
    /// Columns to keep, in order, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub columns: Option<Vec<String>>,
    /// De-identification.
    #[command(flatten)]
    pub deid: DeidArgs,
    /// Options, signature, idempotency and waiting.
    #[command(flatten)]
    pub common: ExportCommonArgs,
}

/// What every `export` command takes: format options, an e-signature, an idempotency key, waiting.
#[derive(Debug, Args)]
pub struct ExportCommonArgs {
    /// Format option as name=value (repeatable; `trialport formats` lists them).
    #[arg(long = "option", value_name = "K=V")]
    pub options: Vec<String>,
    /// E-signature.
    #[command(flatten)]
    pub sign: SignArgs,
    /// Idempotency key: repeating the same request with it returns the same job.
    #[arg(long, value_name = "K")]
    pub idempotency_key: Option<String>,
    /// Waiting.
    #[command(flatten)]
    pub wait: WaitArgs,
}

/// De-identification options of `export data` and `export bulk`.
#[derive(Debug, Args)]
pub struct DeidArgs {
    /// De-identification profiles, comma-separated: safe-harbor, pseudonymize, date-shift, drop-free-text
    /// (pseudonyms and date shifts use the home's deid.key). safe-harbor's subject surrogates are random per
    /// export: datasets exported in one job join on them, two jobs' do not; use pseudonymize instead for subject ids
    /// that join across jobs (keyed pseudonyms; Safe Harbor does not allow codes derived from the id).
    #[arg(long, value_name = "PROFILES")]
    pub deidentify: Option<String>,
    /// Export identifying columns unchanged (without it, an export that would carry columns classed as
    /// identifying is refused).
    #[arg(long)]
    pub identifiable: bool,
}

/// `export report|dashboard ...`
#[derive(Debug, Args)]
pub struct DocumentArgs {
    /// Spec file: the spec JSON, or a whole request JSON with the spec and a format. The language is documented in
    /// docs/reports.md, with its JSON Schema docs/report.schema.json and templates in examples/reports/.
    #[arg(long, value_name = "FILE")]
    pub spec: PathBuf,
    /// Format id (default html, or the request file's format).
    #[arg(long)]
    pub format: Option<String>,
    /// Show classed columns' raw values (a listing of subjects, a table grouped by an identifying column): needs
    /// the data:identifiable permission and --sign (docs/permissions.md). Without it such a spec is refused;
    /// counts and means over classed columns need no flag.
    #[arg(long)]
    pub identifiable: bool,
    /// Options, signature, idempotency and waiting.
    #[command(flatten)]
    pub common: ExportCommonArgs,
}

/// `export bulk ...`
#[derive(Debug, Args)]
pub struct ExportBulkArgs {
    /// Study id.
    #[arg(long)]
    pub study: String,
    /// Datasets, comma-separated (default: every dataset of the study).
    #[arg(long, value_delimiter = ',')]
    pub datasets: Vec<String>,
    /// Format id of the files inside the package.
    #[arg(long)]
    pub format: String,
    /// Packaging: `zip` (default), or `ectd` for the eCTD Module 5 tree of XPT files with define.xml.
    #[arg(long)]
    pub package: Option<String>,
    /// Where an eCTD package's files go: `zip` (default, one zip artifact) or `directory` (the job's artifacts).
    #[arg(long)]
    pub container: Option<String>,
    /// eCTD: the largest data file in bytes (default 5000000000); larger datasets are split by rows.
    #[arg(long, value_name = "BYTES")]
    pub max_file_bytes: Option<u64>,
    /// De-identification.
    #[command(flatten)]
    pub deid: DeidArgs,
    /// Options, signature, idempotency and waiting.
    #[command(flatten)]
    pub common: ExportCommonArgs,
}

/// `jobs list|show|cancel|wait`
#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// The jobs you may see, newest first.
    List(JobsListArgs),
    /// One job: state, progress, artifacts, error.
    Show(JobIdArg),
    /// Cancel a queued or running job.
    Cancel(JobIdArg),
    /// Run (if queued) and wait for a job; exit 1 with its error if it fails.
    Wait(JobsWaitArgs),
}

/// `jobs list ...`
#[derive(Debug, Args)]
pub struct JobsListArgs {
    /// Page, from 1.
    #[arg(long, allow_negative_numbers = true)]
    pub page: Option<i64>,
    /// Jobs per page, 1 to 100 (default 20).
    #[arg(long, allow_negative_numbers = true)]
    pub limit: Option<i64>,
    /// Only jobs in this state (queued, running, succeeded, failed, cancelled, expired).
    #[arg(long)]
    pub status: Option<String>,
    /// Only jobs of this study.
    #[arg(long)]
    pub study: Option<String>,
}

/// A job id argument.
#[derive(Debug, Args)]
pub struct JobIdArg {
    /// Job id.
    pub id: String,
}

/// `jobs wait ID [--timeout SECS]`
#[derive(Debug, Args)]
pub struct JobsWaitArgs {
    /// Job id.
    pub id: String,
    /// Give up after this many seconds (exit 3).
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<f64>,
}

/// `download ID -o PATH [--artifact NAME]`
#[derive(Debug, Args)]
pub struct DownloadArgs {
    /// Job id.
    pub id: String,
    /// Where to write (a file, or an existing directory to write the artifact's name into).
    #[arg(short, long, value_name = "PATH")]
    pub output: PathBuf,
    /// Artifact name (needed when the job has several, e.g. dm.csv or manifest.json).
    #[arg(long, value_name = "NAME", conflicts_with = "all")]
    pub artifact: Option<String>,
    /// Every artifact, each at its path under the output directory (an eCTD tree, a job to `verify`).
    #[arg(long)]
    pub all: bool,
}

/// `keys create|list|revoke|rotate-kek`
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create an API key; its text is printed once.
    Create(KeysCreateArgs),
    /// List the API keys you manage (your organization's, within your studies; an operator's, of any
    /// organization): id, name, roles, studies, expiry and revocation; never a secret.
    List(KeysListArgs),
    /// Revoke an API key by id.
    Revoke(KeysRevokeArgs),
    /// Rotate the key-encryption key of artifacts at rest: new artifacts use a new key, older ones stay readable.
    /// The key protects every organization's artifacts in the home, so only an admin of every study ("*") of
    /// the home's own organization (config.json "org") may rotate it.
    RotateKek,
}

/// `studies list|add|remove`
#[derive(Debug, Subcommand)]
pub enum StudiesCommand {
    /// List the studies and their organizations (an operator sees every organization's; others their own).
    List,
    /// Bind a study to an organization (operator role).
    Add(StudiesAddArgs),
    /// Remove a study's binding (operator role): it answers as an unknown study until bound again.
    Remove(StudiesRemoveArgs),
}

/// `studies add STUDY --org ORG`
#[derive(Debug, Args)]
pub struct StudiesAddArgs {
    /// The study id (as the source names its folder).
    pub study: String,
    /// The organization it belongs to.
    #[arg(long)]
    pub org: String,
}

/// `studies remove STUDY`
#[derive(Debug, Args)]
pub struct StudiesRemoveArgs {
    /// The study id.
    pub study: String,
}

/// `keys create ...`
#[derive(Debug, Args)]
pub struct KeysCreateArgs {
    /// A name for people.
    #[arg(long)]
    pub name: String,
    /// Roles, comma-separated: admin, data_manager, statistician, monitor, auditor, integration, operator.
    #[arg(long, value_delimiter = ',', required = true, num_args = 1..)]
    pub roles: Vec<String>,
    /// Studies, comma-separated ("*" for all).
    #[arg(long, value_delimiter = ',', required = true, num_args = 1..)]
    pub studies: Vec<String>,
    /// Organization (default: the home's).
    #[arg(long)]
    pub org: Option<String>,
    /// Expiry time, RFC 3339 (e.g. 2026-12-31T23:59:59Z); it must be in the future (EXP002 invalid_expiry).
    #[arg(long, value_name = "TIME")]
    pub expires_at: Option<String>,
}

/// `keys list [--org ORG]`
#[derive(Debug, Args)]
pub struct KeysListArgs {
    /// Organization (default: yours; another one's keys only with the operator role).
    #[arg(long)]
    pub org: Option<String>,
}

/// `keys revoke KEY_ID`
#[derive(Debug, Args)]
pub struct KeysRevokeArgs {
    /// Key id (the 12 hex digits after `tp_`).
    pub key_id: String,
}

/// `audit verify|checkpoint|export`
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Verify the hash chain of the audit trail (and, given one, that it still matches a checkpoint).
    Verify(AuditVerifyArgs),
    /// Verify the trail and write a checkpoint of its last event (sequence number and hash), to keep elsewhere.
    Checkpoint(AuditCheckpointArgs),
    /// Export audit events as JSON Lines or CSV.
    Export(AuditExportArgs),
}

/// `audit verify [--checkpoint FILE]`
#[derive(Debug, Args)]
pub struct AuditVerifyArgs {
    /// A checkpoint written earlier by `audit checkpoint`: the trail must still reach it with the same hash.
    #[arg(long, value_name = "FILE")]
    pub checkpoint: Option<PathBuf>,
}

/// `audit checkpoint [-o FILE]`
#[derive(Debug, Args)]
pub struct AuditCheckpointArgs {
    /// Write the checkpoint to this file (default: standard output).
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// The formats of `audit export`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AuditFormat {
    /// One event per line, in the canonical JSON its hash covers.
    Jsonl,
    /// A header and one row per event, in fixed columns; formula-like cells neutralised.
    Csv,
}

/// `audit export ...`
#[derive(Debug, Args)]
pub struct AuditExportArgs {
    /// Output format.
    #[arg(long, value_enum, default_value = "jsonl")]
    pub format: AuditFormat,
    /// Write to this file (default: standard output); it appears only once complete.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// First sequence number.
    #[arg(long, default_value_t = 1)]
    pub from: u64,
    /// Events at most (default: all).
    #[arg(long)]
    pub limit: Option<u64>,
}

/// `--sign MEANING` of the export commands.
#[derive(Debug, Args)]
pub struct SignArgs {
    /// Sign the export electronically (21 CFR Part 11) with this meaning: review, approval, responsibility or
    /// authorship. Required for eCTD packages and identifiable data. The signing password comes from
    /// TRIALPORT_SIGN_PASSWORD, else from a terminal prompt.
    #[arg(long, value_name = "MEANING")]
    pub sign: Option<String>,
}

/// `signing set-password|reset|public-key`
#[derive(Debug, Subcommand)]
pub enum SigningCommand {
    /// Set your signing password (the second component of your e-signatures), read from standard input (one
    /// line; without echo and twice when standard input is a terminal). Changing it needs the current one, from
    /// TRIALPORT_SIGN_PASSWORD or a terminal prompt (not after an administrator's reset). A password has at
    /// least 12 characters, is not a common password, and does not contain your id or printed name (EXP002
    /// weak_password, details.rule says which).
    SetPassword,
    /// Reset a signer's credential: clear their password, failed attempts and lock, and make them set a new
    /// password before they sign again (until then signing fails with EXP003 password_reset_required). Needs the
    /// admin role in the signer's organization and every study the signer holds, as revoking their API key does.
    /// Nobody resets their own credential, nor that of whoever created the key they use (EXP003 self_reset):
    /// another administrator must. Nobody can set another's password.
    Reset(ResetArgs),
    /// Print the engine's public signing key (PEM) for `verify --public-key`: give it to verifiers out of band.
    PublicKey(PublicKeyArgs),
}

/// `signing reset SUBJECT`
#[derive(Debug, Args)]
pub struct ResetArgs {
    /// The signer's subject id (`apikey:<key id>` for an API key, the token's `sub` for a JWT).
    pub subject: String,
}

/// `signing public-key [-o FILE]`
#[derive(Debug, Args)]
pub struct PublicKeyArgs {
    /// Write the key to FILE instead of standard output.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}
