//! Arrow values to typed Excel cells, shared by the dataset encoder and the document renderer.

use super::{xlsx_error, MAX_CELL_CHARS};
use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float32Array, Float64Array, Int64Array,
    LargeStringArray, StringArray, StringViewArray, UInt64Array,
};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, TimeUnit};
use arrow::util::display::{ArrayFormatter, FormatOptions as DisplayOptions};
use rust_xlsxwriter::{ColNum, Format, RowNum, Worksheet};
use trialport_core::error::Reason;
use trialport_core::error::{Error, Result};

/// Integers beyond this magnitude are written as text: a double cannot hold all of them exactly.
const MAX_EXACT_INT: u64 = 1 << 53;
/// Significant digits Excel keeps of a number.
const EXCEL_DIGITS: usize = 15;
/// Days from Excel's day 0 (1899-12-30 in the 1900 date system) to 1970-01-01.
const UNIX_EPOCH_SERIAL: i64 = 25_569;
/// Serial of 9999-12-31, Excel's last date.
const MAX_SERIAL: i64 = 2_958_465;
/// Serial of 1900-03-01: before it Excel counts a 29 February 1900 that never was.
const LEAP_BUG_SERIAL: i64 = 61;
const SECONDS_PER_DAY: i64 = 86_400;

/// Number formats and the header style, created once per workbook.
#[derive(Debug, Clone)]
pub(crate) struct Styles {
    pub(crate) date: Format,
    pub(crate) datetime: Format,
    pub(crate) time: Format,
    pub(crate) bold: Format,
    pub(crate) title: Format,
}

impl Styles {
    pub(crate) fn new() -> Self {
        Styles {
            date: Format::new().set_num_format("yyyy-mm-dd"),
            datetime: Format::new().set_num_format("yyyy-mm-dd hh:mm:ss"),
            time: Format::new().set_num_format("hh:mm:ss"),
            bold: Format::new().set_bold(),
            title: Format::new().set_bold().set_font_size(16),
        }
    }
}

/// Whether Excel can hold values of type `dt` (checked before writing a byte).
pub(crate) fn supported(dt: &DataType) -> bool {
    use DataType as D;
    match dt {
        D::Null
        | D::Boolean
        | D::Int8
        | D::Int16
        | D::Int32
        | D::Int64
        | D::UInt8
        | D::UInt16
        | D::UInt32
        | D::UInt64
        | D::Float16
        | D::Float32
        | D::Float64
        | D::Decimal32(_, _)
        | D::Decimal64(_, _)
        | D::Decimal128(_, _)
        | D::Decimal256(_, _)
        | D::Utf8
        | D::LargeUtf8
        | D::Utf8View
        | D::Date32
        | D::Date64
        | D::Timestamp(_, _)
        | D::Time32(_)
        | D::Time64(_) => true,
        D::Dictionary(_, values) => supported(values),
        _ => false,
    }
}

/// EXP002 `unsupported_type` for the first column Excel cannot hold.
pub(crate) fn check_fields<'f>(fields: impl IntoIterator<Item = &'f Field>) -> Result<()> {
    for f in fields {
        if !supported(f.data_type()) {
            return Err(Error::validation(
                Reason::UnsupportedType,
                format!(
                    "column '{}' has type {} which an XLSX cell cannot hold",
                    f.name(),
                    f.data_type()
                ),
            )
            .with_field(f.name().clone()));
        }
    }
    Ok(())
}

/// Text beginning with one of these could be taken for a formula (OWASP).
fn looks_like_formula(s: &str) -> bool {
    matches!(
        s.as_bytes().first(),
        Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r')
    )
}

/// How text cells are written.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TextPolicy {
    /// Prefix formula-looking text with a single quote.
    pub(crate) neutralize: bool,
}

