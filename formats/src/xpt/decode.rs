//! The XPORT reader: v5 and v8, several members, streaming with bounded memory.
//!
//! Robustness (formats.md §1.11): the first record must be the `LIBRARY` (v5) or `LIBV8` (v8) header, anything else
//! is EXP002 `invalid_xpt`; NAMESTRs of 140 or 136 bytes; text fields trimmed of blanks and NULs; short numerics
//! padded with zeros; unnormalized zeros are zero; members end at the next `MEMBER`/`MEMBV8` header found at a record
//! boundary, or at the end of the file.
//!
//! # Damaged files are refused, never read short
//!
//! SAS writes whole 80-byte records, and after a member's last observation pads the last record with blanks
//! (0x20). The reader holds files to that, so that a damaged file is an error instead of fewer or invented rows
//! (EXP002, naming the byte offset and the observation, never data):
//!
//! * `truncated_file`: the file's length is not a multiple of 80 (checked before any row is read when the length
//!   is known: [`read_xpt`], [`read_xpt_with`]; at the end otherwise), it ends inside a header, or a member's data
//!   ends inside an observation (what follows the last whole observation is not padding: 80 bytes or more, or
//!   bytes other than blanks and NULs); `details.offset` (bytes), and `details.observation` (1-based) for the
//!   observation cut short.
//! * `invalid_padding`, unless [`XptReadOptions::allow_nul_padding`]: the padding after the last observation
//!   holds NUL bytes, or the member's data ends in a whole 80-byte record of NULs (what a crash, a preallocated
//!   file or bytes added after the end leave: SAS's data would need ten numeric zeros in a row at the very end, and
//!   such a file needs the option); and always: whole blank observations inside the data of a member with a
//!   numeric variable (SAS writes no numeric as eight blanks: that is padding followed by bytes added later,
//!   which would read as rows of `3.69e-40`). `details.offset`, `details.observation`.
//!
//! Trailing padding: when observations are shorter than 80 bytes the padding can look like observations. An
//! observation is dropped as padding only when it is entirely blank, it is at the end, and it starts within the
//! last 79 bytes of the member's data, where padding can be. What cannot be told apart stays as SAS has it: NUL
//! observations at the very end shorter than a record are rows of zeros (numeric 0 is eight NULs), and whole
//! records added after a member whose observations fill its records exactly read as observations.
//!
//! Types and metadata: numerics are `Float64` (`.` is null; the special missing values `.A`-`.Z` and `._` are null
//! too, or tagged NaNs with [`XptReadOptions::special_missing`]); character variables are `Utf8` without trailing
//! blanks (all-blank is `""`, never null: XPT cannot tell them apart), and numerics with a SAS date, datetime or
//! time format Arrow dates, timestamps and times (below). The schema carries the dataset name and label and, per
//! column, the label, the character `length` and the display format as [`DatasetMeta`], plus the `trialport.xpt.*`
//! keys of [`super`] (version, timestamps, header fields, informats, numeric lengths, justification) so that writing
//! the rows back reproduces the file.
//!
//! # SAS dates, datetimes and times
//!
//! SAS stores them as plain numbers; only the display format tells them apart (formats.md §1.9). By default
//! ([`XptDates::Typed`]) a numeric whose format is a SAS date, datetime or time format, by name with any width and
//! decimals, is read as the Arrow type the XPT writer ([`super::encode`]) writes with that format, so that the two
//! are inverse:
//!
//! | format names | Arrow type | value |
//! |---|---|---|
//! | `DATE`, `DAY`, `DDMMYY`, `MMDDYY`, `YYMMDD` (and their `B`/`C`/`D`/`N`/`P`/`S` separator variants), `E8601DA`, `B8601DA`, `IS8601DA`, `JULDAY`, `JULIAN`, `MMYY`, `MONNAME`, `MONTH`, `MONYY`, `NLDATE`, `QTR`, `WEEKDATE`, `WEEKDATX`, `WEEKDAY`, `WORDDATE`, `WORDDATX`, `YEAR`, `YYMM`, `YYMON`, `YYQ`, `DOWNAME` | `Date32` | days since 1960-01-01, shifted to 1970-01-01 (3,653 days) |
//! | `DATETIME`, `DATEAMPM`, `DTDATE`, `DTMONYY`, `DTWKDATX`, `DTYEAR`, `DTYYQC`, `E8601DT`, `B8601DT`, `IS8601DT`, `E8601DN`, `B8601DN`, `IS8601DN`, `MDYAMPM`, `NLDATM` | `Timestamp(Microsecond, None)` | seconds since 1960-01-01T00:00:00 (no time zone), to the nearest microsecond |
//! | `TIME`, `TIMEAMPM`, `TOD`, `HHMM`, `HOUR`, `MMSS`, `E8601TM`, `B8601TM`, `IS8601TM` | `Time64(Microsecond)` | seconds since midnight, to the nearest microsecond |
//!
//! The missing value `.` and the special missing values `.A`-`.Z` and `._` are null (a tag cannot be kept in a
//! date: read with [`XptDates::Number`] and [`XptReadOptions::special_missing`] to keep it). A date with a fraction
//! of a day is the day it falls in (the fraction is dropped, rounding down, as SAS's date formats display it); read
//! with [`XptDates::Number`] to keep the fraction. A value that the Arrow type cannot hold is EXP002
//! `date_out_of_range` (field = the column, `details.observation` 1-based, `details.kind` `date`, `datetime` or
//! `time`; never the value): a date or datetime beyond the years chrono handles (about ±262,000), a time below 0 or
//! at or beyond 24:00:00 (SAS allows durations in `TIME` formats). The label, format, informat and length stay in
//! the field metadata as for any numeric, so writing the rows back as XPT gives the same format and bytes.
//!
//! [`XptDates::Number`] reads them as `Float64` SAS numbers, as every other numeric.

