//! De-identification: profiles applied to every batch while an export streams, declared per request and recorded
//! in the manifest and the audit trail.
//!
//! A request names a policy in its `deidentify` member, as an object or as a comma list (what the CLI's
//! `--deidentify` takes):
//!
//! ```json
//! {"deidentify": {"profiles": ["safe-harbor", "date-shift"], "drop": ["SITEID"], "keep": []}}
//! {"deidentify": "pseudonymize,date-shift,drop-free-text"}
//! ```
//!
//! What happens to a column depends on its privacy class, the `privacy` key of the dataset metadata
//! ([`crate::meta::PrivacyClass`]: `direct_identifier`, `subject_id`, `date`, `age`, `zip`, `free_text`, `none`):
//!
//! | class | `safe-harbor` | `pseudonymize` | `date-shift` | `drop-free-text` |
//! |---|---|---|---|---|
//! | `direct_identifier` | dropped | - | - | - |
//! | `subject_id` | random surrogate code | HMAC-SHA256 pseudonym | (the key of the shift) | - |
//! | `date` | year only | - | shifted by the subject's offset | - |
//! | `age` | `90+` from 90 on, as text | - | - | - |
//! | `zip` | first 3 digits, `000` if restricted | - | - | - |
//! | `free_text` | dropped | - | - | dropped |
//! | `none` | kept | kept | kept | kept |
//!
//! - **`safe-harbor`** (45 CFR 164.514(b)(2)): direct identifiers and free text are dropped; subject ids become
//!   codes `SH` + 10 digits drawn at random, consistent within the export (one [`Deidentifier`] per job, shared
//!   by its datasets) and not derived from the identifier, as 164.514(c) requires of a re-identification code;
//!   the subject → code table lives in memory for the job only and is never stored. Dates keep the year only
//!   (Arrow dates and timestamps and SAS numeric dates become an `Int32` year; ISO 8601 text such as SDTM `--DTC`
//!   becomes the text `YYYY`; text that is not an ISO 8601 date becomes null). A birth date (a column named
//!   `BRTHDTC`, `BRTHDT`, `BRTHDTM`, `BIRTHDT`, `BIRTHDTC`, `BIRTHDATE` or `DOB`, or labelled with "birth")
//!   whose year implies an age of 90 or more at the export's date (export year minus birth year at least 90) is
//!   suppressed (null). Ages become text: `90+` for 90 and over, the number otherwise (ages are taken to be in
//!   years). ZIP codes (`12345`, `12345-6789`, `123456789` or a number) become their first three digits, or
//!   `000` for a prefix of the restricted list ([`Zip3List`], versioned data); anything else is null.
//! - **`pseudonymize`** (GDPR Art. 4(5)): subject ids become `PS` + 32 hexadecimal digits, the first 128 bits of
//!   `HMAC-SHA256(k_pseudonym, len(study) ‖ study ‖ len(id) ‖ id)` (lengths as 4-byte big-endian integers), under
//!   the home's key ([`DeidKey`]): the same subject of the same study gets the same pseudonym in every export
//!   with that key, and nothing links it to the subject without the key.
//! - **`date-shift`**: every date of a subject moves by the subject's offset, 1 to 365 days earlier or later
//!   (never 0), from `HMAC-SHA256(k_date_shift, len(study) ‖ study ‖ len(id) ‖ id)`: the first 8 bytes as a
//!   big-endian integer `u`, `i = u mod 730`, offset `-(i + 1)` for `i < 365`, else `i - 364`. The subject is the
//!   dataset's `USUBJID` column when it is classed `subject_id`, else its first `subject_id` column; a dataset
//!   with dates to shift and no subject id column is refused. Text dates need a full `YYYY-MM-DD` (a time after
//!   `T` is kept as it is); partial or other text dates, and dates of rows without a subject id, become null. The
//!   offset never appears in the output.
//! - **`drop-free-text`**: free-text columns are dropped.
//! - **`drop`** lists columns to leave out; **`keep`**, when not empty, lists the only columns to write. Both
//!   match names without regard to ASCII case, apply to every dataset of the request, and must each name a column
//!   of at least one of them. `keep` never exempts a column from a profile.
//!
//! Profiles combine. `safe-harbor` with `date-shift` shifts dates, then keeps the year. `safe-harbor` with
//! `pseudonymize` is refused (EXP002 `conflicting_profiles`): a keyed hash of the identifier is derived from it,
//! so it is not a code Safe Harbor permits.
//!
//! **Identifiable exports.** A column whose class is not `none` and that leaves the export unchanged (no profile
//! transforms or drops it) carries identifying data. [`PrivacyCheck`] is the one rule every kind of export
//! (data, bulk, report, dashboard) goes through, for every use of a column (written, filtered on, sorted by,
//! grouped by, aggregated): a caller without the permission `data:identifiable` is refused with EXP003
//! `identifiable_data` naming the column; a caller with it must say `"identifiable": true` (EXP002
//! `identifiable_data` otherwise, naming each column in `details.columns`), which needs an e-signature. Filtering
//! or sorting by a classed column needs `data:identifiable` whatever the profile. The flag is recorded in the
//! manifest, and the job records that it is identifiable.
//!
//! Which HIPAA Safe Harbor identifier (164.514(b)(2)(i), items A to R) goes in which class:
//!
//! | identifier | class | under `safe-harbor` |
//! |---|---|---|
//! | (A) names | `direct_identifier` | dropped |
//! | (B) geographic subdivisions smaller than a state: street, city, county, precinct | `direct_identifier` | dropped |
//! | (B) ZIP codes | `zip` | first 3 digits, `000` if restricted |
//! | (C) dates related to the individual (birth, admission, discharge, death) | `date` | year; a birth year implying 90+ suppressed |
//! | (C) ages | `age` | `90+` from 90 on |
//! | (D) telephone numbers | `direct_identifier` | dropped |
//! | (E) fax numbers | `direct_identifier` | dropped |
//! | (F) email addresses | `direct_identifier` | dropped |
//! | (G) social security numbers | `direct_identifier` | dropped |
//! | (H) medical record numbers | `direct_identifier` | dropped |
//! | (I) health plan beneficiary numbers | `direct_identifier` | dropped |
//! | (J) account numbers | `direct_identifier` | dropped |
//! | (K) certificate and license numbers | `direct_identifier` | dropped |
//! | (L) vehicle identifiers and serial numbers, license plates | `direct_identifier` | dropped |
//! | (M) device identifiers and serial numbers | `direct_identifier` | dropped |
//! | (N) web URLs | `direct_identifier` | dropped |
//! | (O) IP addresses | `direct_identifier` | dropped |
//! | (P) biometric identifiers (finger and voice prints) | `direct_identifier` | dropped |
//! | (Q) full-face photographs and comparable images | `direct_identifier` | dropped |
//! | (R) other unique identifying numbers or codes: the trial's subject ids | `subject_id` | random surrogate code |
//! | (R) other unique identifying numbers or codes, not subject ids | `direct_identifier` | dropped |
//! | anything a free-text field may hold | `free_text` | dropped |
//!
//! What the library cannot know it does not claim: Safe Harbor also requires that the covered entity has no actual
//! knowledge that the rest could identify someone, and a column without a class passes through. Classing columns
//! correctly is the data owner's part.