impl TextPolicy {
    /// Writes user text at (`row`, `col`); `field` names it in the error when it is too long.
    ///
    /// # Errors
    /// EXP002 `unrepresentable_value` when the text does not fit in a cell.
    pub(crate) fn write(
        self,
        ws: &mut Worksheet,
        row: RowNum,
        col: ColNum,
        text: &str,
        format: Option<&Format>,
        field: &str,
    ) -> Result<()> {
        let quote = self.neutralize && looks_like_formula(text);
        // A UTF-16 code unit never takes fewer than one UTF-8 byte, so short strings need no count.
        if text.len() + usize::from(quote) > MAX_CELL_CHARS
            && text.encode_utf16().count() + usize::from(quote) > MAX_CELL_CHARS
        {
            return Err(too_long(field));
        }
        let r = match (quote, format) {
            (false, None) => ws.write_string(row, col, text),
            (false, Some(f)) => ws.write_string_with_format(row, col, text, f),
            (true, None) => ws.write_string(row, col, format!("'{text}")),
            (true, Some(f)) => ws.write_string_with_format(row, col, format!("'{text}"), f),
        };
        r.map(|_| ()).map_err(xlsx_error)
    }
}

fn too_long(field: &str) -> Error {
    Error::validation(
        Reason::UnrepresentableValue,
        format!(
            "a value of '{field}' is longer than the {MAX_CELL_CHARS} characters an Excel cell holds"
        ),
    )
    .with_field(field.to_string())
    .with_detail("max_chars", MAX_CELL_CHARS)
}

/// The Excel serial day of `days` since 1970-01-01, or `None` outside 1900-01-01..=9999-12-31.
fn serial_day(days: i64) -> Option<i64> {
    let serial = days.checked_add(UNIX_EPOCH_SERIAL)?;
    // Serial 1 is 1900-01-01; below 61 Excel's phantom 1900-02-29 has not happened yet.
    if !(2..=MAX_SERIAL).contains(&serial) {
        return None;
    }
    Some(if serial < LEAP_BUG_SERIAL {
        serial - 1
    } else {
        serial
    })
}

/// The Excel serial date-time of `ticks` units of `per_second` since the Unix epoch.
fn serial_datetime(ticks: i64, per_second: i64) -> Option<f64> {
    let ticks_per_day = per_second * SECONDS_PER_DAY;
    let days = ticks.div_euclid(ticks_per_day);
    let rest = ticks.rem_euclid(ticks_per_day);
    let day = serial_day(days)?;
    Some(day as f64 + rest as f64 / ticks_per_day as f64)
}

fn per_second(unit: TimeUnit) -> i64 {
    match unit {
        TimeUnit::Second => 1,
        TimeUnit::Millisecond => 1_000,
        TimeUnit::Microsecond => 1_000_000,
        TimeUnit::Nanosecond => 1_000_000_000,
    }
}

/// ISO 8601 text of a date-time Excel cannot show as a date (UTC).
fn iso_datetime(ticks: i64, per_second: i64, date_only: bool) -> Option<String> {
    let secs = ticks.div_euclid(per_second);
    let nanos = ticks.rem_euclid(per_second) * (1_000_000_000 / per_second);
    let t = chrono::DateTime::from_timestamp(secs, u32::try_from(nanos).ok()?)?;
    Some(if date_only && nanos == 0 && secs % SECONDS_PER_DAY == 0 {
        t.format("%Y-%m-%d").to_string()
    } else {
        t.format("%Y-%m-%d %H:%M:%S%.f").to_string()
    })
}

