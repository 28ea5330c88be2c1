//! One shape for every event-sourced aggregate: `handle` decides, `apply` remembers.
//!
//! An aggregate is a stream of events and the state they fold into.
//! [`Aggregate::handle`] takes the state (`None` before the stream exists), a command, the
//! time (passed in: the domain has no clock) and the aggregate's context, and returns the
//! events to append, possibly none; on an error nothing is to be appended.
//! [`Aggregate::apply`] folds one event into the state and decides nothing, so
//! [`Aggregate::replay`] of a stream rebuilds its state exactly.
//!
//! The protocol every stream shares is written here once, in the provided methods, and an
//! aggregate brings only its own rules. `handle` checks, in this order:
//!
//! 1. a command that creates the stream (it has a [`Aggregate::creation_key`]) on a
//!    stream that exists changes nothing if it is the creation again (the same key: a
//!    retry, whatever version it expects: the first one won), and is
//!    [`Refusal::AlreadyExists`] otherwise; any other command on no stream is
//!    [`Refusal::NotFound`];
//! 2. the version the command expects, if it names one, must be the stream's (0 before it
//!    exists), else [`Refusal::VersionConflict`];
//! 3. then the aggregate's rules: [`Aggregate::create`] on no stream,
//!    [`Aggregate::decide`] on an existing one.
//!
//! `apply`: the first event starts the state at version 1 ([`Aggregate::start`]); each
//! later one changes it ([`Aggregate::evolve`]) and counts one version. An event that
//! cannot follow the state (anything before the start, a second start) cannot come from
//! `handle` and is ignored, leaving the version as it was.

use chrono::{DateTime, Utc};

/// The refusals of the shared protocol, made before an aggregate's own rules; each
/// aggregate's error type is built from them (`From<Refusal>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The stream does not exist and the command does not create it.
    NotFound,
    /// The command creates a stream that another command created.
    AlreadyExists,
    /// The stream changed since the caller read it.
    VersionConflict { expected: u64, current: u64 },
}

/// An event-sourced aggregate: the state of one stream, the commands it decides and the
/// events it folds. See the module documentation for the protocol of the provided
/// methods.
pub trait Aggregate: Sized {
    type Command;
    type Event;
    type Error: From<Refusal>;
    /// The settings decisions depend on (`()` if none).
    type Context;

    /// The version the caller last saw, if it wants the command refused on a change.
    fn expected_version(command: &Self::Command) -> Option<u64>;

    /// For a command that creates the stream, the key that identifies that creation (a
    /// retry carries the same key); `None` for every other command.
    fn creation_key(command: &Self::Command) -> Option<&str>;

    /// The creation key of the command that created this stream.
    fn created_with(&self) -> &str;

    /// The number of events applied: the version commands are checked against.
    fn version(&self) -> u64;

    /// Sets the version; only [`Aggregate::apply`] calls it.
    fn set_version(&mut self, version: u64);

    /// Decides a command on no stream, once the protocol let it through (it has a
    /// creation key; its expected version, if any, is 0).
    fn create(
        command: Self::Command,
        now: DateTime<Utc>,
        context: &Self::Context,
    ) -> Result<Vec<Self::Event>, Self::Error>;

    /// Decides a command that does not create the stream, on the stream as it is, once
    /// the protocol let it through (its expected version, if any, is the stream's).
    fn decide(
        &self,
        command: Self::Command,
        now: DateTime<Utc>,
        context: &Self::Context,
    ) -> Result<Vec<Self::Event>, Self::Error>;

    /// The state the first event of a stream starts, at version 1; `None` for an event
    /// that cannot start one.
    fn start(event: &Self::Event) -> Option<Self>;

    /// Folds a later event into the state, only what the event says. `false` for an event
    /// that cannot follow a started stream (a second start): it is ignored.
    fn evolve(&mut self, event: &Self::Event) -> bool;

    /// Decides what `command` means for `state` (`None` if the stream does not exist yet)
    /// at `now`: the events to append, possibly none. The shared protocol, then the
    /// aggregate's rules (see the module documentation).
    fn handle(
        state: Option<&Self>,
        command: Self::Command,
        now: DateTime<Utc>,
        context: &Self::Context,
    ) -> Result<Vec<Self::Event>, Self::Error> {
        let creates = Self::creation_key(&command);
        match (state, creates) {
            (Some(existing), Some(key)) => {
                if existing.created_with() == key {
                    Ok(Vec::new())
                } else {
                    Err(Refusal::AlreadyExists.into())
                }
            }
            (None, None) => Err(Refusal::NotFound.into()),
            (None, Some(_)) => {
                check_version(Self::expected_version(&command), 0)?;
                Self::create(command, now, context)
            }
            (Some(existing), None) => {
                check_version(Self::expected_version(&command), existing.version())?;
                existing.decide(command, now, context)
            }
        }
    }