mod keys;
mod privacy;
mod transform;
mod zip3;

pub use keys::{DeidKey, DEID_KEY_LEN};
pub use privacy::{ClassedUse, ColumnUse, PrivacyCheck, PrivacyVerdict, UsedColumn};
pub use transform::{DatasetDeid, Deidentifier};
pub use zip3::Zip3List;

use crate::error::Reason;
use crate::error::{Error, Result};
use crate::meta::{DatasetMeta, PrivacyClass};
use arrow::datatypes::{DataType, Field, Schema};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// A de-identification profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Profile {
    /// HIPAA Safe Harbor: drop direct identifiers and free text, surrogate subject ids, dates to year, ages 90+,
    /// ZIP to 3 digits.
    SafeHarbor,
    /// Keyed HMAC-SHA256 pseudonyms for subject ids.
    Pseudonymize,
    /// A keyed per-subject date offset.
    DateShift,
    /// Drop free-text columns.
    DropFreeText,
}

impl Profile {
    /// Every profile, in the order they are listed.
    pub const ALL: [Profile; 4] = [
        Profile::SafeHarbor,
        Profile::Pseudonymize,
        Profile::DateShift,
        Profile::DropFreeText,
    ];

    /// The profile's name, e.g. `safe-harbor`.
    pub fn as_str(self) -> &'static str {
        match self {
            Profile::SafeHarbor => "safe-harbor",
            Profile::Pseudonymize => "pseudonymize",
            Profile::DateShift => "date-shift",
            Profile::DropFreeText => "drop-free-text",
        }
    }

    /// The profile of a name.
    ///
    /// # Errors
    /// EXP002 `unknown_profile` with field `deidentify` and the known names in `details.known`.
    pub fn parse(name: &str) -> Result<Profile> {
        Profile::ALL
            .into_iter()
            .find(|p| p.as_str() == name.trim())
            .ok_or_else(|| {
                Error::validation(Reason::UnknownProfile, "unknown de-identification profile")
                    .with_field("deidentify")
                    .with_detail(
                        "known",
                        Profile::ALL.iter().map(|p| p.as_str()).collect::<Vec<_>>(),
                    )
            })
    }
}