use super::header::{
    is_header, parse_timestamp, trim_field, Namestr, SasFormat, XptVersion, HEADER_TAG, RECORD,
};
use super::ibm::{self, IbmValue};
use super::text::ReadEncoding;
use super::{
    KEY_CREATED, KEY_DATASET_TYPE, KEY_INFORMAT, KEY_JUSTIFY, KEY_MODIFIED, KEY_NUMERIC_LENGTH,
    KEY_OS, KEY_SAS_VERSION, KEY_VERSION,
};
use crate::define::{sas_temporal, SasTemporal};
use arrow::array::{
    ArrayRef, Date32Builder, Float64Builder, StringBuilder, Time64MicrosecondBuilder,
    TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use chrono::NaiveDateTime;
use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use trialport_core::error::Reason;
use trialport_core::meta::{ColumnMeta, DatasetMeta};
use trialport_core::source::BatchStream;
use trialport_core::{Error, Result};

/// Bytes read from the input at a time.
const CHUNK: usize = 1 << 20;

/// How to read an XPT file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XptReadOptions {
    /// The member to read, by name (any case). Defaults to `None`: the first member.
    pub member: Option<String>,
    /// How text is decoded. Defaults to [`ReadEncoding::Auto`].
    pub encoding: ReadEncoding,
    /// Whether the special missing values `.A`-`.Z` and `._` become tagged NaNs ([`ibm::special_missing`]) instead
    /// of nulls, so that writing them back keeps them. Defaults to `false`.
    pub special_missing: bool,
    /// Rows per batch. Defaults to 8,192.
    pub batch_rows: usize,
    /// Whether NUL bytes (0x00) are accepted as the padding of a member's last record, as some SAS 9.4 files have
    /// been reported to write it (formats.md §1.6): then trailing whole observations of NULs within the last
    /// record are padding too. Defaults to `false`: NUL padding is EXP002 `invalid_padding`, since a file with
    /// NULs after its data (a damaged copy, a preallocated file) would otherwise read as a valid one.
    pub allow_nul_padding: bool,
    /// How numerics with a SAS date, datetime or time format are read. Defaults to [`XptDates::Typed`]: as Arrow
    /// `Date32`, `Timestamp(Microsecond)` and `Time64(Microsecond)` (see [the module documentation](self)).
    pub dates: XptDates,
}

/// How an XPT reader returns numerics whose display format is a SAS date, datetime or time format.
///
/// As text (the read option `xpt_dates` of [`crate::read::ReadOptions`], the CLI's `--read-option`, Python's
/// `trialport.read(..., options=...)`): `typed` or `number`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum XptDates {
    /// As Arrow dates (`Date32`), timestamps (`Timestamp(Microsecond, None)`) and times (`Time64(Microsecond)`).
    #[default]
    Typed,
    /// As the SAS numbers (`Float64`): days since 1960-01-01, seconds since 1960-01-01T00:00:00, seconds since
    /// midnight.
    Number,
}

impl XptDates {
    /// The option value's text: `typed` or `number`.
    pub fn as_str(self) -> &'static str {
        match self {
            XptDates::Typed => "typed",
            XptDates::Number => "number",
        }
    }

    /// Parses `typed` or `number` (any case); `None` for anything else.
    pub fn parse(text: &str) -> Option<XptDates> {
        match text.trim().to_ascii_lowercase().as_str() {
            "typed" => Some(XptDates::Typed),
            "number" => Some(XptDates::Number),
            _ => None,
        }
    }
}

impl Default for XptReadOptions {
    fn default() -> Self {
        XptReadOptions {
            member: None,
            encoding: ReadEncoding::Auto,
            special_missing: false,
            batch_rows: 8_192,
            allow_nul_padding: false,
            dates: XptDates::Typed,
        }
    }
}

/// What [`read_xpt_members`] reports of each member.
#[derive(Debug, Clone, PartialEq)]
pub struct XptMemberInfo {
    /// Member (dataset) name.
    pub name: String,
    /// Dataset label, when not blank.
    pub label: Option<String>,
    /// Transport version of the file.
    pub version: XptVersion,
    /// Number of variables.
    pub variables: usize,
    /// Number of observations (trailing padding excluded).
    pub observations: u64,
    /// Observation length in bytes.
    pub observation_length: usize,
    /// Created timestamp of the member header, when well-formed.
    pub created: Option<NaiveDateTime>,
    /// Modified timestamp of the member header, when well-formed.
    pub modified: Option<NaiveDateTime>,
}

fn invalid(message: &str) -> Error {
    Error::validation(Reason::InvalidXpt, message.to_string())
}

/// EXP002 `truncated_file` at byte `offset`.
fn truncated(message: String, offset: u64) -> Error {
    Error::validation(Reason::TruncatedFile, message).with_detail("offset", offset)
}

/// The error of a file whose length `len` is not a multiple of 80.
fn ragged_length(len: u64) -> Error {
    truncated(
        format!(
            "the XPT file is truncated: its length ({len} bytes) is not a multiple of 80 (it ends {} bytes into a \
             record)",
            len % RECORD as u64
        ),
        len,
    )
}

/// Opens `path` as a regular file (see [`crate::read::open_input`]) and returns it with its length.
fn open(path: &Path) -> Result<(File, u64)> {
    let file = crate::read::open_input(path)?;
    let len = file
        .metadata()
        .map_err(|e| Error::io("cannot open the XPT file", &e))?
        .len();
    Ok((file, len))
}

/// Reads the first member of the XPT file at `path` as a stream of batches.
///
/// # Errors
/// EXP001 (field `path`) when the file does not exist; EXP002 `invalid_xpt` when it is not a SAS XPORT file or is
/// malformed; EXP005 for I/O. A batch of the stream may fail likewise.
pub fn read_xpt(path: &Path) -> Result<BatchStream> {
    read_xpt_with(path, &XptReadOptions::default())
}

