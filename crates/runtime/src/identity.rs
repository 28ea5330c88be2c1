//! Who is calling. A server that requires identities ([`crate::GrpcServer::with_auth`])
//! works it out once per call, from the credentials the call presents ([`crate::auth`]),
//! and puts it in the request's extensions; [`Caller::of`] reads it there.
//!
//! - A store gateway's client certificate (mutual TLS) names its store in a URI subject
//!   alternative name, `urn:churnguard:store:<store_id>` ([`STORE_URI_PREFIX`]); the CA
//!   that signs gateway certificates is what vouches for it. A store token does the same
//!   without a certificate.
//! - Managers, analysts and other services present a JWT whose claims give their
//!   [`Role`] and stores ([`Staff`]).
//!
//! What each caller may do is asked of it here (`may_*`), so that every service reads the
//! same rules.

use tonic::transport::CertificateDer;

/// The URI subject alternative name of a store gateway's certificate, before the store id.
pub const STORE_URI_PREFIX: &str = "urn:churnguard:store:";

/// The caller of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// Nothing identifies the caller, and the server asks for nothing (`make run`): it
    /// may do anything.
    Unidentified,
    /// A store gateway, by its client certificate or its store token.
    Store(String),
    /// A client certificate that names no store, or more than one: identified by the
    /// transport, allowed nothing.
    NoStore,
    /// A manager, analyst or service, by a signed token.
    Staff(Staff),
}

/// A person or service a JWT names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Staff {
    /// The token's `sub`.
    pub subject: String,
    pub role: Role,
    /// The stores the token names (its `stores` claim): a store manager's stores, a
    /// regional manager's region. Roles that see every store need none.
    pub stores: Vec<String>,
}

/// The roles a JWT's `role` claim may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Acts on their stores' complaints at the store level; reads their stores' scores.
    StoreManager,
    /// Acts on their region's complaints up to the regional level.
    RegionalManager,
    /// Acts on every complaint; reads everything.
    Owner,
    /// Reads every store's scores and the defection reasons; acts on nothing.
    Analyst,
    /// Another backend service (an importer, the outreach tool): writes swipes and files
    /// complaints for any store, reads everything.
    Service,
    /// Erases customers' contact details, and nothing else.
    PrivacyOfficer,
}

impl Role {
    /// Every role, as a claim names it.
    pub const ALL: [Role; 6] = [
        Role::StoreManager,
        Role::RegionalManager,
        Role::Owner,
        Role::Analyst,
        Role::Service,
        Role::PrivacyOfficer,
    ];

    /// The role's name in a token's `role` claim and in an event's `actor`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::StoreManager => "store_manager",
            Role::RegionalManager => "regional_manager",
            Role::Owner => "owner",
            Role::Analyst => "analyst",
            Role::Service => "service",
            Role::PrivacyOfficer => "privacy_officer",
        }
    }

    /// The role a claim names, if any.
    pub fn parse(claim: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == claim)
    }
}

impl Caller {
    /// The caller of `request`: what the server's authentication found, or (on a server
    /// without it) what the peer certificate says.
    pub fn of<T>(request: &tonic::Request<T>) -> Self {
        if let Some(caller) = request.extensions().get::<Caller>() {
            return caller.clone();
        }
        match request.peer_certs() {
            Some(certs) => Self::from_certificate(certs.first()),
            None => Caller::Unidentified,
        }
    }

    /// The caller a client certificate names; `None` (TLS without a client certificate):
    /// unidentified.
    pub fn from_certificate(cert: Option<&CertificateDer<'_>>) -> Self {
        let Some(cert) = cert else {
            return Caller::Unidentified;
        };
        let Ok(cert) = webpki::EndEntityCert::try_from(cert) else {
            return Caller::NoStore;
        };
        let mut stores = cert
            .valid_uri_names()
            .filter_map(|uri| uri.strip_prefix(STORE_URI_PREFIX))
            .filter(|store| !store.is_empty());
        match (stores.next(), stores.next()) {
            (Some(store), None) => Caller::Store(store.to_owned()),
            _ => Caller::NoStore,
        }
    }

    /// Who this is: `store:<id>`, `<role>:<subject>`, `certificate` (one naming no
    /// store) or `unidentified`.
    pub fn actor(&self) -> String {
        match self {
            Caller::Unidentified => "unidentified".into(),
            Caller::Store(store) => format!("store:{store}"),
            Caller::NoStore => "certificate".into(),
            Caller::Staff(staff) => format!("{}:{}", staff.role.as_str(), staff.subject),
        }
    }

