//! Who gets woken: the deployment file's `[oncall]` — people (how to reach each), schedules
//! (a rotation of people handing off at a local time in a time zone every N days, with
//! overrides), and the escalation policy (level 1 is paged first; a page nobody acknowledges
//! within a level's `ack_within_s` goes to the next level; the last level pages again, every
//! `ack_within_s`, up to `repeat` times). Pure: `paging` acts on it.

use chrono::{DateTime, Days, NaiveDate, NaiveTime, TimeZone};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Person {
    pub name: String,
    /// A webhook receiving pages as generic JSON.
    pub webhook: Option<String>,
    /// A Slack-compatible incoming webhook.
    pub slack_webhook: Option<String>,
    /// An e-mail address receiving pages (through `[oncall] smtp_url`, else the
    /// `[subscriptions]` one).
    pub email: Option<String>,
}

/// Someone else on call for a while (RFC 3339 times).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Override {
    pub person: String,
    pub from: String,
    pub to: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    pub name: String,
    /// An IANA time zone, e.g. Europe/Malta.
    pub timezone: String,
    /// The local time of each hand-off, `HH:MM`.
    pub handoff: String,
    /// Days between hand-offs.
    #[serde(default = "week")]
    pub shift_days: u32,
    /// The local date of the first hand-off: `people[0]` is on call from then.
    pub start: String,
    pub people: Vec<String>,
    #[serde(default, rename = "override")]
    pub overrides: Vec<Override>,
}

fn week() -> u32 {
    7
}

fn repeat() -> u32 {
    2
}

fn sender() -> String {
    "Croupier on-call <oncall@localhost>".into()
}

/// The most repeats of the last level: a page nobody answers stops waking people after that.
pub const MAX_REPEAT: u32 = 10;

/// One level of the escalation policy.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Level {
    pub schedule: String,
    /// Seconds to acknowledge before the next level is paged.
    pub ack_within_s: u64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OnCall {
    /// The control plane's address as people reach it: the base of the links in pages.
    pub public_url: Option<String>,
    /// How long a page's acknowledge and resolve links work, in seconds (default a day).
    pub link_ttl_s: Option<u64>,
    /// How many times the last level pages its person again, every `ack_within_s`, while
    /// nobody acknowledges (PagerDuty's "repeat"), at most `MAX_REPEAT`.
    #[serde(default = "repeat")]
    pub repeat: u32,
    /// The SMTP server of e-mailed pages (as `[subscriptions] smtp_url`; that one by default).
    pub smtp_url: Option<String>,
    /// The sender of e-mailed pages.
    #[serde(default = "sender")]
    pub from: String,
    #[serde(default)]
    pub person: Vec<Person>,
    #[serde(default)]
    pub schedule: Vec<Schedule>,
    #[serde(default)]
    pub escalation: Vec<Level>,
}

/// A schedule checked and ready to answer who is on call.
#[derive(Debug, Clone)]
pub struct Rotation {
    pub name: String,
    zone: Tz,
    handoff: NaiveTime,
    shift_days: u32,
    start: NaiveDate,
    people: Vec<String>,
    overrides: Vec<(i64, i64, String)>,
}

impl OnCall {
    /// Checks people's names and addresses and the repeat count.
    fn check_people(&self) -> Result<(), String> {
        if let Some(p) = self.person.iter().find(|p| {
            p.name.is_empty()
                || p.name.len() > 64
                || !p
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        }) {
            return Err(format!(
                "oncall person '{}': names are 1-64 letters, digits, '.', '_' or '-'",
                p.name
            ));
        }
        if let Some(p) = self.person.iter().find(|p| {
            p.email
                .as_deref()
                .is_some_and(|e| e.parse::<lettre::Address>().is_err())
        }) {
            return Err(format!(
                "oncall person '{}': email is not an e-mail address",
                p.name
            ));
        }
        if self.repeat > MAX_REPEAT {
            return Err(format!("oncall repeat: at most {MAX_REPEAT}"));
        }
        Ok(())
    }

