//! Who holds each level for each store, and the calendar each store's clocks run on.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{FieldViolation, Violations};
use crate::feedback::calendar::{BusinessCalendar, CalendarConfig};
use crate::feedback::vocab::Level;

/// A store: who manages it, its region, and its calendar (the default if unset).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreEntry {
    pub manager: String,
    pub region: String,
    #[serde(default)]
    pub calendar: Option<String>,
}

/// A region: who manages it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionEntry {
    pub manager: String,
}

/// Who holds each level for each store, and each store's calendar, as configured.
/// [`DirectoryConfig::build`] checks it and builds the calendars once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectoryConfig {
    /// The owner's employee id: the top of every chain.
    pub owner: String,
    #[serde(default)]
    pub regions: BTreeMap<String, RegionEntry>,
    #[serde(default)]
    pub stores: BTreeMap<String, StoreEntry>,
    /// Calendars by name.
    pub calendars: BTreeMap<String, CalendarConfig>,
    /// The calendar of stores that name none; a key of `calendars`.
    pub default_calendar: String,
}

impl DirectoryConfig {
    /// Every problem, each naming its field (`stores.s-7.region`,
    /// `calendars.uk.hours.monday`, `default_calendar`, ...).
    pub fn validate(&self) -> Result<(), Violations> {
        self.build().map(|_| ())
    }

    /// The directory, with every calendar built, or every problem in the configuration.
    pub fn build(&self) -> Result<Directory, Violations> {
        let mut v = Vec::new();
        let mut id = |name: String, value: &str| {
            if value.trim().is_empty() {
                v.push(FieldViolation::new(name, "must name an employee"));
            }
        };
        id("owner".to_owned(), &self.owner);
        for (region, r) in &self.regions {
            id(format!("regions.{region}.manager"), &r.manager);
        }
        for (store, s) in &self.stores {
            id(format!("stores.{store}.manager"), &s.manager);
        }
        for (store, s) in &self.stores {
            if !self.regions.contains_key(&s.region) {
                v.push(FieldViolation::new(
                    format!("stores.{store}.region"),
                    format!("names region {:?}, which is not in regions", s.region),
                ));
            }
            if let Some(c) = &s.calendar
                && !self.calendars.contains_key(c)
            {
                v.push(FieldViolation::new(
                    format!("stores.{store}.calendar"),
                    format!("names calendar {c:?}, which is not in calendars"),
                ));
            }
        }
        let mut calendars = BTreeMap::new();
        for (name, c) in &self.calendars {
            match c.build(&format!("calendars.{name}")) {
                Ok(cal) => {
                    calendars.insert(name.clone(), cal);
                }
                Err(e) => v.extend(e.0),
            }
        }
        let default = self.calendars.get(&self.default_calendar);
        if default.is_none() {
            v.push(FieldViolation::new(
                "default_calendar",
                format!(
                    "names calendar {:?}, which is not in calendars",
                    self.default_calendar
                ),
            ));
        }
        match calendars.get(&self.default_calendar).cloned() {
            Some(default) if v.is_empty() => Ok(Directory {
                config: self.clone(),
                calendars,
                default,
            }),
            _ => Err(Violations(v)),
        }
    }
}

/// Who holds each level for each store, and the calendar each store's clocks run on.
/// Valid by construction; deserializes through [`DirectoryConfig`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "DirectoryConfig", into = "DirectoryConfig")]
pub struct Directory {
    config: DirectoryConfig,
    calendars: BTreeMap<String, BusinessCalendar>,
    default: BusinessCalendar,
}

impl TryFrom<DirectoryConfig> for Directory {
    type Error = Violations;

    fn try_from(c: DirectoryConfig) -> Result<Self, Self::Error> {
        c.build()
    }
}

impl From<Directory> for DirectoryConfig {
    fn from(d: Directory) -> Self {
        d.config
    }
}

impl Directory {
    pub fn config(&self) -> &DirectoryConfig {
        &self.config
    }

