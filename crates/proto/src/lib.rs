//! Rust types and gRPC stubs generated from `proto/`, the contracts other teams call.

/// `churnguard.ingest.v1`: card swipes in.
pub mod ingest {
    pub mod v1 {
        #![allow(missing_debug_implementations, clippy::all)]
        tonic::include_proto!("churnguard.ingest.v1");
    }
}

/// `churnguard.scoring.v1`: defection risk, at-risk lists, store stats, the model.
pub mod scoring {
    pub mod v1 {
        #![allow(missing_debug_implementations, clippy::all)]
        tonic::include_proto!("churnguard.scoring.v1");
    }
}

/// `churnguard.feedback.v1`: complaints, SLA clocks and escalation, defector outreach.
pub mod feedback {
    pub mod v1 {
        #![allow(missing_debug_implementations, clippy::all)]
        tonic::include_proto!("churnguard.feedback.v1");
    }
}

/// The encoded `FileDescriptorSet` of every churnguard proto, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/churnguard_descriptor.bin"));
