//! Who may do what in the Feedback API: the one place its rules are written. Every
//! handler asks here, with the [`Caller`] the server's authentication found (or
//! [`Caller::Unidentified`] where it asks for none, which may do everything).
//!
//! - Complaints ([`sees_complaint`]): the owner, services and unidentified callers see and
//!   act on every complaint; a store manager on those of their stores at the store
//!   manager's level; a regional manager on those of their stores (their region) at the
//!   store manager's or the regional manager's level. Nobody else sees any. A complaint
//!   the caller may not see answers exactly as one that does not exist (NOT_FOUND), so
//!   that ids cannot be probed; lists and the escalation watch leave it out.
//! - Filing ([`may_file`]): for any store by the owner, services and unidentified
//!   callers; for their own store by a store gateway; for their stores by managers.
//! - Outreach ([`may_list_outreach`], [`may_record_outreach`]): cases of every store for
//!   the owner, services and unidentified callers, of their stores for managers; an
//!   analyst lists every store's cases but records nothing.
//! - Defection reasons ([`may_read_reasons`]): staff and unidentified callers, not store
//!   gateways; managers get only their stores' rows ([`reads_reasons_of`]).
//! - Erasing contact details ([`may_erase`]): the privacy officer and the owner (and an
//!   unidentified caller), nobody else.
//!
//! Refusals that are no secret (the caller's role may not do this at all) are
//! PERMISSION_DENIED naming the field that decides ([`FeedbackError::Forbidden`]).

use churnguard_domain::feedback::Level;
use churnguard_runtime::identity::{Caller, Role, Staff};

use crate::error::FeedbackError;

/// Whether `staff` names `store` among their stores.
fn holds(staff: &Staff, store: &str) -> bool {
    staff.stores.iter().any(|s| s == store)
}

/// What the caller is, for a refusal's message: its role, or the kind of credential.
fn who(caller: &Caller) -> &'static str {
    match caller {
        Caller::Unidentified => "unidentified caller",
        Caller::Store(_) => "store gateway",
        Caller::NoStore => "client certificate naming no store",
        Caller::Staff(staff) => staff.role.as_str(),
    }
}

/// Whether `caller` sees every complaint, whatever its store and level (so that nothing
/// need be loaded to decide).
pub fn sees_every_complaint(caller: &Caller) -> bool {
    match caller {
        Caller::Unidentified => true,
        Caller::Staff(staff) => matches!(staff.role, Role::Owner | Role::Service),
        Caller::Store(_) | Caller::NoStore => false,
    }
}

/// Whether `caller` sees some complaints (if any are of their stores, at their level).
pub fn sees_some_complaints(caller: &Caller) -> bool {
    sees_every_complaint(caller)
        || matches!(
            caller.role(),
            Some(Role::StoreManager | Role::RegionalManager)
        )
}

/// Whether `caller` sees, and may act on, a complaint of `store` at `level`: the rule
/// of GetComplaint, every complaint command, ListComplaints and WatchEscalations.
pub fn sees_complaint(caller: &Caller, store: &str, level: Level) -> bool {
    match caller {
        Caller::Unidentified => true,
        Caller::Store(_) | Caller::NoStore => false,
        Caller::Staff(staff) => match staff.role {
            Role::Owner | Role::Service => true,
            Role::StoreManager => holds(staff, store) && level == Level::StoreManager,
            Role::RegionalManager => holds(staff, store) && level <= Level::RegionalManager,
            Role::Analyst | Role::PrivacyOfficer => false,
        },
    }
}

/// ListComplaints and WatchEscalations: refused (PERMISSION_DENIED naming
/// `authorization`) to callers that see no complaint at all, whose answer would always
/// be empty; everyone else gets what [`sees_complaint`] lets through.
pub fn may_list_complaints(caller: &Caller) -> Result<(), FeedbackError> {
    if sees_some_complaints(caller) {
        return Ok(());
    }
    Err(FeedbackError::forbidden(
        "authorization",
        format!("a {} sees no complaints", who(caller)),
    ))
}