/// Reads a member of the XPT file at `path` as `options` say.
///
/// # Errors
/// As [`read_xpt`], and EXP001 (field `member`) when the file has no member of that name.
pub fn read_xpt_with(path: &Path, options: &XptReadOptions) -> Result<BatchStream> {
    let (file, len) = open(path)?;
    read_member_stream(Input::with_len(file, Some(len)), options)
}

/// Reads a member of the already opened XPT `file` (of length `len`, checked before any row is read).
///
/// # Errors
/// As [`read_xpt_with`].
pub(crate) fn read_xpt_file(file: File, len: u64, options: &XptReadOptions) -> Result<BatchStream> {
    read_member_stream(Input::with_len(file, Some(len)), options)
}

/// Reads a member of an XPT file from any reader (it is read once, front to back).
///
/// # Errors
/// As [`read_xpt_with`].
pub fn read_xpt_from<R: Read + Send + 'static>(
    reader: R,
    options: &XptReadOptions,
) -> Result<BatchStream> {
    read_member_stream(Input::new(reader), options)
}

fn read_member_stream<R: Read + Send + 'static>(
    mut input: Input<R>,
    options: &XptReadOptions,
) -> Result<BatchStream> {
    let lib = read_library(&mut input)?;
    loop {
        let Some(member) = read_member(&mut input, &lib, options.encoding)? else {
            return Err(match &options.member {
                Some(_) => {
                    Error::not_found("the XPT file has no member of that name").with_field("member")
                }
                None => invalid("the XPT file has no member"),
            });
        };
        let wanted = options
            .member
            .as_deref()
            .is_none_or(|m| m.eq_ignore_ascii_case(&member.name));
        let mut data = DataCursor::new(&input, &member, options.allow_nul_padding);
        if wanted {
            let mut member = member;
            if options.dates == XptDates::Typed {
                for v in member.vars.iter_mut().filter(|v| v.numeric) {
                    v.temporal = sas_temporal(v.ns.format.as_ref().map(SasFormat::text).as_deref());
                }
            }
            let schema = member.schema();
            let stream = MemberStream {
                input,
                data,
                member,
                schema: schema.clone(),
                options: options.clone(),
                scratch: String::new(),
                done: false,
            };
            return Ok(BatchStream::new(schema, stream));
        }
        data.skip(&mut input)?;
    }
}

/// Lists the members of the XPT file at `path`, with their observation counts (the whole file is read).
///
/// # Errors
/// As [`read_xpt`].
pub fn read_xpt_members(path: &Path) -> Result<Vec<XptMemberInfo>> {
    let (file, len) = open(path)?;
    members_of(Input::with_len(file, Some(len)))
}

/// Lists the members of an XPT file read from `reader`.
///
/// # Errors
/// As [`read_xpt`].
pub fn read_xpt_members_from<R: Read>(reader: R) -> Result<Vec<XptMemberInfo>> {
    members_of(Input::new(reader))
}

fn members_of<R: Read>(mut input: Input<R>) -> Result<Vec<XptMemberInfo>> {
    let lib = read_library(&mut input)?;
    let mut out = Vec::new();
    while let Some(member) = read_member(&mut input, &lib, ReadEncoding::Auto)? {
        let mut data = DataCursor::new(&input, &member, false);
        let observations = data.skip(&mut input)?;
        out.push(XptMemberInfo {
            name: member.name.clone(),
            label: member.label.clone(),
            version: lib.version,
            variables: member.vars.len(),
            observations,
            observation_length: member.obs_len,
            created: member.created,
            modified: member.modified,
        });
    }
    Ok(out)
}

/// A reader with a look-ahead buffer and the absolute offset of its position.
struct Input<R> {
    r: R,
    buf: Vec<u8>,
    start: usize,
    eof: bool,
    /// Absolute offset of `buf[start]`.
    offset: u64,
    /// The length of the input when known before reading (a file's size).
    len: Option<u64>,
}

impl<R: Read> Input<R> {
    fn new(r: R) -> Self {
        Self::with_len(r, None)
    }

    fn with_len(r: R, len: Option<u64>) -> Self {
        Input {
            r,
            buf: Vec::new(),
            start: 0,
            eof: false,
            offset: 0,
            len,
        }
    }

    /// At the end of the input: EXP002 `truncated_file` unless its length is a multiple of 80.
    fn check_end(&self) -> Result<()> {
        let end = self.offset + self.available() as u64;
        if self.eof && !end.is_multiple_of(RECORD as u64) {
            return Err(ragged_length(end));
        }
        Ok(())
    }

    fn available(&self) -> usize {
        self.buf.len() - self.start
    }

    fn data(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    /// Reads until `n` bytes are available or the input ends; returns what is available.
    fn fill(&mut self, n: usize) -> Result<usize> {
        while self.available() < n && !self.eof {
            if self.start > 0 {
                self.buf.drain(..self.start);
                self.start = 0;
            }
            let have = self.buf.len();
            let want = (n - have).max(64 * 1024);
            self.buf.resize(have + want, 0);
            let mut got = 0;
            while got < want {
                match self.r.read(&mut self.buf[have + got..]) {
                    Ok(0) => {
                        self.eof = true;
                        break;
                    }
                    Ok(k) => got += k,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        self.buf.truncate(have + got);
                        return Err(Error::io("cannot read the XPT file", &e));
                    }
                }
                if have + got >= n {
                    break;
                }
            }
            self.buf.truncate(have + got);
        }
        Ok(self.available())
    }

    fn consume(&mut self, n: usize) {
        let n = n.min(self.available());
        self.start += n;
        self.offset += n as u64;
    }

