//! Compiles `proto/` into prost messages with a vendored `protoc`, so no system protoc is needed.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::var_os("PROTOC").is_none() {
        std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?);
    }
    println!("cargo:rerun-if-changed=proto");
    prost_build::Config::new().compile_protos(&["proto/bridge/v1/ticket.proto"], &["proto"])?;
    // Find libduckdb.so next to the binaries at run time without LD_LIBRARY_PATH.
    if let Some(dir) = std::env::var_os("DUCKDB_LIB_DIR") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir.to_string_lossy());
    }
    println!("cargo:rerun-if-env-changed=DUCKDB_LIB_DIR");
    Ok(())
}
