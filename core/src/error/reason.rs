//! The catalogue of error reasons: every `details.reason` trialport gives, with the codes it comes with and what
//! it means. `docs/errors.md` is rendered from it ([`Reason::catalogue_markdown`]) and checked against it by a test.
//!
//! A reason is stable: programs match on it (with the EXP code), and it never changes meaning. A new failure
//! either fits an existing reason or gets a new entry here, with its description; an [`Error`](super::Error) can
//! only be made from a [`Reason`].

use super::ErrorCode;

/// Declares the reasons: each variant's doc is its description, its string the `details.reason` value, and the
/// bracketed list the error codes it is used with.
macro_rules! reasons {
    ($( $(#[doc = $doc:literal])+ $variant:ident = $name:literal [$($code:ident),+], )+) => {
        /// A stable `details.reason` of an [`Error`](super::Error): the catalogue (see the module documentation).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[non_exhaustive]
        pub enum Reason {
            $( $(#[doc = $doc])+ $variant, )+
        }

        impl Reason {
            /// Every reason, in alphabetical order of its name.
            pub const ALL: &'static [Reason] = &[$(Reason::$variant),+];

            /// The snake_case name, as it appears in `details.reason`.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Reason::$variant => $name,)+
                }
            }

            /// The error codes the reason is used with (most reasons have one).
            pub fn codes(self) -> &'static [ErrorCode] {
                match self {
                    $(Reason::$variant => &[$(ErrorCode::$code),+],)+
                }
            }

            /// What the reason means (its documentation).
            pub fn description(self) -> &'static str {
                match self {
                    $(Reason::$variant => concat!($($doc, "\n"),+),)+
                }
            }
        }
    };
}