    /// The `actor` an event of this caller's command records: [`Caller::actor`], or
    /// nothing where callers are not identified.
    pub fn event_actor(&self) -> Option<String> {
        (*self != Caller::Unidentified).then(|| self.actor())
    }

    /// The staff role, if the caller is staff.
    pub fn role(&self) -> Option<Role> {
        match self {
            Caller::Staff(staff) => Some(staff.role),
            _ => None,
        }
    }

    /// Whether this caller may write swipes for `store`: an unidentified caller may (the
    /// server asks for no identity), a store gateway only for its own store, a service
    /// for any.
    pub fn may_act_for_store(&self, store: &str) -> bool {
        match self {
            Caller::Unidentified => true,
            Caller::Store(own) => own == store,
            Caller::Staff(staff) => staff.role == Role::Service,
            Caller::NoStore => false,
        }
    }

    /// Whether this caller may import history (swipes older than live traffic may be): an
    /// unidentified caller may (the server asks for no identity), and a service (the
    /// importer); store gateways and people may not.
    pub fn may_import(&self) -> bool {
        match self {
            Caller::Unidentified => true,
            Caller::Staff(staff) => staff.role == Role::Service,
            Caller::Store(_) | Caller::NoStore => false,
        }
    }

    /// Whether this caller may read every store's figures (scores, lists across stores):
    /// unidentified, owner, analyst, service.
    pub fn reads_every_store(&self) -> bool {
        match self {
            Caller::Unidentified => true,
            Caller::Staff(staff) => {
                matches!(staff.role, Role::Owner | Role::Analyst | Role::Service)
            }
            Caller::Store(_) | Caller::NoStore => false,
        }
    }

    /// Whether this caller may read `store`'s figures: those who read every store, and
    /// managers their own stores.
    pub fn may_read_store(&self, store: &str) -> bool {
        self.reads_every_store()
            || matches!(self, Caller::Staff(staff)
                if matches!(staff.role, Role::StoreManager | Role::RegionalManager)
                    && staff.stores.iter().any(|s| s == store))
    }

    /// The stores this caller may read when it may not read them all; `None`: all.
    pub fn readable_stores(&self) -> Option<&[String]> {
        if self.reads_every_store() {
            return None;
        }
        match self {
            Caller::Staff(staff)
                if matches!(staff.role, Role::StoreManager | Role::RegionalManager) =>
            {
                Some(&staff.stores)
            }
            _ => Some(&[]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn staff(role: Role, stores: &[&str]) -> Caller {
        Caller::Staff(Staff {
            subject: "s-1".into(),
            role,
            stores: stores.iter().map(|s| s.to_string()).collect(),
        })
    }

    #[test]
    fn roles_round_trip_through_their_claim() {
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        assert_eq!(Role::parse("admin"), None);
    }

    #[test]
    fn who_may_write_and_read_which_store() {
        let manager = staff(Role::StoreManager, &["s-1"]);
        let cases = [
            (Caller::Unidentified, true, true, true),
            (Caller::Store("s-1".into()), true, false, false),
            (Caller::NoStore, false, false, false),
            (manager.clone(), false, true, false),
            (
                staff(Role::RegionalManager, &["s-1", "s-3"]),
                false,
                true,
                false,
            ),
            (staff(Role::Owner, &[]), false, true, true),
            (staff(Role::Analyst, &[]), false, true, true),
            (staff(Role::Service, &[]), true, true, true),
            (staff(Role::PrivacyOfficer, &[]), false, false, false),
        ];
        for (caller, writes, reads, reads_all) in cases {
            assert_eq!(
                caller.may_act_for_store("s-1"),
                writes,
                "{caller:?} writes s-1"
            );
            assert_eq!(caller.may_read_store("s-1"), reads, "{caller:?} reads s-1");
            // History is imported by those who write every store's swipes, not by a
            // store's own gateway.
            assert_eq!(
                caller.may_import(),
                writes && !matches!(caller, Caller::Store(_)),
                "{caller:?} imports"
            );
            assert_eq!(
                caller.reads_every_store(),
                reads_all,
                "{caller:?} reads all"
            );
            assert!(
                !caller.may_read_store("s-2") || reads_all,
                "{caller:?} reads s-2"
            );
        }
        assert!(!Caller::Store("s-2".into()).may_act_for_store("s-1"));
        assert_eq!(manager.readable_stores(), Some(&["s-1".to_string()][..]));
        assert_eq!(manager.actor(), "store_manager:s-1");
        assert_eq!(
            Caller::Store("s-9".into()).event_actor().as_deref(),
            Some("store:s-9")
        );
        assert_eq!(Caller::Unidentified.event_actor(), None);
    }
}
