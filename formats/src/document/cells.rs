//! Table cells as text, with Arrow's display formatter.
//!
//! Time-zone-aware timestamps are shown in UTC with a `Z` (RFC 3339), whatever their zone: this build of Arrow
//! resolves only fixed offsets, and UTC is what the `xlsx` format writes too.

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::compute::cast;
use arrow::datatypes::{
    DataType, TimeUnit, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType,
};
use arrow::util::display::{ArrayFormatter, FormatOptions as DisplayOptions};
use std::sync::Arc;
use trialport_core::error::Reason;
use trialport_core::error::{Error, Result};

const UTC_FORMAT: &str = "%Y-%m-%dT%H:%M:%S%.fZ";

/// One column ready to be shown as text; nulls are empty.
pub(crate) struct Displayable {
    array: ArrayRef,
    options: DisplayOptions<'static>,
    name: String,
}

impl Displayable {
    /// Prepares `array` (column `name`): dictionaries decoded, zoned timestamps as UTC.
    pub(crate) fn new(array: &ArrayRef, name: &str) -> Result<Self> {
        let mut options = DisplayOptions::new().with_null("");
        let array = match array.data_type() {
            DataType::Dictionary(_, values) => cast(array, values)?,
            _ => array.clone(),
        };
        let array = match array.data_type() {
            DataType::Timestamp(unit, Some(_)) => {
                options = options.with_timestamp_format(Some(UTC_FORMAT));
                without_zone(&array, *unit)
            }
            _ => array,
        };
        Ok(Displayable {
            array,
            options,
            name: name.to_string(),
        })
    }

    /// The formatter over the prepared column.
    ///
    /// # Errors
    /// EXP002 `unsupported_type` when Arrow cannot display the type.
    pub(crate) fn formatter(&self) -> Result<Formatter<'_>> {
        let inner = ArrayFormatter::try_new(self.array.as_ref(), &self.options).map_err(|_| {
            Error::validation(
                Reason::UnsupportedType,
                format!("column '{}' cannot be displayed", self.name),
            )
            .with_field(self.name.clone())
        })?;
        Ok(Formatter {
            inner,
            array: self.array.as_ref(),
            name: &self.name,
        })
    }
}

/// Formats one column's values.
pub(crate) struct Formatter<'a> {
    inner: ArrayFormatter<'a>,
    array: &'a dyn Array,
    name: &'a str,
}

impl Formatter<'_> {
    /// The text of row `i`, `None` for a null.
    ///
    /// # Errors
    /// EXP002 `invalid_data` when the value cannot be displayed.
    pub(crate) fn text(&self, i: usize) -> Result<Option<String>> {
        if self.array.is_null(i) {
            return Ok(None);
        }
        self.inner.value(i).try_to_string().map(Some).map_err(|_| {
            Error::validation(
                Reason::InvalidData,
                format!("a value of column '{}' cannot be displayed", self.name),
            )
            .with_field(self.name.to_string())
        })
    }
}

/// The same instants with no zone attached, so they display as UTC.
fn without_zone(array: &ArrayRef, unit: TimeUnit) -> ArrayRef {
    let none: Option<Arc<str>> = None;
    match unit {
        TimeUnit::Second => Arc::new(
            array
                .as_primitive::<TimestampSecondType>()
                .clone()
                .with_timezone_opt(none),
        ),
        TimeUnit::Millisecond => Arc::new(
            array
                .as_primitive::<TimestampMillisecondType>()
                .clone()
                .with_timezone_opt(none),
        ),
        TimeUnit::Microsecond => Arc::new(
            array
                .as_primitive::<TimestampMicrosecondType>()
                .clone()
                .with_timezone_opt(none),
        ),
        TimeUnit::Nanosecond => Arc::new(
            array
                .as_primitive::<TimestampNanosecondType>()
                .clone()
                .with_timezone_opt(none),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::TimestampMillisecondArray;

    #[test]
    fn zoned_timestamps_show_in_utc() {
        for tz in ["UTC", "Europe/Paris", "+02:00"] {
            let a: ArrayRef = Arc::new(
                TimestampMillisecondArray::from(vec![Some(1_700_000_000_500), None])
                    .with_timezone(tz),
            );
            let d = Displayable::new(&a, "TS").expect("prepared");
            let f = d.formatter().expect("formatter");
            assert_eq!(
                f.text(0).expect("text").as_deref(),
                Some("2023-11-14T22:13:20.500Z")
            );
            assert_eq!(f.text(1).expect("text"), None);
        }
    }
}
