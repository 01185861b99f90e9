//! Dates: calendar dates from Unix time (UTC) for logs and listings, and
//! HTTP dates (RFC 9110 5.6.7) written and read. The one place dates are
//! formatted or parsed; parsing leans on chrono, the project's one date
//! library (msrpc also links `time`, which picky's Kerberos types use).

use std::time::{SystemTime, UNIX_EPOCH};

/// A UTC date and time of day.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Civil {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    /// 0 = Sunday.
    pub weekday: u32,
}

pub const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
pub const WEEKDAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

impl Civil {
    /// The proleptic Gregorian date of a moment.
    pub fn from_system_time(t: SystemTime) -> Civil {
        let secs = match t.duration_since(UNIX_EPOCH) {
            Ok(d) => d.as_secs() as i64,
            Err(e) => -(e.duration().as_secs() as i64),
        };
        let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        Civil {
            year: yoe + era * 400 + i64::from(month <= 2),
            month,
            day,
            hour: (rem / 3600) as u32,
            minute: (rem % 3600 / 60) as u32,
            second: (rem % 60) as u32,
            // 1970-01-01 was a Thursday.
            weekday: (days + 4).rem_euclid(7) as u32,
        }
    }

    /// `YYYY-MM-DD`
    pub fn date(&self) -> String {
        format!("{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }

    /// `HH:MM:SS`
    pub fn time(&self) -> String {
        format!("{:02}:{:02}:{:02}", self.hour, self.minute, self.second)
    }
}

const SHORT_DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];

/// An IMF-fixdate, as HTTP sends dates: `Sun, 06 Nov 1994 08:49:37 GMT`.
pub fn http_date(t: SystemTime) -> String {
    let c = Civil::from_system_time(t);
    if (0..=9999).contains(&c.year) {
        // Written directly: this runs for every static response.
        let mut out = String::with_capacity(29);
        let two = |out: &mut String, n: u32| {
            out.push(char::from(b'0' + (n / 10) as u8));
            out.push(char::from(b'0' + (n % 10) as u8));
        };
        out.push_str(SHORT_DAYS[c.weekday as usize]);
        out.push_str(", ");
        two(&mut out, c.day);
        out.push(' ');
        out.push_str(&MONTHS[(c.month - 1) as usize][..3]);
        out.push(' ');
        two(&mut out, (c.year / 100) as u32);
        two(&mut out, (c.year % 100) as u32);
        out.push(' ');
        two(&mut out, c.hour);
        out.push(':');
        two(&mut out, c.minute);
        out.push(':');
        two(&mut out, c.second);
        out.push_str(" GMT");
        return out;
    }
    format!(
        "{}, {:02} {} {:04} {:02}:{:02}:{:02} GMT",
        SHORT_DAYS[c.weekday as usize],
        c.day,
        &MONTHS[(c.month - 1) as usize][..3],
        c.year,
        c.hour,
        c.minute,
        c.second
    )
}

/// Reads an HTTP date in any of the three forms RFC 9110 5.6.7 says a
/// recipient accepts: IMF-fixdate, RFC 850 (`Sunday, 06-Nov-94 08:49:37
/// GMT`, a two-digit year within 50 years of now read as RFC 9110 asks)
/// and asctime (`Sun Nov  6 08:49:37 1994`). `None` for anything else.
pub fn parse_http_date(text: &str) -> Option<SystemTime> {
    use chrono::{Datelike, NaiveDateTime};
    let text = text.trim();
    let parsed = NaiveDateTime::parse_from_str(text, "%a, %d %b %Y %H:%M:%S GMT")
        .or_else(|_| NaiveDateTime::parse_from_str(text, "%a %b %e %H:%M:%S %Y"))
        .ok()
        .or_else(|| {
            let rfc850 = NaiveDateTime::parse_from_str(text, "%A, %d-%b-%y %H:%M:%S GMT").ok()?;
            // chrono reads %y as 1969-2068; RFC 9110: a date more than 50
            // years ahead is the same year a century earlier.
            let now = chrono::Utc::now().year();
            if rfc850.year() > now + 50 {
                rfc850.with_year(rfc850.year() - 100)
            } else {
                Some(rfc850)
            }
        })?;
    let secs = parsed.and_utc().timestamp();
    if secs >= 0 {
        Some(UNIX_EPOCH + std::time::Duration::from_secs(secs as u64))
    } else {
        UNIX_EPOCH.checked_sub(std::time::Duration::from_secs(secs.unsigned_abs()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn known_dates() {
        let c = Civil::from_system_time(UNIX_EPOCH + Duration::from_secs(1_795_000_000));
        assert_eq!(
            (c.date(), c.time()),
            ("2026-11-18".into(), "11:06:40".into())
        );
        assert_eq!(WEEKDAYS[c.weekday as usize], "Wednesday");
        let leap = Civil::from_system_time(UNIX_EPOCH + Duration::from_secs(951_782_400));
        assert_eq!(
            (leap.date(), WEEKDAYS[leap.weekday as usize]),
            ("2000-02-29".into(), "Tuesday")
        );
        let epoch = Civil::from_system_time(UNIX_EPOCH);
        assert_eq!((epoch.date(), epoch.weekday), ("1970-01-01".into(), 4));
    }

    #[test]
    fn http_dates_match_chrono_across_the_calendar() {
        // Every ~37 hours from 1970 to 2100 (leap years, month ends,
        // every weekday), against chrono's own formatting.
        let mut secs: u64 = 0;
        while secs < 4_102_444_800 {
            let t = UNIX_EPOCH + std::time::Duration::from_secs(secs);
            let expected = chrono::DateTime::<chrono::Utc>::from(t)
                .format("%a, %d %b %Y %H:%M:%S GMT")
                .to_string();
            assert_eq!(http_date(t), expected);
            secs += 133_337;
        }
    }

    #[test]
    fn http_dates_are_written_and_read_in_every_form() {
        let t = UNIX_EPOCH + Duration::from_secs(784_111_777);
        assert_eq!(http_date(t), "Sun, 06 Nov 1994 08:49:37 GMT");
        for text in [
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
            "  Sun, 06 Nov 1994 08:49:37 GMT ",
        ] {
            assert_eq!(parse_http_date(text), Some(t), "{text:?}");
        }
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(parse_http_date(&http_date(leap)), Some(leap));
        for bad in [
            "",
            "yesterday",
            "Sun, 06 Nov 1994 08:49:37",
            "Sun, 31 Feb 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 25:49:37 GMT",
        ] {
            assert_eq!(parse_http_date(bad), None, "{bad:?}");
        }
    }
}