/// The `deidentify` member of a request, as given: profiles and column lists. In JSON an object
/// (`{"profiles": [...], "drop": [...], "keep": [...]}`), a list of profiles, or a comma list of profiles; it is
/// always written back as an object. [`Policy::new`] checks it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(from = "DeidentifyRepr")]
pub struct Deidentify {
    /// Profile names, e.g. `safe-harbor`.
    pub profiles: Vec<String>,
    /// Columns to leave out.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub drop: Vec<String>,
    /// The only columns to write (all when empty).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub keep: Vec<String>,
}

/// The accepted JSON forms of [`Deidentify`].
#[derive(Deserialize)]
#[serde(untagged)]
enum DeidentifyRepr {
    List(String),
    Profiles(Vec<String>),
    Object(DeidentifyObject),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeidentifyObject {
    #[serde(default)]
    profiles: Vec<String>,
    #[serde(default)]
    drop: Vec<String>,
    #[serde(default)]
    keep: Vec<String>,
}

impl From<DeidentifyRepr> for Deidentify {
    fn from(r: DeidentifyRepr) -> Self {
        match r {
            DeidentifyRepr::List(text) => Deidentify::from_list(&text),
            DeidentifyRepr::Profiles(profiles) => Deidentify {
                profiles,
                ..Deidentify::default()
            },
            DeidentifyRepr::Object(o) => Deidentify {
                profiles: o.profiles,
                drop: o.drop,
                keep: o.keep,
            },
        }
    }
}

impl Deidentify {
    /// Profiles from a comma list such as `safe-harbor,date-shift` (white space around names ignored).
    pub fn from_list(text: &str) -> Self {
        Deidentify {
            profiles: text
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
            ..Deidentify::default()
        }
    }
}

/// Why a column is left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Named in `drop`.
    DropList,
    /// Not named in a non-empty `keep`.
    NotInKeep,
    /// A direct identifier under `safe-harbor`.
    DirectIdentifier,
    /// Free text under `safe-harbor` or `drop-free-text`.
    FreeText,
}

impl DropReason {
    /// The snake_case name recorded in the manifest.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::DropList => "drop_list",
            DropReason::NotInKeep => "not_in_keep",
            DropReason::DirectIdentifier => "direct_identifier",
            DropReason::FreeText => "free_text",
        }
    }
}

/// What happens to one column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Written unchanged.
    Keep,
    /// Left out.
    Drop(DropReason),
    /// Subject id replaced by a random surrogate code (`safe-harbor`).
    Surrogate,
    /// Subject id replaced by its keyed pseudonym (`pseudonymize`).
    Pseudonym,
    /// Date reduced to its year (`safe-harbor`), after the subject's shift when `shift`; when `birth`, a year
    /// implying an age of 90 or more is suppressed.
    Year {
        /// Shifted first (`date-shift` too).
        shift: bool,
        /// A birth date.
        birth: bool,
    },
    /// Date moved by the subject's offset (`date-shift`).
    Shift,
    /// Age as text, `90+` from 90 on (`safe-harbor`).
    AgeCap,
    /// ZIP code to its first 3 digits or `000` (`safe-harbor`).
    Zip3,
}