reasons! {
    /// The token's algorithm is not allowed.
    AlgNotAllowed = "alg_not_allowed" [Unauthorized],
    /// The directory is already a trialport home, or the organization already has API keys (`init` runs once).
    AlreadyInitialized = "already_initialized" [Conflict],
    /// A dataset has more than one file in the source directory: keep one.
    AmbiguousDataset = "ambiguous_dataset" [Validation],
    /// An artifact or output file of that name exists already: nothing is overwritten.
    ArtifactExists = "artifact_exists" [Conflict],
    /// The job has several artifacts: name the one to download.
    ArtifactRequired = "artifact_required" [Validation],
    /// The artifact storage cannot be reached (`/readyz` answers 503).
    ArtifactsUnreachable = "artifacts_unreachable" [Server],
    /// The audit trail could not record the operation (or the end of a job), so the change was not made.
    AuditFailed = "audit_failed" [Server],
    /// An audit hook of the embedding program (a C callback, a Python function) refused the event or failed.
    AuditHookFailed = "audit_hook_failed" [Server],
    /// The Python interpreter cannot run audit hooks now.
    AuditHookUnavailable = "audit_hook_unavailable" [Server],
    /// An earlier write to the audit log failed: open the log again.
    AuditPoisoned = "audit_poisoned" [Server],
    /// The audit event is larger than the audit trail accepts.
    AuditRecordTooLarge = "audit_record_too_large" [Validation],
    /// The audit log could not be written durably: the change was not made.
    AuditWriteFailed = "audit_write_failed" [Server],
    /// The request body is larger than the service accepts.
    BodyTooLarge = "body_too_large" [Validation],
    /// A readiness check could not run to its end (`/readyz` answers 503).
    CheckFailed = "check_failed" [Server],
    /// The engine, or the output file, was closed before this call.
    Closed = "closed" [Server],
    /// A column is both in the drop and in the keep list.
    ConflictingColumns = "conflicting_columns" [Validation],
    /// Safe Harbor and pseudonymization cannot be combined.
    ConflictingProfiles = "conflicting_profiles" [Validation],
    /// A stored job cannot be read back (its request, or its sealed filter values, do not match).
    CorruptJob = "corrupt_job" [Server],
    /// A stored record (a signing credential, a key, a job) cannot be read.
    CorruptRecord = "corrupt_record" [Server],
    /// The credential is longer than 8 KiB and its scheme.
    CredentialTooLarge = "credential_too_large" [Unauthorized],
    /// An AES-256-GCM operation failed (setting up a key, or encrypting).
    CryptoError = "crypto_error" [Server],
    /// Changing the signing password needs the current one.
    CurrentPasswordRequired = "current_password_required" [Unauthorized],
    /// An XPT date or time is outside what Arrow holds (read with option `xpt_dates=number` to keep the numbers).
    DateOutOfRange = "date_out_of_range" [Validation],
    /// A dataset has dates to shift but no subject id column to key the shift on.
    DateShiftNeedsSubjectId = "date_shift_needs_subject_id" [Validation],
    /// The Define-XML document does not match the files it describes (`details.findings`).
    DefineMismatch = "define_mismatch" [Validation],
    /// De-identification of a value failed inside the engine (a transform could not be applied).
    DeidError = "deid_error" [Server],
    /// The demo directory is not empty: remove it or choose another with --out DIR.
    DirectoryNotEmpty = "directory_not_empty" [Conflict],
    /// A column name is given twice (in a header, a list of columns, or a summary table's groups and measures).
    DuplicateColumn = "duplicate_column" [Validation],
    /// A dataset is named twice.
    DuplicateDataset = "duplicate_dataset" [Validation],
    /// A format id is registered twice.
    DuplicateFormat = "duplicate_format" [Conflict],
    /// A job with this id exists.
    DuplicateId = "duplicate_id" [Conflict],
    /// A token segment holds the same member name twice.
    DuplicateJsonKey = "duplicate_json_key" [Unauthorized],
    /// Two JWT keys have the same key id.
    DuplicateKid = "duplicate_kid" [Validation],
    /// An eCTD package needs the `define-xml` format, which this engine lacks or which cannot describe the
    /// datasets.
    EctdRequiresDefine = "ectd_requires_define" [Validation],
    /// An eCTD package holds SAS XPORT version 5 files: use format 'xpt' without version 8.
    EctdRequiresXptV5 = "ectd_requires_xpt_v5" [Validation],
    /// The request's literals cannot be encoded.
    EncodeFailed = "encode_failed" [Server],
    /// This engine does not encrypt artifacts at rest.
    EncryptionDisabled = "encryption_disabled" [Validation],
    /// The job's artifacts passed their retention time and were deleted; its manifest.json is kept.
    Expired = "expired" [Conflict],
    /// The files violate the FDA's SAS XPORT rules (`details` lists the violations).
    FdaCheckFailed = "fda_check_failed" [Validation],
    /// A field of a text input is larger than its read option allows (`details.limit` names the option;
    /// `details.max_bytes`, `details.line`).
    FieldTooLarge = "field_too_large" [Validation],
    /// An embedded font cannot be read.
    FontUnavailable = "font_unavailable" [Server],
    /// Another process is initializing or using this directory.
    HomeInUse = "home_in_use" [Conflict],
    /// An audit hook of the embedding program refused the event.
    HookRefused = "hook_refused" [Server],
    /// The idempotency key was used for a different request.
    IdempotencyConflict = "idempotency_conflict" [Conflict],
    /// The export would carry identifying columns the privacy policy does not cover (EXP002: name a
    /// de-identification profile, drop the columns, or ask for identifiable data), or the caller lacks the
    /// permission to receive identifiable data (EXP003).
    IdentifiableData = "identifiable_data" [Unauthorized, Validation],
    /// A job cannot move from its state to the one asked (e.g. cancelling a finished job).
    IllegalTransition = "illegal_transition" [Conflict],
    /// A column's Arrow type cannot be written as the Dataset-JSON `dataType` its metadata gives.
    IncompatibleDataType = "incompatible_data_type" [Validation],
    /// The directory holds a trialport database or audit log but no config.json, and is not what an interrupted
    /// init leaves: restore its config.json, or initialize another directory.
    IncompleteHome = "incomplete_home" [Conflict],
    /// The JWT key file may be read or written by others than its owner.
    InsecureKeyFile = "insecure_key_file" [Validation],
    /// Plain HTTP is served only on a loopback address: give --tls-cert and --tls-key, or --insecure-listen.
    InsecureListen = "insecure_listen" [Validation],
    /// Stored data failed its integrity check: an altered audit trail, record, sealed value, key file or artifact
    /// (`details.check` says which).
    IntegrityViolation = "integrity_violation" [Server],
    /// An internal step failed that should not (a thread, a serialization, a built-in resource): a defect to
    /// report.
    Internal = "internal" [Server],
    /// An address is IP:PORT, e.g. 127.0.0.1:8080.
    InvalidAddress = "invalid_address" [Validation],
    /// A Dataset-JSON attribute has the wrong type or value (`field` names the attribute).
    InvalidAttribute = "invalid_attribute" [Validation],
    /// The token is not meant for this audience, or the configured audience is not valid.
    InvalidAudience = "invalid_audience" [Unauthorized, Validation],
    /// A token segment is not base64url.
    InvalidBase64 = "invalid_base64" [Unauthorized],
    /// The file or text is not an audit checkpoint.
    InvalidCheckpoint = "invalid_checkpoint" [Validation],
    /// A claim of the token is not valid (e.g. an authentication time in the future).
    InvalidClaim = "invalid_claim" [Unauthorized],
    /// A claim of the token has the wrong JSON type.
    InvalidClaimType = "invalid_claim_type" [Unauthorized],
    /// A column name in a de-identification list is empty, too long or has control characters.
    InvalidColumn = "invalid_column" [Validation],
    /// The home configuration cannot be read.
    InvalidConfig = "invalid_config" [Validation],
    /// Container is 'zip' or 'directory'.
    InvalidContainer = "invalid_container" [Validation],
    /// The credential is not valid: not `ApiKey <key>` or `Bearer <token>`, or an API key of the wrong shape.
    InvalidCredential = "invalid_credential" [Unauthorized],
    /// A value cannot be displayed or written in the output format.
    InvalidData = "invalid_data" [Validation],
    /// The define is not well-formed XML (line …).
    InvalidDefine = "invalid_define" [Validation],
    /// The XPT file holds text that is not valid UTF-8.
    InvalidEncoding = "invalid_encoding" [Validation],
    /// A key's expiry time must be in the future.
    InvalidExpiry = "invalid_expiry" [Validation],
    /// A filter is not valid: `COLUMN:OP:VALUE` with a known operator and a value of the column's type.
    InvalidFilter = "invalid_filter" [Validation],
    /// An idempotency key has 1 to 200 printable characters.
    InvalidIdempotencyKey = "invalid_idempotency_key" [Validation],
    /// The token's issuer is not accepted, or the configured issuer is not valid.
    InvalidIssuer = "invalid_issuer" [Unauthorized, Validation],
    /// The job settings are out of bounds: a lease of 1 to 86,400 seconds, 1 to 100 attempts.
    InvalidJobSettings = "invalid_job_settings" [Validation],
    /// A key is malformed: a JWT key in the configuration (EXP002), or a key file of the home (the
    /// de-identification key, the signing key; EXP005).
    InvalidKey = "invalid_key" [Validation, Server],
    /// A key file cannot be found or read, or is malformed (a JWT key, a key-encryption key, a pending rotation).
    InvalidKeyFile = "invalid_key_file" [Server, Validation],
    /// The key provider's key id is not 1 to 64 characters of A-Z a-z 0-9 . _ -.
    InvalidKeyId = "invalid_key_id" [Server],
    /// A key id cannot be given for a JWK Set: each key carries its own.
    InvalidKid = "invalid_kid" [Validation],
    /// An export is data, bulk, report or dashboard.
    InvalidKind = "invalid_kind" [Validation],
    /// A lease lasts at least one second.
    InvalidLease = "invalid_lease" [Validation],
    /// The JWT leeway is at most 300 seconds.
    InvalidLeeway = "invalid_leeway" [Validation],
    /// A page of finished jobs holds 1 to 1000 jobs.
    InvalidLimit = "invalid_limit" [Validation],
    /// Manifest.json cannot be read.
    InvalidManifest = "invalid_manifest" [Validation],
    /// A job needs at least one attempt.
    InvalidMaxAttempts = "invalid_max_attempts" [Validation],
    /// The longest JWT lifetime is at least one second.
    InvalidMaxLifetime = "invalid_max_lifetime" [Validation],
    /// A signature's meaning is review, approval, responsibility or authorship.
    InvalidMeaning = "invalid_meaning" [Validation],
    /// Dataset metadata is not valid (malformed, too large, or unable to make the document asked for).
    InvalidMetadata = "invalid_metadata" [Validation],
    /// A name is empty, too long or has characters it may not (`field` says which name).
    InvalidName = "invalid_name" [Validation],
    /// A format, read or command option has a value it does not accept (`field` names the option).
    InvalidOption = "invalid_option" [Validation],
    /// The package is neither `zip` nor `ectd`, or the file to verify is neither a zip file nor a directory.
    InvalidPackage = "invalid_package" [Validation],
    /// An XPT member has padding where data belongs (NUL bytes, or blank records inside its data).
    InvalidPadding = "invalid_padding" [Validation],
    /// An artifact or output path is not valid (empty, too long, or naming no file).
    InvalidPath = "invalid_path" [Validation],
    /// The permission matrix is invalid: ….
    InvalidPermissionMatrix = "invalid_permission_matrix" [Validation],
    /// The public key is neither an Ed25519 PEM public key nor the base64 of 32 bytes.
    InvalidPublicKey = "invalid_public_key" [Validation],
    /// A rate limit is not valid: N requests per SECONDS, both positive whole numbers.
    InvalidRateLimit = "invalid_rate_limit" [Validation],
    /// The request is not valid: a missing or unknown field, or a body that cannot be read (`field` says which).
    InvalidRequest = "invalid_request" [Validation],
    /// A retention setting is not valid: KIND=DAYS with a known kind and a positive number of days.
    InvalidRetention = "invalid_retention" [Validation],
    /// A role name is not one trialport knows.
    InvalidRole = "invalid_role" [Validation],
    /// The home secret is malformed.
    InvalidSecret = "invalid_secret" [Server],
    /// The segment size must be between 16 bytes and 16 MiB.
    InvalidSegmentSize = "invalid_segment_size" [Validation],
    /// The token's signature does not verify.
    InvalidSignature = "invalid_signature" [Unauthorized],
    /// The signing settings are out of bounds (PBKDF2 iterations, attempts before lock).
    InvalidSigningSettings = "invalid_signing_settings" [Validation],
    /// The source directory does not exist or is not a directory.
    InvalidSource = "invalid_source" [Validation],
    /// The report or dashboard spec is not valid.
    InvalidSpec = "invalid_spec" [Validation],
    /// Status must be one of queued, running, succeeded, failed, cancelled, expired.
    InvalidStatus = "invalid_status" [Validation],
    /// An Arrow C stream handed to the C library is not usable (released, or its schema or batches cannot be read).
    InvalidStream = "invalid_stream" [Validation],
    /// The retention sweep interval must be positive.
    InvalidSweepInterval = "invalid_sweep_interval" [Validation],
    /// A Dataset-JSON column has a `targetDataType` that is not allowed with its `dataType`.
    InvalidTargetDataType = "invalid_target_data_type" [Validation],
    /// A value is not UTF-8.
    InvalidText = "invalid_text" [Server],
    /// A time (e.g. a key's `expires_at`) is not an RFC 3339 date-time.
    InvalidTime = "invalid_time" [Validation],
    /// The TLS certificate or key file given to `serve` cannot be read or does not match (`field`: `tls_cert` or
    /// `tls_key`).
    InvalidTls = "invalid_tls" [Validation],
    /// A string argument or a file is not valid UTF-8.
    InvalidUtf8 = "invalid_utf8" [Validation],
    /// The key provider's wrapped key is not 1 to 1,024 bytes.
    InvalidWrappedKey = "invalid_wrapped_key" [Server],
    /// A value holds a control character that XML 1.0 cannot carry.
    InvalidXmlCharacter = "invalid_xml_character" [Validation],
    /// The file is not a valid SAS XPORT transport file (headers or records malformed).
    InvalidXpt = "invalid_xpt" [Validation],
    /// The built-in restricted ZIP list is malformed.
    InvalidZip3List = "invalid_zip3_list" [Server, Validation],
    /// An input or output operation failed (the OS error kind is kept, never the path).
    IoError = "io_error" [Server],
    /// The job was cancelled before it finished.
    JobCancelled = "job_cancelled" [Conflict],
    /// The job failed.
    JobFailed = "job_failed" [Server],
    /// Only a succeeded job has artifacts to download.
    JobNotSucceeded = "job_not_succeeded" [Conflict],
    /// The key cannot verify tokens of the algorithm given or configured.
    KeyAlgMismatch = "key_alg_mismatch" [Unauthorized, Validation],
    /// A key (an API key id, a key file) exists already: nothing is overwritten.
    KeyExists = "key_exists" [Conflict],
    /// The API key has expired.
    KeyExpired = "key_expired" [Unauthorized],
    /// The token names its own key (jku, x5u, jwk, x5c): keys come only from configuration.
    KeyReferenceNotAllowed = "key_reference_not_allowed" [Unauthorized],
    /// The API key was revoked.
    KeyRevoked = "key_revoked" [Unauthorized],
    /// A key the operation needs is not there (a key-encryption key, the de-identification key, a free key number).
    KeyUnavailable = "key_unavailable" [Server],
    /// The worker's lease on the job was lost: another attempt owns it now.
    LeaseLost = "lease_lost" [Conflict],
    /// Cannot listen on the address.
    ListenFailed = "listen_failed" [Server],
    /// The file is empty: a header row is required.
    MalformedCsv = "malformed_csv" [Validation],
    /// The Dataset-JSON text is not valid JSON: ….
    MalformedDatasetJson = "malformed_dataset_json" [Validation],
    /// The compressed Dataset-JSON stream is corrupt or truncated.
    MalformedDsjc = "malformed_dsjc" [Validation],
    /// The token's JOSE header is not valid (e.g. its `alg` is not a string).
    MalformedHeader = "malformed_header" [Unauthorized],
    /// The file is not valid Arrow IPC.
    MalformedIpc = "malformed_ipc" [Validation],
    /// A JSON or NDJSON input is not valid JSON.
    MalformedJson = "malformed_json" [Validation],
    /// The file is not valid Parquet.
    MalformedParquet = "malformed_parquet" [Validation],
    /// The token's payload is not a JSON object.
    MalformedPayload = "malformed_payload" [Unauthorized],
    /// A token has three base64url segments separated by '.'.
    MalformedToken = "malformed_token" [Unauthorized],
    /// Max_file_bytes does not leave room for one row of the dataset.
    MaxFileBytesTooSmall = "max_file_bytes_too_small" [Validation],
    /// This method is not allowed on this path: see the Allow header.
    MethodNotAllowed = "method_not_allowed" [Validation],
    /// The metrics listener could not be set up.
    MetricsFailed = "metrics_failed" [Server],
    /// The JWT key needs an algorithm: give 'alg' in the configuration or in the JWK.
    MissingAlg = "missing_alg" [Validation],
    /// A required Dataset-JSON attribute is missing.
    MissingAttribute = "missing_attribute" [Validation],
    /// The token lacks a required claim.
    MissingClaim = "missing_claim" [Unauthorized],
    /// A column the operation needs is missing or not given (`field` or the option to give it says which).
    MissingColumn = "missing_column" [Validation],
    /// No credential was given: `ApiKey <key>` or `Bearer <token>` is required.
    MissingCredential = "missing_credential" [Unauthorized],
    /// The dataset has no name: give it in the metadata or as an option.
    MissingDatasetName = "missing_dataset_name" [Validation],
    /// No dataset was named (an export, or a Define-XML document, needs at least one).
    MissingDatasets = "missing_datasets" [Validation],
    /// A summary table groups by at least one column.
    MissingGroupBy = "missing_group_by" [Validation],
    /// No home directory: give --home DIR or set TRIALPORT_HOME.
    MissingHome = "missing_home" [Validation],
    /// JWT settings were given without a key (`--jwt-hs256-secret-file` or `--jwt-public-key-file`).
    MissingJwtKeys = "missing_jwt_keys" [Validation],
    /// A key column is empty in a row.
    MissingKey = "missing_key" [Validation],
    /// A summary table has at least one measure.
    MissingMeasures = "missing_measures" [Validation],
    /// A value the output needs is neither in the data nor given as an option (e.g. the study id from STUDYID).
    MissingOption = "missing_option" [Validation],
    /// A key needs an organization.
    MissingOrg = "missing_org" [Validation],
    /// A key needs at least one role.
    MissingRoles = "missing_roles" [Validation],
    /// A key needs at least one study, or '*'.
    MissingStudies = "missing_studies" [Validation],
    /// A title is required.
    MissingTitle = "missing_title" [Validation],
    /// Rows of more than one study in one ODM ClinicalData (give `study_oid=` to keep STUDYID as an item).
    MixedStudy = "mixed_study" [Validation],
    /// De-identification would leave no column of a dataset.
    NoColumnsLeft = "no_columns_left" [Validation],
    /// No initial API key is held: the home existed already, or the key was taken (C library).
    NoInitialKey = "no_initial_key" [NotFound],
    /// The demo output path exists and is not a directory.
    NotADirectory = "not_a_directory" [Validation],
    /// The directory is not a trialport home: run 'trialport --home DIR init' first.
    NotAHome = "not_a_home" [NotFound],
    /// The … is not a regular file but …: only regular files are read or replaced.
    NotARegularFile = "not_a_regular_file" [Validation],
    /// The resource (job, dataset, study, format, artifact) does not exist, or is not visible to the caller.
    NotFound = "not_found" [NotFound],
    /// ODM needs the rows of each subject, event and form together: sort by subject, event and form.
    NotGrouped = "not_grouped" [Validation],
    /// A measure needs a numeric column.
    NotNumeric = "not_numeric" [Validation],
    /// A required argument of a C function is NULL.
    NullArgument = "null_argument" [Validation],
    /// A number is outside its allowed range (`field` names it; `details` give the bounds).
    OutOfRange = "out_of_range" [Validation],
    /// A file exists at the output path.
    OutputExists = "output_exists" [Conflict],
    /// The output path is a directory.
    OutputIsDirectory = "output_is_directory" [Validation],
    /// The checks of a bulk package failed in more than one way: nothing was written (`details` lists the
    /// violations).
    PackageCheckFailed = "package_check_failed" [Validation],
    /// Writing or reading a zip package failed (or its container changed while it was checked).
    PackageError = "package_error" [Server],
    /// An internal error was caught in the trialport library.
    Panic = "panic" [Server],
    /// The two passwords differ.
    PasswordMismatch = "password_mismatch" [Validation],
    /// An administrator reset this signer's credential: the signer must set a new password before signing.
    PasswordResetRequired = "password_reset_required" [Unauthorized],
    /// The PDF writer failed (its configuration, page size or an embedded font).
    PdfFailed = "pdf_failed" [Server],
    /// The PDF would violate PDF/A, so it was not written.
    PdfaViolation = "pdfa_violation" [Server],
    /// The caller is authenticated but not permitted: no role grants the permission, or not in this organization or
    /// study (`details.permission`, `details.scope`).
    PermissionDenied = "permission_denied" [Unauthorized],
    /// A private key was given: trialport only verifies tokens and needs the public key.
    PrivateKeyInConfig = "private_key_in_config" [Validation],
    /// The range starts past the end of the artifact.
    RangeNotSatisfiable = "range_not_satisfiable" [Validation],
    /// Too many calls by this credential in the current window: retry after `details.retry_after_ms`.
    RateLimited = "rate_limited" [RateLimited],
    /// A record (line) of a text input is larger than its read option allows (`details.limit` names the option;
    /// `details.max_bytes`, `details.line`).
    RecordTooLarge = "record_too_large" [Validation],
    /// The number of rows differs from the count the file or the option declares.
    RecordsMismatch = "records_mismatch" [Validation],
    /// The system random generator failed.
    RngFailed = "rng_failed" [Server],
    /// Another rotation of the key-encryption key is in progress.
    RotationInProgress = "rotation_in_progress" [Conflict],
    /// This key provider's keys are rotated where they are managed.
    RotationUnsupported = "rotation_unsupported" [Validation],
    /// The rows written differ from the rows the source yielded.
    RowCountMismatch = "row_count_mismatch" [Server],
    /// A Dataset-JSON row does not have one cell for each column.
    RowLength = "row_length" [Validation],
    /// A batch of rows does not fit the dataset's schema (its columns or their types changed), or an encoder's.
    SchemaMismatch = "schema_mismatch" [Server, Validation],
    /// Nobody resets their own signing credential, nor that of whoever created the key they use: another
    /// administrator must.
    SelfReset = "self_reset" [Unauthorized],
    /// The audit event does not follow the last stored one.
    SequenceConflict = "sequence_conflict" [Conflict],
    /// The service is shutting down and takes no new work (`/readyz` answers 503).
    ShuttingDown = "shutting_down" [Server],
    /// The signature's password is wrong.
    SignatureInvalid = "signature_invalid" [Unauthorized],
    /// The operation needs an electronic signature (a meaning and the signer's password) and none was given.
    SignatureRequired = "signature_required" [Unauthorized],
    /// The signer's signing credential changed while the request was checked: try again.
    SignerChanged = "signer_changed" [Conflict],
    /// Signing is locked for this signer after too many failed attempts: an administrator must reset it.
    SigningLocked = "signing_locked" [Unauthorized],
    /// The signer has no signing password: set one first ('trialport signing set-password').
    SigningNotEnrolled = "signing_not_enrolled" [Unauthorized],
    /// The artifact writer was closed, or an earlier write to it failed.
    SinkClosed = "sink_closed" [Server],
    /// The data source failed to deliver a dataset.
    SourceFailed = "source_failed" [Server],
    /// The store failed (a database error, an unusable database, or one written by a newer trialport).
    StoreError = "store_error" [Server],
    /// The store cannot be read (`/readyz` answers 503; the job gauges are left out of the metrics).
    StoreUnreachable = "store_unreachable" [Server],
    /// The study is already bound to an organization.
    StudyExists = "study_exists" [Conflict],
    /// The request names another study than its spec.
    StudyMismatch = "study_mismatch" [Validation],
    /// A table's columns do not fit across the page: show fewer columns, or use `orientation=landscape`.
    TableTooWide = "table_too_wide" [Validation],
    /// The token has expired.
    TokenExpired = "token_expired" [Unauthorized],
    /// The token was issued in the future.
    TokenIssuedInFuture = "token_issued_in_future" [Unauthorized],
    /// The token is valid for longer than this engine accepts.
    TokenLifetimeTooLong = "token_lifetime_too_long" [Unauthorized],
    /// The token is not valid yet.
    TokenNotYetValid = "token_not_yet_valid" [Unauthorized],
    /// The token is longer than 8 KiB.
    TokenTooLarge = "token_too_large" [Unauthorized],
    /// The output holds more columns than it can (an Excel sheet, a table).
    TooManyColumns = "too_many_columns" [Validation],
    /// A summary table has more groups than it may show.
    TooManyGroups = "too_many_groups" [Validation],
    /// A table has more rows than an Excel sheet holds.
    TooManyRows = "too_many_rows" [Validation],
    /// The file ends before its structure says it should (`details.offset` gives the byte).
    TruncatedFile = "truncated_file" [Validation],
    /// A value does not convert to the column's type.
    TypeMismatch = "type_mismatch" [Validation],
    /// A Dataset-JSON attribute is not one of version 1.1 (at its place in the file).
    UnknownAttribute = "unknown_attribute" [Validation],
    /// A column named in the request, spec or metadata is not in the dataset.
    UnknownColumn = "unknown_column" [Validation],
    /// A Dataset-JSON column has a `dataType` the standard does not define.
    UnknownDataType = "unknown_data_type" [Validation],
    /// No format has this id.
    UnknownFormat = "unknown_format" [Validation],
    /// The API key is not known (EXP003), or no key-encryption key has the artifact's key id (EXP005).
    UnknownKey = "unknown_key" [Server, Unauthorized],
    /// The token's key id names no configured key.
    UnknownKid = "unknown_kid" [Unauthorized],
    /// A format or read option is not one the format knows.
    UnknownOption = "unknown_option" [Validation],
    /// The format writes other kinds of output than the one asked for (e.g. reports, not datasets).
    UnknownOutputFormat = "unknown_output_format" [Validation],
    /// Unknown de-identification profile.
    UnknownProfile = "unknown_profile" [Validation],
    /// The token names a role trialport does not know.
    UnknownRole = "unknown_role" [Unauthorized],
    /// A value cannot be represented in the output format (NaN in JSON, a date out of range, a text too long for a
    /// cell).
    UnrepresentableValue = "unrepresentable_value" [Validation],
    /// A package entry would be written outside its folder, or under an unsafe name (`details.path`).
    UnsafePackage = "unsafe_package" [Validation],
    /// The operation is not supported by this configuration (e.g. a signature verifier that takes no passwords).
    Unsupported = "unsupported" [Validation],
    /// --jwt-alg is one of RS256, PS256, ES256 or EdDSA.
    UnsupportedAlg = "unsupported_alg" [Validation],
    /// The format cannot be used for this kind of export or this option.
    UnsupportedByFormat = "unsupported_by_format" [Validation],
    /// The setting applies to other kinds of export (e.g. de-identification profiles to data and bulk exports).
    UnsupportedByKind = "unsupported_by_kind" [Validation],
    /// A column classed for de-identification has a type that cannot be de-identified.
    UnsupportedColumnType = "unsupported_column_type" [Validation],
    /// A zip package is a zip: the directory container is for eCTD packages.
    UnsupportedContainer = "unsupported_container" [Validation],
    /// Bearer tokens are not accepted: no JWT key is configured.
    UnsupportedCredential = "unsupported_credential" [Unauthorized],
    /// The token has critical header extensions trialport does not understand.
    UnsupportedCrit = "unsupported_crit" [Unauthorized],
    /// The format cannot be read, or this build lacks it.
    UnsupportedFormat = "unsupported_format" [Validation],
    /// The request body must be JSON (Content-Type: application/json).
    UnsupportedMediaType = "unsupported_media_type" [Validation],
    /// A column's type cannot be displayed or written by the output format.
    UnsupportedType = "unsupported_type" [Validation],
    /// Only Dataset-JSON 1.1 is read (datasetJSONVersion 1.1 or 1.1.n).
    UnsupportedVersion = "unsupported_version" [Validation],
    /// The command line is not valid (unknown command or flag, missing value).
    Usage = "usage" [Validation],
    /// A value is too long.
    ValueTooLong = "value_too_long" [Validation],
    /// The job was changed by someone else; reload it and retry.
    VersionConflict = "version_conflict" [Conflict],
    /// An HMAC secret is shorter than its algorithm needs.
    WeakHmacSecret = "weak_hmac_secret" [Validation],
    /// The signing password is too weak (`details.rule` says which rule: length, common password, or contains the
    /// id or name).
    WeakPassword = "weak_password" [Validation],
    /// The API key pepper needs at least 32 bytes.
    WeakPepper = "weak_pepper" [Validation],
    /// The row key needs at least 32 bytes.
    WeakRowKey = "weak_row_key" [Validation],
    /// The job's worker stopped renewing its lease in its last attempt.
    WorkerLost = "worker_lost" [Server],
    /// Writing the output failed inside its encoder (e.g. Parquet).
    WriteFailed = "write_failed" [Server],
    /// A request of one kind was submitted as another.
    WrongKind = "wrong_kind" [Validation],
    /// The XLSX writer failed.
    XlsxError = "xlsx_error" [Server],
}