    /// The employee who holds `level` for `store`. `None` for the store and regional
    /// levels of a store the directory does not list; the owner holds every store.
    pub fn holder(&self, level: Level, store: &str) -> Option<&str> {
        let entry = self.config.stores.get(store);
        match level {
            Level::StoreManager => entry.map(|s| s.manager.as_str()),
            Level::RegionalManager => entry
                .and_then(|s| self.config.regions.get(&s.region))
                .map(|r| r.manager.as_str()),
            Level::Owner => Some(self.config.owner.as_str()),
        }
    }

    /// The region of a listed store.
    pub fn region_of(&self, store: &str) -> Option<&str> {
        self.config.stores.get(store).map(|s| s.region.as_str())
    }

    /// The name of the calendar a store's clocks run on: its own, or the default.
    pub fn calendar_name(&self, store: &str) -> &str {
        self.config
            .stores
            .get(store)
            .and_then(|s| s.calendar.as_deref())
            .unwrap_or(&self.config.default_calendar)
    }

    /// The calendar a store's clocks run on: its own, or the default (also for a store
    /// the directory does not list).
    pub fn calendar_for(&self, store: &str) -> &BusinessCalendar {
        self.calendars
            .get(self.calendar_name(store))
            .unwrap_or(&self.default)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    fn directory() -> DirectoryConfig {
        let mut late = store_calendar();
        late.hours.saturday = vec!["10:00-16:00".into()];
        DirectoryConfig {
            owner: "e-1".into(),
            regions: BTreeMap::from([(
                "north".into(),
                RegionEntry {
                    manager: "e-20".into(),
                },
            )]),
            stores: BTreeMap::from([
                (
                    "s-7".into(),
                    StoreEntry {
                        manager: "e-71".into(),
                        region: "north".into(),
                        calendar: Some("saturdays".into()),
                    },
                ),
                (
                    "s-8".into(),
                    StoreEntry {
                        manager: "e-81".into(),
                        region: "north".into(),
                        calendar: None,
                    },
                ),
            ]),
            calendars: BTreeMap::from([
                ("weekdays".into(), store_calendar()),
                ("saturdays".into(), late),
            ]),
            default_calendar: "weekdays".into(),
        }
    }

    #[test]
    fn the_directory_names_each_level_and_calendar_of_a_store() {
        let d = directory().build().expect("valid");
        assert_eq!(d.holder(Level::StoreManager, "s-7"), Some("e-71"));
        assert_eq!(d.holder(Level::RegionalManager, "s-7"), Some("e-20"));
        assert_eq!(d.holder(Level::Owner, "s-7"), Some("e-1"));
        assert_eq!(d.holder(Level::StoreManager, "s-99"), None);
        assert_eq!(d.holder(Level::RegionalManager, "s-99"), None);
        assert_eq!(d.holder(Level::Owner, "s-99"), Some("e-1"));
        assert_eq!(d.region_of("s-8"), Some("north"));
        assert_eq!(d.calendar_name("s-7"), "saturdays");
        assert_eq!(d.calendar_name("s-8"), "weekdays");
        assert_eq!(d.calendar_name("s-99"), "weekdays");
        let saturday = london("2025-08-23 11:00:00");
        assert!(d.calendar_for("s-7").is_open(saturday));
        assert!(!d.calendar_for("s-8").is_open(saturday));

        let json = serde_json::to_string(&d).expect("serializes");
        let again: Directory = serde_json::from_str(&json).expect("parses");
        assert_eq!(again, d);
    }

    #[test]
    fn directory_validation_names_every_bad_field() {
        let mut c = directory();
        c.owner = " ".into();
        if let Some(s) = c.stores.get_mut("s-8") {
            s.region = "south".into();
            s.calendar = Some("sundays".into());
        }
        if let Some(cal) = c.calendars.get_mut("saturdays") {
            cal.hours.monday = vec!["09:00-17:00".into(), "16:00-18:00".into()];
        }
        c.default_calendar = "nowhere".into();
        let v = c.validate().expect_err("invalid");
        assert_eq!(
            v.fields().collect::<Vec<_>>(),
            [
                "owner",
                "stores.s-8.region",
                "stores.s-8.calendar",
                "calendars.saturdays.hours.monday",
                "default_calendar",
            ],
            "{v}"
        );
    }
}