impl Action {
    /// The name recorded in the manifest, e.g. `surrogate`.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Keep => "kept",
            Action::Drop(_) => "dropped",
            Action::Surrogate => "surrogate",
            Action::Pseudonym => "pseudonym",
            Action::Year {
                shift: false,
                birth: false,
            } => "year",
            Action::Year {
                shift: true,
                birth: false,
            } => "shift_then_year",
            Action::Year {
                shift: false,
                birth: true,
            } => "birth_year",
            Action::Year {
                shift: true,
                birth: true,
            } => "shift_then_birth_year",
            Action::Shift => "shift",
            Action::AgeCap => "age_90_plus",
            Action::Zip3 => "zip3",
        }
    }

    fn shifts(self) -> bool {
        matches!(self, Action::Shift | Action::Year { shift: true, .. })
    }
}

/// How a column's values are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Not read (kept or dropped).
    Any,
    /// Text (any Arrow string type, or a dictionary of strings).
    Text,
    /// An integer type.
    Integer,
    /// A floating point or decimal type.
    Float,
    /// An Arrow date or timestamp.
    Temporal,
    /// A SAS date: days since 1960-01-01, known by its display format (`DATE9.`, `YYMMDD10.`, ...).
    SasDays,
    /// A SAS datetime: seconds since 1960-01-01T00:00:00, known by its display format (`DATETIME20.`, ...).
    SasSeconds,
}

/// The plan for one column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnPlan {
    /// Column name.
    pub name: String,
    /// Its privacy class.
    pub privacy: PrivacyClass,
    /// What happens to it.
    pub action: Action,
    pub(crate) kind: Kind,
}

impl ColumnPlan {
    /// Whether the column carries identifying data out of the export unchanged.
    pub fn is_identifying(&self) -> bool {
        self.privacy != PrivacyClass::None && self.action == Action::Keep
    }
}

/// The plan for one dataset: an action per input column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Dataset name.
    pub dataset: String,
    /// One entry per input column, in order.
    pub columns: Vec<ColumnPlan>,
    /// The input column holding the subject id that date shifts are keyed on, and how it is read.
    pub(crate) subject: Option<(usize, Kind)>,
}

impl Plan {
    /// The columns that leave the export with identifying data.
    pub fn identifying(&self) -> impl Iterator<Item = &ColumnPlan> {
        self.columns.iter().filter(|c| c.is_identifying())
    }

    /// Each column of the plan as a use for [`PrivacyCheck::check`]: written out ([`ColumnUse::Output`]),
    /// transformed unless the plan keeps it unchanged.
    pub fn uses(&self) -> Vec<ClassedUse> {
        self.columns
            .iter()
            .map(|c| ClassedUse {
                dataset: self.dataset.clone(),
                column: c.name.clone(),
                usage: ColumnUse::Output,
                field: "columns",
                privacy: c.privacy,
                transformed: c.action != Action::Keep,
            })
            .collect()
    }

    /// The manifest entry: every column that has a class or does not pass unchanged.
    pub fn describe(&self) -> Value {
        let columns: Vec<Value> = self
            .columns
            .iter()
            .filter(|c| c.privacy != PrivacyClass::None || c.action != Action::Keep)
            .map(|c| {
                let mut v = json!({"name": c.name, "privacy": c.privacy.as_str(),
                    "action": c.action.as_str()});
                if let Action::Drop(r) = c.action {
                    v["reason"] = json!(r.as_str());
                }
                v
            })
            .collect();
        json!({"dataset": self.dataset, "columns": columns})
    }
}

/// A checked de-identification policy: profiles, column lists and the `identifiable` decision.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Policy {
    profiles: Vec<Profile>,
    drop: Vec<String>,
    keep: Vec<String>,
    identifiable: bool,
}

/// Column names in a `drop` or `keep` list: the characters a dataset column may have.
fn check_column_list(list: &[String], field: &str) -> Result<()> {
    for name in list {
        if name.is_empty() || name.len() > 128 || name.chars().any(char::is_control) {
            return Err(Error::validation(
                Reason::InvalidColumn,
                "a column name in a de-identification list is empty, too long or has control characters",
            )
            .with_field(field));
        }
    }
    Ok(())
}

