//! Generates the gRPC code from `proto/`. protoc comes from the
//! `protoc-bin-vendored` crate so nobody has to install it (and edition 2024
//! makes setting `PROTOC` through `set_var` unsafe, so it is passed here).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../proto");
    let files = [
        "llmgw/error/v1/error.proto",
        "llmgw/limits/v1/limits.proto",
        "llmgw/router/v1/router.proto",
        "llmgw/quota/v1/quota.proto",
        "llmgw/billing/v1/accounts.proto",
        "llmgw/billing/v1/usage.proto",
        "llmgw/billing/v1/audit.proto",
        "llmgw/billing/v1/policy.proto",
    ]
    .map(|file| root.join(file));
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    // Chunks are forwarded, not inspected: `Bytes` moves them without copies.
    config.bytes(["."]);
    tonic_prost_build::configure()
        // Small buffers: see `src/codec.rs`.
        .codec_path("crate::codec::SmallBufferCodec")
        .compile_with_config(config, &files, std::slice::from_ref(&root))?;
    println!("cargo:rerun-if-changed={}", root.display());
    Ok(())
}