    /// The next record, consumed.
    fn record(&mut self, what: &str) -> Result<[u8; RECORD]> {
        if self.fill(RECORD)? < RECORD {
            return Err(truncated(
                format!("the XPT file is truncated: it ends inside the {what}"),
                self.offset + self.available() as u64,
            ));
        }
        let mut r = [0u8; RECORD];
        r.copy_from_slice(&self.data()[..RECORD]);
        self.consume(RECORD);
        Ok(r)
    }

    /// Skips to the next record boundary.
    fn align(&mut self) -> Result<()> {
        let rem = (self.offset % RECORD as u64) as usize;
        if rem != 0 {
            self.fill(RECORD - rem)?;
            self.consume(RECORD - rem);
        }
        Ok(())
    }
}

/// The library header.
struct Library {
    version: XptVersion,
}

fn read_library<R: Read>(input: &mut Input<R>) -> Result<Library> {
    input.fill(3 * RECORD)?;
    let first = input.data();
    let version = if is_header(first, XptVersion::V5.names()[0]) {
        XptVersion::V5
    } else if is_header(first, XptVersion::V8.names()[0]) {
        XptVersion::V8
    } else {
        return Err(invalid(
            "not a SAS XPORT file: the first record is not a LIBRARY or LIBV8 header",
        ));
    };
    // A file of known length is refused before any row is read, so that nothing is written from it.
    if let Some(len) = input.len.filter(|l| !l.is_multiple_of(RECORD as u64)) {
        return Err(ragged_length(len));
    }
    input.record("library header")?;
    input.record("library header")?;
    input.record("library header")?;
    Ok(Library { version })
}

/// One member's header: names, labels, variables.
struct Member {
    version: XptVersion,
    name: String,
    label: Option<String>,
    sas_version: String,
    os: String,
    created: Option<NaiveDateTime>,
    created_raw: String,
    modified: Option<NaiveDateTime>,
    modified_raw: String,
    dataset_type: String,
    vars: Vec<Var>,
    obs_len: usize,
}