fn contains(list: &[String], name: &str) -> bool {
    list.iter().any(|n| n.eq_ignore_ascii_case(name))
}

/// Column names that a birth date has in CDISC and common use.
const BIRTH_DATE_NAMES: [&str; 7] = [
    "BRTHDTC",
    "BRTHDT",
    "BRTHDTM",
    "BIRTHDT",
    "BIRTHDTC",
    "BIRTHDATE",
    "DOB",
];

fn is_birth_date(name: &str, label: Option<&str>) -> bool {
    BIRTH_DATE_NAMES
        .iter()
        .any(|n| n.eq_ignore_ascii_case(name))
        || label.is_some_and(|l| l.to_ascii_lowercase().contains("birth"))
}

/// SAS date formats (values are days since 1960-01-01).
const SAS_DATE_FORMATS: [&str; 22] = [
    "DATE", "DAY", "DDMMYY", "DDMMYYB", "DDMMYYC", "DDMMYYD", "DDMMYYN", "DDMMYYP", "DDMMYYS",
    "MMDDYY", "MMDDYYN", "MONYY", "WEEKDATE", "WORDDATE", "YYMMDD", "YYMMDDN", "YYMMDDD",
    "YYMMDDS", "YYMON", "E8601DA", "B8601DA", "IS8601DA",
];
/// SAS datetime formats (values are seconds since 1960-01-01T00:00:00).
const SAS_DATETIME_FORMATS: [&str; 6] = [
    "DATETIME", "DATEAMPM", "E8601DT", "B8601DT", "IS8601DT", "MDYAMPM",
];

/// How a field's values are read when the rule for `privacy` needs them.
fn kind_of(field: &Field, display_format: Option<&str>, date: bool) -> Option<Kind> {
    let numeric = |k| {
        if !date {
            return Some(k);
        }
        let fmt = display_format?.trim().to_ascii_uppercase();
        let name = fmt.trim_end_matches(|c: char| c.is_ascii_digit() || c == '.');
        if SAS_DATE_FORMATS.contains(&name) {
            Some(Kind::SasDays)
        } else if SAS_DATETIME_FORMATS.contains(&name) {
            Some(Kind::SasSeconds)
        } else {
            None
        }
    };
    match field.data_type() {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Some(Kind::Text),
        DataType::Dictionary(_, v)
            if matches!(
                v.as_ref(),
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
            ) =>
        {
            Some(Kind::Text)
        }
        DataType::Date32 | DataType::Date64 | DataType::Timestamp(_, _) if date => {
            Some(Kind::Temporal)
        }
        t if t.is_integer() => numeric(Kind::Integer),
        DataType::Float16
        | DataType::Float32
        | DataType::Float64
        | DataType::Decimal128(_, _)
        | DataType::Decimal256(_, _) => numeric(Kind::Float),
        _ => None,
    }
}

impl Policy {
    /// Checks a request's `deidentify` member and `identifiable` flag.
    ///
    /// # Errors
    /// EXP002 with field `deidentify`: `unknown_profile`; `conflicting_profiles` for `safe-harbor` with
    /// `pseudonymize`; `conflicting_columns` for a column both dropped and kept; `invalid_column` for an empty
    /// or malformed name.
    pub fn new(spec: Option<&Deidentify>, identifiable: bool) -> Result<Policy> {
        let Some(spec) = spec else {
            return Ok(Policy {
                identifiable,
                ..Policy::default()
            });
        };
        let mut profiles = spec
            .profiles
            .iter()
            .map(|p| Profile::parse(p))
            .collect::<Result<Vec<_>>>()?;
        profiles.sort();
        profiles.dedup();
        if profiles.contains(&Profile::SafeHarbor) && profiles.contains(&Profile::Pseudonymize) {
            return Err(Error::validation(
                Reason::ConflictingProfiles,
                "safe-harbor and pseudonymize cannot be combined: Safe Harbor allows subject codes that are not \
                 derived from the identifier, and a keyed pseudonym is",
            )
            .with_field("deidentify"));
        }
        check_column_list(&spec.drop, "deidentify.drop")?;
        check_column_list(&spec.keep, "deidentify.keep")?;
        if spec.drop.iter().any(|d| contains(&spec.keep, d)) {
            return Err(Error::validation(
                Reason::ConflictingColumns,
                "a column is both in the drop and in the keep list",
            )
            .with_field("deidentify"));
        }
        Ok(Policy {
            profiles,
            drop: spec.drop.clone(),
            keep: spec.keep.clone(),
            identifiable,
        })
    }

