//! gRPC statuses every service answers the same way. Each service's error enum still maps
//! its own errors in one place (`status()`); what is shared is written here.

use churnguard_domain::Violations;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// INVALID_ARGUMENT with `message` and a `google.rpc.BadRequest` naming every bad field,
/// so a client library can show each field's problem next to it.
pub fn invalid_argument(message: impl Into<String>, violations: &Violations) -> Status {
    let fields: Vec<tonic_types::FieldViolation> = violations
        .0
        .iter()
        .map(|f| tonic_types::FieldViolation::new(f.field.clone(), f.description.clone()))
        .collect();
    Status::with_error_details(
        Code::InvalidArgument,
        message,
        ErrorDetails::with_bad_request(fields),
    )
}

/// The canonical upper-case name of a gRPC code (`OK`, `NOT_FOUND`, ...), defined with
/// the contracts so that clients spell codes the same way.
pub use churnguard_proto::code_name;

#[cfg(test)]
mod tests {
    use churnguard_domain::FieldViolation;

    use super::*;

    #[test]
    fn every_bad_field_is_in_the_details() {
        let v = Violations(vec![
            FieldViolation::new("customer_id", "must not be empty"),
            FieldViolation::new("as_of", "must be YYYY-MM-DD"),
        ]);
        let status = invalid_argument("bad request", &v);
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(status.message(), "bad request");
        let details = status.get_error_details();
        let fields: Vec<(&str, &str)> = details
            .bad_request()
            .expect("a BadRequest")
            .field_violations
            .iter()
            .map(|f| (f.field.as_str(), f.description.as_str()))
            .collect();
        assert_eq!(
            fields,
            vec![
                ("customer_id", "must not be empty"),
                ("as_of", "must be YYYY-MM-DD")
            ]
        );
    }
}
