//! Compiles `proto/` into prost messages with a vendored `protoc`, so no system protoc is needed.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::var_os("PROTOC").is_none() {
        std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?);
    }
    println!("cargo:rerun-if-changed=proto");
    prost_build::Config::new().compile_protos(&["proto/bridge/v1/ticket.proto"], &["proto"])?;
    // Where the binaries find libduckdb.so at run time, without LD_LIBRARY_PATH: first beside
    // the binary itself (`$ORIGIN`: a deployment copies libduckdb.so next to `bridge`), then the
    // build's own copy (DUCKDB_LIB_DIR, an absolute path on the build machine, so `make run` and
    // the tests work in place).
    println!("cargo:rustc-link-arg=-Wl,-rpath,$ORIGIN");
    if let Some(dir) = std::env::var_os("DUCKDB_LIB_DIR") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir.to_string_lossy());
    }
    println!("cargo:rerun-if-env-changed=DUCKDB_LIB_DIR");
    Ok(())
}