/// One variable: its NAMESTR and decoded name and label.
struct Var {
    ns: Namestr,
    name: String,
    label: Option<String>,
    numeric: bool,
    pos: usize,
    len: usize,
    /// What a numeric is read as when its format is a SAS date, datetime or time format (and
    /// [`XptDates::Typed`]); `None` otherwise.
    temporal: Option<SasTemporal>,
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn text(b: &[u8], enc: ReadEncoding) -> Result<String> {
    let mut scratch = String::new();
    Ok(enc.decode(b, &mut scratch)?.to_string())
}

fn digits(b: &[u8]) -> Option<usize> {
    let s = std::str::from_utf8(b).ok()?;
    s.bytes()
        .all(|c| c.is_ascii_digit())
        .then(|| s.parse().ok())?
}

fn read_member<R: Read>(
    input: &mut Input<R>,
    lib: &Library,
    enc: ReadEncoding,
) -> Result<Option<Member>> {
    let v = lib.version;
    let names = v.names();
    if input.fill(RECORD)? < 48 {
        input.check_end()?;
        if input.available() > 0 {
            return Err(truncated(
                "the XPT file is truncated: it ends inside a member header".into(),
                input.offset + input.available() as u64,
            ));
        }
        return Ok(None);
    }
    if !is_header(input.data(), names[1]) {
        return Err(invalid("a MEMBER header was expected"));
    }
    let mh = input.record("member header")?;
    let ns_len = match digits(&mh[74..78]) {
        Some(136) => 136,
        _ => 140,
    };
    let dh = input.record("descriptor header")?;
    if !is_header(&dh, names[2]) {
        return Err(invalid("a DSCRPTR header was expected"));
    }
    let m1 = input.record("member header")?;
    let m2 = input.record("member header")?;
    let (name, ver, os) = match v {
        XptVersion::V5 => (&m1[8..16], &m1[24..32], &m1[32..40]),
        XptVersion::V8 => (&m1[8..40], &m1[48..56], &m1[56..64]),
    };
    let trim_blanks = |b: &[u8]| {
        let end = b.iter().rposition(|&c| c != b' ').map_or(0, |i| i + 1);
        lossy(&b[..end])
    };
    let label = text(trim_field(&m2[32..72]), enc)?;
    let nh = input.record("NAMESTR header")?;
    if !is_header(&nh, names[3]) {
        return Err(invalid("a NAMESTR header was expected"));
    }
    // The count ends at offset 57 (4 digits in v5, 6 in v8); TS-140's v8 text places 6 digits at 54, so that
    // reading is tried too, and the one followed by a header record wins.
    let mut candidates = vec![];
    match v {
        XptVersion::V5 => candidates.extend(digits(&nh[54..58])),
        XptVersion::V8 => {
            candidates.extend(digits(&nh[52..58]));
            candidates.extend(digits(&nh[54..60]));
        }
    }
    let mut count = None;
    for c in candidates {
        let bytes = (c * ns_len).div_ceil(RECORD) * RECORD;
        if input.fill(bytes + 20)? >= bytes + 20 && input.data()[bytes..bytes + 20] == *HEADER_TAG {
            count = Some(c);
            break;
        }
    }
    let count = count.ok_or_else(|| invalid("the NAMESTR count does not match the file"))?;
    let mut nss = Vec::with_capacity(count);
    for _ in 0..count {
        input.fill(ns_len)?;
        let ns = Namestr::decode(&input.data()[..ns_len], v);
        input.consume(ns_len);
        nss.push(ns);
    }
    input.align()?;
    if v == XptVersion::V8 {
        loop {
            input.fill(RECORD)?;
            let d = input.data();
            let v9 = is_header(d, b"LABELV9 ");
            if !v9 && !is_header(d, b"LABELV8 ") {
                break;
            }
            let hr = input.record("label header")?;
            let n = std::str::from_utf8(&hr[48..])
                .ok()
                .and_then(|s| s.split_whitespace().next())
                .and_then(|s| s.parse::<usize>().ok())
                .ok_or_else(|| invalid("the label section count is malformed"))?;
            read_labels(input, &mut nss, n, v9)?;
            input.align()?;
        }
    }
    let oh = input.record("OBS header")?;
    if !is_header(&oh, names[4]) {
        return Err(invalid("an OBS header was expected"));
    }
    let mut vars = Vec::with_capacity(nss.len());
    let mut obs_len = 0usize;
    for ns in nss {
        let numeric = ns.ntype == 1;
        let len = usize::from(ns.length);
        if numeric && !(1..=8).contains(&len) {
            return Err(invalid("a numeric variable has a length outside 1-8"));
        }
        obs_len += len;
        let label = (!ns.label.is_empty())
            .then(|| text(&ns.label, enc))
            .transpose()?;
        vars.push(Var {
            name: lossy(&ns.name),
            label,
            numeric,
            pos: ns.position as usize,
            len,
            ns,
            temporal: None,
        });
    }
    if vars.iter().any(|x| x.pos + x.len > obs_len) {
        return Err(invalid("a variable lies outside the observation"));
    }
    let stamp = |b: &[u8]| (parse_timestamp(b), lossy(trim_field(b)));
    let (created, created_raw) = stamp(&m1[64..80]);
    let (modified, modified_raw) = stamp(&m2[0..16]);
    Ok(Some(Member {
        version: v,
        name: lossy(trim_field(name)),
        label: (!label.is_empty()).then_some(label),
        sas_version: trim_blanks(ver),
        os: trim_blanks(os),
        created,
        created_raw,
        modified,
        modified_raw,
        dataset_type: lossy(trim_field(&m2[72..80])),
        vars,
        obs_len,
    }))
}

/// Reads `n` LABELV8 (or LABELV9) entries into the NAMESTRs with the entry's variable number.
fn read_labels<R: Read>(
    input: &mut Input<R>,
    nss: &mut [Namestr],
    n: usize,
    v9: bool,
) -> Result<()> {
    let head = if v9 { 10 } else { 6 };
    for _ in 0..n {
        if input.fill(head)? < head {
            return Err(invalid("the XPT file ends inside the label section"));
        }
        let d = input.data();
        let num = |i: usize| i16::from_be_bytes([d[2 * i], d[2 * i + 1]]);
        let number = num(0);
        let lens: Vec<usize> = (1..head / 2).map(|i| num(i).max(0) as usize).collect();
        input.consume(head);
        let total: usize = lens.iter().sum();
        if input.fill(total)? < total {
            return Err(invalid("the XPT file ends inside the label section"));
        }
        let d = input.data();
        let mut at = 0;
        let mut part = |k: usize| {
            let s = &d[at..at + lens[k]];
            at += lens[k];
            s
        };
        let name = part(0).to_vec();
        let label = part(1).to_vec();
        let (format, informat) = if v9 {
            (part(2).to_vec(), part(3).to_vec())
        } else {
            (vec![], vec![])
        };
        if let Some(ns) = nss.iter_mut().find(|ns| ns.number == number) {
            if !name.is_empty() {
                ns.name = trim_field(&name).to_vec();
            }
            ns.label = trim_field(&label).to_vec();
            let long = |text: &[u8], old: &mut Option<SasFormat>| {
                if let Some(mut f) = std::str::from_utf8(text).ok().and_then(SasFormat::parse) {
                    if let Some(o) = old.as_ref() {
                        if f.width == 0 && f.decimals == 0 {
                            f.width = o.width;
                            f.decimals = o.decimals;
                        }
                    }
                    *old = Some(f);
                }
            };
            long(&format, &mut ns.format);
            long(&informat, &mut ns.informat);
        }
        input.consume(total);
    }
    Ok(())
}

impl Member {
    /// The Arrow schema with the dataset metadata and the `trialport.xpt.*` keys.
    fn schema(&self) -> SchemaRef {
        let mut fields = Vec::with_capacity(self.vars.len());
        let mut columns = Vec::with_capacity(self.vars.len());
        for v in &self.vars {
            let mut md = HashMap::new();
            if let Some(f) = &v.ns.informat {
                md.insert(KEY_INFORMAT.to_string(), f.text());
            }
            if v.numeric && v.len != 8 {
                md.insert(KEY_NUMERIC_LENGTH.to_string(), v.len.to_string());
            }
            if v.ns.justify != 0 {
                md.insert(KEY_JUSTIFY.to_string(), v.ns.justify.to_string());
            }
            let ty = match (v.numeric, v.temporal) {
                (true, Some(SasTemporal::Date)) => DataType::Date32,
                (true, Some(SasTemporal::Datetime)) => {
                    DataType::Timestamp(TimeUnit::Microsecond, None)
                }
                (true, Some(SasTemporal::Time)) => DataType::Time64(TimeUnit::Microsecond),
                (true, None) => DataType::Float64,
                (false, _) => DataType::Utf8,
            };
            fields.push(Field::new(v.name.clone(), ty, true).with_metadata(md));
            columns.push(ColumnMeta {
                name: v.name.clone(),
                label: v.label.clone(),
                length: (!v.numeric).then_some(v.len as u32),
                display_format: v.ns.format.as_ref().map(SasFormat::text),
                ..ColumnMeta::default()
            });
        }
        let stamp = |t: Option<NaiveDateTime>, raw: &str| match t {
            Some(t) => t.format("%Y-%m-%dT%H:%M:%S").to_string(),
            None => raw.to_string(),
        };
        let mut md = HashMap::from([
            (KEY_VERSION.to_string(), self.version.number().to_string()),
            (
                KEY_CREATED.to_string(),
                stamp(self.created, &self.created_raw),
            ),
            (
                KEY_MODIFIED.to_string(),
                stamp(self.modified, &self.modified_raw),
            ),
            (KEY_SAS_VERSION.to_string(), self.sas_version.clone()),
            (KEY_OS.to_string(), self.os.clone()),
        ]);
        if !self.dataset_type.is_empty() {
            md.insert(KEY_DATASET_TYPE.to_string(), self.dataset_type.clone());
        }
        let plain = Schema::new_with_metadata(fields, md);
        let meta = DatasetMeta {
            name: self.name.clone(),
            label: self.label.clone(),
            columns,
            ..Default::default()
        };
        // Every column named in `meta` is a field of `plain`, so this cannot fail.
        meta.apply_to(&plain).unwrap_or_else(|_| Arc::new(plain))
    }
}

/// Where a member's observations are and how many remain.
struct DataCursor {
    obs_len: u64,
    data_start: u64,
    /// The next record start to check for a member header.
    scanned: u64,
    /// Absolute offset where the member's data ends (the next member header or the end of the file).
    end: Option<u64>,
    /// Absolute offset after the last observation (trailing padding excluded), once `end` is known.
    rows_end: Option<u64>,
    v5: bool,
    /// The member's name, for errors.
    member: String,
    /// Position and length of the first numeric variable, if any: an observation whose cell there is all blanks
    /// is checked for being padding inside the data.
    numeric: Option<(usize, usize)>,
    /// Observations taken so far.
    taken: u64,
    /// How many NUL bytes end what was taken so far.
    nul_run: u64,
    nul_padding: bool,
}

impl DataCursor {
    fn new<R>(input: &Input<R>, member: &Member, nul_padding: bool) -> Self {
        DataCursor {
            obs_len: member.obs_len as u64,
            data_start: input.offset,
            scanned: input.offset,
            end: None,
            rows_end: None,
            v5: member.version == XptVersion::V5,
            member: member.name.clone(),
            numeric: member
                .vars
                .iter()
                .find(|v| v.numeric)
                .map(|v| (v.pos, v.len)),
            taken: 0,
            nul_run: 0,
            nul_padding,
        }
    }

