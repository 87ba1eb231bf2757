//! Copies of the audit trail for people and tools (21 CFR 11.10(b)): JSON Lines and a fixed table for CSV.
//!
//! - JSON Lines: one event per line in the canonical encoding ([`AuditEvent::canonical`]), the very text the
//!   embedded log stores and the hash chain is computed over (`hash` aside), so an exported file can be verified
//!   on its own (see the module docs of [`crate::audit`]).
//! - A table ([`table_schema`], [`table_batch`]) with the fixed columns of [`TABLE_COLUMNS`], one row per event,
//!   for a CSV writer: `details` as canonical JSON text, `timestamp` as the RFC 3339 text of the event. The CLI
//!   writes it with the `csv` format, which neutralises cells that a spreadsheet would take for a formula (a text
//!   cell beginning with `=`, `+`, `-`, `@`, tab or CR gets a leading `'`); `seq` is a number and never touched.

use super::{canonical_json, AuditEvent};
use crate::error::Reason;
use crate::error::{Error, Result};
use arrow::array::{ArrayRef, StringArray, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use std::io::Write;
use std::sync::Arc;

/// The columns of the tabular export, in order.
pub const TABLE_COLUMNS: [&str; 15] = [
    "seq",
    "event_id",
    "timestamp",
    "actor_subject",
    "actor_name",
    "actor_org",
    "org",
    "study",
    "action",
    "target",
    "outcome",
    "details",
    "request_id",
    "prev_hash",
    "hash",
];

/// The schema of the tabular export: `seq` an unsigned integer, every other column text; `org` and `study` are
/// null when the event has none.
pub fn table_schema() -> SchemaRef {
    let fields: Vec<Field> = TABLE_COLUMNS
        .iter()
        .map(|name| match *name {
            "seq" => Field::new(*name, DataType::UInt64, false),
            "org" | "study" => Field::new(*name, DataType::Utf8, true),
            _ => Field::new(*name, DataType::Utf8, false),
        })
        .collect();
    Arc::new(Schema::new(fields))
}

/// One row per event in the columns of [`table_schema`].
///
/// # Errors
/// EXP005 `internal` if the batch cannot be built (it always can).
pub fn table_batch(events: &[AuditEvent]) -> Result<RecordBatch> {
    let text = |f: &dyn Fn(&AuditEvent) -> String| -> ArrayRef {
        Arc::new(StringArray::from(events.iter().map(f).collect::<Vec<_>>()))
    };
    let optional = |f: &dyn Fn(&AuditEvent) -> Option<String>| -> ArrayRef {
        Arc::new(StringArray::from(events.iter().map(f).collect::<Vec<_>>()))
    };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(UInt64Array::from(
            events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        )),
        text(&|e| e.event_id.to_string()),
        text(&|e| timestamp_text(e)),
        text(&|e| e.actor.subject.clone()),
        text(&|e| e.actor.name.clone()),
        text(&|e| e.actor.org.clone()),
        optional(&|e| (!e.org.is_empty()).then(|| e.org.clone())),
        optional(&|e| e.study.clone()),
        text(&|e| e.action.clone()),
        text(&|e| e.target.clone()),
        text(&|e| e.outcome.as_str().to_string()),
        text(&|e| canonical_json(&e.details)),
        text(&|e| e.request_id.clone()),
        text(&|e| e.prev_hash.clone()),
        text(&|e| e.hash.clone()),
    ];
    RecordBatch::try_new(table_schema(), columns)
        .map_err(|_| Error::server(Reason::Internal, "cannot build the audit table"))
}

/// The event's time as its JSON holds it.
fn timestamp_text(e: &AuditEvent) -> String {
    match serde_json::to_value(e.timestamp) {
        Ok(serde_json::Value::String(s)) => s,
        _ => e.timestamp.to_rfc3339(),
    }
}

/// Writes events as JSON Lines: each event's canonical text and a line feed.
///
/// # Errors
/// EXP005 for I/O.
pub fn write_jsonl(events: &[AuditEvent], out: &mut dyn Write) -> Result<()> {
    for e in events {
        let mut line = e.canonical();
        line.push('\n');
        out.write_all(line.as_bytes())
            .map_err(|err| Error::io("cannot write the audit export", &err))?;
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::store::conformance::sample_event;
    use arrow::array::Array;

    #[test]
    fn the_table_has_the_fixed_columns_and_every_event() {
        let a = sample_event(1, super::super::GENESIS_HASH);
        let mut b = sample_event(2, &a.hash);
        b.org = String::new();
        b.hash = b.compute_hash();
        let batch = table_batch(&[a.clone(), b.clone()]).unwrap();
        let names: Vec<&str> = batch
            .schema_ref()
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        assert_eq!(names, TABLE_COLUMNS);
        assert_eq!(batch.num_rows(), 2);
        let col = |name: &str| {
            batch
                .column_by_name(name)
                .unwrap()
                .as_any()
                .downcast_ref::<StringArray>()
                .unwrap()
                .clone()
        };
        assert_eq!(col("timestamp").value(0), "2025-01-21T10:00:00.124456789Z");
        assert_eq!(
            col("details").value(0),
            "{\"datasets\":[\"dm\"],\"n\":1,\"note\":\"line\\nbreak \u{1F600}\",\"ratio\":0.5}"
        );
        assert_eq!(col("study").value(0), "S1");
        assert!(col("study").is_null(1) && col("org").is_null(1));
        assert_eq!(col("hash").value(1), b.hash);
        let mut out = Vec::new();
        write_jsonl(&[a.clone(), b], &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.lines().next().unwrap(), a.canonical());
        assert_eq!(text.lines().count(), 2);
    }
}