/// FileComplaint for `store`: PERMISSION_DENIED naming `store_id` unless the caller
/// files for it. A store id that is empty or no id at all is left to the request's
/// checks (INVALID_ARGUMENT), for those who file for some store.
pub fn may_file(caller: &Caller, store: &str) -> Result<(), FeedbackError> {
    // (files for some store, files for this one)
    let (some, this) = match caller {
        Caller::Unidentified => (true, true),
        Caller::Store(own) => (true, own == store),
        Caller::NoStore => (false, false),
        Caller::Staff(staff) => match staff.role {
            Role::Owner | Role::Service => (true, true),
            Role::StoreManager | Role::RegionalManager => (true, holds(staff, store)),
            Role::Analyst | Role::PrivacyOfficer => (false, false),
        },
    };
    if some && (this || churnguard_domain::ids::check_id(store).is_err()) {
        return Ok(());
    }
    let message = if some {
        format!("this {} files no complaints for this store", who(caller))
    } else {
        format!("a {} files no complaints", who(caller))
    };
    Err(FeedbackError::forbidden("store_id", message))
}

/// Whether `caller` sees the outreach cases of `store`.
fn sees_cases_of(caller: &Caller, store: &str) -> bool {
    match caller {
        Caller::Unidentified => true,
        Caller::Store(_) | Caller::NoStore => false,
        Caller::Staff(staff) => match staff.role {
            Role::Owner | Role::Service | Role::Analyst => true,
            Role::StoreManager | Role::RegionalManager => holds(staff, store),
            Role::PrivacyOfficer => false,
        },
    }
}

/// ListOutreach: PERMISSION_DENIED naming `authorization` to callers that see no cases;
/// else which stores' cases the caller sees (`store -> bool`), so that the list keeps
/// only those (a request naming another store gets an empty list).
pub fn may_list_outreach(caller: &Caller) -> Result<impl Fn(&str) -> bool + '_, FeedbackError> {
    let lists = match caller {
        Caller::Unidentified => true,
        Caller::Store(_) | Caller::NoStore => false,
        Caller::Staff(staff) => staff.role != Role::PrivacyOfficer,
    };
    if !lists {
        return Err(FeedbackError::forbidden(
            "authorization",
            format!("a {} lists no outreach cases", who(caller)),
        ));
    }
    Ok(move |store: &str| sees_cases_of(caller, store))
}

/// RecordOutreach: PERMISSION_DENIED naming `authorization` to callers that record no
/// outreach at all (store gateways, analysts, privacy officers). For the others, whether
/// they may record on a case of `store` comes from [`may_record_outreach_on`]: a case
/// they may not, answers as one that does not exist.
pub fn may_record_outreach(caller: &Caller) -> Result<(), FeedbackError> {
    let records = match caller {
        Caller::Unidentified => true,
        Caller::Store(_) | Caller::NoStore => false,
        Caller::Staff(staff) => matches!(
            staff.role,
            Role::Owner | Role::Service | Role::StoreManager | Role::RegionalManager
        ),
    };
    if records {
        return Ok(());
    }
    Err(FeedbackError::forbidden(
        "authorization",
        format!("a {} records no outreach", who(caller)),
    ))
}

/// Whether `caller` (one [`may_record_outreach`] lets through) records outreach on a case
/// of `store`.
pub fn may_record_outreach_on(caller: &Caller, store: &str) -> bool {
    may_record_outreach(caller).is_ok() && sees_cases_of(caller, store)
}

/// Whether `caller` sees every store's outreach cases (nothing need be loaded to decide).
pub fn sees_every_case(caller: &Caller) -> bool {
    match caller {
        Caller::Unidentified => true,
        Caller::Staff(staff) => matches!(staff.role, Role::Owner | Role::Service | Role::Analyst),
        Caller::Store(_) | Caller::NoStore => false,
    }
}

/// GetDefectionReasons: staff and unidentified callers; PERMISSION_DENIED naming
/// `authorization` to store gateways (and certificates naming no store).
pub fn may_read_reasons(caller: &Caller) -> Result<(), FeedbackError> {
    match caller {
        Caller::Unidentified | Caller::Staff(_) => Ok(()),
        Caller::Store(_) | Caller::NoStore => Err(FeedbackError::forbidden(
            "authorization",
            format!("a {} reads no defection reasons", who(caller)),
        )),
    }
}