    /// The profiles, in the order of [`Profile::ALL`].
    pub fn profiles(&self) -> &[Profile] {
        &self.profiles
    }

    /// Whether the policy has `profile`.
    pub fn has(&self, profile: Profile) -> bool {
        self.profiles.contains(&profile)
    }

    /// Whether the request said its export may carry identifying data.
    pub fn identifiable(&self) -> bool {
        self.identifiable
    }

    /// Whether the policy changes nothing: no profile, no column list (the `identifiable` check still applies).
    pub fn is_empty(&self) -> bool {
        self.profiles.is_empty() && self.drop.is_empty() && self.keep.is_empty()
    }

    /// Whether a profile needs the de-identification key (`pseudonymize`, `date-shift`).
    pub fn needs_key(&self) -> bool {
        self.has(Profile::Pseudonymize) || self.has(Profile::DateShift)
    }

    fn action_for(&self, name: &str, privacy: PrivacyClass, birth: bool) -> Action {
        if contains(&self.drop, name) {
            return Action::Drop(DropReason::DropList);
        }
        if !self.keep.is_empty() && !contains(&self.keep, name) {
            return Action::Drop(DropReason::NotInKeep);
        }
        let sh = self.has(Profile::SafeHarbor);
        let ds = self.has(Profile::DateShift);
        match privacy {
            PrivacyClass::DirectIdentifier if sh => Action::Drop(DropReason::DirectIdentifier),
            PrivacyClass::FreeText if sh || self.has(Profile::DropFreeText) => {
                Action::Drop(DropReason::FreeText)
            }
            PrivacyClass::SubjectId if sh => Action::Surrogate,
            PrivacyClass::SubjectId if self.has(Profile::Pseudonymize) => Action::Pseudonym,
            PrivacyClass::Date if sh => Action::Year { shift: ds, birth },
            PrivacyClass::Date if ds => Action::Shift,
            PrivacyClass::Age if sh => Action::AgeCap,
            PrivacyClass::Zip if sh => Action::Zip3,
            _ => Action::Keep,
        }
    }

    /// Plans the de-identification of one dataset from its schema and metadata.
    ///
    /// # Errors
    /// EXP002 with field `deidentify` and `details.dataset`: `unsupported_column_type` (with `details.column`)
    /// for a column whose class needs a rule its type does not allow (e.g. a numeric date without a SAS date
    /// format); `date_shift_needs_subject_id` for dates to shift in a dataset without a subject id column;
    /// `no_columns_left` when every column would be dropped.
    pub fn plan(&self, dataset: &str, schema: &Schema, meta: &DatasetMeta) -> Result<Plan> {
        let mut columns = Vec::with_capacity(schema.fields().len());
        let mut subject = None;
        for (i, field) in schema.fields().iter().enumerate() {
            let name = field.name().as_str();
            let cm = meta.column(name);
            let privacy = cm.map(|c| c.privacy).unwrap_or_default();
            let birth = is_birth_date(name, cm.and_then(|c| c.label.as_deref()));
            let action = self.action_for(name, privacy, birth);
            let unsupported = || {
                Error::validation(
                    Reason::UnsupportedColumnType,
                    format!(
                        "column '{name}' of dataset '{dataset}' is classed '{}' but its type cannot be \
                         de-identified",
                        privacy.as_str()
                    ),
                )
                .with_field("deidentify")
                .with_detail("dataset", dataset)
                .with_detail("column", name)
                .with_detail("privacy", privacy.as_str())
            };
            let display_format = cm.and_then(|c| c.display_format.as_deref());
            let kind = match action {
                Action::Keep | Action::Drop(_) => Kind::Any,
                Action::Year { .. } | Action::Shift => {
                    kind_of(field, display_format, true).ok_or_else(unsupported)?
                }
                _ => kind_of(field, display_format, false).ok_or_else(unsupported)?,
            };
            if privacy == PrivacyClass::SubjectId
                && (subject.is_none() || name.eq_ignore_ascii_case("USUBJID"))
            {
                if let Some(k) = kind_of(field, None, false) {
                    subject = Some((i, k));
                }
            }
            columns.push(ColumnPlan {
                name: name.to_string(),
                privacy,
                action,
                kind,
            });
        }
        let dataset_error = |reason: Reason, message: String| {
            Error::validation(reason, message)
                .with_field("deidentify")
                .with_detail("dataset", dataset)
        };
        if subject.is_none() && columns.iter().any(|c| c.action.shifts()) {
            return Err(dataset_error(
                Reason::DateShiftNeedsSubjectId,
                format!(
                    "dataset '{dataset}' has dates to shift but no subject id column to key the shift on"
                ),
            ));
        }
        if !columns.is_empty() && columns.iter().all(|c| matches!(c.action, Action::Drop(_))) {
            return Err(dataset_error(
                Reason::NoColumnsLeft,
                format!("de-identification would leave no column of dataset '{dataset}'"),
            ));
        }
        Ok(Plan {
            dataset: dataset.to_string(),
            columns,
            subject,
        })
    }

