//! Freeze windows: calendar times, in a time zone, when a stage takes no promotion.

use std::time::Duration;

use cutover_core::Timestamp;
use jiff::civil::{Date, DateTime, Time};
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};

/// A day of the week, written `mon` .. `sun`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[allow(missing_docs)] // the days of the week
pub enum Day {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

impl Day {
    fn of(weekday: jiff::civil::Weekday) -> Day {
        use jiff::civil::Weekday as W;
        match weekday {
            W::Monday => Day::Mon,
            W::Tuesday => Day::Tue,
            W::Wednesday => Day::Wed,
            W::Thursday => Day::Thu,
            W::Friday => Day::Fri,
            W::Saturday => Day::Sat,
            W::Sunday => Day::Sun,
        }
    }
}

/// A freeze window as written in a pipeline file: either weekly (`days`, with optional `start`
/// and `end` times of day; a window whose end is not after its start runs into the next day)
/// or once (`from` .. `until`, local date-times). Times are local to `timezone` (an IANA
/// name such as `Europe/Berlin`), daylight saving included.
///
/// ```yaml
/// freeze:
///   - { timezone: Europe/Berlin, days: [fri], start: "16:00", end: "00:00", reason: weekend }
///   - { timezone: Europe/Berlin, days: [sat, sun] }
///   - { timezone: America/New_York, from: "2026-12-24T00:00", until: "2027-01-02T00:00" }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FreezeWindowSpec {
    /// The time zone the times are in.
    pub timezone: String,
    /// Weekly: the days the window starts on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub days: Vec<Day>,
    /// Weekly: the time of day it starts (`HH:MM`, default `00:00`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    /// Weekly: the time of day it ends (`HH:MM`, default `00:00`, the next midnight).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
    /// Once: when it starts (`YYYY-MM-DDTHH:MM`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Once: when it ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    /// Why, for people.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

/// A checked freeze window.
#[derive(Debug, Clone, PartialEq)]
pub struct FreezeWindow {
    tz: TimeZone,
    when: When,
    reason: String,
}

#[derive(Debug, Clone, PartialEq)]
enum When {
    Weekly {
        days: Vec<Day>,
        start: Time,
        end: Time,
    },
    Once {
        from: DateTime,
        until: DateTime,
    },
}

impl FreezeWindow {
    /// Checks a window as written; the error is `(field, what is wrong)`.
    pub(crate) fn compile(spec: &FreezeWindowSpec) -> Result<Self, (&'static str, String)> {
        let tz = TimeZone::get(&spec.timezone).map_err(|e| {
            (
                "timezone",
                format!(
                    "unknown time zone `{}` ({e}); use an IANA name such as Europe/Berlin",
                    spec.timezone
                ),
            )
        })?;
        let time =
            |field: &'static str, text: &Option<String>| -> Result<Time, (&'static str, String)> {
                match text {
                    None => Ok(Time::midnight()),
                    Some(t) => t.parse::<Time>().map_err(|e| {
                        (
                            field,
                            format!("invalid time of day `{t}` ({e}); write it like 16:00"),
                        )
                    }),
                }
            };
        let datetime = |field: &'static str,
                        text: &Option<String>|
         -> Result<DateTime, (&'static str, String)> {
            let Some(t) = text else {
                return Err((
                    field,
                    "missing: a one-off window needs `from` and `until`".to_owned(),
                ));
            };
            t.parse::<DateTime>().map_err(|e| {
                (
                    field,
                    format!("invalid date-time `{t}` ({e}); write it like 2026-12-24T00:00"),
                )
            })
        };
        let once = spec.from.is_some() || spec.until.is_some();
        let when = match (spec.days.is_empty(), once) {
            (false, true) => {
                return Err((
                    "days",
                    "give either `days` (weekly) or `from`/`until` (once), not both".to_owned(),
                ));
            }
            (true, false) => {
                return Err((
                    "days",
                    "empty: give `days` (weekly) or `from`/`until` (once)".to_owned(),
                ));
            }
            (false, false) => When::Weekly {
                days: spec.days.clone(),
                start: time("start", &spec.start)?,
                end: time("end", &spec.end)?,
            },
            (true, true) => {
                if spec.start.is_some() || spec.end.is_some() {
                    return Err(("start", "`start`/`end` belong to weekly windows; a one-off window has `from`/`until`".to_owned()));
                }
                let from = datetime("from", &spec.from)?;
                let until = datetime("until", &spec.until)?;
                if until <= from {
                    return Err((
                        "until",
                        format!("`until` ({until}) is not after `from` ({from})"),
                    ));
                }
                When::Once { from, until }
            }
        };
        Ok(FreezeWindow {
            tz,
            when,
            reason: spec.reason.clone(),
        })
    }

    /// Why the window exists (may be empty).
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// If the window holds `now`: when it ends.
    pub fn ends_after(&self, now: Timestamp) -> Option<Timestamp> {
        let local = to_jiff(now).to_zoned(self.tz.clone()).datetime();
        let (date, time) = (local.date(), local.time());
        let at = |d: Date, t: Time| self.instant(d.to_datetime(t));
        match &self.when {
            When::Once { from, until } => {
                (local >= *from && local < *until).then(|| self.instant(*until))
            }
            When::Weekly { days, start, end } => {
                let on = |d: Date| days.contains(&Day::of(d.weekday()));
                if start < end {
                    (on(date) && time >= *start && time < *end).then(|| at(date, *end))
                } else if on(date) && time >= *start {
                    Some(at(date.tomorrow().ok()?, *end))
                } else if time < *end && date.yesterday().is_ok_and(on) {
                    Some(at(date, *end))
                } else {
                    None
                }
            }
        }
    }

