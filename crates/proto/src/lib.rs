//! Rust types and gRPC stubs generated from `proto/`, the contracts other teams call.
//!
//! The servers decode requests with [`codec::RequestCodec`] (an undecodable request is
//! INVALID_ARGUMENT); the clients keep tonic's prost codec.

pub mod codec;

/// The canonical upper-case name of a gRPC code, as in the gRPC spec (`OK`, `NOT_FOUND`,
/// ...): how the contracts spell codes (`Rejected.code`), and how metric labels and error
/// bodies say them.
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// `churnguard.ingest.v1`: card swipes in.
pub mod ingest {
    pub mod v1 {
        #![allow(missing_debug_implementations, clippy::all)]
        tonic::include_proto!("churnguard.ingest.v1");
        include!(concat!(env!("OUT_DIR"), "/clients/churnguard.ingest.v1.rs"));
    }
}

/// `churnguard.scoring.v1`: defection risk, at-risk lists, store stats, the model.
pub mod scoring {
    pub mod v1 {
        #![allow(missing_debug_implementations, clippy::all)]
        tonic::include_proto!("churnguard.scoring.v1");
        include!(concat!(
            env!("OUT_DIR"),
            "/clients/churnguard.scoring.v1.rs"
        ));
    }
}

/// `churnguard.feedback.v1`: complaints, SLA clocks and escalation, defector outreach.
pub mod feedback {
    pub mod v1 {
        #![allow(missing_debug_implementations, clippy::all)]
        tonic::include_proto!("churnguard.feedback.v1");
        include!(concat!(
            env!("OUT_DIR"),
            "/clients/churnguard.feedback.v1.rs"
        ));
    }
}

/// The encoded `FileDescriptorSet` of every churnguard proto, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/churnguard_descriptor.bin"));

/// Every store ListStores lists to `client`'s caller, page by page, by store id: what
/// `churnguard report` and `churnguard-local`'s store log both need.
pub async fn list_all_stores<T>(
    client: &mut scoring::v1::churn_scoring_client::ChurnScoringClient<T>,
) -> Result<Vec<String>, tonic::Status>
where
    T: tonic::client::GrpcService<tonic::body::Body>,
    T::Error: Into<tonic::codegen::StdError>,
    T::ResponseBody: tonic::codegen::Body<Data = tonic::codegen::Bytes> + Send + 'static,
    <T::ResponseBody as tonic::codegen::Body>::Error: Into<tonic::codegen::StdError> + Send,
{
    let mut stores = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .list_stores(scoring::v1::ListStoresRequest {
                page_size: 1_000,
                page_token,
            })
            .await?
            .into_inner();
        stores.extend(page.stores.into_iter().map(|s| s.store_id));
        if page.next_page_token.is_empty() {
            return Ok(stores);
        }
        page_token = page.next_page_token;
    }
}

#[cfg(test)]
mod tests {
    /// (package, generated messages and server, generated client)
    const GENERATED: [(&str, &str, &str); 3] = [
        (
            "ingest",
            include_str!(concat!(env!("OUT_DIR"), "/churnguard.ingest.v1.rs")),
            include_str!(concat!(env!("OUT_DIR"), "/clients/churnguard.ingest.v1.rs")),
        ),
        (
            "scoring",
            include_str!(concat!(env!("OUT_DIR"), "/churnguard.scoring.v1.rs")),
            include_str!(concat!(
                env!("OUT_DIR"),
                "/clients/churnguard.scoring.v1.rs"
            )),
        ),
        (
            "feedback",
            include_str!(concat!(env!("OUT_DIR"), "/churnguard.feedback.v1.rs")),
            include_str!(concat!(
                env!("OUT_DIR"),
                "/clients/churnguard.feedback.v1.rs"
            )),
        ),
    ];

    #[test]
    fn every_server_decodes_with_the_request_codec_and_every_client_with_prost() {
        for (package, server, client) in GENERATED {
            assert!(
                server.contains("crate::codec::RequestCodec::default()"),
                "{package}"
            );
            assert!(!server.contains("ProstCodec"), "{package}");
            assert!(!server.contains("_client {"), "{package}: no client here");
            assert!(
                client.contains("tonic_prost::ProstCodec::default()"),
                "{package}"
            );
            assert!(!client.contains("RequestCodec"), "{package}");
            assert!(!client.contains("_server {"), "{package}: no server here");
        }
    }
}
