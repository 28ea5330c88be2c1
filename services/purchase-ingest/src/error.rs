//! The service's one error type, and the one place it becomes a gRPC status.

use std::time::Duration;

use churnguard_config::ConfigError;
use churnguard_domain::Violations;
use churnguard_eventlog::LogError;
use churnguard_proto::ingest::v1 as pb;
use churnguard_runtime::identity::{Caller, STORE_URI_PREFIX};
use churnguard_runtime::{ServeError, TaskFailed};
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("starting the service failed: {0}")]
    Startup(String),
    #[error("gRPC server: {0}")]
    Serve(#[from] ServeError),
    #[error("invalid swipe: {0}")]
    InvalidSwipe(Violations),
    #[error(
        "batch {index} of the stream has {size} swipes, more than the limit of {max}, so the \
         stream ends here: every batch before it was answered; it and any sent after it were \
         not processed"
    )]
    BatchTooLarge { index: u64, size: usize, max: usize },
    #[error("publishing failed")]
    Publish(#[source] LogError),
    #[error("the event log did not acknowledge within {0:?}")]
    DeadlineExceeded(Duration),
    #[error("too many swipes in flight")]
    Overloaded,
    /// The swipe's `store_id` is not a store the caller may record for.
    #[error("{}", other_store_message(.0))]
    OtherStore(Caller),
    /// A `historical` request where the deployment takes no imports.
    #[error(
        "historical: this deployment takes no imports of history (limits.allow_import is off); the swipe was not written"
    )]
    ImportNotAllowed,
    /// A `historical` request from a caller whose role may not import.
    #[error("{}", import_forbidden_message(.0))]
    ImportForbidden(Caller),
}

fn import_forbidden_message(caller: &Caller) -> String {
    let who = match caller {
        Caller::Staff(staff) => format!("a {} token", staff.role.as_str()),
        Caller::Store(store) => format!("the gateway of store {store}"),
        Caller::NoStore | Caller::Unidentified => "this caller".to_owned(),
    };
    format!(
        "historical: {who} may not import history (a service token may); the swipe was not written"
    )
}

fn other_store_message(caller: &Caller) -> String {
    match caller {
        Caller::Store(own) => format!(
            "store_id: this store gateway records swipes of store {own} only; the swipe was not written"
        ),
        Caller::Staff(staff) => format!(
            "store_id: a {} records no swipes (store gateways and services do); the swipe was not written",
            staff.role.as_str()
        ),
        Caller::NoStore | Caller::Unidentified => format!(
            "store_id: the client certificate names no store (a URI SAN {STORE_URI_PREFIX}<store_id>); the swipe was not written"
        ),
    }
}

impl IngestError {
    /// The status a caller sees. Internal details stay in our logs, never in the status.
    pub fn status(&self) -> Status {
        match self {
            IngestError::InvalidSwipe(v) => {
                churnguard_runtime::status::invalid_argument(format!("invalid swipe: {v}"), v)
            }
            IngestError::BatchTooLarge { size, max, .. } => Status::with_error_details(
                Code::InvalidArgument,
                self.to_string(),
                ErrorDetails::with_bad_request_violation(
                    "swipes",
                    format!("has {size} swipes; at most {max} are allowed per batch"),
                ),
            ),
            IngestError::DeadlineExceeded(_) => Status::deadline_exceeded(format!(
                "{self}; the swipe may or may not have been written: retry with the same swipe_id"
            )),
            IngestError::OtherStore(_) | IngestError::ImportForbidden(_) => {
                Status::permission_denied(self.to_string())
            }
            IngestError::ImportNotAllowed => Status::failed_precondition(self.to_string()),
            IngestError::Overloaded => {
                Status::unavailable("purchase-ingest is at capacity: retry with the same swipe_id")
            }
            IngestError::Publish(e) if e.is_retriable() => {
                Status::unavailable("the event log is unavailable: retry with the same swipe_id")
            }
            IngestError::Publish(_)
            | IngestError::Config(_)
            | IngestError::Startup(_)
            | IngestError::Serve(_) => Status::internal("the swipe could not be written"),
        }
    }

    /// The same outcome as a per-swipe result of StreamSwipes.
    pub fn rejection(&self) -> pb::Rejected {
        let status = self.status();
        let field_violations = match self {
            IngestError::InvalidSwipe(v) => {
                v.0.iter()
                    .map(|f| pb::FieldViolation {
                        field: f.field.clone(),
                        description: f.description.clone(),
                    })
                    .collect()
            }
            _ => Vec::new(),
        };
        pb::Rejected {
            code: churnguard_runtime::status::code_name(status.code()).into(),
            message: status.message().into(),
            field_violations,
        }
    }
}

impl From<TaskFailed> for IngestError {
    fn from(e: TaskFailed) -> Self {
        IngestError::Startup(format!("server task: {}", e.0))
    }
}
