//! The churnguard domain, pure: no I/O crate is allowed here, and every rule that depends
//! on "now" takes the time as an argument.
//!
//! - Purchases: what a card swipe is and what makes one valid ([`swipe`], [`money`],
//!   [`ids`], [`card`]), how it is written down as an event ([`envelope`]) and where it
//!   goes ([`partition`]).
//! - Churn: a customer's rolling windows ([`customer`]), the buy-till-you-die models and
//!   their fits ([`models`]), what "at risk" and "defected" mean per store format
//!   ([`policy`]), one risk computation ([`risk`]) and the signal a change of state
//!   publishes ([`signal`]).
//! - Feedback ([`feedback`]): complaints and their SLA clocks in business time, and
//!   defector outreach.
//! - Event sourcing: one shape for every aggregate ([`aggregate`]).

pub mod aggregate;
pub mod card;
pub mod customer;
pub mod envelope;
pub mod error;
pub mod feedback;
pub mod ids;
pub mod models;
pub mod money;
pub mod partition;
pub mod policy;
pub mod risk;
pub mod signal;
pub mod swipe;

pub use aggregate::{Aggregate, Refusal};
pub use card::{CardTokenizer, TokenizeError};
pub use envelope::{DecodeError, Envelope};
pub use error::{FieldViolation, Violations, quoted};
pub use ids::{ComplaintId, CustomerKey, EmployeeId, OutreachCaseId, StoreId, SwipeId, TerminalId};
pub use money::{Currency, Money};
pub use partition::partition_for_key;
pub use swipe::{CardSwiped, CustomerInput, SwipeDraft, SwipeLimits};