    /// Checks the `bytes` of the next whole observations before they are taken: an observation made entirely of
    /// blanks in a member with a numeric variable is padding inside the data (EXP002 `invalid_padding`).
    fn take(&mut self, bytes: &[u8]) -> Result<()> {
        let l = self.obs_len as usize;
        if let (Some((pos, len)), true) = (self.numeric, l > 0) {
            for (i, row) in bytes.chunks_exact(l).enumerate() {
                if row[pos..pos + len].iter().all(|&b| b == b' ') && row.iter().all(|&b| b == b' ')
                {
                    let k = self.taken + i as u64;
                    return Err(Error::validation(
                        Reason::InvalidPadding,
                        format!(
                            "member {} of the XPT file has blank padding inside its data (observation {} is \
                             all blanks, which no numeric value is): bytes were added after its end",
                            self.member,
                            k + 1
                        ),
                    )
                    .with_detail("offset", self.data_start + k * self.obs_len)
                    .with_detail("observation", k + 1));
                }
            }
        }
        self.taken += (bytes.len() / l.max(1)) as u64;
        let zeros = bytes.iter().rev().take_while(|&&b| b == 0).count();
        self.nul_run = if zeros == bytes.len() {
            self.nul_run + zeros as u64
        } else {
            zeros as u64
        };
        Ok(())
    }

    /// EXP002 `invalid_padding` for NUL bytes at `at` (an absolute offset in the data).
    fn nul_padding_error(&self, at: u64, what: &str) -> Error {
        let observation = (at - self.data_start) / self.obs_len.max(1) + 1;
        Error::validation(
            Reason::InvalidPadding,
            format!(
                "member {} of the XPT file ends in NUL bytes from byte {at} ({what}), where SAS writes blanks: the \
                 file was damaged or filled up after its end",
                self.member
            ),
        )
        .with_detail("offset", at)
        .with_detail("observation", observation)
    }

    fn is_member_header(&self, rec: &[u8]) -> bool {
        let names = if self.v5 {
            XptVersion::V5.names()
        } else {
            XptVersion::V8.names()
        };
        is_header(rec, names[1])
    }

    /// How many whole observations (at most `want`) can be taken at the input's position now; 0 when there are
    /// no more.
    fn plan<R: Read>(&mut self, input: &mut Input<R>, want: usize) -> Result<usize> {
        let l = self.obs_len;
        loop {
            let cur = input.offset;
            if let Some(e) = self.rows_end {
                if l == 0 {
                    return Ok(0);
                }
                return Ok(((e.saturating_sub(cur)) / l).min(want as u64) as usize);
            }
            let avail_end = cur + input.available() as u64;
            while self.end.is_none() {
                let s = self.scanned;
                let full = s + RECORD as u64 <= avail_end;
                let tail = input.eof && s + 48 <= avail_end;
                if !full && !tail {
                    break;
                }
                let rel = (s - cur) as usize;
                let d = input.data();
                if self.is_member_header(&d[rel..d.len().min(rel + RECORD)]) {
                    self.end = Some(s);
                } else {
                    self.scanned = s + RECORD as u64;
                }
            }
            if self.end.is_none() && input.eof {
                input.check_end()?;
                self.end = Some(avail_end);
            }
            if let Some(e) = self.end {
                self.rows_end = Some(self.final_rows_end(input, e)?);
                continue;
            }
            // Observations that cannot be padding: they end before the checked records do, and start before their
            // last 80 bytes.
            let checked = self.scanned.min(avail_end);
            let need = l.max(RECORD as u64);
            if l > 0 && checked >= cur + need {
                let rows = (checked - cur - need) / l + 1;
                return Ok(rows.min(want as u64) as usize);
            }
            let more = input.available() + CHUNK.max(2 * (l as usize + 2 * RECORD));
            input.fill(more)?;
        }
    }

