//! Compiles `proto/cvm/v1/*.proto` with protox (pure Rust, no `protoc`), then
//! generates prost types and pbjson serde impls (the canonical proto3 JSON
//! mapping) from the same descriptor set.
use std::{env, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Read at run time: a build script binary reused from another checkout of
    // the same target directory must look at this checkout.
    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let files = ["cvm/v1/events.proto", "cvm/v1/decisions.proto", "cvm/v1/status.proto"];
    for f in &files {
        println!("cargo:rerun-if-changed={}", root.join(f).display());
    }
    let descriptors = protox::compile(files, [&root])?;
    let out = PathBuf::from(env::var("OUT_DIR")?);
    let descriptor_path = out.join("cvm_descriptor.bin");
    std::fs::write(&descriptor_path, prost::Message::encode_to_vec(&descriptors))?;

    prost_build::Config::new()
        .enable_type_names()
        .file_descriptor_set_path(&descriptor_path)
        .skip_protoc_run()
        .compile_protos(&files, &[&root])?;

    let descriptor_bytes = std::fs::read(&descriptor_path)?;
    // Unknown JSON fields are ignored, as protobuf ignores unknown fields: a
    // producer that adds a field must not dead-letter every message.
    pbjson_build::Builder::new()
        .register_descriptors(&descriptor_bytes)?
        .ignore_unknown_fields()
        .build(&[".cvm.v1"])?;
    Ok(())
}
