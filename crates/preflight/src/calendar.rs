//! Freeze windows and business hours, in a time zone.

use async_trait::async_trait;
use cutover_core::Timestamp;
use cutover_core::checklist::{Check, CheckContext, CheckResult};
use jiff::civil::{Date, DateTime, Time, Weekday};
use jiff::tz::TimeZone;
use serde::Deserialize;

fn zone(name: &str) -> Result<TimeZone, (String, String)> {
    TimeZone::get(name).map_err(|e| ("zone".into(), format!("unknown time zone `{name}`: {e}")))
}

fn zoned(now: Timestamp, tz: &TimeZone) -> Result<jiff::Zoned, String> {
    let millis = i64::try_from(now.unix_millis()).map_err(|e| e.to_string())?;
    jiff::Timestamp::from_millisecond(millis)
        .map(|t| t.to_zoned(tz.clone()))
        .map_err(|e| e.to_string())
}

/// A period in which nothing is deployed, in the check's time zone.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FreezeWindow {
    /// From (inclusive), like `2026-12-20T00:00`.
    pub start: DateTime,
    /// To (exclusive).
    pub end: DateTime,
    /// Why, like `year-end freeze`.
    #[serde(default)]
    pub reason: String,
}

/// Now is outside every freeze window.
///
/// ```yaml
/// freeze:
///   zone: Europe/Berlin
///   windows:
///     - { start: "2026-12-20T00:00", end: "2027-01-04T00:00", reason: year-end freeze }
/// ```
#[derive(Debug, Clone)]
pub struct FreezeCheck {
    zone: TimeZone,
    windows: Vec<FreezeWindow>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FreezeParams {
    zone: String,
    windows: Vec<FreezeWindow>,
}

impl FreezeCheck {
    /// Freeze windows in time zone `zone` (an IANA name like `Europe/Berlin`).
    pub fn new(zone: &str, windows: Vec<FreezeWindow>) -> Result<Self, String> {
        Self::from_params(FreezeParams {
            zone: zone.to_owned(),
            windows,
        })
        .map_err(|(path, reason)| format!("{path}: {reason}"))
    }

    pub(crate) fn from_params(p: FreezeParams) -> Result<Self, (String, String)> {
        for (i, w) in p.windows.iter().enumerate() {
            if w.end <= w.start {
                return Err((format!("windows[{i}].end"), "must be after `start`".into()));
            }
        }
        Ok(FreezeCheck {
            zone: zone(&p.zone)?,
            windows: p.windows,
        })
    }
}

#[async_trait]
impl Check for FreezeCheck {
    async fn run(&self, ctx: &CheckContext) -> CheckResult {
        let now = match zoned(ctx.now, &self.zone) {
            Ok(z) => z,
            Err(e) => return CheckResult::error(format!("cannot place now in the zone: {e}")),
        };
        let local = now.datetime();
        let zone = self.zone.iana_name().unwrap_or("the zone").to_owned();
        let shown = local.strftime("%Y-%m-%d %H:%M").to_string();
        for w in &self.windows {
            if w.start <= local && local < w.end {
                return CheckResult::fail(format!(
                    "in a freeze window until {} ({zone}){}",
                    w.end,
                    if w.reason.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", w.reason)
                    }
                ))
                .hint("wait for the window to end, or get an exemption with a reason and an expiry")
                .evidence("now", &shown)
                .evidence("zone", &zone)
                .evidence("window_end", w.end.to_string());
            }
        }
        CheckResult::pass(format!("{shown} {zone} is outside every freeze window"))
            .evidence("now", &shown)
            .evidence("zone", &zone)
    }
}

