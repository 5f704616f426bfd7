//! Service hours (POLICIES.md §1: day shift 08:30–17:30, night shift 17:30–23:00, configurable):
//! whether agents are at their desks at a moment, and when they are next back. Pure: the
//! moment is passed in, so tests inject any clock.

use serde::Deserialize;

use crate::{Error, Result};

const MINUTES_PER_DAY: i64 = 24 * 60;

/// Shifts in the shop's local time.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceHours {
    /// (start, end) in minutes after local midnight; an end before its start runs past midnight.
    shifts: Vec<(i64, i64)>,
    utc_offset_minutes: i64,
}

/// How `[hours]` is written in xiaoer.toml.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HoursSettings {
    /// `HH:MM-HH:MM`, local time.
    pub shifts: Vec<String>,
    /// The shop's offset from UTC, `+08:00`.
    pub utc_offset: String,
}

impl Default for HoursSettings {
    fn default() -> Self {
        HoursSettings {
            shifts: vec!["08:30-17:30".into(), "17:30-23:00".into()],
            utc_offset: "+08:00".into(),
        }
    }
}

impl ServiceHours {
    pub fn parse(settings: &HoursSettings) -> Result<ServiceHours> {
        let shifts = settings
            .shifts
            .iter()
            .map(|shift| {
                let (start, end) = shift.split_once('-').ok_or_else(|| {
                    Error::Config(format!("shift \"{shift}\" is not HH:MM-HH:MM"))
                })?;
                Ok((clock_minutes(start)?, clock_minutes(end)?))
            })
            .collect::<Result<Vec<_>>>()?;
        let offset = settings.utc_offset.trim();
        let (sign, rest) = match offset.strip_prefix('-') {
            Some(rest) => (-1, rest),
            None => (1, offset.strip_prefix('+').unwrap_or(offset)),
        };
        Ok(ServiceHours {
            shifts,
            utc_offset_minutes: sign * clock_minutes(rest)?,
        })
    }

    /// True when a shift covers the moment (milliseconds since the Unix epoch).
    pub fn is_open(&self, at_ms: i64) -> bool {
        let minute = self.local_minute(at_ms);
        self.shifts
            .iter()
            .any(|&(start, end)| covers(start, end, minute))
    }

    /// The local time (`08:30`) when the next shift starts after the moment.
    pub fn next_opening(&self, at_ms: i64) -> String {
        let minute = self.local_minute(at_ms);
        let wait = |start: i64| (start - minute - 1).rem_euclid(MINUTES_PER_DAY);
        let start = self
            .shifts
            .iter()
            .map(|&(start, _)| start)
            .min_by_key(|&start| wait(start))
            .unwrap_or(0);
        format!("{:02}:{:02}", start / 60, start % 60)
    }

    fn local_minute(&self, at_ms: i64) -> i64 {
        (at_ms.div_euclid(60_000) + self.utc_offset_minutes).rem_euclid(MINUTES_PER_DAY)
    }
}

/// Whether a shift covers a minute of the day. A shift that ends when it starts
/// (`00:00-24:00`, `08:00-08:00`) covers the whole day.
fn covers(start: i64, end: i64, minute: i64) -> bool {
    if start == end {
        true
    } else if start < end {
        (start..end).contains(&minute)
    } else {
        minute >= start || minute < end
    }
}

fn clock_minutes(text: &str) -> Result<i64> {
    let bad = || Error::Config(format!("\"{text}\" is not a time like 08:30"));
    let (hours, minutes) = text.trim().split_once(':').ok_or_else(bad)?;
    let hours: i64 = hours.parse().map_err(|_| bad())?;
    let minutes: i64 = minutes.parse().map_err(|_| bad())?;
    if !(0..=24).contains(&hours) || !(0..60).contains(&minutes) {
        return Err(bad());
    }
    Ok((hours * 60 + minutes) % MINUTES_PER_DAY)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Milliseconds of a Beijing-time moment on 2026-11-23.
    fn beijing(hour: i64, minute: i64) -> i64 {
        let midnight_utc = 1_795_392_000_000; // 2026-11-23T00:00:00Z
        midnight_utc + ((hour - 8) * 60 + minute) * 60_000
    }

    #[track_caller]
    fn check(hour: i64, minute: i64, open: bool, next: &str) {
        let hours = ServiceHours::parse(&HoursSettings::default()).unwrap();
        assert_eq!(
            hours.is_open(beijing(hour, minute)),
            open,
            "{hour}:{minute}"
        );
        assert_eq!(
            hours.next_opening(beijing(hour, minute)),
            next,
            "{hour}:{minute}"
        );
    }

    #[test]
    fn day_and_night_shifts_cover_08_30_to_23_00_beijing_time() {
        check(8, 29, false, "08:30");
        check(8, 30, true, "17:30");
        check(17, 45, true, "08:30");
        check(22, 59, true, "08:30");
        check(23, 0, false, "08:30");
        check(3, 0, false, "08:30");
    }

    #[test]
    fn a_shift_may_run_past_midnight() {
        let settings = HoursSettings {
            shifts: vec!["17:30-01:00".into()],
            utc_offset: "+08:00".into(),
        };
        let hours = ServiceHours::parse(&settings).unwrap();
        assert!(hours.is_open(beijing(24, 30)));
        assert!(!hours.is_open(beijing(25, 30)));
    }

    #[test]
    fn a_shift_from_midnight_to_midnight_covers_the_whole_day() {
        let settings = HoursSettings {
            shifts: vec!["00:00-24:00".into()],
            utc_offset: "+08:00".into(),
        };
        let hours = ServiceHours::parse(&settings).unwrap();
        for hour in 0..24 {
            assert!(hours.is_open(beijing(hour, 0)), "{hour}:00");
            assert!(hours.is_open(beijing(hour, 59)), "{hour}:59");
        }
    }

    #[test]
    fn malformed_shifts_are_refused() {
        for shift in ["8-17", "08:30", "25:00-26:00", "aa:bb-cc:dd"] {
            let settings = HoursSettings {
                shifts: vec![shift.into()],
                utc_offset: "+08:00".into(),
            };
            assert!(ServiceHours::parse(&settings).is_err(), "{shift}");
        }
    }
}
