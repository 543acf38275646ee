//! Generates the gRPC server of `proto/gateway.proto` with the protoc that
//! protoc-bin-vendored ships, so that a plain `cargo build` needs no protoc installed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/gateway.proto");
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    tonic_prost_build::configure()
        .build_client(false)
        .build_transport(false)
        .compile_with_config(config, &["proto/gateway.proto"], &["proto"])?;
    Ok(())
}
