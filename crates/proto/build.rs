//! Compiles the public .proto contracts with protox (pure Rust), so no system `protoc`
//! is needed, and writes the descriptor set that gRPC reflection serves.
//!
//! Two passes: the messages and the servers, whose codec answers a request that cannot be
//! decoded with INVALID_ARGUMENT (`churnguard_proto::codec::RequestCodec`), then the
//! clients alone (into `OUT_DIR/clients`, using the messages of the first pass), with
//! tonic's own codec, for which a response that cannot be decoded is the server's fault
//! (INTERNAL).

use prost::Message;
use std::{env, fs, path::PathBuf};

const PROTOS: &[&str] = &[
    "churnguard/ingest/v1/ingest.proto",
    "churnguard/scoring/v1/scoring.proto",
    "churnguard/feedback/v1/feedback.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    println!("cargo:rerun-if-changed={}", root.display());

    let fds = protox::compile(PROTOS, [&root])?;
    let out = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(out.join("churnguard_descriptor.bin"), fds.encode_to_vec())?;

    tonic_prost_build::configure()
        .build_client(false)
        .build_server(true)
        .codec_path("crate::codec::RequestCodec")
        .compile_fds(fds.clone())?;

    let clients = out.join("clients");
    fs::create_dir_all(&clients)?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(false)
        .extern_path(".churnguard.ingest.v1", "crate::ingest::v1")
        .extern_path(".churnguard.scoring.v1", "crate::scoring::v1")
        .extern_path(".churnguard.feedback.v1", "crate::feedback::v1")
        .out_dir(&clients)
        .compile_fds(fds)?;
    Ok(())
}