    /// Checks people, names, zones, times and references; returns the rotations in file order.
    pub fn rotations(&self) -> Result<Vec<Rotation>, String> {
        self.check_people()?;
        let known = |name: &str| self.person.iter().any(|p| p.name == name);
        let mut rotations = Vec::new();
        for s in &self.schedule {
            let zone: Tz = s.timezone.parse().map_err(|_| {
                format!(
                    "oncall schedule {}: unknown time zone {}",
                    s.name, s.timezone
                )
            })?;
            let handoff = NaiveTime::parse_from_str(&s.handoff, "%H:%M")
                .map_err(|_| format!("oncall schedule {}: handoff is HH:MM", s.name))?;
            let start = NaiveDate::parse_from_str(&s.start, "%Y-%m-%d")
                .map_err(|_| format!("oncall schedule {}: start is YYYY-MM-DD", s.name))?;
            if s.people.is_empty() || s.shift_days == 0 {
                return Err(format!(
                    "oncall schedule {}: needs people and shift_days > 0",
                    s.name
                ));
            }
            if let Some(stranger) = s
                .people
                .iter()
                .chain(s.overrides.iter().map(|o| &o.person))
                .find(|p| !known(p))
            {
                return Err(format!(
                    "oncall schedule {}: no [[oncall.person]] {stranger}",
                    s.name
                ));
            }
            let mut overrides = Vec::new();
            for o in &s.overrides {
                let time = |t: &str| DateTime::parse_from_rfc3339(t).map(|t| t.timestamp_millis());
                match (time(&o.from), time(&o.to)) {
                    (Ok(from), Ok(to)) if from < to => overrides.push((from, to, o.person.clone())),
                    _ => {
                        return Err(format!(
                            "oncall schedule {}: an override's from and to are RFC 3339 times, from first",
                            s.name
                        ));
                    }
                }
            }
            rotations.push(Rotation {
                name: s.name.clone(),
                zone,
                handoff,
                shift_days: s.shift_days,
                start,
                people: s.people.clone(),
                overrides,
            });
        }
        for level in &self.escalation {
            if !rotations.iter().any(|r| r.name == level.schedule) || level.ack_within_s == 0 {
                return Err(format!(
                    "oncall escalation: schedule {} is not defined, or ack_within_s is 0",
                    level.schedule
                ));
            }
        }
        Ok(rotations)
    }

    pub fn person(&self, name: &str) -> Option<&Person> {
        self.person.iter().find(|p| p.name == name)
    }

    /// Whether anyone is paged by e-mail (then an SMTP server is needed).
    pub fn mails(&self) -> bool {
        self.person.iter().any(|p| p.email.is_some())
    }
}

impl Rotation {
    /// The instant of the hand-off opening shift `index` (shift 0 starts at `start`).
    fn handoff_ms(&self, index: i64) -> i64 {
        let days = index * i64::from(self.shift_days);
        let date = if days >= 0 {
            self.start.checked_add_days(Days::new(days as u64))
        } else {
            self.start.checked_sub_days(Days::new(days.unsigned_abs()))
        }
        .unwrap_or(self.start);
        let local = date.and_time(self.handoff);
        // A hand-off in a skipped hour (spring forward) happens at the first instant after it.
        self.zone
            .from_local_datetime(&local)
            .earliest()
            .or_else(|| {
                self.zone
                    .from_local_datetime(&(local + chrono::Duration::hours(1)))
                    .earliest()
            })
            .map_or(0, |t| t.timestamp_millis())
    }

    /// The shift running at `at_ms`.
    fn shift(&self, at_ms: i64) -> i64 {
        let Some(local) = self.zone.timestamp_millis_opt(at_ms).single() else {
            return 0;
        };
        let days = (local.date_naive() - self.start).num_days();
        let mut index = days.div_euclid(i64::from(self.shift_days));
        // Before today's hand-off time on a hand-off day, the last shift still runs.
        while index > i64::MIN / 2 && self.handoff_ms(index) > at_ms {
            index -= 1;
        }
        while self.handoff_ms(index + 1) <= at_ms {
            index += 1;
        }
        index
    }