    /// Folds one event into the state (see the module documentation).
    fn apply(state: Option<Self>, event: &Self::Event) -> Option<Self> {
        match state {
            None => Self::start(event),
            Some(mut s) => {
                if s.evolve(event) {
                    let next = s.version() + 1;
                    s.set_version(next);
                }
                Some(s)
            }
        }
    }

    /// Replays a stream from its start.
    fn replay<'a>(events: impl IntoIterator<Item = &'a Self::Event>) -> Option<Self>
    where
        Self::Event: 'a,
    {
        events.into_iter().fold(None, Self::apply)
    }
}

/// The protocol's version check: a command that names a version is refused unless the
/// stream is at it.
fn check_version(expected: Option<u64>, current: u64) -> Result<(), Refusal> {
    match expected {
        Some(expected) if expected != current => {
            Err(Refusal::VersionConflict { expected, current })
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    //! The provided methods on a small aggregate of their own, in given / when / then
    //! form: a bar tab, opened once per key, that takes orders until it is paid.

    use super::*;
    use chrono::TimeDelta;

    #[derive(Debug, Clone, PartialEq, Eq)]
    struct Tab {
        key: String,
        version: u64,
        drinks: u32,
        paid: bool,
    }

    #[derive(Debug, Clone, PartialEq, Eq)]
    enum TabCommand {
        Open { key: String, expected: Option<u64> },
        Order { drinks: u32, expected: Option<u64> },
        Pay { expected: Option<u64> },
    }

    #[derive(Debug, Clone, PartialEq, Eq)]
    enum TabEvent {
        Opened { key: String, at: DateTime<Utc> },
        Ordered { drinks: u32 },
        Paid,
    }

    #[derive(Debug, Clone, PartialEq, Eq)]
    enum TabError {
        Refused(Refusal),
        AlreadyPaid,
        TooMany { limit: u32 },
    }

    impl From<Refusal> for TabError {
        fn from(r: Refusal) -> Self {
            TabError::Refused(r)
        }
    }

    /// The house's limit of drinks per order.
    struct House {
        limit: u32,
    }

    impl Aggregate for Tab {
        type Command = TabCommand;
        type Event = TabEvent;
        type Error = TabError;
        type Context = House;

        fn expected_version(command: &TabCommand) -> Option<u64> {
            match command {
                TabCommand::Open { expected, .. }
                | TabCommand::Order { expected, .. }
                | TabCommand::Pay { expected } => *expected,
            }
        }

        fn creation_key(command: &TabCommand) -> Option<&str> {
            match command {
                TabCommand::Open { key, .. } => Some(key),
                TabCommand::Order { .. } | TabCommand::Pay { .. } => None,
            }
        }

        fn created_with(&self) -> &str {
            &self.key
        }

        fn version(&self) -> u64 {
            self.version
        }

        fn set_version(&mut self, version: u64) {
            self.version = version;
        }

        fn create(
            command: TabCommand,
            now: DateTime<Utc>,
            _: &House,
        ) -> Result<Vec<TabEvent>, TabError> {
            match command {
                TabCommand::Open { key, .. } => Ok(vec![TabEvent::Opened { key, at: now }]),
                TabCommand::Order { .. } | TabCommand::Pay { .. } => Err(Refusal::NotFound.into()),
            }
        }

        fn decide(
            &self,
            command: TabCommand,
            _: DateTime<Utc>,
            house: &House,
        ) -> Result<Vec<TabEvent>, TabError> {
            if self.paid {
                return Err(TabError::AlreadyPaid);
            }
            match command {
                TabCommand::Open { .. } => Err(Refusal::AlreadyExists.into()),
                TabCommand::Order { drinks, .. } if drinks > house.limit => {
                    Err(TabError::TooMany { limit: house.limit })
                }
                TabCommand::Order { drinks, .. } => Ok(vec![TabEvent::Ordered { drinks }]),
                TabCommand::Pay { .. } => Ok(vec![TabEvent::Paid]),
            }
        }

        fn start(event: &TabEvent) -> Option<Self> {
            match event {
                TabEvent::Opened { key, .. } => Some(Tab {
                    key: key.clone(),
                    version: 1,
                    drinks: 0,
                    paid: false,
                }),
                TabEvent::Ordered { .. } | TabEvent::Paid => None,
            }
        }

        fn evolve(&mut self, event: &TabEvent) -> bool {
            match event {
                TabEvent::Opened { .. } => return false,
                TabEvent::Ordered { drinks } => self.drinks += drinks,
                TabEvent::Paid => self.paid = true,
            }
            true
        }
    }

    fn t(minutes: i64) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-23T18:00:00Z")
            .expect("fixed time")
            .to_utc()
            + TimeDelta::minutes(minutes)
    }

    fn open(key: &str) -> TabCommand {
        TabCommand::Open {
            key: key.into(),
            expected: None,
        }
    }

    fn order(drinks: u32) -> TabCommand {
        TabCommand::Order {
            drinks,
            expected: None,
        }
    }

    fn opened(key: &str) -> TabEvent {
        TabEvent::Opened {
            key: key.into(),
            at: t(0),
        }
    }

    /// Given a stream of `events`, when `command` is handled at `t(5)`: the outcome.
    fn given_when(events: &[TabEvent], command: TabCommand) -> Result<Vec<TabEvent>, TabError> {
        let state = Tab::replay(events);
        Tab::handle(state.as_ref(), command, t(5), &House { limit: 4 })
    }

    #[test]
    fn given_no_stream_when_it_is_created_then_its_first_event() {
        assert_eq!(
            given_when(&[], open("k-1")),
            Ok(vec![TabEvent::Opened {
                key: "k-1".into(),
                at: t(5)
            }])
        );
    }

    #[test]
    fn given_no_stream_when_anything_else_then_not_found_before_the_version() {
        assert_eq!(
            given_when(
                &[],
                TabCommand::Order {
                    drinks: 1,
                    expected: Some(3)
                }
            ),
            Err(TabError::Refused(Refusal::NotFound))
        );
    }

    #[test]
    fn given_no_stream_when_a_creation_expects_a_version_then_it_must_be_zero() {
        let expecting = |v| TabCommand::Open {
            key: "k-1".into(),
            expected: Some(v),
        };
        assert_eq!(
            given_when(&[], expecting(2)),
            Err(TabError::Refused(Refusal::VersionConflict {
                expected: 2,
                current: 0
            }))
        );
        assert!(given_when(&[], expecting(0)).is_ok());
    }

    #[test]
    fn given_a_stream_when_its_creation_is_retried_then_nothing_whatever_the_version() {
        let given = [opened("k-1"), TabEvent::Ordered { drinks: 2 }];
        assert_eq!(given_when(&given, open("k-1")), Ok(vec![]));
        let stale = TabCommand::Open {
            key: "k-1".into(),
            expected: Some(0),
        };
        assert_eq!(given_when(&given, stale), Ok(vec![]));
    }

    #[test]
    fn given_a_stream_when_another_creation_then_already_exists() {
        assert_eq!(
            given_when(&[opened("k-1")], open("k-2")),
            Err(TabError::Refused(Refusal::AlreadyExists))
        );
    }

    #[test]
    fn given_a_stream_when_a_stale_version_then_a_conflict_before_the_rules() {
        let given = [opened("k-1"), TabEvent::Paid];
        assert_eq!(
            given_when(
                &given,
                TabCommand::Order {
                    drinks: 9,
                    expected: Some(1)
                }
            ),
            Err(TabError::Refused(Refusal::VersionConflict {
                expected: 1,
                current: 2
            }))
        );
        // At the right version the aggregate's own rules speak.
        assert_eq!(
            given_when(
                &given,
                TabCommand::Order {
                    drinks: 1,
                    expected: Some(2)
                }
            ),
            Err(TabError::AlreadyPaid)
        );
    }

    #[test]
    fn given_a_stream_when_a_command_then_the_rules_with_the_context_decide() {
        let given = [opened("k-1")];
        assert_eq!(
            given_when(&given, order(3)),
            Ok(vec![TabEvent::Ordered { drinks: 3 }])
        );
        assert_eq!(
            given_when(&given, order(5)),
            Err(TabError::TooMany { limit: 4 })
        );
    }

    #[test]
    fn apply_counts_one_version_per_event_and_ignores_what_cannot_follow() {
        // Nothing before the start.
        assert_eq!(Tab::apply(None, &TabEvent::Paid), None);
        let tab = Tab::apply(None, &opened("k-1")).expect("started");
        assert_eq!(tab.version(), 1);
        let tab = Tab::apply(Some(tab), &TabEvent::Ordered { drinks: 2 }).expect("tab");
        assert_eq!((tab.version(), tab.drinks), (2, 2));
        // A second start changes nothing, not even the version.
        let again = Tab::apply(Some(tab.clone()), &opened("k-2"));
        assert_eq!(again, Some(tab));
    }

    #[test]
    fn replay_is_the_fold_of_what_handle_returned_step_by_step() {
        let mut state: Option<Tab> = None;
        let mut log = Vec::new();
        let house = House { limit: 4 };
        for (minute, command) in [
            (0, open("k-1")),
            (1, order(2)),
            (2, open("k-1")),
            (3, order(4)),
            (4, TabCommand::Pay { expected: Some(3) }),
        ] {
            let events = Tab::handle(state.as_ref(), command, t(minute), &house).expect("ok");
            for e in &events {
                state = Tab::apply(state, e);
            }
            log.extend(events);
        }
        let tab = state.clone().expect("a tab");
        assert_eq!((tab.version(), tab.drinks, tab.paid), (4, 6, true));
        assert_eq!(tab.version(), log.len() as u64);
        assert_eq!(Tab::replay(&log), state);
    }
}