/// One column of a batch, ready to be read cell by cell.
enum Column<'a> {
    Null,
    Bool(&'a BooleanArray),
    Float(&'a Float64Array),
    Float32(&'a Float32Array),
    Int(&'a Int64Array),
    UInt(&'a UInt64Array),
    Decimal(&'a dyn Array, ArrayFormatter<'a>),
    Utf8(&'a StringArray),
    LargeUtf8(&'a LargeStringArray),
    Utf8View(&'a StringViewArray),
    /// Days since 1970-01-01.
    Days(&'a Int64Array),
    /// Ticks since the Unix epoch; `date` when shown as a date.
    Instant {
        ticks: &'a Int64Array,
        per_second: i64,
        date: bool,
    },
    /// Ticks since midnight.
    TimeOfDay {
        ticks: &'a Int64Array,
        per_second: i64,
    },
}

/// The arrays of a batch in the few physical shapes the writer reads (casts made once per batch).
pub(crate) struct Prepared {
    arrays: Vec<(ArrayRef, DataType)>,
}

impl Prepared {
    /// Normalises every column of a batch: dictionaries decoded, small numbers widened, temporal values as ticks.
    ///
    /// # Errors
    /// EXP002 for a type Excel cannot hold (already refused when the encoder was created).
    pub(crate) fn new(columns: &[ArrayRef]) -> Result<Self> {
        let arrays = columns.iter().map(normalise).collect::<Result<Vec<_>>>()?;
        Ok(Prepared { arrays })
    }

    /// Readers over the prepared arrays, one per column.
    pub(crate) fn columns(&self) -> Result<Vec<Cells<'_>>> {
        self.arrays
            .iter()
            .map(|(a, logical)| Cells::new(a.as_ref(), logical))
            .collect()
    }
}

fn normalise(array: &ArrayRef) -> Result<(ArrayRef, DataType)> {
    use DataType as D;
    let dt = array.data_type().clone();
    let to = |t: &DataType| -> Result<ArrayRef> { Ok(cast(array, t)?) };
    Ok(match &dt {
        D::Dictionary(_, values) => {
            let decoded = cast(array, values)?;
            return normalise(&decoded);
        }
        D::Int8 | D::Int16 | D::Int32 | D::UInt8 | D::UInt16 | D::UInt32 | D::Float16 => {
            (to(&D::Float64)?, dt)
        }
        D::Date32 | D::Date64 | D::Timestamp(_, _) | D::Time32(_) | D::Time64(_) => {
            (to(&D::Int64)?, dt)
        }
        _ => (array.clone(), dt),
    })
}

fn internal() -> Error {
    Error::server(Reason::XlsxError, "unexpected array layout")
}

/// Reads the cells of one column.
pub(crate) struct Cells<'a> {
    column: Column<'a>,
}

impl<'a> Cells<'a> {
    fn new(array: &'a dyn Array, logical: &DataType) -> Result<Self> {
        use DataType as D;
        let column = match logical {
            D::Null => Column::Null,
            D::Boolean => Column::Bool(array.as_boolean_opt().ok_or_else(internal)?),
            D::Float64
            | D::Int8
            | D::Int16
            | D::Int32
            | D::UInt8
            | D::UInt16
            | D::UInt32
            | D::Float16 => Column::Float(array.as_primitive_opt().ok_or_else(internal)?),
            D::Float32 => Column::Float32(array.as_primitive_opt().ok_or_else(internal)?),
            D::Int64 => Column::Int(array.as_primitive_opt().ok_or_else(internal)?),
            D::UInt64 => Column::UInt(array.as_primitive_opt().ok_or_else(internal)?),
            D::Decimal32(_, _) | D::Decimal64(_, _) | D::Decimal128(_, _) | D::Decimal256(_, _) => {
                Column::Decimal(
                    array,
                    ArrayFormatter::try_new(array, &DisplayOptions::new())?,
                )
            }
            D::Utf8 => Column::Utf8(array.as_string_opt().ok_or_else(internal)?),
            D::LargeUtf8 => Column::LargeUtf8(array.as_string_opt().ok_or_else(internal)?),
            D::Utf8View => Column::Utf8View(array.as_string_view_opt().ok_or_else(internal)?),
            D::Date32 => Column::Days(array.as_primitive_opt().ok_or_else(internal)?),
            D::Date64 => Column::Instant {
                ticks: array.as_primitive_opt().ok_or_else(internal)?,
                per_second: 1_000,
                date: true,
            },
            D::Timestamp(unit, _) => Column::Instant {
                ticks: array.as_primitive_opt().ok_or_else(internal)?,
                per_second: per_second(*unit),
                date: false,
            },
            D::Time32(unit) | D::Time64(unit) => Column::TimeOfDay {
                ticks: array.as_primitive_opt().ok_or_else(internal)?,
                per_second: per_second(*unit),
            },
            other => {
                return Err(Error::validation(
                    Reason::UnsupportedType,
                    format!("type {other} cannot be written to an XLSX cell"),
                ))
            }
        };
        Ok(Cells { column })
    }

    /// Writes the value at `index` into cell (`row`, `col`); nulls leave the cell empty. Dates and times are
    /// plain numbers here: their number format is the column's, set once by [`setup_columns`] (a format per cell
    /// would cost a hash lookup per cell).
    ///
    /// # Errors
    /// EXP002 `unrepresentable_value` (field `name`) for a value no cell can hold.
    #[inline]
    pub(crate) fn write(
        &self,
        ws: &mut Worksheet,
        row: RowNum,
        col: ColNum,
        index: usize,
        text: TextPolicy,
        name: &str,
    ) -> Result<()> {
        let r = match &self.column {
            Column::Null => return Ok(()),
            Column::Bool(a) => {
                if a.is_null(index) {
                    return Ok(());
                }
                ws.write_boolean(row, col, a.value(index))
            }
            Column::Float(a) => {
                if a.is_null(index) {
                    return Ok(());
                }
                return write_float(ws, row, col, a.value(index));
            }
            Column::Float32(a) => {
                if a.is_null(index) {
                    return Ok(());
                }
                // Through the shortest decimal text, so 0.1f32 is 0.1 and not 0.100000001490116.
                let v = a.value(index);
                let wide = v.to_string().parse::<f64>().unwrap_or(f64::from(v));
                return write_float(ws, row, col, wide);
            }
            Column::Int(a) => {
                if a.is_null(index) {
                    return Ok(());
                }
                let v = a.value(index);
                if v.unsigned_abs() <= MAX_EXACT_INT {
                    ws.write_number(row, col, v as f64)
                } else {
                    ws.write_string(row, col, v.to_string())
                }
            }
            Column::UInt(a) => {
                if a.is_null(index) {
                    return Ok(());
                }
                let v = a.value(index);
                if v <= MAX_EXACT_INT {
                    ws.write_number(row, col, v as f64)
                } else {
                    ws.write_string(row, col, v.to_string())
                }
            }
            Column::Decimal(a, f) => {
                if a.is_null(index) {
                    return Ok(());
                }
                let s = f.value(index).to_string();
                let digits = s
                    .trim_start_matches('-')
                    .trim_start_matches(['0', '.'])
                    .bytes()
                    .filter(u8::is_ascii_digit)
                    .count();
                match s.parse::<f64>() {
                    Ok(v) if digits <= EXCEL_DIGITS && v.is_finite() => {
                        ws.write_number(row, col, v)
                    }
                    _ => ws.write_string(row, col, s),
                }
            }
            Column::Utf8(a) => {
                if a.is_null(index) {
                    return Ok(());
                }
                return text.write(ws, row, col, a.value(index), None, name);
            }
            Column::LargeUtf8(a) => {
                if a.is_null(index) {
                    return Ok(());
                }
                return text.write(ws, row, col, a.value(index), None, name);
            }
            Column::Utf8View(a) => {
                if a.is_null(index) {
                    return Ok(());
                }
                return text.write(ws, row, col, a.value(index), None, name);
            }
            Column::Days(a) => {
                if a.is_null(index) {
                    return Ok(());
                }
                let days = a.value(index);
                match serial_day(days) {
                    Some(serial) => ws.write_number(row, col, serial as f64),
                    None => {
                        let iso = days
                            .checked_mul(SECONDS_PER_DAY)
                            .and_then(|s| iso_datetime(s, 1, true))
                            .ok_or_else(|| unrepresentable(name))?;
                        ws.write_string(row, col, iso)
                    }
                }
            }
            Column::Instant {
                ticks,
                per_second,
                date,
            } => {
                if ticks.is_null(index) {
                    return Ok(());
                }
                let t = ticks.value(index);
                match serial_datetime(t, *per_second) {
                    Some(serial) => ws.write_number(row, col, serial),
                    None => {
                        let iso = iso_datetime(t, *per_second, *date)
                            .ok_or_else(|| unrepresentable(name))?;
                        ws.write_string(row, col, iso)
                    }
                }
            }
            Column::TimeOfDay { ticks, per_second } => {
                if ticks.is_null(index) {
                    return Ok(());
                }
                let t = ticks.value(index);
                let per_day = per_second * SECONDS_PER_DAY;
                if !(0..per_day).contains(&t) {
                    return Err(unrepresentable(name));
                }
                ws.write_number(row, col, t as f64 / per_day as f64)
            }
        };
        r.map(|_| ()).map_err(xlsx_error)
    }
}

/// Gives date and time columns their number format and a width that shows them whole.
///
/// # Errors
/// EXP005 when the writer refuses (it cannot for columns within Excel's limit).
pub(crate) fn setup_columns<'f>(
    ws: &mut Worksheet,
    fields: impl IntoIterator<Item = &'f Field>,
    styles: &Styles,
) -> Result<()> {
    for (col, f) in fields.into_iter().enumerate() {
        let Some((format, width)) = temporal_layout(f.data_type(), styles) else {
            continue;
        };
        let col = ColNum::try_from(col).map_err(|_| internal())?;
        ws.set_column_format(col, format).map_err(xlsx_error)?;
        ws.set_column_width(col, width).map_err(xlsx_error)?;
    }
    Ok(())
}

fn temporal_layout<'s>(dt: &DataType, styles: &'s Styles) -> Option<(&'s Format, f64)> {
    match dt {
        DataType::Date32 | DataType::Date64 => Some((&styles.date, 11.0)),
        DataType::Timestamp(_, _) => Some((&styles.datetime, 19.0)),
        DataType::Time32(_) | DataType::Time64(_) => Some((&styles.time, 9.0)),
        DataType::Dictionary(_, v) => temporal_layout(v, styles),
        _ => None,
    }
}

fn write_float(ws: &mut Worksheet, row: RowNum, col: ColNum, v: f64) -> Result<()> {
    let r = if v.is_finite() {
        ws.write_number(row, col, v)
    } else if v.is_nan() {
        ws.write_string(row, col, "NaN")
    } else if v > 0.0 {
        ws.write_string(row, col, "inf")
    } else {
        ws.write_string(row, col, "-inf")
    };
    r.map(|_| ()).map_err(xlsx_error)
}

fn unrepresentable(name: &str) -> Error {
    Error::validation(
        Reason::UnrepresentableValue,
        format!("a value of column '{name}' is outside what an Excel cell can hold"),
    )
    .with_field(name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excel_serials() {
        // 1970-01-01 is serial 25569; 1900-01-01 is 1; 1900-03-01 is 61; 9999-12-31 is 2958465.
        assert_eq!(serial_day(0), Some(25_569));
        assert_eq!(serial_day(-25_567), Some(1));
        assert_eq!(serial_day(-25_508), Some(61));
        assert_eq!(serial_day(-25_509), Some(59));
        assert_eq!(serial_day(-25_568), None);
        assert_eq!(serial_day(2_932_896), Some(2_958_465));
        assert_eq!(serial_day(2_932_897), None);
        assert_eq!(serial_datetime(43_200, 1), Some(25_569.5));
        assert_eq!(serial_datetime(-1, 1), Some(25_568.0 + 86_399.0 / 86_400.0));
    }

    #[test]
    fn formula_prefixes() {
        for s in ["=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx"] {
            assert!(looks_like_formula(s), "{s:?}");
        }
        for s in ["", "a=1", "1", " =1"] {
            assert!(!looks_like_formula(s), "{s:?}");
        }
    }

    #[test]
    fn iso_text_outside_excel_calendar() {
        let days_1800 = -62_091; // 1800-01-01
        assert_eq!(
            iso_datetime(days_1800 * SECONDS_PER_DAY, 1, true).as_deref(),
            Some("1800-01-01")
        );
        assert_eq!(
            iso_datetime(days_1800 * SECONDS_PER_DAY * 1000 + 1500, 1000, false).as_deref(),
            Some("1800-01-01 00:00:01.500")
        );
    }
}