    /// Who is on call at `at_ms`: an override covering it, else the rotation.
    pub fn on_call(&self, at_ms: i64) -> String {
        if let Some((_, _, person)) = self
            .overrides
            .iter()
            .find(|(from, to, _)| (*from..*to).contains(&at_ms))
        {
            return person.clone();
        }
        let index = self.shift(at_ms).rem_euclid(self.people.len() as i64);
        self.people[index as usize].clone()
    }

    /// When whoever is on call at `at_ms` stops being so (a hand-off, or an override's start
    /// or end), and who takes over then.
    pub fn next(&self, at_ms: i64) -> (i64, String) {
        let now = self.on_call(at_ms);
        let mut at = at_ms;
        // Bounded: a rotation of the same person twice in a row moves on to the next change.
        for _ in 0..32 {
            let handoff = self.handoff_ms(self.shift(at) + 1);
            let change = self
                .overrides
                .iter()
                .flat_map(|(from, to, _)| [*from, *to])
                .filter(|t| *t > at)
                .fold(handoff, i64::min);
            let who = self.on_call(change);
            if who != now {
                return (change, who);
            }
            at = change;
        }
        (at, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(text: &str) -> i64 {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .timestamp_millis()
    }

    fn config() -> OnCall {
        toml::from_str(
            r#"
            [[person]]
            name = "ana"
            [[person]]
            name = "ben"
            [[person]]
            name = "carl"
            [[schedule]]
            name = "primary"
            timezone = "Europe/Malta"
            handoff = "09:00"
            shift_days = 7
            start = "2026-10-19"
            people = ["ana", "ben"]
            [[schedule.override]]
            person = "carl"
            from = "2026-12-24T18:00:00+01:00"
            to = "2026-12-26T09:00:00+01:00"
            [[escalation]]
            schedule = "primary"
            ack_within_s = 300
            "#,
        )
        .unwrap()
    }

    #[test]
    fn shifts_hand_off_at_local_time_across_daylight_saving() {
        let primary = &config().rotations().unwrap()[0];
        // Summer time: 09:00 in Malta is 07:00 UTC.
        assert_eq!(
            primary.on_call(ms("2026-10-19T06:59:00Z")),
            "ben",
            "the shift before"
        );
        assert_eq!(primary.on_call(ms("2026-10-19T07:00:00Z")), "ana");
        assert_eq!(primary.on_call(ms("2026-10-26T07:59:00Z")), "ana");
        // Winter time from 25 October: 09:00 is 08:00 UTC.
        assert_eq!(primary.on_call(ms("2026-10-26T08:00:00Z")), "ben");
        assert_eq!(
            primary.next(ms("2026-10-27T12:00:00Z")),
            (ms("2026-11-02T08:00:00Z"), "ana".into())
        );
    }

    #[test]
    fn an_override_takes_over_and_is_the_next_change() {
        let primary = &config().rotations().unwrap()[0];
        // 21 December 09:00 starts shift 9: ben (odd).
        assert_eq!(primary.on_call(ms("2026-12-24T12:00:00Z")), "ben");
        assert_eq!(
            primary.next(ms("2026-12-24T12:00:00Z")),
            (ms("2026-12-24T17:00:00Z"), "carl".into())
        );
        assert_eq!(primary.on_call(ms("2026-12-25T12:00:00Z")), "carl");
        // The override ends; ben's shift goes on until the 28th.
        assert_eq!(
            primary.next(ms("2026-12-25T12:00:00Z")),
            (ms("2026-12-26T08:00:00Z"), "ben".into())
        );
    }

    #[test]
    fn mistakes_are_named() {
        let mut c = config();
        c.schedule[0].people.push("dora".into());
        assert!(
            c.rotations()
                .unwrap_err()
                .contains("no [[oncall.person]] dora")
        );
        let mut c = config();
        c.escalation[0].schedule = "secondary".into();
        assert!(
            c.rotations()
                .unwrap_err()
                .contains("secondary is not defined")
        );
        let mut c = config();
        c.schedule[0].timezone = "Mars/Olympus".into();
        assert!(c.rotations().unwrap_err().contains("unknown time zone"));
    }
}