    /// The end of the last real observation, dropping trailing all-blank observations that lie where the final
    /// record's padding can be; what then follows the last observation must be padding: under 80 bytes, all blanks
    /// (or NULs with `nul_padding`).
    ///
    /// # Errors
    /// EXP002 `truncated_file` when the data ends inside an observation, `invalid_padding` for NUL padding.
    fn final_rows_end<R: Read>(&self, input: &Input<R>, end: u64) -> Result<u64> {
        let l = self.obs_len;
        let cur = input.offset;
        let d = end - self.data_start;
        let total = d.checked_div(l).unwrap_or(0);
        let rel = |abs: u64| (abs - cur) as usize;
        let data = input.data();
        let rest_start = self.data_start + total * l;
        let rest = &data[rel(rest_start.max(cur))..rel(end)];
        let nul_padded = self.nul_padding && !rest.is_empty() && rest.iter().all(|&b| b == 0);
        let mut k = total;
        while k > 0 {
            let s = self.data_start + (k - 1) * l;
            if s < cur || (k - 1) * l + 79 < d {
                break;
            }
            let row = &data[rel(s)..rel(s + l)];
            let blank =
                row.iter().all(|&b| b == b' ') || (nul_padded && row.iter().all(|&b| b == 0));
            if !blank {
                break;
            }
            k -= 1;
        }
        let rows_end = self.data_start + k * l;
        // A last record of nothing but NULs is no data SAS writes (ten numeric zeros in a row at the very end at
        // most, and then rarely): it is what a crash or a preallocation leaves, or bytes added after the end.
        let unread = &data[..rel(end)];
        let zeros = unread.iter().rev().take_while(|&&b| b == 0).count() as u64;
        let run = if zeros == unread.len() as u64 {
            self.nul_run + zeros
        } else {
            zeros
        };
        if !self.nul_padding && run >= RECORD as u64 {
            return Err(self.nul_padding_error(end - run.min(d), "a whole record of them"));
        }
        let pad = &data[rel(rows_end.max(cur))..rel(end)];
        let observation = k + 1;
        if end - rows_end >= RECORD as u64 || pad.iter().any(|&b| b != b' ' && b != 0) {
            return Err(truncated(
                format!(
                    "the XPT file is truncated: observation {observation} of member {} is incomplete (the \
                     member's data ends at byte {end}, inside it)",
                    self.member
                ),
                end,
            )
            .with_detail("observation", observation));
        }
        if !self.nul_padding && pad.contains(&0) {
            // Where the NULs begin: whole observations of NULs before the padding (not dropped, as NULs are not
            // blanks) belong to it.
            let first = rows_end.max(cur) + pad.iter().position(|&b| b == 0).unwrap_or(0) as u64;
            let at = if zeros > 0 {
                (end - zeros).min(first)
            } else {
                first
            };
            return Err(self.nul_padding_error(at, "padding after the last observation"));
        }
        Ok(rows_end)
    }

