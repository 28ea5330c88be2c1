//! Contact details on record: opening them for GetComplaint, and EraseCustomerContact.
//! Contact details are never logged.
//!
//! Erasing is the privacy officer's (and the owner's: [`access::may_erase`]), and every
//! erasure is recorded on the Redis stream [`ERASURES_KEY`]: one entry per erasing call,
//! with who (`actor`, as [`Caller::actor`] names them), when (`at`, by the service's
//! clock) and which customer (`customer`, the customer id or card token erased), never
//! the contact details. The stream is not trimmed: it is the record of erasures.

use churnguard_domain::feedback::complaint::{Complaint, ContactDetails};
use churnguard_domain::ids::CustomerKey;
use churnguard_eventlog::EventLog;
use churnguard_proto::feedback::v1 as pb;
use churnguard_runtime::identity::Caller;
use churnguard_vault::{KeyStore, VaultError};

use super::{FeedbackApi, access};
use crate::error::FeedbackError;
use crate::mapping::{contact_details_out, timestamp_out};

/// The Redis key holding when a customer's contact details were first erased.
pub fn erased_at_key(customer: &str) -> String {
    format!("fe:erased:{{{customer}}}")
}

/// The Redis stream recording every erasure: fields `actor`, `at` and `customer`.
pub const ERASURES_KEY: &str = "fe:erasures";

/// Why sealed contact details that are on record cannot be opened, for
/// `ContactOnRecord.unavailable`: the key that sealed them is not the one this service
/// holds. `None` for errors that are no such answer (the key store unreachable, a blob
/// that is not one).
pub fn unavailable(e: &VaultError) -> Option<&'static str> {
    match e {
        _ if !e.is_key_unavailable() => None,
        VaultError::KeyUnwrap => Some(
            "the customer's key does not open under this service's key-encryption key: \
             it was sealed under another one",
        ),
        _ => Some(
            "the key that sealed the details is not in the contact vault's key store: \
             lost or replaced",
        ),
    }
}

impl<L: EventLog> FeedbackApi<L> {
    /// The complaint's contact details as GetComplaint shows them on request: the details,
    /// when they were erased, or why they cannot be opened.
    pub(super) async fn contact_on_record(
        &self,
        complaint: &Complaint,
    ) -> Result<pb::ContactOnRecord, FeedbackError> {
        let customer = complaint.customer.key().as_str();
        let state = match self
            .vault
            .open(customer, complaint.contact.as_bytes())
            .await
        {
            Ok(plain) => {
                let d = ContactDetails::from_plaintext(&plain).ok_or_else(|| {
                    FeedbackError::Corrupt("sealed contact details do not parse".into())
                })?;
                pb::contact_on_record::State::Details(contact_details_out(d))
            }
            Err(VaultError::Erased) => {
                pb::contact_on_record::State::ErasedAt(self.erased_at(customer).await?)
            }
            Err(e) => match unavailable(&e) {
                Some(why) => {
                    tracing::warn!(complaint = %complaint.id.as_str(), error = %e, "contact details on record cannot be opened");
                    pb::contact_on_record::State::Unavailable(why.to_owned())
                }
                None => return Err(e.into()),
            },
        };
        Ok(pb::ContactOnRecord { state: Some(state) })
    }

    /// When the customer's contact details were first erased; empty if never.
    async fn erased_at(&self, customer: &str) -> Result<String, FeedbackError> {
        let mut conn = self.redis.clone();
        let at: Option<String> = redis::cmd("GET")
            .arg(erased_at_key(customer))
            .query_async(&mut conn)
            .await
            .map_err(FeedbackError::redis("GET erased_at"))?;
        Ok(at.unwrap_or_default())
    }

    /// EraseCustomerContact: erases the customer's key in the vault, which makes every
    /// copy of their sealed contact details unreadable, and records when (the first
    /// time, for GetComplaint) and who erased them ([`ERASURES_KEY`], every time). The
    /// record is written after the erasure: if it fails the call fails (UNAVAILABLE),
    /// and its retry, which erases again, records it.
    pub(super) async fn erase(
        &self,
        caller: &Caller,
        req: pb::EraseCustomerContactRequest,
    ) -> Result<pb::EraseCustomerContactResponse, FeedbackError> {
        access::may_erase(caller)?;
        let (field, value) = match req.customer.and_then(|c| c.kind) {
            None => {
                return Err(FeedbackError::invalid(
                    "customer",
                    "a customer_id or card_token is required",
                ));
            }
            Some(pb::customer::Kind::CustomerId(v)) => ("customer.customer_id", v),
            Some(pb::customer::Kind::CardToken(v)) => ("customer.card_token", v),
        };
        let key = CustomerKey::parse(value).map_err(|e| FeedbackError::invalid(field, e))?;
        let customer = key.as_str();
        let store = self.vault.store();
        let held = store
            .get(customer)
            .await
            .map_err(VaultError::from)?
            .is_some()
            || store.is_erased(customer).await.map_err(VaultError::from)?;
        if !held {
            return Ok(pb::EraseCustomerContactResponse {
                erased: false,
                erased_at: String::new(),
            });
        }
        self.vault.erase(customer).await?;
        let mut conn = self.redis.clone();
        let now = timestamp_out(self.complaints.now());
        let _: Option<String> = redis::cmd("SET")
            .arg(erased_at_key(customer))
            .arg(&now)
            .arg("NX")
            .query_async(&mut conn)
            .await
            .map_err(FeedbackError::redis("SET erased_at"))?;
        let actor = caller.actor();
        let _: String = redis::cmd("XADD")
            .arg(ERASURES_KEY)
            .arg("*")
            .arg("actor")
            .arg(&actor)
            .arg("at")
            .arg(&now)
            .arg("customer")
            .arg(customer)
            .query_async(&mut conn)
            .await
            .map_err(FeedbackError::redis("XADD erasures"))?;
        tracing::info!(actor = %actor, "a customer's contact details were erased");
        Ok(pb::EraseCustomerContactResponse {
            erased: true,
            erased_at: self.erased_at(customer).await?,
        })
    }
}
