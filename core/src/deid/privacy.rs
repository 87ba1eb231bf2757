//! One privacy rule for every output: [`PrivacyCheck`] decides, for each use of a classed column an export makes
//! (written out, filtered on, sorted by, grouped by, aggregated), whether the caller may make it.
//!
//! The rule, whatever the kind of export (data, bulk, report, dashboard) and whatever surface asked:
//!
//! | use | column classed `none` | classed, transformed by the request's profile | classed, raw |
//! |---|---|---|---|
//! | [`ColumnUse::Output`] (written cells, table columns, min/max) | allowed | allowed | `data:identifiable` and the request's `identifiable` flag (which needs an e-signature) |
//! | [`ColumnUse::Group`] (summary group-bys, chart categories) | allowed | allowed | as `Output`: the groups show the values |
//! | [`ColumnUse::Aggregate`] (count, distinct count, sum, mean, SD) | allowed | allowed | allowed |
//! | [`ColumnUse::Filter`] (row filters) | allowed | `data:identifiable` | `data:identifiable` |
//! | [`ColumnUse::Sort`] (sort keys) | allowed | `data:identifiable` | `data:identifiable` |
//!
//! Filtering or sorting by a classed column selects people by who they are, even when what is written is
//! de-identified (a `safe-harbor` export filtered on a name is that person's record): it needs the permission
//! whatever the profile, and it makes the job identifiable ([`PrivacyVerdict::identifying`]), so that its
//! downloads need the permission too.
//!
//! Refusals: a caller without `data:identifiable` gets EXP003 `identifiable_data`, with `field` the request member
//! of the first offending use (`columns`, `filters`, `sort`, `group_by`, `x`, `column`) and `details.column`,
//! `details.dataset`, `details.privacy`, `details.use` naming it (names only, never values), and every offending
//! use in `details.columns`. A caller who has the permission but did not set `identifiable` gets EXP002
//! `identifiable_data` (the export must say so, and be signed), with every raw column in `details.columns`.

use crate::error::Reason;
use crate::error::{Error, Result};
use crate::meta::PrivacyClass;
use serde_json::{json, Value};

/// How an export uses a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ColumnUse {
    /// Its values are written out (a data export's column, a table column, a min or max).
    Output,
    /// Rows are filtered on it.
    Filter,
    /// Rows are sorted by it.
    Sort,
    /// Rows are grouped by it and each group is shown with its value (summary group-bys, chart categories).
    Group,
    /// Only an aggregate of it is shown (count, distinct count, sum, mean, SD).
    Aggregate,
}

impl ColumnUse {
    /// The snake_case name recorded in errors, e.g. `filter`.
    pub fn as_str(self) -> &'static str {
        match self {
            ColumnUse::Output => "output",
            ColumnUse::Filter => "filter",
            ColumnUse::Sort => "sort",
            ColumnUse::Group => "group",
            ColumnUse::Aggregate => "aggregate",
        }
    }
}

/// One use of a column by an export, as [`crate::document`] and the data export list them: the dataset, the
/// column (`None`: every column of the dataset, e.g. a table without a column list), the use and the request
/// member it comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsedColumn {
    /// Dataset name.
    pub dataset: String,
    /// Column name; `None` for every column of the dataset.
    pub column: Option<String>,
    /// How it is used.
    pub usage: ColumnUse,
    /// The request member the use comes from, e.g. `filters`.
    pub field: &'static str,
}

impl UsedColumn {
    /// A use of `column` of `dataset`.
    pub fn new(dataset: &str, column: &str, usage: ColumnUse, field: &'static str) -> Self {
        UsedColumn {
            dataset: dataset.to_string(),
            column: Some(column.to_string()),
            usage,
            field,
        }
    }
}

/// A use of one column, with the column's class and whether the request's de-identification transforms (or
/// drops) it: what [`PrivacyCheck::check`] decides on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassedUse {
    /// Dataset name.
    pub dataset: String,
    /// Column name.
    pub column: String,
    /// How it is used.
    pub usage: ColumnUse,
    /// The request member the use comes from.
    pub field: &'static str,
    /// The column's privacy class.
    pub privacy: PrivacyClass,
    /// Whether the request's profile transforms or drops its values before they are written.
    pub transformed: bool,
}