/// Now is within business hours: on one of `days`, between `start` and `end`, not on a holiday.
///
/// ```yaml
/// business_hours: { zone: America/New_York, days: [mon, tue, wed, thu], start: "09:00", end: "16:00", holidays: [2026-12-24] }
/// ```
#[derive(Debug, Clone)]
pub struct BusinessHoursCheck {
    zone: TimeZone,
    days: Vec<Weekday>,
    start: Time,
    end: Time,
    holidays: Vec<Date>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BusinessHoursParams {
    zone: String,
    #[serde(default)]
    days: Option<Vec<String>>,
    start: Time,
    end: Time,
    #[serde(default)]
    holidays: Vec<Date>,
}

fn weekday(name: &str) -> Option<Weekday> {
    Some(match name.to_ascii_lowercase().get(..3)? {
        "mon" => Weekday::Monday,
        "tue" => Weekday::Tuesday,
        "wed" => Weekday::Wednesday,
        "thu" => Weekday::Thursday,
        "fri" => Weekday::Friday,
        "sat" => Weekday::Saturday,
        "sun" => Weekday::Sunday,
        _ => return None,
    })
}

impl BusinessHoursCheck {
    /// Monday to Friday, `start` to `end` (like `"09:00"`), in `zone`.
    pub fn new(zone: &str, start: &str, end: &str) -> Result<Self, String> {
        let parse = |t: &str| t.parse::<Time>().map_err(|e| format!("`{t}`: {e}"));
        Self::from_params(BusinessHoursParams {
            zone: zone.to_owned(),
            days: None,
            start: parse(start)?,
            end: parse(end)?,
            holidays: Vec::new(),
        })
        .map_err(|(path, reason)| format!("{path}: {reason}"))
    }

    pub(crate) fn from_params(p: BusinessHoursParams) -> Result<Self, (String, String)> {
        let days = match p.days {
            None => vec![
                Weekday::Monday,
                Weekday::Tuesday,
                Weekday::Wednesday,
                Weekday::Thursday,
                Weekday::Friday,
            ],
            Some(names) => names
                .iter()
                .enumerate()
                .map(|(i, n)| {
                    weekday(n).ok_or_else(|| {
                        (
                            format!("days[{i}]"),
                            format!("`{n}` is not a day (mon..sun)"),
                        )
                    })
                })
                .collect::<Result<_, _>>()?,
        };
        if p.end <= p.start {
            return Err(("end".into(), "must be after `start`".into()));
        }
        Ok(BusinessHoursCheck {
            zone: zone(&p.zone)?,
            days,
            start: p.start,
            end: p.end,
            holidays: p.holidays,
        })
    }
}

#[async_trait]
impl Check for BusinessHoursCheck {
    async fn run(&self, ctx: &CheckContext) -> CheckResult {
        let now = match zoned(ctx.now, &self.zone) {
            Ok(z) => z,
            Err(e) => return CheckResult::error(format!("cannot place now in the zone: {e}")),
        };
        let zone = self.zone.iana_name().unwrap_or("the zone").to_owned();
        let shown = now.datetime().strftime("%a %Y-%m-%d %H:%M").to_string();
        let hours = format!(
            "{}–{}",
            self.start.strftime("%H:%M"),
            self.end.strftime("%H:%M")
        );
        let why_not = if self.holidays.contains(&now.date()) {
            Some("a holiday".to_owned())
        } else if !self.days.contains(&now.weekday()) {
            Some(format!("not a business day ({})", now.weekday_name()))
        } else if now.time() < self.start || now.time() >= self.end {
            Some(format!("outside business hours {hours}"))
        } else {
            None
        };
        let result = match why_not {
            None => CheckResult::pass(format!("{shown} {zone} is within business hours {hours}")),
            Some(why) => CheckResult::fail(format!("{shown} {zone} is {why}"))
                .hint("deploy when people are at work to watch it, or get an exemption"),
        };
        result.evidence("now", &shown).evidence("zone", &zone)
    }
}

trait WeekdayName {
    fn weekday_name(&self) -> &'static str;
}

impl WeekdayName for jiff::Zoned {
    fn weekday_name(&self) -> &'static str {
        match self.weekday() {
            Weekday::Monday => "Monday",
            Weekday::Tuesday => "Tuesday",
            Weekday::Wednesday => "Wednesday",
            Weekday::Thursday => "Thursday",
            Weekday::Friday => "Friday",
            Weekday::Saturday => "Saturday",
            Weekday::Sunday => "Sunday",
        }
    }
}