    /// Refuses plans that let identifying data out unless the request said `identifiable`.
    ///
    /// # Errors
    /// EXP002 `identifiable_data` with field `deidentify`, naming the columns in the message and in
    /// `details.columns` (`dataset`, `column`, `privacy`).
    pub fn check_identifiable(&self, plans: &[Plan]) -> Result<()> {
        if self.identifiable {
            return Ok(());
        }
        let found: Vec<(&str, &ColumnPlan)> = plans
            .iter()
            .flat_map(|p| p.identifying().map(move |c| (p.dataset.as_str(), c)))
            .collect();
        if found.is_empty() {
            return Ok(());
        }
        let names: Vec<String> = found
            .iter()
            .map(|(d, c)| format!("{d}.{}", c.name))
            .collect();
        Err(Error::validation(
            Reason::IdentifiableData,
            format!(
                "the export would carry identifying columns ({}): name a de-identification profile that covers \
                 them, drop them, or set 'identifiable' to export identifiable data",
                names.join(", ")
            ),
        )
        .with_field("deidentify")
        .with_detail(
            "columns",
            found
                .iter()
                .map(|(d, c)| json!({"dataset": d, "column": c.name, "privacy": c.privacy.as_str()}))
                .collect::<Vec<_>>(),
        ))
    }

    /// Refuses `drop` and `keep` names that no dataset of the request has.
    ///
    /// # Errors
    /// EXP002 `unknown_column` with field `deidentify.drop` or `deidentify.keep`.
    pub fn check_columns(&self, plans: &[Plan]) -> Result<()> {
        for (list, field) in [
            (&self.drop, "deidentify.drop"),
            (&self.keep, "deidentify.keep"),
        ] {
            for name in list {
                let known = plans
                    .iter()
                    .any(|p| p.columns.iter().any(|c| c.name.eq_ignore_ascii_case(name)));
                if !known {
                    return Err(Error::validation(
                        Reason::UnknownColumn,
                        format!("no dataset of the export has column '{name}'"),
                    )
                    .with_field(field));
                }
            }
        }
        Ok(())
    }

    /// The policy as recorded when an export is requested (profiles, lists, the flag, the key id when a profile
    /// uses the key).
    pub fn describe(&self, key_id: Option<&str>) -> Value {
        let mut v = json!({
            "profiles": self.profiles.iter().map(|p| p.as_str()).collect::<Vec<_>>(),
            "identifiable": self.identifiable,
        });
        if !self.drop.is_empty() {
            v["drop"] = json!(self.drop);
        }
        if !self.keep.is_empty() {
            v["keep"] = json!(self.keep);
        }
        if let (true, Some(id)) = (self.needs_key(), key_id) {
            v["key_id"] = json!(id);
        }
        v
    }
}

#[cfg(test)]
mod tests;
