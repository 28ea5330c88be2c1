//! The churnguard domain: what a card swipe is, what makes one valid, and how it is
//! written down as an event. Pure: no I/O crate is allowed here, and every rule that
//! depends on "now" takes the time as an argument.

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

pub use card::{CardTokenizer, TokenizeError};
pub use envelope::{DecodeError, Envelope};
pub use error::{FieldViolation, Violations, quoted};
pub use ids::{ComplaintId, CustomerKey, EmployeeId, OutreachCaseId, StoreId, SwipeId, TerminalId};
pub use money::{Currency, Money};
pub use partition::partition_for_key;
pub use swipe::{CardSwiped, CustomerInput, SwipeDraft, SwipeLimits};