    fn instant(&self, local: DateTime) -> Timestamp {
        // A local time that does not exist (a daylight-saving gap) is taken as the one after.
        let millis = self
            .tz
            .to_zoned(local)
            .map_or(i64::MAX, |z| z.timestamp().as_millisecond());
        Timestamp::from_unix_millis(u64::try_from(millis).unwrap_or(0))
    }
}

fn to_jiff(t: Timestamp) -> jiff::Timestamp {
    let millis = i64::try_from(t.unix_millis()).unwrap_or(i64::MAX);
    jiff::Timestamp::from_millisecond(millis).unwrap_or(jiff::Timestamp::MAX)
}

/// If any of `windows` holds `now`: when promotion opens again (windows that follow each other
/// are joined), and the reason of the window that holds it now.
pub(crate) fn frozen(windows: &[FreezeWindow], now: Timestamp) -> Option<(Timestamp, String)> {
    let mut until = now;
    let mut reason = None;
    // Bounded: a calendar of back-to-back windows reports the 64th end and is asked again then.
    for _ in 0..64 {
        let Some((end, why)) = windows
            .iter()
            .filter_map(|w| w.ends_after(until).map(|end| (end, w.reason())))
            .max_by_key(|(end, _)| *end)
        else {
            break;
        };
        reason.get_or_insert_with(|| why.to_owned());
        if end <= until {
            break;
        }
        until = end;
    }
    reason.map(|r| (until.max(now + Duration::from_millis(1)), r))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(yaml: &str) -> FreezeWindow {
        let spec: FreezeWindowSpec = serde_saphyr::from_str(yaml).unwrap();
        FreezeWindow::compile(&spec).unwrap()
    }

    fn at(text: &str) -> Timestamp {
        let t: jiff::Timestamp = text.parse().unwrap();
        Timestamp::from_unix_millis(u64::try_from(t.as_millisecond()).unwrap())
    }

    #[test]
    fn weekly_windows_follow_the_local_clock() {
        // 2026-12-04 is a Friday. Berlin is UTC+1 in December.
        let w = window("{ timezone: Europe/Berlin, days: [fri], start: '16:00', end: '18:00' }");
        assert_eq!(w.ends_after(at("2026-12-04T14:59:00Z")), None);
        assert_eq!(
            w.ends_after(at("2026-12-04T15:00:00Z")),
            Some(at("2026-12-04T17:00:00Z"))
        );
        assert_eq!(w.ends_after(at("2026-12-04T17:00:00Z")), None);
        assert_eq!(
            w.ends_after(at("2026-12-11T16:30:00Z")),
            Some(at("2026-12-11T17:00:00Z"))
        );
        assert_eq!(w.ends_after(at("2026-12-05T15:30:00Z")), None, "a Saturday");
    }

    #[test]
    fn windows_that_cross_midnight_and_back_to_back_windows_join() {
        let windows = [
            window("{ timezone: Europe/Berlin, days: [fri], start: '20:00', end: '00:00' }"),
            window("{ timezone: Europe/Berlin, days: [sat, sun] }"),
        ];
        // Friday 21:00 Berlin: frozen until Monday 00:00 Berlin (Sunday 23:00 UTC).
        let (until, _) = frozen(&windows, at("2026-12-04T20:00:00Z")).unwrap();
        assert_eq!(until, at("2026-12-06T23:00:00Z"));
        // Overnight window from Sunday 22:00 to 06:00 is held on Monday 05:00.
        let w = window("{ timezone: UTC, days: [sun], start: '22:00', end: '06:00' }");
        assert_eq!(
            w.ends_after(at("2026-12-07T05:00:00Z")),
            Some(at("2026-12-07T06:00:00Z"))
        );
        assert_eq!(w.ends_after(at("2026-12-07T06:00:00Z")), None);
        assert_eq!(frozen(&[w], at("2026-12-07T12:00:00Z")), None);
    }

    #[test]
    fn one_off_windows_and_daylight_saving() {
        let w = window(
            "{ timezone: America/New_York, from: '2026-03-07T12:00', until: '2026-03-08T12:00', reason: launch }",
        );
        // New York moves from UTC-5 to UTC-4 on 2026-03-08 at 02:00.
        assert_eq!(w.ends_after(at("2026-03-07T16:59:00Z")), None);
        assert_eq!(
            w.ends_after(at("2026-03-07T17:00:00Z")),
            Some(at("2026-03-08T16:00:00Z"))
        );
        let (_, reason) = frozen(&[w], at("2026-03-08T00:00:00Z")).unwrap();
        assert_eq!(reason, "launch");
    }

    #[test]
    fn bad_windows_name_the_field() {
        let bad = |yaml: &str| {
            let spec: FreezeWindowSpec = serde_saphyr::from_str(yaml).unwrap();
            FreezeWindow::compile(&spec).unwrap_err()
        };
        assert_eq!(bad("{ timezone: Mars/Olympus, days: [sat] }").0, "timezone");
        assert_eq!(
            bad("{ timezone: UTC, days: [sat], start: '25:00' }").0,
            "start"
        );
        assert_eq!(bad("{ timezone: UTC }").0, "days");
        assert_eq!(
            bad("{ timezone: UTC, from: '2026-01-02T00:00', until: '2026-01-01T00:00' }").0,
            "until"
        );
        assert_eq!(
            bad("{ timezone: UTC, from: '2026-01-02T00:00' }").0,
            "until"
        );
    }
}