/// Whether `caller` gets `store`'s rows of the defection reasons: managers their stores',
/// everyone else [`may_read_reasons`] lets through every store's.
pub fn reads_reasons_of(caller: &Caller, store: &str) -> bool {
    match caller {
        Caller::Staff(staff)
            if matches!(staff.role, Role::StoreManager | Role::RegionalManager) =>
        {
            holds(staff, store)
        }
        _ => may_read_reasons(caller).is_ok(),
    }
}

/// EraseCustomerContact: the privacy officer and the owner (an unidentified caller too:
/// the server asks for no identity); PERMISSION_DENIED naming `authorization` to anyone
/// else.
pub fn may_erase(caller: &Caller) -> Result<(), FeedbackError> {
    match caller {
        Caller::Unidentified => Ok(()),
        Caller::Staff(staff) if matches!(staff.role, Role::PrivacyOfficer | Role::Owner) => Ok(()),
        _ => Err(FeedbackError::forbidden(
            "authorization",
            format!(
                "a {} erases no contact details (the privacy officer does)",
                who(caller)
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn staff(role: Role, stores: &[&str]) -> Caller {
        Caller::Staff(Staff {
            subject: "u-1".into(),
            role,
            stores: stores.iter().map(|s| (*s).to_owned()).collect(),
        })
    }

    /// Every kind of caller, by a short name; managers hold s-1 (a region: s-1 and s-3).
    fn callers() -> Vec<(&'static str, Caller)> {
        vec![
            ("unidentified", Caller::Unidentified),
            ("store s-1", Caller::Store("s-1".into())),
            ("no store", Caller::NoStore),
            ("store manager", staff(Role::StoreManager, &["s-1"])),
            (
                "regional manager",
                staff(Role::RegionalManager, &["s-1", "s-3"]),
            ),
            ("owner", staff(Role::Owner, &[])),
            ("analyst", staff(Role::Analyst, &["s-1"])),
            ("service", staff(Role::Service, &[])),
            ("privacy officer", staff(Role::PrivacyOfficer, &["s-1"])),
        ]
    }

    fn caller(name: &str) -> Caller {
        callers()
            .into_iter()
            .find(|(n, _)| *n == name)
            .map(|(_, c)| c)
            .expect("a caller of the table")
    }

    #[test]
    fn who_sees_which_complaint_by_role_store_and_level() {
        use Level::{Owner as O, RegionalManager as R, StoreManager as S};
        // (caller, [s-1 at S, s-1 at R, s-1 at O, s-2 at S, s-2 at R, s-2 at O])
        let table: [(&str, [bool; 6]); 9] = [
            ("unidentified", [true; 6]),
            ("store s-1", [false; 6]),
            ("no store", [false; 6]),
            ("store manager", [true, false, false, false, false, false]),
            ("regional manager", [true, true, false, false, false, false]),
            ("owner", [true; 6]),
            ("analyst", [false; 6]),
            ("service", [true; 6]),
            ("privacy officer", [false; 6]),
        ];
        assert_eq!(table.len(), callers().len());
        let cells = [
            ("s-1", S),
            ("s-1", R),
            ("s-1", O),
            ("s-2", S),
            ("s-2", R),
            ("s-2", O),
        ];
        for (name, expected) in table {
            let c = caller(name);
            for ((store, level), want) in cells.iter().zip(expected) {
                assert_eq!(
                    sees_complaint(&c, store, *level),
                    want,
                    "{name} on a complaint of {store} at {level}"
                );
            }
            // Whoever sees every complaint sees every cell; whoever sees none is refused
            // the lists outright.
            assert_eq!(
                sees_every_complaint(&c),
                expected.iter().all(|b| *b),
                "{name}"
            );
            assert_eq!(
                may_list_complaints(&c).is_ok(),
                sees_some_complaints(&c),
                "{name}"
            );
        }
        // The region's other store, at its manager's level and below only.
        let regional = caller("regional manager");
        assert!(sees_complaint(&regional, "s-3", S));
        assert!(sees_complaint(&regional, "s-3", R));
        assert!(!sees_complaint(&regional, "s-3", O));
        for name in ["store s-1", "no store", "analyst", "privacy officer"] {
            let status = may_list_complaints(&caller(name)).expect_err(name).status();
            assert_eq!(status.code(), tonic::Code::PermissionDenied, "{name}");
            assert!(status.message().starts_with("authorization:"), "{status:?}");
        }
    }

    #[test]
    fn who_files_for_which_store() {
        // (caller, files for s-1, files for s-2)
        let table = [
            ("unidentified", true, true),
            ("store s-1", true, false),
            ("no store", false, false),
            ("store manager", true, false),
            ("regional manager", true, false),
            ("owner", true, true),
            ("analyst", false, false),
            ("service", true, true),
            ("privacy officer", false, false),
        ];
        for (name, s1, s2) in table {
            let c = caller(name);
            assert_eq!(may_file(&c, "s-1").is_ok(), s1, "{name} files for s-1");
            assert_eq!(may_file(&c, "s-2").is_ok(), s2, "{name} files for s-2");
            if let Err(e) = may_file(&c, "s-2") {
                let status = e.status();
                assert_eq!(status.code(), tonic::Code::PermissionDenied);
                assert!(status.message().starts_with("store_id:"), "{status:?}");
                assert!(!status.message().contains("s-2"), "{status:?}");
            }
        }
        // A store id that is none is the request's checks' to name.
        assert!(may_file(&caller("store s-1"), "").is_ok());
        assert!(may_file(&caller("store manager"), "not an id!").is_ok());
        assert!(may_file(&caller("analyst"), "").is_err());
    }

    #[test]
    fn who_lists_and_records_outreach_reads_reasons_and_erases() {
        // (caller, lists, sees s-1's cases, sees s-2's, records, records on s-1, on s-2,
        //  reads reasons, reads s-2's rows, erases)
        let table = [
            (
                "unidentified",
                [true, true, true, true, true, true, true, true, true],
            ),
            (
                "store s-1",
                [
                    false, false, false, false, false, false, false, false, false,
                ],
            ),
            (
                "no store",
                [
                    false, false, false, false, false, false, false, false, false,
                ],
            ),
            (
                "store manager",
                [true, true, false, true, true, false, true, false, false],
            ),
            (
                "regional manager",
                [true, true, false, true, true, false, true, false, false],
            ),
            (
                "owner",
                [true, true, true, true, true, true, true, true, true],
            ),
            (
                "analyst",
                [true, true, true, false, false, false, true, true, false],
            ),
            (
                "service",
                [true, true, true, true, true, true, true, true, false],
            ),
            (
                "privacy officer",
                [false, false, false, false, false, false, true, true, true],
            ),
        ];
        for (name, [lists, l1, l2, records, r1, r2, reasons, rows2, erases]) in table {
            let c = caller(name);
            match may_list_outreach(&c) {
                Ok(sees) => {
                    assert!(lists, "{name} lists");
                    assert_eq!((sees("s-1"), sees("s-2")), (l1, l2), "{name} lists");
                    assert_eq!(sees_every_case(&c), l1 && l2, "{name}");
                }
                Err(e) => {
                    assert!(!lists, "{name} lists");
                    assert_eq!(e.status().code(), tonic::Code::PermissionDenied);
                }
            }
            assert_eq!(may_record_outreach(&c).is_ok(), records, "{name} records");
            assert_eq!(may_record_outreach_on(&c, "s-1"), r1, "{name} records s-1");
            assert_eq!(may_record_outreach_on(&c, "s-2"), r2, "{name} records s-2");
            assert_eq!(may_read_reasons(&c).is_ok(), reasons, "{name} reasons");
            assert_eq!(reads_reasons_of(&c, "s-2"), rows2, "{name} s-2's rows");
            assert!(!reasons || reads_reasons_of(&c, "s-1"), "{name} s-1's rows");
            match may_erase(&c) {
                Ok(()) => assert!(erases, "{name} erases"),
                Err(e) => {
                    assert!(!erases, "{name} erases");
                    let status = e.status();
                    assert_eq!(status.code(), tonic::Code::PermissionDenied);
                    assert!(status.message().starts_with("authorization:"), "{status:?}");
                }
            }
        }
    }
}