impl Reason {
    /// The reason named `name` (`None` for a name not in the catalogue).
    pub fn parse(name: &str) -> Option<Reason> {
        Reason::ALL.iter().copied().find(|r| r.as_str() == name)
    }

    /// The catalogue as the Markdown table of `docs/errors.md`: reason, EXP codes, HTTP statuses, description.
    pub fn catalogue_markdown() -> String {
        let mut out =
            String::from("| reason | code | HTTP status | meaning |\n|---|---|---|---|\n");
        for r in Reason::ALL {
            let codes: Vec<&str> = r.codes().iter().map(|c| c.as_str()).collect();
            let statuses: Vec<String> = r
                .codes()
                .iter()
                .map(|c| status_of(*r, *c).to_string())
                .collect();
            let text: Vec<&str> = r.description().lines().map(str::trim).collect();
            out.push_str(&format!(
                "| `{}` | {} | {} | {} |\n",
                r.as_str(),
                codes.join(", "),
                statuses.join(", "),
                text.join(" ").replace('|', "\\|")
            ));
        }
        out
    }
}

/// The HTTP status of an error of `code` with `reason` (403 for a denied permission, else the code's).
pub(super) fn status_of(reason: Reason, code: ErrorCode) -> u16 {
    if code == ErrorCode::Unauthorized && reason == Reason::PermissionDenied {
        403
    } else {
        code.http_status()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_sorted_snake_case_and_parse_back() {
        let names: Vec<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(
            names, sorted,
            "the catalogue is sorted by name, without duplicates"
        );
        for r in Reason::ALL {
            let name = r.as_str();
            assert!(
                name.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{name}"
            );
            assert_eq!(Reason::parse(name), Some(*r));
            assert!(
                !r.description().trim().is_empty(),
                "{name} has no description"
            );
        }
        assert_eq!(Reason::parse("no_such_reason"), None);
    }
}
