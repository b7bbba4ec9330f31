//! The formats `drift` names in a value: timestamps, identifiers, addresses.
//!
//! Detection is cheap prefilters (length, first byte) before any parser runs, because
//! it happens for every string and integer of every payload. Each format is checked
//! by a well-kept parser: chrono for RFC 3339 and dates, `url`, `uuid`,
//! `email_address`, `celes` for ISO 3166 country codes.

use serde::{Deserialize, Serialize};

/// A value's format.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// An RFC 3339 timestamp (`2026-05-18T09:00:00Z`).
    Rfc3339,
    /// A calendar date (`2026-05-18`).
    Date,
    /// Unix seconds between 2000 and 2100, as an integer.
    EpochSeconds,
    /// Unix milliseconds between 2000 and 2100, as an integer.
    EpochMillis,
    /// An `http` or `https` URL.
    Url,
    /// A UUID.
    Uuid,
    /// An e-mail address.
    Email,
    /// An ISO 3166-1 alpha-2 country code (`DE`).
    IsoCountry,
    /// None of the above.
    Plain,
}

impl Format {
    /// The format's name in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Rfc3339 => "rfc3339",
            Format::Date => "date",
            Format::EpochSeconds => "epoch-seconds",
            Format::EpochMillis => "epoch-millis",
            Format::Url => "url",
            Format::Uuid => "uuid",
            Format::Email => "email",
            Format::IsoCountry => "iso-country",
            Format::Plain => "plain",
        }
    }

    /// Whether values of this format differ from payload to payload (never drift by value).
    pub fn is_volatile(self) -> bool {
        !matches!(self, Format::IsoCountry | Format::Plain)
    }

    /// Whether the format is a point in time (a change between two of them is a format change).
    pub fn is_time(self) -> bool {
        matches!(
            self,
            Format::Rfc3339 | Format::Date | Format::EpochSeconds | Format::EpochMillis
        )
    }
}

const YEAR_2000: i64 = 946_684_800;
const YEAR_2100: i64 = 4_102_444_800;

/// The format of a string value.
pub fn of_str(s: &str) -> Format {
    let bytes = s.as_bytes();
    let Some(&first) = bytes.first() else {
        return Format::Plain;
    };
    match bytes.len() {
        2 if bytes.iter().all(u8::is_ascii_uppercase) && celes::Country::from_alpha2(s).is_ok() => {
            return Format::IsoCountry;
        }
        10 if first.is_ascii_digit()
            && bytes[4] == b'-'
            && chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok() =>
        {
            return Format::Date;
        }
        36 if bytes[8] == b'-' && bytes[13] == b'-' && uuid::Uuid::try_parse(s).is_ok() => {
            return Format::Uuid;
        }
        _ => {}
    }
    if first.is_ascii_digit() && (20..=40).contains(&bytes.len()) && bytes[4] == b'-' {
        if chrono::DateTime::parse_from_rfc3339(s).is_ok() {
            return Format::Rfc3339;
        }
    } else if first == b'h' && (s.starts_with("https://") || s.starts_with("http://")) {
        if url::Url::parse(s).is_ok() {
            return Format::Url;
        }
    } else if memchr::memchr(b'@', bytes).is_some()
        && !s.contains(' ')
        && email_address::EmailAddress::is_valid(s)
    {
        return Format::Email;
    }
    Format::Plain
}

/// The format of an integer value.
pub fn of_int(n: i64) -> Format {
    if (YEAR_2000..YEAR_2100).contains(&n) {
        Format::EpochSeconds
    } else if (YEAR_2000 * 1000..YEAR_2100 * 1000).contains(&n) {
        Format::EpochMillis
    } else {
        Format::Plain
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_named() {
        // (value, format, why)
        let rows = [
            ("2026-05-18T09:00:00Z", Format::Rfc3339, "UTC timestamp"),
            (
                "2026-05-18T09:00:00.123+02:00",
                Format::Rfc3339,
                "offset and fraction",
            ),
            ("2026-05-18", Format::Date, "a date alone"),
            (
                "https://api.checkr.com/v1/reports/abc",
                Format::Url,
                "https URL",
            ),
            ("123e4567-e89b-12d3-a456-426614174000", Format::Uuid, "UUID"),
            ("jane.doe@example.com", Format::Email, "e-mail"),
            ("DE", Format::IsoCountry, "country code"),
            ("ZZ", Format::Plain, "not a country"),
            ("de", Format::Plain, "country codes are upper case"),
            ("clear", Format::Plain, "a word"),
            ("2026-13-45", Format::Plain, "not a date"),
            ("", Format::Plain, "empty"),
            ("a @ b", Format::Plain, "not an address"),
        ];
        for (value, format, why) in rows {
            assert_eq!(of_str(value), format, "{value:?}: {why}");
        }
        assert_eq!(of_int(1_747_558_800), Format::EpochSeconds);
        assert_eq!(of_int(1_747_558_800_000), Format::EpochMillis);
        assert_eq!(of_int(42), Format::Plain);
    }
}