    /// Skips the rest of the member's data, returning the observations skipped; the input is left at the next
    /// member header (or the end).
    fn skip<R: Read>(&mut self, input: &mut Input<R>) -> Result<u64> {
        let mut rows = 0u64;
        loop {
            let n = self.plan(input, usize::MAX)?;
            if n == 0 {
                break;
            }
            rows += n as u64;
            let bytes = n * self.obs_len as usize;
            self.take(&input.data()[..bytes])?;
            input.consume(bytes);
        }
        if let Some(e) = self.end {
            let left = e.saturating_sub(input.offset);
            input.consume(left as usize);
        }
        Ok(rows)
    }
}

/// The batches of one member.
struct MemberStream<R> {
    input: Input<R>,
    data: DataCursor,
    member: Member,
    schema: SchemaRef,
    options: XptReadOptions,
    scratch: String,
    done: bool,
}

enum Builder {
    Num(Float64Builder),
    Date(Date32Builder),
    Datetime(TimestampMicrosecondBuilder),
    Time(Time64MicrosecondBuilder),
    Char(StringBuilder),
}

/// Days from 1960-01-01 (the SAS epoch) to 1970-01-01.
const SAS_EPOCH_DAYS: i64 = 3_653;
/// Microseconds from 1960-01-01T00:00:00 to 1970-01-01T00:00:00.
const SAS_EPOCH_MICROS: i64 = SAS_EPOCH_DAYS * 86_400 * 1_000_000;
/// Microseconds in a day.
const DAY_MICROS: i64 = 86_400 * 1_000_000;

/// A SAS date (days since 1960-01-01) as days since 1970-01-01, the fraction of a day dropped (rounding down);
/// `None` beyond what a `Date32` that chrono can show holds.
fn sas_date(x: f64) -> Option<i32> {
    let days = x.floor();
    // Beyond ±2^31 days the value cannot be a Date32 (and the cast below would saturate).
    if days.is_nan() || days.abs() >= 2_147_483_648.0 {
        return None;
    }
    let d = i32::try_from(days as i64 - SAS_EPOCH_DAYS).ok()?;
    arrow::temporal_conversions::date32_to_datetime(d).map(|_| d)
}

/// A SAS number of seconds as microseconds, to the nearest; `None` beyond `i64`.
fn micros(x: f64) -> Option<i64> {
    let us = (x * 1e6).round();
    // 2^63 is exactly representable: anything below it in magnitude converts without saturating.
    (us.abs() < 9_223_372_036_854_775_808.0).then_some(us as i64)
}

/// A SAS datetime (seconds since 1960-01-01T00:00:00) as microseconds since 1970-01-01T00:00:00, to the
/// nearest; `None` beyond what chrono can show.
fn sas_datetime(x: f64) -> Option<i64> {
    let us = micros(x)?.checked_sub(SAS_EPOCH_MICROS)?;
    arrow::temporal_conversions::timestamp_us_to_datetime(us).map(|_| us)
}

/// A SAS time (seconds since midnight) as microseconds since midnight, to the nearest; `None` below 0 or at or
/// beyond 24:00:00.
fn sas_time(x: f64) -> Option<i64> {
    micros(x).filter(|us| (0..DAY_MICROS).contains(us))
}

/// EXP002 `date_out_of_range` for the value of column `column` at 1-based `observation`.
fn out_of_range(column: &str, kind: &str, observation: u64) -> Error {
    Error::validation(
        Reason::DateOutOfRange,
        format!(
            "column {column}, observation {observation}: the SAS {kind} value is outside what an Arrow {kind} \
             holds; read the file with the option xpt_dates=number to keep the SAS numbers"
        ),
    )
    .with_field(column.to_string())
    .with_detail("observation", observation)
    .with_detail("kind", kind)
}

impl<R: Read> MemberStream<R> {
    fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        if self.member.vars.is_empty() {
            return Ok(None);
        }
        let want = self.options.batch_rows.max(1);
        let mut builders: Vec<Builder> = self
            .member
            .vars
            .iter()
            .map(|v| {
                let cap = want.min(1 << 16);
                match (v.numeric, v.temporal) {
                    (true, None) => Builder::Num(Float64Builder::with_capacity(cap)),
                    (true, Some(SasTemporal::Date)) => {
                        Builder::Date(Date32Builder::with_capacity(cap))
                    }
                    (true, Some(SasTemporal::Datetime)) => {
                        Builder::Datetime(TimestampMicrosecondBuilder::with_capacity(cap))
                    }
                    (true, Some(SasTemporal::Time)) => {
                        Builder::Time(Time64MicrosecondBuilder::with_capacity(cap))
                    }
                    (false, _) => {
                        Builder::Char(StringBuilder::with_capacity(cap, cap * v.len.min(32)))
                    }
                }
            })
            .collect();
        let l = self.member.obs_len;
        let mut rows = 0;
        while rows < want {
            let n = self.data.plan(&mut self.input, want - rows)?;
            if n == 0 {
                break;
            }
            let bytes = &self.input.data()[..n * l];
            // 1-based number of the first observation of `bytes`, for errors.
            let first = self.data.taken + 1;
            self.data.take(bytes)?;
            // Column by column: one kind of cell per loop.
            for (v, b) in self.member.vars.iter().zip(builders.iter_mut()) {
                let cells = bytes.chunks_exact(l).map(|row| &row[v.pos..v.pos + v.len]);
                match b {
                    Builder::Num(b) => {
                        for cell in cells {
                            match ibm::from_ibm(cell) {
                                IbmValue::Number(x) => b.append_value(x),
                                IbmValue::Missing(tag)
                                    if tag != b'.' && self.options.special_missing =>
                                {
                                    b.append_option(ibm::special_missing(tag))
                                }
                                IbmValue::Missing(_) => b.append_null(),
                            }
                        }
                    }
                    Builder::Date(b) => {
                        for (i, cell) in cells.enumerate() {
                            match ibm::from_ibm(cell) {
                                IbmValue::Number(x) => {
                                    b.append_value(sas_date(x).ok_or_else(|| {
                                        out_of_range(&v.name, "date", first + i as u64)
                                    })?)
                                }
                                IbmValue::Missing(_) => b.append_null(),
                            }
                        }
                    }
                    Builder::Datetime(b) => {
                        for (i, cell) in cells.enumerate() {
                            match ibm::from_ibm(cell) {
                                IbmValue::Number(x) => {
                                    b.append_value(sas_datetime(x).ok_or_else(|| {
                                        out_of_range(&v.name, "datetime", first + i as u64)
                                    })?)
                                }
                                IbmValue::Missing(_) => b.append_null(),
                            }
                        }
                    }
                    Builder::Time(b) => {
                        for (i, cell) in cells.enumerate() {
                            match ibm::from_ibm(cell) {
                                IbmValue::Number(x) => {
                                    b.append_value(sas_time(x).ok_or_else(|| {
                                        out_of_range(&v.name, "time", first + i as u64)
                                    })?)
                                }
                                IbmValue::Missing(_) => b.append_null(),
                            }
                        }
                    }
                    Builder::Char(b) => {
                        for cell in cells {
                            b.append_value(
                                self.options
                                    .encoding
                                    .decode(trim_field(cell), &mut self.scratch)?,
                            );
                        }
                    }
                }
            }
            self.input.consume(n * l);
            rows += n;
        }
        if rows == 0 {
            return Ok(None);
        }
        let arrays: Vec<ArrayRef> = builders
            .into_iter()
            .map(|b| match b {
                Builder::Num(mut b) => Arc::new(b.finish()) as ArrayRef,
                Builder::Date(mut b) => Arc::new(b.finish()) as ArrayRef,
                Builder::Datetime(mut b) => Arc::new(b.finish()) as ArrayRef,
                Builder::Time(mut b) => Arc::new(b.finish()) as ArrayRef,
                Builder::Char(mut b) => Arc::new(b.finish()) as ArrayRef,
            })
            .collect();
        Ok(Some(RecordBatch::try_new(self.schema.clone(), arrays)?))
    }
}

impl<R: Read> Iterator for MemberStream<R> {
    type Item = Result<RecordBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.next_batch() {
            Ok(Some(b)) => Some(Ok(b)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}