/// The outcome of an allowed [`PrivacyCheck::check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PrivacyVerdict {
    /// Whether the export writes a classed column raw or selects rows by a classed column: its job is then
    /// identifiable, and its downloads and the view of its request need `data:identifiable`.
    pub identifying: bool,
}

/// The privacy rule of every export (see the module docs): who asks (whether they hold `data:identifiable` on the
/// study) and what the request declares (its `identifiable` flag).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrivacyCheck {
    may_identify: bool,
    identifiable: bool,
    flag_field: &'static str,
}

impl PrivacyCheck {
    /// The rule for a caller who holds `data:identifiable` on the study (`may_identify`) and a request whose
    /// `identifiable` flag is `identifiable`. At run time, `may_identify` is what the job recorded when it was
    /// submitted.
    pub fn new(may_identify: bool, identifiable: bool) -> Self {
        PrivacyCheck {
            may_identify,
            identifiable,
            flag_field: "deidentify",
        }
    }

    /// The same rule, naming `field` in the EXP002 refusal of raw columns without the flag (`identifiable` for
    /// reports and dashboards, which have no de-identification profiles; `deidentify`, the default, for data).
    #[must_use]
    pub fn flag_field(mut self, field: &'static str) -> Self {
        self.flag_field = field;
        self
    }

    /// Decides on every use (see the module docs).
    ///
    /// # Errors
    /// EXP003 `identifiable_data` for a use the caller may not make; EXP002 `identifiable_data` for raw
    /// classed columns in a request without `identifiable`.
    pub fn check(&self, uses: &[ClassedUse]) -> Result<PrivacyVerdict> {
        let mut refused: Vec<&ClassedUse> = Vec::new();
        let mut raw: Vec<&ClassedUse> = Vec::new();
        let mut identifying = false;
        for u in uses {
            if u.privacy == PrivacyClass::None {
                continue;
            }
            match u.usage {
                ColumnUse::Aggregate => {}
                ColumnUse::Output | ColumnUse::Group if u.transformed => {}
                ColumnUse::Output | ColumnUse::Group => {
                    identifying = true;
                    if !self.may_identify {
                        refused.push(u);
                    } else if !self.identifiable {
                        raw.push(u);
                    }
                }
                ColumnUse::Filter | ColumnUse::Sort => {
                    identifying = true;
                    if !self.may_identify {
                        refused.push(u);
                    }
                }
            }
        }
        if let Some(first) = refused.first() {
            let what = match first.usage {
                ColumnUse::Filter => "filtering on it needs the permission data:identifiable",
                ColumnUse::Sort => "sorting by it needs the permission data:identifiable",
                _ => {
                    "showing its values needs the permission data:identifiable, or a de-identification profile \
                     that transforms it"
                }
            };
            return Err(Error::unauthorized(
                Reason::IdentifiableData,
                format!(
                    "column '{}' of dataset '{}' is classed '{}': {what}",
                    first.column,
                    first.dataset,
                    first.privacy.as_str()
                ),
            )
            .with_field(first.field)
            .with_detail("dataset", first.dataset.clone())
            .with_detail("column", first.column.clone())
            .with_detail("privacy", first.privacy.as_str())
            .with_detail("use", first.usage.as_str())
            .with_detail("requires", "data:identifiable")
            .with_detail("columns", describe(&refused, true)));
        }
        if !raw.is_empty() {
            let mut names: Vec<String> = raw
                .iter()
                .map(|u| format!("{}.{}", u.dataset, u.column))
                .collect();
            names.dedup();
            return Err(Error::validation(
                Reason::IdentifiableData,
                format!(
                    "the export would carry identifying columns ({}): name a de-identification profile that covers \
                     them, drop them, or set 'identifiable' to export identifiable data",
                    names.join(", ")
                ),
            )
            .with_field(self.flag_field)
            .with_detail("columns", describe(&raw, false)));
        }
        Ok(PrivacyVerdict { identifying })
    }
}

/// The `details.columns` of a refusal: each column once, in order.
fn describe(uses: &[&ClassedUse], with_use: bool) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::with_capacity(uses.len());
    for u in uses {
        let mut v =
            json!({"dataset": u.dataset, "column": u.column, "privacy": u.privacy.as_str()});
        if with_use {
            v["use"] = json!(u.usage.as_str());
        }
        if !out.contains(&v) {
            out.push(v);
        }
    }
    out
}
